"""What a batch produced: plain values the runner returns and the store saves.

Field names are the column names of the ``requests`` and ``batches`` tables
(README, "The stored data") and the keys of ``collector run-once --json``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from collector.histogram import summarize

ErrorKind = Literal[
    "connect_refused", "connect_timeout", "dns", "read_timeout", "tls", "protocol",
    "too_large", "proxy", "other",
]

# running: claimed, not finished; ok / partial / failed: every, some, no request got a
# response; interrupted: stopped mid-batch, what it collected is stored; abandoned: its
# worker died (a stale heartbeat).
BatchStatus = Literal["running", "ok", "partial", "failed", "interrupted", "abandoned"]
BATCH_STATUSES: tuple[BatchStatus, ...] = get_args(BatchStatus)
Trigger = Literal["schedule", "manual"]
TRIGGERS: tuple[Trigger, ...] = get_args(Trigger)


CUT = "…[cut]"  # what ends a text shortened to its bound


def shortened(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, the cut marked when there was one."""
    return text if len(text) <= limit else text[:limit - len(CUT)] + CUT


@dataclass(frozen=True, kw_only=True)
class FailedAttempt:
    """One attempt of a request that was tried again, or failed: why, and when it ended.

    ``error_kind`` for an attempt that got no response; ``status`` for one whose
    status the job retries (``retry_statuses``).
    """

    error_kind: ErrorKind | None
    error: str
    at: datetime
    status: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"error_kind": self.error_kind, "status": self.status, "error": self.error,
                "at": self.at.isoformat()}


@dataclass(frozen=True, kw_only=True, slots=True)
class CheckResult:
    """One of the job's checks on one response: whether it passed, and the value it looked
    at (shortened, the cut marked), a row of the ``checks`` table."""

    name: str
    passed: bool
    observed: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "observed": self.observed}


@dataclass(frozen=True, kw_only=True, slots=True)
class CaptureResult:
    """A value one of the job's captures found in one response, a row of the ``captures``
    table: the text (shortened, the cut marked) and, when it is a number, the number."""

    name: str
    value: str
    number: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "number": self.number}


@dataclass(frozen=True, kw_only=True, slots=True)
class Known:
    """What the job last got for one query (a 200, or a 304 that confirmed it): the hash of
    that content and its validators, for ``conditional`` and ``keep_bodies = "changed"``."""

    content_sha256: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(kw_only=True, slots=True)
class RequestResult:
    """One request of a batch (treated as a value: never changed once made; not frozen,
    because a frozen dataclass's ``__init__`` sets each of its 19 fields through
    ``object.__setattr__``, which measured 2.7 µs a request against 0.9).

    ``error_kind``/``error`` are set when the request got no complete HTTP
    response; ``status`` may still be set when the failure came while reading
    the body (``read_timeout``, ``protocol``, ``too_large``).
    """

    position: int
    method: str
    url: str
    query: str
    started_at: datetime
    status: int | None
    content_type: str | None
    body_length: int | None
    content_length: int | None
    body_sha256: str | None
    elapsed_ms: float
    connect_ms: float | None
    ttfb_ms: float | None
    reused: bool
    attempts: int
    error_kind: ErrorKind | None = None
    error: str | None = None
    failed_attempts: tuple[FailedAttempt, ...] = ()
    queued_ms: float | None = None
    # The phases of the connection it opened (NULL over a re-used one, dns_ms without a
    # lookup, tls_ms without TLS); connect_ms is their sum.
    dns_ms: float | None = None
    tcp_ms: float | None = None
    tls_ms: float | None = None
    http_version: str | None = None  # of the response: "1.1", "1.0"
    connection: int | None = None  # the ConnectionResult.number it went over last
    checks: tuple[CheckResult, ...] = ()  # the job's checks on its response, in order
    captures: tuple[CaptureResult, ...] = ()  # the values its captures found, in order
    # The content the response stands for: its body's hash for a 200, the hash of the body
    # a 304 confirmed (the validators collector sent were that body's); None otherwise.
    content_sha256: str | None = None
    etag: str | None = None  # validators of that content (conditional jobs only)
    last_modified: str | None = None

    @property
    def failed(self) -> bool:
        """True when the request got no complete response (HTTP statuses are data)."""
        return self.error_kind is not None

    def to_dict(self) -> dict[str, Any]:
        """Column names to JSON-ready values, and ``failed_attempts`` (oldest first)."""
        return {
            "position": self.position, "method": self.method, "url": self.url,
            "query": self.query, "started_at": self.started_at.isoformat(),
            "status": self.status, "content_type": self.content_type,
            "body_length": self.body_length, "content_length": self.content_length,
            "body_sha256": self.body_sha256, "elapsed_ms": self.elapsed_ms,
            "connect_ms": self.connect_ms, "ttfb_ms": self.ttfb_ms, "queued_ms": self.queued_ms,
            "dns_ms": self.dns_ms, "tcp_ms": self.tcp_ms, "tls_ms": self.tls_ms,
            "reused": self.reused, "http_version": self.http_version,
            "connection": self.connection,
            "checks": [c.to_dict() for c in self.checks],
            "captures": [c.to_dict() for c in self.captures],
            "content_sha256": self.content_sha256, "etag": self.etag,
            "last_modified": self.last_modified,
            "attempts": self.attempts, "error_kind": self.error_kind, "error": self.error,
            "failed_attempts": [a.to_dict() for a in self.failed_attempts],
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionResult:
    """One TCP connection a batch really opened (through a proxy: to the proxy), and what
    its TLS handshake gave, if it had one; column names of the ``connections`` table.

    ``number`` counts the batch's connections from 1 in the order they were opened;
    ``position`` is the request that opened it. A connection whose TLS handshake failed
    has ``error_kind`` and no TLS facts. ``chain_not_after`` is the earliest expiry over
    the certificates Python gives (the server's own alone before Python 3.13).
    """

    number: int
    position: int | None
    opened_at: datetime
    remote_address: str | None
    remote_port: int | None
    dns_ms: float | None
    tcp_ms: float | None
    tls_ms: float | None = None
    tls_version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    cert_subject: str | None = None
    cert_issuer: str | None = None
    cert_sha256: str | None = None
    cert_not_before: datetime | None = None
    cert_not_after: datetime | None = None
    chain_not_after: datetime | None = None
    error_kind: ErrorKind | None = None

    def to_dict(self) -> dict[str, Any]:
        values = ((name, getattr(self, name)) for name in CONNECTION_COLUMNS)
        return {name: value.isoformat() if isinstance(value, datetime) else value
                for name, value in values}


CONNECTION_COLUMNS = tuple(ConnectionResult.__dataclass_fields__)


@dataclass(frozen=True, kw_only=True)
class BatchResult:
    """One batch: the pool's own counters, the TCP connections really opened, the requests.

    ``num_connections`` and ``num_requests`` are urllib3's pool counters:
    connection objects created and request attempts made (retries included).
    ``tcp_connections`` counts TCP connections really opened (a TLS handshake
    that then failed included), which goes up when a server closes a
    kept-alive connection and urllib3 reconnects the same connection object.
    """

    url: str
    method: str
    pool_size: int
    concurrency: int
    started_at: datetime
    finished_at: datetime
    num_connections: int
    num_requests: int
    tcp_connections: int
    requests: tuple[RequestResult, ...]
    interrupted: bool = False  # stopped before every query was sent: these are the ones sent
    tls_verified: bool | None = None  # https: whether certificates were checked
    connections: tuple[ConnectionResult, ...] = ()  # the tcp_connections, in order
    # keep_bodies: the distinct bodies kept, by SHA-256 (each once however many requests
    # got it); ``keeps_bodies`` says the job keeps them (their last use is noted).
    bodies: dict[str, bytes] = field(default_factory=dict)
    keeps_bodies: bool = False

    @property
    def requests_succeeded(self) -> int:
        return sum(not r.failed for r in self.requests)

    @property
    def requests_failed(self) -> int:
        return sum(r.failed for r in self.requests)

    @property
    def status(self) -> BatchStatus:
        """``ok`` (every request got a response), ``partial`` or ``failed`` (none did);
        ``interrupted`` when it was stopped before every query was sent."""
        if self.interrupted:
            return "interrupted"
        if not self.requests_failed:
            return "ok"
        return "failed" if not self.requests_succeeded else "partial"

    @property
    def checks_failed(self) -> int:
        return sum(not c.passed for r in self.requests for c in r.checks)

    @property
    def checks_passed(self) -> int:
        return sum(c.passed for r in self.requests for c in r.checks)

    @property
    def succeeded(self) -> bool:
        """Every request answered, and every check passed (``collector_last_batch_success``)."""
        return self.status == "ok" and not self.checks_failed

    def counters(self) -> dict[str, Any]:
        """The ``batches`` columns a finished batch fills in: status, counters, summary."""
        return {"finished_at": self.finished_at, "status": self.status,
                "checks_passed": self.checks_passed, "checks_failed": self.checks_failed,
                "num_connections": self.num_connections, "num_requests": self.num_requests,
                "tcp_connections": self.tcp_connections,
                "requests_succeeded": self.requests_succeeded,
                "requests_failed": self.requests_failed, "tls_verified": self.tls_verified,
                **summarize((r.status, r.body_length, r.elapsed_ms, r.reused)
                            for r in self.requests)}

    def shifted(self, by: timedelta) -> BatchResult:
        """The same batch with every time moved by ``by`` (a clock's measured offset)."""
        if not by:
            return self
        return replace(self, started_at=self.started_at + by,
                       finished_at=self.finished_at + by, connections=tuple(
                           replace(c, opened_at=c.opened_at + by) for c in self.connections),
                       requests=tuple(
                           replace(r, started_at=r.started_at + by, failed_attempts=tuple(
                               replace(a, at=a.at + by) for a in r.failed_attempts))
                           for r in self.requests))


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingBatch:
    """A batch that ran and waits to be recorded: what ``Store.record`` writes, live or
    from the spool, and what the spool keeps while the database is away.

    With ``claimed`` (the id of the running row its claim made) it completes that
    claim; without, it is inserted whole, once by its ``batch_key``, and a fire
    (``scheduled_for``) once among every worker's batches.
    """

    result: BatchResult
    job_name: str
    trigger: Trigger
    worker: str
    batch_key: str
    scheduled_for: datetime | None = None
    claimed: int | None = None

    def columns(self) -> dict[str, Any]:
        """Its ``batches`` row, every column but ``id``, as it is inserted whole."""
        result = self.result
        return {"job_name": self.job_name, "trigger": self.trigger,
                "scheduled_for": self.scheduled_for, "started_at": result.started_at,
                "url": result.url, "method": result.method, "pool_size": result.pool_size,
                "concurrency": result.concurrency, "worker": self.worker,
                "batch_key": self.batch_key, **result.counters()}


def new_batch_key() -> str:
    """A batch's unique key: a replay that meets it again knows the batch is stored."""
    return str(uuid.uuid4())
