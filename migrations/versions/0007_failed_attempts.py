"""requests.failed_attempts: every attempt that was tried again or failed, as JSON

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = "attempts before the last, and a failed last one: error_kind, status, error, at"


def upgrade() -> None:
    op.add_column("requests",
                  sa.Column("failed_attempts", sa.JSON(), nullable=True, comment=COMMENT))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("failed_attempts")
