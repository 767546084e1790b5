"""claims: running batches with unknown counters; status and trigger checked

A scheduled fire is claimed by inserting its batch as 'running' before it
runs, so the counters may be NULL while it runs (and for a batch abandoned by
a worker that died). status and trigger get CHECK constraints.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = ("num_connections", "num_requests", "tcp_connections", "requests_succeeded",
            "requests_failed")
STATUS_CHECK = ("status IN ('running', 'ok', 'partial', 'failed', 'interrupted', "
                "'abandoned')")
TRIGGER_CHECK = "\"trigger\" IN ('schedule', 'manual')"
COUNTERS_CHECK = ("status IN ('running', 'abandoned') OR (num_connections IS NOT NULL AND "
                  "num_requests IS NOT NULL AND tcp_connections IS NOT NULL AND "
                  "requests_succeeded IS NOT NULL AND requests_failed IS NOT NULL AND "
                  "finished_at IS NOT NULL)")
OLD_STATUS = "ok, partial or failed"
NEW_STATUS = "running, ok, partial, failed, interrupted or abandoned"


def upgrade() -> None:
    # On SQLite this rebuilds the table: collector runs migrations with foreign
    # keys off, or dropping the old table would cascade to every request row.
    with op.batch_alter_table("batches") as batch:
        for column in COUNTERS:
            batch.alter_column(column, existing_type=sa.Integer(), nullable=True)
        batch.alter_column("status", existing_type=sa.String(20), existing_nullable=False,
                           comment=NEW_STATUS, existing_comment=OLD_STATUS)
        batch.create_check_constraint(op.f("ck_batches_status"), STATUS_CHECK)
        batch.create_check_constraint(op.f("ck_batches_trigger"), TRIGGER_CHECK)
        batch.create_check_constraint(op.f("ck_batches_counters"), COUNTERS_CHECK)


def downgrade() -> None:
    # The older schema knows only finished batches: what never finished becomes failed.
    batches = sa.table("batches", sa.column("status", sa.String),
                       *(sa.column(c, sa.Integer) for c in COUNTERS),
                       sa.column("finished_at"), sa.column("started_at"))
    op.execute(batches.update()
               .where(batches.c.status.not_in(("ok", "partial", "failed")))
               .values(status="failed",
                       finished_at=sa.func.coalesce(batches.c.finished_at,
                                                    batches.c.started_at),
                       **{c: sa.func.coalesce(batches.c[c], 0) for c in COUNTERS}))
    with op.batch_alter_table("batches") as batch:
        batch.drop_constraint(op.f("ck_batches_counters"), type_="check")
        batch.drop_constraint(op.f("ck_batches_trigger"), type_="check")
        batch.drop_constraint(op.f("ck_batches_status"), type_="check")
        batch.alter_column("status", existing_type=sa.String(20), existing_nullable=False,
                           comment=OLD_STATUS, existing_comment=NEW_STATUS)
        for column in COUNTERS:
            batch.alter_column(column, existing_type=sa.Integer(), nullable=False)
