"""requests.queued_ms: time waiting for a free pooled connection, apart from elapsed_ms

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = "time waiting for a free pooled connection, not part of elapsed_ms"


def upgrade() -> None:
    # A new nullable column: SQLite adds it in place, no table rebuild.
    op.add_column("requests", sa.Column("queued_ms", sa.Float(), nullable=True, comment=COMMENT))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("queued_ms")
