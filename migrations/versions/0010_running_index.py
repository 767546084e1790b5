"""batches: an index of the running batches by job

A claim asks whether a batch of the job is running anywhere; without this
index that read went through every batch the job ever had, so claims got
slower as history grew. Partial: only running rows are in it, so it stays
as small as the number of batches running at once.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    op.create_index("ix_batches_running", "batches", ["job_name"],
                    postgresql_where=RUNNING, sqlite_where=RUNNING)


def downgrade() -> None:
    op.drop_index("ix_batches_running", "batches")
