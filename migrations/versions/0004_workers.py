"""workers: one heartbeat row per daemon

A batch left running by a worker whose heartbeat went stale is marked
abandoned by another daemon.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTCDateTime = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(255), nullable=False,
                  comment="host:pid, as batches.worker names it"),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("last_heartbeat", UTCDateTime, nullable=False),
        sa.Column("stopped_at", UTCDateTime, nullable=True,
                  comment="set when the daemon stopped cleanly"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )


def downgrade() -> None:
    op.drop_table("workers")
