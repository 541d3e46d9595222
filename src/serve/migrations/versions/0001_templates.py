"""The template store's first layout: one encrypted row per (tenant, speaker pseudonym).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "templates",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("speaker_key", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("n_utterances", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("embeddings_enc", sa.LargeBinary(), nullable=False),
        sa.Column("speaker_id_enc", sa.LargeBinary(), nullable=False),
        sa.Column("audio_keys", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant", "speaker_key", name="uq_tenant_speaker"),
    )
    op.create_index("ix_templates_tenant", "templates", ["tenant"])


def downgrade() -> None:
    op.drop_index("ix_templates_tenant", table_name="templates")
    op.drop_table("templates")
