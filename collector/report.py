"""Aggregates over stored results, computed in SQL on SQLite and PostgreSQL alike.

Percentiles are nearest-rank (the smallest value with at least p% of the
values at or below it), computed with window functions both databases have,
over the requests that got a response: a timeout's elapsed time says how long
collector waited, not how fast the server was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, case, desc, func, select

from collector.models import batches, requests
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
    last_started_at: datetime
    last_status: str
    trend: tuple[TrendPoint, ...] = ()

    def as_record(self) -> dict[str, Any]:
        """The figures by name, without the trend."""
        return {k: v for k, v in self.__dict__.items() if k != "trend"}


def _status_count(low: int, high: int) -> ColumnElement[Any]:
    return func.sum(case((requests.c.status.between(low, high), 1), else_=0))


def _percentiles(partition: ColumnElement[Any], conditions: Sequence[ColumnElement[bool]],
                 *fractions: float) -> Select[Any]:
    """Nearest-rank percentiles of elapsed_ms over responses, one row per ``partition``."""
    ranked = (
        select(partition.label("key"), requests.c.elapsed_ms,
               func.row_number().over(partition_by=partition,
                                      order_by=requests.c.elapsed_ms).label("rank"),
               func.count().over(partition_by=partition).label("n"))
        .select_from(requests.join(batches, requests.c.batch_id == batches.c.id))
        .where(requests.c.status.is_not(None), *conditions)
        .subquery()
    )
    columns = [func.min(case((ranked.c.rank >= fraction * ranked.c.n, ranked.c.elapsed_ms)))
               .label(f"p{round(fraction * 100)}") for fraction in fractions]
    return (select(ranked.c.key, *columns, func.max(ranked.c.elapsed_ms).label("max"))
            .group_by(ranked.c.key))


def job_summaries(store: Store, filters: Filters, *,
                  trend_batches: int = TREND_BATCHES) -> list[JobSummary]:
    """Per job: batches, requests by status class, times, body size, re-use, last batch."""
    conditions = filters.batch_conditions()
    batch_stats = (
        select(batches.c.job_name, func.count().label("batches"),
               func.sum(batches.c.tcp_connections).label("tcp"))
        .where(*conditions).group_by(batches.c.job_name)
    )
    request_stats = (
        select(batches.c.job_name, func.count().label("requests"),
               _status_count(200, 299).label("s2"), _status_count(300, 399).label("s3"),
               _status_count(400, 499).label("s4"), _status_count(500, 599).label("s5"),
               func.sum(case((requests.c.status.is_(None), 1), else_=0)).label("none"),
               func.avg(requests.c.body_length).label("mean_body"))
        .select_from(requests.join(batches, requests.c.batch_id == batches.c.id))
        .where(*conditions).group_by(batches.c.job_name)
    )
    newest = _numbered_batches(conditions).subquery()
    last = select(newest.c.job_name, newest.c.started_at, newest.c.status).where(newest.c.k == 1)
    times = _percentiles(batches.c.job_name, conditions, 0.5, 0.95)

    with store.connect() as conn:
        counted = {r.job_name: r for r in conn.execute(batch_stats)}
        per_request = {r.job_name: r for r in conn.execute(request_stats)}
        timing = {r.key: r for r in conn.execute(times)}
        latest = {r.job_name: r for r in conn.execute(last)}
    trends = job_trends(store, filters, last=trend_batches) if trend_batches else {}

    summaries = []
    for name in sorted(counted):
        b, r, t = counted[name], per_request.get(name), timing.get(name)
        total = r.requests if r else 0
        summaries.append(JobSummary(
            job_name=name, batches=b.batches, requests=total,
            status_2xx=_int(r, "s2"), status_3xx=_int(r, "s3"), status_4xx=_int(r, "s4"),
            status_5xx=_int(r, "s5"), no_response=_int(r, "none"),
            p50_ms=t.p50 if t else None, p95_ms=t.p95 if t else None,
            max_ms=t.max if t else None,
            mean_body_length=float(r.mean_body) if r and r.mean_body is not None else None,
            tcp_connections=int(b.tcp or 0),
            requests_per_connection=round(total / b.tcp, 2) if b.tcp else None,
            last_started_at=latest[name].started_at, last_status=latest[name].status,
            trend=tuple(trends.get(name, ())),
        ))
    return summaries


def job_trends(store: Store, filters: Filters, *,
               last: int = TREND_BATCHES) -> dict[str, list[TrendPoint]]:
    """Per job, its ``last`` newest batches, oldest first, each with its median time."""
    newest = _numbered_batches(filters.batch_conditions()).subquery()
    recent = select(newest.c.id, newest.c.job_name, newest.c.status, newest.c.k).where(
        newest.c.k <= last)
    medians = _percentiles(batches.c.id, [batches.c.id.in_(select(recent.subquery().c.id))],
                           0.5)
    with store.connect() as conn:
        rows = conn.execute(recent.order_by(recent.selected_columns.job_name,
                                            desc(recent.selected_columns.k))).all()
        p50 = {r.key: r.p50 for r in conn.execute(medians)}
    trends: dict[str, list[TrendPoint]] = {}
    for row in rows:
        trends.setdefault(row.job_name, []).append(TrendPoint(p50_ms=p50.get(row.id),
                                                              status=row.status))
    return trends


def _numbered_batches(conditions: Sequence[ColumnElement[bool]]) -> Select[Any]:
    """Batches with ``k``: 1 for each job's newest, counting back."""
    return select(
        batches.c.id, batches.c.job_name, batches.c.started_at, batches.c.status,
        func.row_number().over(partition_by=batches.c.job_name,
                               order_by=(desc(batches.c.started_at), desc(batches.c.id)))
        .label("k"),
    ).where(*conditions)


def _int(row: Any, name: str) -> int:
    return int(getattr(row, name) or 0) if row is not None else 0


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
