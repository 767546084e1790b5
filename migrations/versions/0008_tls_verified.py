"""batches.tls_verified: whether an https batch checked certificates (false: verify = false)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = "https: whether certificates were checked (false: the job said verify = false)"


def upgrade() -> None:
    op.add_column("batches", sa.Column("tls_verified", sa.Boolean(), nullable=True,
                                       comment=COMMENT))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("tls_verified")
