"""Retention: batches older than a bound deleted with their rows, counted first for a
dry run. SQLite deletes rows in bounded transactions; PostgreSQL deletes only what the
days wholly past the bound do not hold and detaches those days
(:mod:`~collector.store.partitions`)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import Connection, any_, delete, func, select, text

from collector.models import batches, bodies, captures, checks, connections, requests
from collector.store import partitions

# Set for prune's transaction on PostgreSQL: the batches' trigger (migration 0017) leaves
# their rows to it.
SKIP_CASCADE = "SELECT set_config('collector.prune', 'on', true)"
# A batch's stored requests, from its own counters (its succeeded and failed ones; a
# running or abandoned batch has none stored): counted without reading a request row.
_REQUESTS_HELD = (func.coalesce(batches.c.requests_succeeded, 0)
                  + func.coalesce(batches.c.requests_failed, 0))


def _old_batches(before: datetime, job: str | None) -> Any:
    which = batches.c.started_at < before
    if job is not None:
        which &= batches.c.job_name == job
    return which


def count_old(conn: Connection, before: datetime, job: str | None = None) -> tuple[int, int]:
    """How many batches (of ``job`` alone, when given) started before ``before``, and their
    requests."""
    found = conn.execute(select(func.count(), func.coalesce(func.sum(_REQUESTS_HELD), 0))
                         .where(_old_batches(before, job))).one()
    return int(found[0]), int(found[1])


def prune(conn: Connection, before: datetime, *, job: str | None = None,
          rows: int | None = None) -> tuple[int, int]:
    """Delete batches started before ``before`` (of ``job`` alone, when given) with their
    rows in the other tables; with ``rows``, only the oldest batches holding about that
    many requests (one batch at least), so that a transaction stays short. Returns how
    many batches and requests went. Bodies are :func:`prune_bodies`'."""
    which = _old_batches(before, job)
    if rows is not None:
        # Oldest first, so that a prune stopped part way leaves a time before which
        # every batch is gone (the rollups follow up to it).
        found = conn.execute(select(batches.c.id, _REQUESTS_HELD).where(which)
                             .order_by(batches.c.started_at, batches.c.id)
                             .limit(max(1, rows))).all()
        chosen: list[int] = []
        held = 0
        for batch_id, count in found:
            if chosen and held + count > rows:
                break
            chosen.append(batch_id)
            held += count
        if not chosen:
            return 0, 0
        which = batches.c.id.in_(chosen)
    old = select(batches.c.id).where(which)
    gone = conn.execute(delete(requests).where(requests.c.batch_id.in_(old))).rowcount
    conn.execute(delete(checks).where(checks.c.batch_id.in_(old)))
    conn.execute(delete(captures).where(captures.c.batch_id.in_(old)))
    conn.execute(delete(connections).where(connections.c.batch_id.in_(old)))
    return conn.execute(delete(batches).where(which)).rowcount, gone


def prune_partitioned(conn: Connection, before: datetime, *, job: str | None = None
                      ) -> tuple[int, int]:
    """PostgreSQL's prune: the batches started before ``before`` deleted with the batches'
    trigger skipped (migration 0017), then their rows that the partitions of the days
    wholly before ``before`` do not hold (those in the default partitions, and those
    of the batches still going when the day of ``before`` began), then those
    partitions detached (for :func:`partitions.drop_detached`, once committed): last,
    as detaching locks the tables. With ``job``, only its batches go, and the trigger
    deletes each one's rows (other jobs share the days). Returns how many batches and
    requests went (the requests counted from the batches' counters)."""
    day = datetime.combine(before.astimezone(UTC).date(), time(), UTC)
    if job is None:
        # The partitions' lock first, as make() takes it, before any table's: a make()
        # moving rows out of a default partition cannot then wait for us while we wait
        # for it.
        conn.execute(text(partitions.LOCK))
        conn.execute(text(SKIP_CASCADE))
    gone = (delete(batches).where(_old_batches(before, job))
            .returning(batches.c.id, batches.c.finished_at, _REQUESTS_HELD.label("held"))
            .cte("gone"))
    late = gone.c.finished_at >= day  # from the day on, only these can have rows
    n_batches, n_requests, ids, last = conn.execute(select(
        func.count(), func.coalesce(func.sum(gone.c.held), 0),
        func.array_agg(gone.c.id).filter(late), func.max(gone.c.finished_at).filter(late))
    ).one()
    if job is None:
        for table in (requests, checks, captures, connections):
            at = partitions.time_of(table)
            # Every row of a default partition before the day belongs to a batch started
            # before it (a request starts after its batch); from the day on, a batch's
            # rows lie between its start and its end.
            conn.execute(text(f"DELETE FROM {table.name}_default WHERE {at.name} < :day"),
                         {"day": day})
            if ids:
                conn.execute(delete(table).where(at >= day, at <= last,
                                                 table.c.batch_id == any_(ids)))
        partitions.detach_before(conn, before)
    return int(n_batches), int(n_requests)


def pruned_up_to(conn: Connection, before: datetime, job: str | None = None) -> datetime:
    """``before``, or the start of the oldest batch before it still there (a prune that
    stopped part way)."""
    oldest: datetime | None = conn.execute(
        select(func.min(batches.c.started_at)).where(_old_batches(before, job))).scalar()
    return before if oldest is None else min(before, oldest)


def prune_bodies(conn: Connection, before: datetime) -> int:
    """Delete the bodies last used before ``before``: once every batch started before it
    is gone, no remaining request of a job that keeps bodies refers to them."""
    return conn.execute(delete(bodies).where(bodies.c.last_used_at < before)).rowcount
