"""rollups: per job and UTC hour, and per job and UTC day, the batches' figures added up

Filled from the stored batches (collector.store.rollups.rebuild, which reads each
batch's summary columns once: about a second per 100,000 batches); from then on
each batch adds to its hour's and day's rows as it is written.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HISTOGRAM = ("responses' elapsed_ms: {bucket: count}, bucket i holding "
             "2^((i-1)/8) < ms <= 2^(i/8)")


def upgrade() -> None:
    counted = [sa.Column(name, sa.Integer(), nullable=False) for name in (
        "requests", "status_2xx", "status_3xx", "status_4xx", "status_5xx", "no_response")]
    op.create_table(
        "rollups",
        sa.Column("period", sa.String(4), comment="hour or day (UTC)"),
        sa.Column("job_name", sa.String(200)),
        sa.Column("starts_at", sa.DateTime(timezone=True), comment="the hour's or day's start"),
        sa.Column("batches", sa.Integer(), nullable=False,
                  comment="batches started in it that finished or were abandoned"),
        *counted,
        sa.Column("body_bytes", sa.BigInteger(), nullable=False),
        sa.Column("bodies", sa.Integer(), nullable=False, comment="requests with a body_length"),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in (
            "tcp_connections", "reused_requests", "checks_passed", "checks_failed")),
        sa.Column("elapsed_max_ms", sa.Float()),
        sa.Column("elapsed_histogram", sa.JSON(none_as_null=True), comment=HISTOGRAM),
        sa.PrimaryKeyConstraint("period", "job_name", "starts_at", name="pk_rollups"),
    )
    op.create_index("ix_rollups_period_starts_at", "rollups", ["period", "starts_at"])
    from collector.store.rollups import rebuild

    rebuild(op.get_bind(), periods=("hour", "day"))  # months came with 0018


def downgrade() -> None:
    op.drop_table("rollups")
