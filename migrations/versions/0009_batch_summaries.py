"""batches: summary figures and a latency histogram per batch; requests.started_at indexed

Also: requests.failed_attempts is SQL NULL, not the JSON text null, when there
were none.

Reports read these instead of every request row, so they do not grow with
history. Existing batches get theirs from their stored requests.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from collector.histogram import summarize

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HISTOGRAM = ("responses' elapsed_ms: {bucket: count}, bucket i holding "
             "2^((i-1)/8) < ms <= 2^(i/8)")
COLUMNS: list[sa.Column[Any]] = [
    *(sa.Column(f"status_{n}xx", sa.Integer(), comment=f"requests answered with a {n}xx status")
      for n in range(2, 6)),
    sa.Column("no_response", sa.Integer(), comment="requests that got no status"),
    sa.Column("body_bytes", sa.BigInteger(), comment="sum of the requests' body_length"),
    sa.Column("bodies", sa.Integer(), comment="requests with a body_length"),
    sa.Column("reused_requests", sa.Integer(), comment="requests sent over a re-used connection"),
    sa.Column("elapsed_p50_ms", sa.Float(),
              comment="median elapsed_ms of the responses (nearest rank)"),
    sa.Column("elapsed_max_ms", sa.Float(), comment="largest elapsed_ms of the responses"),
    sa.Column("elapsed_histogram", sa.JSON(none_as_null=True), comment=HISTOGRAM),
]


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("batches", column)
    op.create_index("ix_requests_started_at", "requests", ["started_at"])
    _backfill()
    # Until now a request without failed attempts had the JSON text null, not the NULL
    # the README promised.
    failed = sa.table("requests", sa.column("failed_attempts", sa.JSON()))
    op.execute(sa.update(failed).where(sa.cast(failed.c.failed_attempts, sa.Text) == "null")
               .values(failed_attempts=sa.null()))


def _backfill() -> None:
    """Every finished batch's summary, from its requests, a thousand batches at a time."""
    conn = op.get_bind()
    batches = sa.table("batches", sa.column("id"), sa.column("num_connections"),
                       *(sa.column(c.name, c.type) for c in COLUMNS))
    requests = sa.table("requests", sa.column("batch_id"), sa.column("status"),
                        sa.column("body_length"), sa.column("elapsed_ms"), sa.column("reused"))
    finished = conn.execute(sa.select(batches.c.id).where(batches.c.num_connections.is_not(None))
                            .order_by(batches.c.id)).scalars().all()
    update = (sa.update(batches).where(batches.c.id == sa.bindparam("batch_id"))
              .values({c.name: sa.bindparam(c.name, type_=c.type) for c in COLUMNS}))
    for start in range(0, len(finished), 1000):
        chunk = finished[start:start + 1000]
        rows = conn.execute(
            sa.select(requests.c.batch_id, requests.c.status, requests.c.body_length,
                      requests.c.elapsed_ms, requests.c.reused)
            .where(requests.c.batch_id.in_(chunk)).order_by(requests.c.batch_id)).all()
        grouped = {batch_id: list(group) for batch_id, group
                   in itertools.groupby(rows, key=lambda r: r.batch_id)}
        conn.execute(update, [{"batch_id": batch_id, **summarize(
            (r.status, r.body_length, r.elapsed_ms, bool(r.reused))
            for r in grouped.get(batch_id, ()))} for batch_id in chunk])


def downgrade() -> None:
    op.drop_index("ix_requests_started_at", "requests")
    with op.batch_alter_table("batches") as batch:
        for column in COLUMNS:
            batch.drop_column(column.name)
