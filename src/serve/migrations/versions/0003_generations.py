"""Per-tenant change generations: what lets every worker of `speakerops serve` follow the store.

Each enroll, delete and migration of a tenant bumps ``tenant_generations.generation`` in its
own transaction and stamps the row it wrote (``templates.generation``) or the speaker it erased
(``template_tombstones``, the keyed pseudonym only) with the new value; a worker compares the
tenant's generation with the one its index has seen and reads only what changed since.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_generations",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("generation", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "template_tombstones",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("speaker_key", sa.String(64), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "ix_template_tombstones_generation", "template_tombstones", ["tenant", "generation"]
    )
    with op.batch_alter_table("templates") as batch:  # SQLite: batch mode
        batch.add_column(
            sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_index("ix_templates_generation", "templates", ["tenant", "generation"])


def downgrade() -> None:
    op.drop_index("ix_templates_generation", table_name="templates")
    with op.batch_alter_table("templates") as batch:
        batch.drop_column("generation")
    op.drop_index("ix_template_tombstones_generation", table_name="template_tombstones")
    op.drop_table("template_tombstones")
    op.drop_table("tenant_generations")
