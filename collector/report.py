"""Aggregates over stored results: sums and merged histograms from the rollups.

Everything is read from the rollups written with each batch (a row per job and
UTC day, and per hour: :mod:`collector.store.rollups`), so a report costs the
same whatever the number of batches and request rows. Times are of the requests
that got a response: a timeout's elapsed time says how long collector waited,
not how fast the server was. Percentiles are nearest-rank (the smallest value
with at least p% of the values at or below it), read from the merged
histograms: within 4.4% of the exact value. A batch's median in a trend and
every maximum are exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, desc, select

from collector.histogram import percentiles
from collector.models import batches
from collector.store import Store, rollups

TREND_BATCHES = 30


@dataclass(frozen=True, kw_only=True)
class Filters:
    """Which batches a report covers: one job, and/or those started at or after ``since``."""

    job: str | None = None
    since: datetime | None = None

    def batch_conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.job is not None:
            conditions.append(batches.c.job_name == self.job)
        if self.since is not None:
            conditions.append(batches.c.started_at >= self.since)
        return conditions


@dataclass(frozen=True, kw_only=True)
class TrendPoint:
    """One batch in a job's trend: its median time (None without responses) and status."""

    p50_ms: float | None
    status: str


@dataclass(frozen=True, kw_only=True)
class JobSummary:
    """One row of ``collector report``."""

    job_name: str
    batches: int
    requests: int
    status_2xx: int
    status_3xx: int
    status_4xx: int
    status_5xx: int
    no_response: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    mean_body_length: float | None
    tcp_connections: int
    requests_per_connection: float | None
    checks_passed: int
    checks_failed: int
    checks_pass_pct: float | None  # None: the job has no checks
    last_started_at: datetime
    last_status: str
    trend: tuple[TrendPoint, ...] = ()

    def as_record(self) -> dict[str, Any]:
        """The figures by name, without the trend."""
        return {k: v for k, v in self.__dict__.items() if k != "trend"}


def job_summaries(store: Store, filters: Filters, *,
                  trend_batches: int = TREND_BATCHES) -> list[JobSummary]:
    """Per job: batches, requests by status class, times, body size, re-use, last batch.

    Read from the rollups (a row per job and day, and per hour up to the first day
    after ``since``), and the batches of the hour ``since`` falls inside: what it
    costs does not grow with the number of batches. Batches still running are not
    counted yet; abandoned ones are (with no requests).
    """
    with store.connect() as conn:
        counted = rollups.totals(conn, job=filters.job, since=filters.since)
        recent = _recent(conn, filters, sorted(counted), max(1, trend_batches))

    summaries = []
    for name in sorted(counted):
        b = counted[name].counts
        max_ms = counted[name].elapsed_max_ms
        histogram = Counter({int(k): v for k, v in counted[name].histogram.items()})
        p50, p95 = percentiles(histogram, (0.5, 0.95), maximum=max_ms)
        requests_total, tcp = b["requests"], b["tcp_connections"]
        passed, failed = b["checks_passed"], b["checks_failed"]
        newest = recent[name]
        summaries.append(JobSummary(
            job_name=name, batches=b["batches"], requests=requests_total,
            **{count: b[count] for count in rollups.STATUS_COUNTS},
            p50_ms=_rounded(p50), p95_ms=_rounded(p95), max_ms=max_ms,
            mean_body_length=b["body_bytes"] / b["bodies"] if b["bodies"] else None,
            tcp_connections=tcp,
            requests_per_connection=round(requests_total / tcp, 2) if tcp else None,
            checks_passed=passed, checks_failed=failed,
            checks_pass_pct=round(100 * passed / (passed + failed), 1)
            if passed + failed else None,
            last_started_at=newest[0].started_at, last_status=newest[0].status,
            trend=tuple(TrendPoint(p50_ms=r.elapsed_p50_ms, status=r.status)
                        for r in reversed(newest[:trend_batches])),
        ))
    return summaries


def _rounded(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 3)


def _recent(conn: Connection, filters: Filters, names: Sequence[str], last: int
            ) -> dict[str, Sequence[Any]]:
    """Per job, its ``last`` newest batches (newest first): one look into the
    (job_name, started_at) index each."""
    conditions = [batches.c.job_name == bindparam("job")]
    if filters.since is not None:
        conditions.append(batches.c.started_at >= filters.since)
    newest = (select(batches.c.started_at, batches.c.status, batches.c.elapsed_p50_ms)
              .where(*conditions)
              .order_by(desc(batches.c.started_at), desc(batches.c.id)).limit(last))
    return {name: conn.execute(newest, {"job": name}).all() for name in names}


@dataclass(frozen=True, kw_only=True)
class BatchRow:
    """One row of ``collector batches``."""

    id: int
    job_name: str
    trigger: str
    started_at: datetime
    status: str
    requests: int
    failed: int
    num_connections: int
    num_requests: int
    tcp_connections: int
    duration_ms: float | None


def batch_history(store: Store, filters: Filters, *, limit: int) -> list[BatchRow]:
    """Batches newest first."""
    query = (select(batches).where(*filters.batch_conditions())
             .order_by(desc(batches.c.started_at), desc(batches.c.id)).limit(limit))
    with store.connect() as conn:
        rows = conn.execute(query).all()
    return [BatchRow(
        id=r.id, job_name=r.job_name, trigger=r.trigger, started_at=r.started_at,
        status=r.status, requests=r.requests_succeeded + r.requests_failed,
        failed=r.requests_failed, num_connections=r.num_connections,
        num_requests=r.num_requests, tcp_connections=r.tcp_connections,
        duration_ms=round((r.finished_at - r.started_at).total_seconds() * 1000, 1)
        if r.finished_at else None,
    ) for r in rows]
