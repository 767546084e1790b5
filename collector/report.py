"""Aggregates over stored results: sums in SQL, percentiles from merged histograms.

Everything is read from the summary columns each batch is stored with
(:mod:`collector.histogram`), so a report costs the same whatever the number
of request rows. Times are of the requests that got a response: a timeout's
elapsed time says how long collector waited, not how fast the server was.
Percentiles are nearest-rank (the smallest value with at least p% of the
values at or below it), read from the batches' merged histograms: within
4.4% of the exact value. A batch's median in a trend and every maximum are
exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, cast, desc, func, select

from collector.histogram import merge_stored, percentiles
from collector.models import batches
from collector.store import Store

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

    Read from the batches' summary columns, never from every request row.
    """
    conditions = filters.batch_conditions()
    total = func.sum(batches.c.requests_succeeded + batches.c.requests_failed)
    batch_stats = (
        select(batches.c.job_name, func.count().label("batches"),
               func.sum(batches.c.tcp_connections).label("tcp"), total.label("requests"),
               *(func.sum(batches.c[name]).label(name) for name in _COUNTS),
               func.sum(batches.c.body_bytes).label("body_bytes"),
               func.sum(batches.c.checks_passed).label("checks_passed"),
               func.sum(batches.c.checks_failed).label("checks_failed"),
               func.sum(batches.c.bodies).label("bodies"),
               func.max(batches.c.elapsed_max_ms).label("max_ms"))
        .where(*conditions).group_by(batches.c.job_name)
    )
    # As text: parsing them all at once (merge_stored) beats the driver's one by one.
    histograms = (select(batches.c.job_name, cast(batches.c.elapsed_histogram, Text))
                  .where(batches.c.elapsed_histogram.is_not(None), *conditions))
    newest = _numbered_batches(conditions).subquery()
    last = select(newest.c.job_name, newest.c.started_at, newest.c.status).where(newest.c.k == 1)

    with store.connect() as conn:
        counted = {r.job_name: r for r in conn.execute(batch_stats)}
        stored: dict[str, list[str]] = {}
        for name, histogram in conn.execute(histograms):
            stored.setdefault(name, []).append(histogram)
        merged = {name: merge_stored(found) for name, found in stored.items()}
        latest = {r.job_name: r for r in conn.execute(last)}
    trends = job_trends(store, filters, last=trend_batches) if trend_batches else {}

    summaries = []
    for name in sorted(counted):
        b = counted[name]
        p50, p95 = percentiles(merged.get(name, {}), (0.5, 0.95), maximum=b.max_ms)
        requests_total = int(b.requests or 0)
        passed, failed = int(b.checks_passed or 0), int(b.checks_failed or 0)
        summaries.append(JobSummary(
            job_name=name, batches=b.batches, requests=requests_total,
            **{count: int(getattr(b, count) or 0) for count in _COUNTS},
            p50_ms=_rounded(p50), p95_ms=_rounded(p95), max_ms=b.max_ms,
            mean_body_length=float(b.body_bytes) / int(b.bodies) if b.bodies else None,
            tcp_connections=int(b.tcp or 0),
            requests_per_connection=round(requests_total / b.tcp, 2) if b.tcp else None,
            checks_passed=passed, checks_failed=failed,
            checks_pass_pct=round(100 * passed / (passed + failed), 1)
            if passed + failed else None,
            last_started_at=latest[name].started_at, last_status=latest[name].status,
            trend=tuple(trends.get(name, ())),
        ))
    return summaries


_COUNTS = ("status_2xx", "status_3xx", "status_4xx", "status_5xx", "no_response")


def _rounded(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 3)


def job_trends(store: Store, filters: Filters, *,
               last: int = TREND_BATCHES) -> dict[str, list[TrendPoint]]:
    """Per job, its ``last`` newest batches, oldest first, each with its median time."""
    newest = _numbered_batches(filters.batch_conditions()).subquery()
    recent = (select(newest.c.job_name, newest.c.status, newest.c.elapsed_p50_ms)
              .where(newest.c.k <= last).order_by(newest.c.job_name, desc(newest.c.k)))
    with store.connect() as conn:
        rows = conn.execute(recent).all()
    trends: dict[str, list[TrendPoint]] = {}
    for row in rows:
        trends.setdefault(row.job_name, []).append(TrendPoint(p50_ms=row.elapsed_p50_ms,
                                                              status=row.status))
    return trends


def _numbered_batches(conditions: Sequence[ColumnElement[bool]]) -> Select[Any]:
    """Batches with ``k``: 1 for each job's newest, counting back."""
    return select(
        batches.c.id, batches.c.job_name, batches.c.started_at, batches.c.status,
        batches.c.elapsed_p50_ms,
        func.row_number().over(partition_by=batches.c.job_name,
                               order_by=(desc(batches.c.started_at), desc(batches.c.id)))
        .label("k"),
    ).where(*conditions)


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
