"""Retained enrollment audio (``serve.retain_enrollment_audio``): encrypted uploads per speaker.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrollment_audio",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("speaker_key", sa.String(64), nullable=False),
        sa.Column("audio_key", sa.String(64), nullable=False),
        sa.Column("audio_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_enrollment_audio_speaker", "enrollment_audio", ["tenant", "speaker_key"])


def downgrade() -> None:
    op.drop_index("ix_enrollment_audio_speaker", table_name="enrollment_audio")
    op.drop_table("enrollment_audio")
