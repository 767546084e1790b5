"""batches.batch_key: a batch's own unique key, so a replayed batch is never stored twice

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = "unique per batch run: a batch replayed from the spool is stored once"


def upgrade() -> None:
    # A nullable column and a unique index: no table rebuild on SQLite.
    op.add_column("batches", sa.Column("batch_key", sa.String(36), nullable=True, comment=COMMENT))
    op.create_index(op.f("ix_batches_batch_key"), "batches", ["batch_key"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_batches_batch_key"), table_name="batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("batch_key")
