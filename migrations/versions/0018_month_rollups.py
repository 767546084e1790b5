"""rollups: per job and UTC month too

``collector report`` over all its history read a row per job and day: 365 a job
a year, so a report in year three read a thousand rows a job. Month rows make it
three dozen. They are worked out from the day rows (collector.store.rollups.fill),
and from then on each batch adds to its month's row as to its hour's and day's.
``period`` grows to five characters ('month').

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# What rollups' period and starts_at say, before this revision and after it.
BEFORE = (4, "hour or day (UTC)", "the hour's or day's start")
AFTER = (5, "hour, day or month (UTC)", "the hour's, day's or month's start")


def upgrade() -> None:
    _columns(BEFORE, AFTER)
    from collector.store.rollups import fill

    fill(op.get_bind(), "month")


def downgrade() -> None:
    op.execute("DELETE FROM rollups WHERE period = 'month'")
    _columns(AFTER, BEFORE)


def _columns(old: tuple[int, str, str], new: tuple[int, str, str]) -> None:
    (_, old_period, old_start), (length, period, start) = old, new
    with op.batch_alter_table("rollups") as batch:
        batch.alter_column("period", type_=sa.String(length), existing_nullable=False,
                           comment=period, existing_comment=old_period)
        batch.alter_column("starts_at", existing_type=sa.DateTime(timezone=True),
                           existing_nullable=False, comment=start,
                           existing_comment=old_start)
