"""batches and requests

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTCDateTime = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("job_name", sa.String(200), nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False, comment="schedule or manual"),
        sa.Column("scheduled_for", UTCDateTime, nullable=True,
                  comment="the fire time a schedule claimed"),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("status", sa.String(20), nullable=False, comment="ok, partial or failed"),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("pool_size", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("num_connections", sa.Integer(), nullable=False, comment="the pool's counter"),
        sa.Column("num_requests", sa.Integer(), nullable=False,
                  comment="the pool's counter: attempts"),
        sa.Column("tcp_connections", sa.Integer(), nullable=False,
                  comment="TCP connections opened"),
        sa.Column("requests_succeeded", sa.Integer(), nullable=False),
        sa.Column("requests_failed", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=False, comment="host:pid that ran the batch"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("job_name", "scheduled_for",
                            name=op.f("uq_batches_job_name_scheduled_for")),
    )
    op.create_index(op.f("ix_batches_job_name_started_at"), "batches", ["job_name", "started_at"])
    op.create_index(op.f("ix_batches_started_at"), "batches", ["started_at"])

    op.create_table(
        "requests",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("batch_id", Id, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("body_length", sa.BigInteger(), nullable=True,
                  comment="bytes of the body as delivered"),
        sa.Column("content_length", sa.BigInteger(), nullable=True,
                  comment="the Content-Length header"),
        sa.Column("body_sha256", sa.String(64), nullable=True),
        sa.Column("elapsed_ms", sa.Float(), nullable=False),
        sa.Column("connect_ms", sa.Float(), nullable=True,
                  comment="set when a TCP connection was opened for it"),
        sa.Column("ttfb_ms", sa.Float(), nullable=True),
        sa.Column("reused", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_kind", sa.String(20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"],
                                name=op.f("fk_requests_batch_id_batches"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requests")),
        sa.UniqueConstraint("batch_id", "position", name=op.f("uq_requests_batch_id_position")),
    )


def downgrade() -> None:
    op.drop_table("requests")
    op.drop_index(op.f("ix_batches_started_at"), table_name="batches")
    op.drop_index(op.f("ix_batches_job_name_started_at"), table_name="batches")
    op.drop_table("batches")
