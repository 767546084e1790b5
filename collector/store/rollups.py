"""Per job and UTC hour, day and month: the batches' figures added up.

A batch's figures are added to its hour's, its day's and its month's row in the
transaction that writes its counters (an abandoned batch adds one batch and
nothing else), so ``collector report`` reads a row per job and month, not a row
per batch: what it costs grows neither with the number of batches nor much with
the years kept. A report from a time that is not a month's start reads the days
up to the next month, the hours up to the next day, and the batches up to the
next hour, so its figures are those of exactly the batches it covers. Prune
deletes the rows of the periods wholly before its bound and works out again the
rows of the hour, the day and the month the bound falls inside.

The rows are written with ``INSERT ... ON CONFLICT DO UPDATE``, the histogram
merged in SQL, in a fixed order: two daemons adding to one row at once each add,
and cannot deadlock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy import Text as TextType

from collector.models import batches, rollups
from collector.store.engine import conflict_insert

# Finest first: each period holds whole ones of the period before it.
PERIODS = ("hour", "day", "month")
STATUS_COUNTS = ("status_2xx", "status_3xx", "status_4xx", "status_5xx", "no_response")
# The figures that add up, as rollups names them; the batch's column for each is the
# same name but for ``requests`` (requests_succeeded + requests_failed) and ``batches``.
SUMMED = ("batches", "requests", *STATUS_COUNTS, "body_bytes", "bodies", "tcp_connections",
          "reused_requests", "checks_passed", "checks_failed")
_FROM_BATCH = tuple(name for name in SUMMED if name not in ("batches", "requests"))
# What a batch row needs to be added up (status: a running batch adds nothing yet).
BATCH_COLUMNS = (batches.c.job_name, batches.c.started_at, batches.c.status,
                 batches.c.requests_succeeded, batches.c.requests_failed,
                 *(batches.c[name] for name in _FROM_BATCH), batches.c.elapsed_max_ms,
                 cast(batches.c.elapsed_histogram, TextType).label("elapsed_histogram"))


def period_start(at: datetime, period: str) -> datetime:
    """The start (UTC) of the hour, day or month that holds ``at``."""
    at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if period == "hour":
        return at
    at = at.replace(hour=0)
    return at if period == "day" else at.replace(day=1)


def period_end(start: datetime, period: str) -> datetime:
    """The end of the period that starts at ``start``: the next one's start."""
    if period == "hour":
        return start + timedelta(hours=1)
    if period == "day":
        return start + timedelta(days=1)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def _next_start(at: datetime, period: str) -> datetime:
    """The first start of a ``period`` at or after ``at``."""
    start = period_start(at, period)
    return start if start == at else period_end(start, period)


@dataclass
class Sums:
    """Figures added up: counts, the largest time, the merged histogram (bucket: count)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUMMED, 0))
    elapsed_max_ms: float | None = None
    histogram: dict[str, int] = field(default_factory=dict)

    def add(self, counts: Mapping[Any, Any], elapsed_max_ms: float | None,
            histogram: Mapping[str, int] | str | None) -> None:
        mine = self.counts
        for name in SUMMED:
            mine[name] += counts.get(name) or 0
        if elapsed_max_ms is not None and (self.elapsed_max_ms is None
                                           or elapsed_max_ms > self.elapsed_max_ms):
            self.elapsed_max_ms = elapsed_max_ms
        if histogram:
            found = json.loads(histogram) if isinstance(histogram, str) else histogram
            merged = self.histogram
            for key, count in found.items():
                merged[key] = merged.get(key, 0) + count

    def add_batch(self, columns: Mapping[Any, Any] | None, batches_: int = 1) -> None:
        """A batch's counters (as ``batches`` holds them; None: it has none, abandoned)."""
        self.counts["batches"] += batches_
        if columns is None:
            return
        self.counts["requests"] += ((columns.get("requests_succeeded") or 0)
                                    + (columns.get("requests_failed") or 0))
        self.add({name: columns.get(name) for name in _FROM_BATCH},
                 columns.get("elapsed_max_ms"), columns.get("elapsed_histogram"))

    def row(self) -> dict[str, Any]:
        return {**self.counts, "elapsed_max_ms": self.elapsed_max_ms,
                "elapsed_histogram": dict(sorted(self.histogram.items(), key=_bucket_order))
                or None}

    def empty(self) -> bool:
        return not any(self.counts.values())


def _bucket_order(item: tuple[str, int]) -> int:
    return int(item[0])


Key = tuple[str, str, datetime]  # period, job, start


# A batch's part: its job, its start, its counters (None: abandoned), +1 or -1 batch.
Part = tuple[str, datetime, Mapping[Any, Any] | None, int]


def add(conn: Connection, parts: Iterable[Part], periods: Sequence[str] = PERIODS) -> int:
    """Add batches' figures to their hours', days' and months' rows (created when
    missing): how many rows were added to."""
    sums: dict[Key, Sums] = {}
    for job, started_at, columns, count in parts:
        for period in periods:
            key = (period, job, period_start(started_at, period))
            sums.setdefault(key, Sums()).add_batch(columns, count)
    if not sums:
        return 0
    keys = sorted(sums)
    conn.execute(_upsert(conn), [{"period": period, "job_name": job, "starts_at": start,
                                  **sums[period, job, start].row()}
                                 for period, job, start in keys])
    # A batch taken out of a period (abandoned, then completed with its own start) can
    # leave its row with no batch: no row, as if there never was one.
    emptied = [{"b_period": period, "b_job": job, "b_start": start}
               for period, job, start in keys if sums[period, job, start].counts["batches"] < 0]
    if emptied:
        conn.execute(delete(rollups).where(
            rollups.c.period == bindparam("b_period"), rollups.c.job_name == bindparam("b_job"),
            rollups.c.starts_at == bindparam("b_start"), rollups.c.batches == 0), emptied)
    return len(keys)


def _upsert(conn: Connection) -> Any:
    insert = conflict_insert(conn, rollups)
    old, new = "rollups.", "excluded."
    hist = "elapsed_histogram"
    if conn.dialect.name == "postgresql":
        each = "json_each_text({}.elapsed_histogram)"
        merged = ("(SELECT json_object_agg(k, s) FROM (SELECT k, sum(v::bigint) AS s FROM "
                  f"(SELECT * FROM {each.format('rollups')} UNION ALL "
                  f"SELECT * FROM {each.format('excluded')}) AS e(k, v) GROUP BY k) AS t)")
    else:
        each = "SELECT key, value FROM json_each({}.elapsed_histogram)"
        merged = ("(SELECT json_group_object(key, s) FROM (SELECT key, sum(value) AS s FROM "
                  f"({each.format('rollups')} UNION ALL {each.format('excluded')}) "
                  "GROUP BY key))")
    return insert.on_conflict_do_update(
        index_elements=["period", "job_name", "starts_at"],
        set_={
            **{name: literal_column(f"{old}{name} + {new}{name}") for name in SUMMED},
            "elapsed_max_ms": literal_column(
                f"CASE WHEN {old}elapsed_max_ms IS NULL OR {new}elapsed_max_ms > "
                f"{old}elapsed_max_ms THEN {new}elapsed_max_ms ELSE {old}elapsed_max_ms END"),
            hist: literal_column(
                f"CASE WHEN {old}{hist} IS NULL THEN {new}{hist} WHEN {new}{hist} IS NULL "
                f"THEN {old}{hist} ELSE {merged} END"),
        })


def totals(conn: Connection, *, job: str | None = None, since: datetime | None = None
           ) -> dict[str, Sums]:
    """Per job, the figures of its finished (and abandoned) batches started at or after
    ``since``: month rows, then day rows up to the first month, hour rows up to the
    first day, and the batches up to the first hour."""
    which = [rollups.c.job_name == job] if job is not None else []
    period = rollups.c.period
    if since is None:
        which.append(period == PERIODS[-1])
        early: datetime | None = None
    else:
        starts = [_next_start(since, name) for name in PERIODS]  # each, up to the next
        ends: list[datetime | None] = [*starts[1:], None]
        which.append(or_(*(and_(period == name, rollups.c.starts_at >= start,
                                *(() if end is None else (rollups.c.starts_at < end,)))
                           for name, start, end in zip(PERIODS, starts, ends, strict=True))))
        early = starts[0] if starts[0] > since else None
    found: dict[str, Sums] = {}
    # The sums in SQL; the histograms as text, each job's parsed in one call.
    for row in conn.execute(select(rollups.c.job_name, *(func.sum(rollups.c[n]) for n in SUMMED),
                                   func.max(rollups.c.elapsed_max_ms))
                            .where(*which).group_by(rollups.c.job_name)):
        found[row[0]] = Sums(counts={n: int(v or 0) for n, v in zip(SUMMED, row[1:-1],
                                                                      strict=True)},
                             elapsed_max_ms=row[-1])
    texts: dict[str, list[str]] = {}
    for job_name, histogram in conn.execute(
            select(rollups.c.job_name, cast(rollups.c.elapsed_histogram, TextType))
            .where(*which, rollups.c.elapsed_histogram.is_not(None))):
        texts.setdefault(job_name, []).append(histogram)
    for job_name, found_texts in texts.items():
        merged = found[job_name].histogram
        get = merged.get
        for histogram in json.loads("[" + ",".join(found_texts) + "]"):
            for key, count in histogram.items():
                merged[key] = get(key, 0) + count
    if since is not None and early is not None:
        for job_name, sums in _from_batches(conn, since, early, job).items():
            found.setdefault(job_name, Sums()).add(sums.counts, sums.elapsed_max_ms,
                                                    sums.histogram)
    return {name: sums for name, sums in found.items() if sums.counts["batches"]}


def _from_batches(conn: Connection, start: datetime, end: datetime, job: str | None
                  ) -> dict[str, Sums]:
    """Per job, its batches started in [start, end) that are not running, added up."""
    which = [batches.c.started_at >= start, batches.c.started_at < end,
             batches.c.status != "running"]
    if job is not None:
        which.append(batches.c.job_name == job)
    found: dict[str, Sums] = {}
    for row in conn.execute(select(*BATCH_COLUMNS).where(*which)):
        columns = row._mapping
        found.setdefault(row.job_name, Sums()).add_batch(
            None if row.requests_succeeded is None else columns)
    return found


def after_prune(conn: Connection, before: datetime, job: str | None = None) -> None:
    """Once the batches started before ``before`` (``job``'s, when given) are gone: delete
    the rows of the periods wholly before it, and work out again the rows of the hour,
    the day and the month it falls inside: the hour's from its batches, each other's
    from the rows of the period before it (worked out first)."""
    for period in PERIODS:
        which = [rollups.c.period == period,
                 rollups.c.starts_at < period_start(before, period)]
        if job is not None:
            which.append(rollups.c.job_name == job)
        conn.execute(delete(rollups).where(*which))
    finer = None
    for period in PERIODS:
        start = period_start(before, period)
        if before > start:
            end = period_end(start, period)
            _replace(conn, period, start, job,
                     partial(_from_batches, conn, start, end, job) if finer is None
                     else partial(_from_rows, conn, finer, start, end, job))
        finer = period


def _from_rows(conn: Connection, period: str, start: datetime, end: datetime,
               job: str | None) -> dict[str, Sums]:
    """Per job, its rows of ``period`` starting in [start, end), added up."""
    which = [rollups.c.period == period, rollups.c.starts_at >= start,
             rollups.c.starts_at < end]
    if job is not None:
        which.append(rollups.c.job_name == job)
    found: dict[str, Sums] = {}
    for row in conn.execute(select(rollups.c.job_name, *(rollups.c[n] for n in SUMMED),
                                   rollups.c.elapsed_max_ms,
                                   cast(rollups.c.elapsed_histogram, TextType)).where(*which)):
        found.setdefault(row[0], Sums()).add(row._mapping, row[-2], row[-1])
    return found


def _replace(conn: Connection, period: str, start: datetime, job: str | None,
             work_out: Any) -> None:
    """Set the rows of ``period`` at ``start`` to what ``work_out()`` finds. On PostgreSQL
    the rows are locked first: a batch being written into them waits, and then adds to
    the row as worked out (its own batch is not among what was read)."""
    which = [rollups.c.period == period, rollups.c.starts_at == start]
    if job is not None:
        which.append(rollups.c.job_name == job)
    held = select(rollups.c.job_name).where(*which)
    if conn.dialect.name == "postgresql":
        held = held.with_for_update()
    existing = set(conn.execute(held).scalars())
    found: dict[str, Sums] = work_out()
    gone = sorted(existing - {name for name, sums in found.items() if not sums.empty()})
    if gone:
        conn.execute(delete(rollups).where(*which[:2], rollups.c.job_name.in_(gone)))
    kept = [{"b_job": name, **sums.row()} for name, sums in sorted(found.items())
            if name in existing and not sums.empty()]
    if kept:
        conn.execute(rollups.update().where(*which[:2], rollups.c.job_name == bindparam("b_job")),
                     kept)
    new = [name for name in found if name not in existing and not found[name].empty()]
    if new:
        add_rows(conn, [{"period": period, "job_name": name, "starts_at": start,
                         **found[name].row()} for name in sorted(new)])


def add_rows(conn: Connection, rows: Sequence[Mapping[Any, Any]]) -> None:
    """Rows as worked out, added to whatever is there."""
    if rows:
        conn.execute(_upsert(conn), list(rows))


def fill(conn: Connection, period: str) -> int:
    """Every row of ``period`` worked out from the rows of the period before it (a
    migration's backfill of a new period): how many."""
    finer = PERIODS[PERIODS.index(period) - 1]
    conn.execute(delete(rollups).where(rollups.c.period == period))
    starts = {period_start(at, period) for at in conn.execute(
        select(rollups.c.starts_at).where(rollups.c.period == finer).distinct()).scalars()}
    made = 0
    for start in sorted(starts):
        rows = [{"period": period, "job_name": name, "starts_at": start, **sums.row()}
                for name, sums in sorted(_from_rows(
                    conn, finer, start, period_end(start, period), None).items())]
        add_rows(conn, rows)
        made += len(rows)
    return made


def rebuild(conn: Connection, periods: Sequence[str] = PERIODS) -> int:
    """Every row (of ``periods``) worked out again from the batches (a migration's
    backfill): how many."""
    conn.execute(delete(rollups))
    found = conn.execute(select(*BATCH_COLUMNS).where(batches.c.status != "running")
                         .execution_options(yield_per=10_000))
    return add(conn, ((row.job_name, row.started_at,
                       None if row.requests_succeeded is None else row._mapping, 1)
                      for row in found), periods)
