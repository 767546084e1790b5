"""Stored batches read back: one batch whole (``collector show``), what a job last got
for each query (conditional requests), a kept body. Collector's own dataclasses out,
never SQLAlchemy rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from collector.models import batches, bodies, captures, checks, connections, requests
from collector.results import (
    CONNECTION_COLUMNS,
    BatchResult,
    BatchStatus,
    CaptureResult,
    CheckResult,
    ConnectionResult,
    FailedAttempt,
    Known,
    RequestResult,
    Trigger,
)
from collector.store.batches import REQUEST_COLUMNS


@dataclass(frozen=True, kw_only=True)
class StoredBatch:
    """A ``batches`` row, with what it recorded (``result`` is None while it has no counters)."""

    id: int
    job_name: str
    trigger: Trigger
    scheduled_for: datetime | None
    started_at: datetime
    finished_at: datetime | None
    status: BatchStatus
    worker: str
    result: BatchResult | None
    columns: dict[str, Any]  # the row as stored, every column


def load(conn: Connection, batch_id: int) -> StoredBatch | None:
    """The stored batch with this id, or None."""
    row = conn.execute(select(batches).where(batches.c.id == batch_id)).one_or_none()
    if row is None:
        return None
    result = None
    if row.num_connections is not None:
        opened = conn.execute(select(connections.c.id, *(
            connections.c[name] for name in CONNECTION_COLUMNS))
            .where(connections.c.batch_id == batch_id,
                   connections.c.opened_at >= row.started_at)
            .order_by(connections.c.number)).all()
        numbers = {c.id: c.number for c in opened}
        rows = conn.execute(select(*(requests.c[name] for name in REQUEST_COLUMNS),
                                   requests.c.connection_id, requests.c.id)
                            .where(requests.c.batch_id == batch_id,
                                   requests.c.started_at >= row.started_at)
                            .order_by(requests.c.position)).all()
        checked: dict[int, list[CheckResult]] = {}
        if row.checks_passed or row.checks_failed:
            for found in conn.execute(
                    select(checks.c.request_id, checks.c.name, checks.c.passed,
                           checks.c.observed)
                    .where(checks.c.request_id.in_([r.id for r in rows]),
                           checks.c.started_at >= row.started_at)
                    .order_by(checks.c.id)):
                checked.setdefault(found.request_id, []).append(CheckResult(
                    name=found.name, passed=found.passed, observed=found.observed))
        captured: dict[int, list[CaptureResult]] = {}
        for found in conn.execute(
                select(captures.c.request_id, captures.c.name, captures.c.value,
                       captures.c.number)
                .where(captures.c.batch_id == batch_id, captures.c.started_at >= row.started_at)
                .order_by(captures.c.id)):
            captured.setdefault(found.request_id, []).append(CaptureResult(
                name=found.name, value=found.value, number=found.number))
        result = BatchResult(
            url=row.url, method=row.method, pool_size=row.pool_size,
            concurrency=row.concurrency, started_at=row.started_at,
            finished_at=row.finished_at or row.started_at,
            num_connections=row.num_connections, num_requests=row.num_requests,
            tcp_connections=row.tcp_connections, tls_verified=row.tls_verified,
            requests=tuple(_request(r._asdict(), numbers, checked, captured) for r in rows),
            connections=tuple(ConnectionResult(**{
                name: getattr(c, name) for name in CONNECTION_COLUMNS}) for c in opened),
        )
    return StoredBatch(id=row.id, job_name=row.job_name, trigger=row.trigger,
                       scheduled_for=row.scheduled_for, started_at=row.started_at,
                       finished_at=row.finished_at, status=row.status, worker=row.worker,
                       result=result, columns=row._asdict())


def _request(row: dict[str, Any], numbers: dict[int, int],
             checked: dict[int, list[CheckResult]],
             captured: dict[int, list[CaptureResult]]) -> RequestResult:
    attempts = row.pop("failed_attempts") or []
    request_id = row.pop("id")
    row["checks"] = tuple(checked.get(request_id, ()))
    row["captures"] = tuple(captured.get(request_id, ()))
    connection_id = row.pop("connection_id")
    row["connection"] = None if connection_id is None else numbers.get(connection_id)
    return RequestResult(**row, failed_attempts=tuple(
        FailedAttempt(error_kind=a["error_kind"], status=a.get("status"), error=a["error"],
                      at=datetime.fromisoformat(a["at"])) for a in attempts))


def known(conn: Connection, job_name: str, url: str, *, recent: int = 10
          ) -> dict[str, Known]:
    """What the job last got for each query (a 200, or a 304 that confirmed a content)
    among its ``recent`` latest finished batches to ``url``, by the query as stored."""
    latest = conn.execute(select(batches.c.id, batches.c.started_at)
                          .where(batches.c.job_name == job_name, batches.c.url == url,
                                 batches.c.num_connections.is_not(None))
                          .order_by(batches.c.started_at.desc()).limit(recent)).all()
    if not latest:
        return {}
    rows = conn.execute(
        select(requests.c.query, requests.c.content_sha256, requests.c.etag,
               requests.c.last_modified)
        .where(requests.c.batch_id.in_([row.id for row in latest]),
               # a request starts after its batch: on PostgreSQL, only the days since
               requests.c.started_at >= min(row.started_at for row in latest),
               requests.c.content_sha256.is_not(None))
        .order_by(requests.c.started_at, requests.c.id))
    return {row.query: Known(content_sha256=row.content_sha256, etag=row.etag,
                             last_modified=row.last_modified) for row in rows}


def body(conn: Connection, sha256: str) -> bytes | None:
    """A kept body as it was delivered, or None when none is stored by that hash."""
    row = conn.execute(select(bodies.c.codec, bodies.c.data)
                       .where(bodies.c.sha256 == sha256)).one_or_none()
    if row is None:
        return None
    if row.codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(row.data)
    return bytes(row.data)
