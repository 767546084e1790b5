"""The stored tables: a contract users write SQL against (README, "The stored data").

Renaming a column needs an Alembic revision and a note in the README; a test
checks that these tables and the migrations never disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

from collector.results import BATCH_STATUSES, TRIGGERS

COUNTERS = ("num_connections", "num_requests", "tcp_connections", "requests_succeeded",
            "requests_failed")
# A batch has its counters unless it is running or was abandoned by a worker that died.
COUNTERS_KNOWN = ("status IN ('running', 'abandoned') OR ("
                  + " AND ".join(f"{c} IS NOT NULL" for c in (*COUNTERS, "finished_at")) + ")")


HISTOGRAM = ("responses' elapsed_ms: {bucket: count}, bucket i holding "
             "2^((i-1)/8) < ms <= 2^(i/8)")
FAILED_ATTEMPTS = "attempts before the last, and a failed last one: error_kind, status, error, at"


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# SQLite only auto-increments an INTEGER PRIMARY KEY; elsewhere ids are 64-bit.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time, stored as UTC; always read back timezone-aware.

    PostgreSQL stores ``timestamptz``; SQLite stores the UTC wall time as text
    (``2026-11-25 00:40:43.123456``), which sorts and works with ``date()``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: collector stores UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


batches = Table(
    "batches", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_name", String(200), nullable=False),
    Column("trigger", String(20), nullable=False, comment="schedule or manual"),
    Column("scheduled_for", UTCDateTime(), comment="the fire time a schedule claimed"),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("status", String(20), nullable=False,
           comment="running, ok, partial, failed, interrupted or abandoned"),
    Column("url", Text, nullable=False),
    Column("method", String(10), nullable=False),
    Column("pool_size", Integer, nullable=False),
    Column("concurrency", Integer, nullable=False),
    # The counters are NULL while a claimed batch runs, and stay NULL for one whose
    # worker died (abandoned): unknown, which 0 would misstate.
    Column("num_connections", Integer, comment="the pool's counter"),
    Column("num_requests", Integer, comment="the pool's counter: attempts"),
    Column("tcp_connections", Integer, comment="TCP connections opened"),
    Column("requests_succeeded", Integer),
    Column("requests_failed", Integer),
    Column("worker", String(255), nullable=False, comment="host:pid that ran the batch"),
    Column("tls_verified", Boolean,
           comment="https: whether certificates were checked (false: the job said verify = false)"),
    Column("batch_key", String(36),
           comment="unique per batch run: a batch replayed from the spool is stored once"),
    # What reports read instead of every request row (collector.histogram), written with
    # the batch; NULL while it has no counters.
    *(Column(f"status_{n}xx", Integer, comment=f"requests answered with a {n}xx status")
      for n in range(2, 6)),
    Column("no_response", Integer, comment="requests that got no status"),
    Column("body_bytes", BigInteger, comment="sum of the requests' body_length"),
    Column("bodies", Integer, comment="requests with a body_length"),
    Column("reused_requests", Integer, comment="requests sent over a re-used connection"),
    Column("elapsed_p50_ms", Float, comment="median elapsed_ms of the responses (nearest rank)"),
    Column("elapsed_max_ms", Float, comment="largest elapsed_ms of the responses"),
    Column("elapsed_histogram", JSON(none_as_null=True), comment=HISTOGRAM),
    Column("checks_passed", Integer, comment="the job's checks that passed, over its requests"),
    Column("checks_failed", Integer, comment="the job's checks that failed"),
    # One row per fire of a schedule, whichever daemon claims it; NULLs
    # (manual runs) never collide.
    UniqueConstraint("job_name", "scheduled_for"),
    CheckConstraint(f"status IN ({_quoted(BATCH_STATUSES)})", name="status"),
    CheckConstraint(f'"trigger" IN ({_quoted(TRIGGERS)})', name="trigger"),
    CheckConstraint(COUNTERS_KNOWN, name="counters"),
    Index(None, "job_name", "started_at"),
    Index(None, "started_at"),
    Index(None, "batch_key", unique=True),
)

# What a claim reads (is a batch of the job running?): only the running rows. Its
# PostgreSQL clause is added when a PostgreSQL engine is made (for_postgresql()):
# written here, it would import SQLAlchemy's PostgreSQL dialect on SQLite too, a
# tenth of the start-up of `jobs list`.
_RUNNING = text("status = 'running'")
running_index = Index("ix_batches_running", batches.c.job_name, sqlite_where=_RUNNING)


def for_postgresql() -> None:
    """Complete the models with what only PostgreSQL reads (the partial index's clause)."""
    running_index.dialect_kwargs["postgresql_where"] = _RUNNING


connections = Table(
    "connections", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("batch_id", Id, ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False,
           comment="the batch's 1st, 2nd, ... TCP connection, in the order they were opened"),
    Column("position", Integer, comment="the request that opened it"),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("remote_address", String(64), comment="the address connected to (a proxy's)"),
    Column("remote_port", Integer),
    Column("dns_ms", Float, comment="the host's lookup; NULL without one"),
    Column("tcp_ms", Float, comment="the TCP connect (through a proxy: and its handshake)"),
    Column("tls_ms", Float, comment="the TLS handshake with the server; NULL without TLS"),
    Column("tls_version", String(20)),
    Column("cipher", String(100)),
    Column("alpn", String(50), comment="the protocol agreed by ALPN, if any"),
    Column("cert_subject", Text, comment="the server certificate's subject (RFC 4514)"),
    Column("cert_issuer", Text),
    Column("cert_sha256", String(64), comment="SHA-256 of the certificate's DER"),
    Column("cert_not_before", UTCDateTime()),
    Column("cert_not_after", UTCDateTime()),
    Column("chain_not_after", UTCDateTime(),
           comment="the earliest expiry over the certificates Python gives"),
    Column("error_kind", String(20), comment="its TLS handshake (or proxy tunnel) failed"),
    UniqueConstraint("batch_id", "number"),
)

requests = Table(
    "requests", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("batch_id", Id, ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("method", String(10), nullable=False),
    Column("url", Text, nullable=False),
    Column("query", Text, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("status", Integer),
    Column("content_type", Text),
    Column("body_length", BigInteger, comment="bytes of the body as delivered"),
    Column("content_length", BigInteger, comment="the Content-Length header"),
    Column("body_sha256", String(64)),
    Column("elapsed_ms", Float, nullable=False),
    Column("connect_ms", Float, comment="set when a TCP connection was opened for it"),
    Column("ttfb_ms", Float),
    Column("queued_ms", Float,
           comment="time waiting for a free pooled connection, not part of elapsed_ms"),
    Column("reused", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error_kind", String(20)),
    Column("error", Text),
    Column("failed_attempts", JSON(none_as_null=True), comment=FAILED_ATTEMPTS),
    Column("dns_ms", Float, comment="phases of the connection it opened: NULL when re-used"),
    Column("tcp_ms", Float),
    Column("tls_ms", Float),
    Column("http_version", String(10), comment="of the response: 1.1 or 1.0"),
    # No foreign key: the connections of pruned batches go without a look into every
    # request row (there is no index on this column), and the rows of both are written
    # in one transaction, by collector alone.
    Column("connection_id", Id, comment="connections.id of the connection it went over"),
    Column("content_sha256", String(64), comment=(
        "the content it stands for: the body of a 200, the body a 304 confirmed")),
    Column("etag", Text, comment="the content's ETag (conditional jobs)"),
    Column("last_modified", Text, comment="the content's Last-Modified (conditional jobs)"),
    UniqueConstraint("batch_id", "position"),
    Index(None, "started_at"),
)

checks = Table(
    "checks", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("batch_id", Id, ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    # No foreign key, as requests.connection_id: rows of one transaction, pruned together
    # (and gone with their batch).
    Column("request_id", Id, nullable=False, comment="requests.id of the response checked"),
    Column("started_at", UTCDateTime(), nullable=False,
           comment="the request's started_at (PostgreSQL partitions by it)"),
    Column("name", String(100), nullable=False, comment="the check's name in the job"),
    Column("passed", Boolean, nullable=False),
    Column("observed", Text, comment="the value it looked at, shortened (the cut marked)"),
    UniqueConstraint("request_id", "name"),
    Index(None, "batch_id"),
)

captures = Table(
    "captures", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("batch_id", Id, ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    Column("request_id", Id, nullable=False, comment="requests.id of the response"),
    Column("started_at", UTCDateTime(), nullable=False,
           comment="the request's started_at (PostgreSQL partitions by it)"),
    Column("name", String(100), nullable=False, comment="the capture's name in the job"),
    Column("value", Text, nullable=False, comment="what it found, shortened (the cut marked)"),
    Column("number", Float, comment="the value as a number, when it is one"),
    UniqueConstraint("request_id", "name"),
    Index(None, "batch_id"),
)

bodies = Table(
    "bodies", metadata,
    Column("sha256", String(64), primary_key=True, comment="of the body as delivered"),
    Column("codec", String(10), nullable=False, comment="identity or zstd"),
    Column("raw_length", BigInteger, nullable=False),
    Column("stored_length", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("stored_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=False,
           comment="the start of the latest batch of a job keeping bodies that got it"),
    Index(None, "last_used_at"),
)

rollups = Table(
    "rollups", metadata,
    Column("period", String(5), primary_key=True, comment="hour, day or month (UTC)"),
    Column("job_name", String(200), primary_key=True),
    Column("starts_at", UTCDateTime(), primary_key=True,
           comment="the hour's, day's or month's start"),
    Column("batches", Integer, nullable=False,
           comment="batches started in it that finished or were abandoned"),
    Column("requests", Integer, nullable=False),
    *(Column(f"status_{n}xx", Integer, nullable=False) for n in range(2, 6)),
    Column("no_response", Integer, nullable=False),
    Column("body_bytes", BigInteger, nullable=False),
    Column("bodies", Integer, nullable=False, comment="requests with a body_length"),
    Column("tcp_connections", Integer, nullable=False),
    Column("reused_requests", Integer, nullable=False),
    Column("checks_passed", Integer, nullable=False),
    Column("checks_failed", Integer, nullable=False),
    Column("elapsed_max_ms", Float),
    Column("elapsed_histogram", JSON(none_as_null=True), comment=HISTOGRAM),
    Index(None, "period", "starts_at"),
)

jobs = Table(
    "jobs", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("definition", JSON, nullable=False,
           comment="the validated job: job-file keys, defaults filled in, ${VAR} kept"),
    Column("schedule", Text, comment="every 5m, or cron */5 * * * * (TZ); NULL: manual only"),
    Column("enabled", Boolean, nullable=False),
    Column("source", Text, nullable=False, comment="the job file's absolute path, or cli"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

workers = Table(
    "workers", metadata,
    Column("id", String(255), primary_key=True, comment="host:pid, as batches.worker names it"),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(50), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("last_heartbeat", UTCDateTime(), nullable=False),
    Column("stopped_at", UTCDateTime(), comment="set when the daemon stopped cleanly"),
)
