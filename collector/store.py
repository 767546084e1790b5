"""Keep batch results in SQL: engine setup, the schema's revision, saving a batch.

SQLite (WAL, a busy timeout, foreign keys on) is the embedded default;
PostgreSQL is reached through psycopg 3. A database with no schema is brought
to the newest revision on first use; one at an older revision is left alone
with a message to run ``collector db upgrade``.

SQLAlchemy's and Alembic's exceptions are translated here, once, into
:class:`~collector.errors.StoreError` and :class:`~collector.errors.ConfigError`.
This module knows nothing about HTTP: it saves a plain
:class:`~collector.results.BatchResult`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from collector.config import JobSpec, describe_schedule, job_definition, job_from_definition
from collector.errors import (
    ConfigError,
    DatabaseUnavailable,
    SchemaMismatch,
    UnknownBatch,
    UnknownJob,
)
from collector.models import batches, jobs, requests
from collector.results import BatchResult, RequestResult

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS = "collector:migrations"  # inside the package, so an installed wheel has them

_TABLES = (jobs, batches, requests)

# Alembic keeps the running migration's context in module globals: one at a time per process.
_MIGRATING = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class DatabaseInfo:
    """What ``collector db info`` shows."""

    url: str
    dialect: str
    revision: str | None
    head: str
    row_counts: dict[str, int]

    @property
    def state(self) -> str:
        if self.revision == self.head:
            return "up to date"
        if self.revision is None:
            return "empty (the schema is created on first use)"
        return "needs `collector db upgrade`"


@dataclass(frozen=True, kw_only=True)
class StoredJob:
    """A row of the ``jobs`` table, its definition read back into a :class:`JobSpec`."""

    job: JobSpec
    schedule: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def source(self) -> str:
        return self.job.source


class Store:
    """One database: save batches, read its state, upgrade its schema.

    Open it with :func:`open_store`; close it (or use it as a context manager)
    to dispose of its connections.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def connect(self, *, write: bool = False) -> Iterator[Connection]:
        """A connection (in a transaction when ``write``); database errors become StoreError."""
        try:
            with self.engine.connect() as conn:
                if write:
                    with conn.execution_options(write_lock=True).begin():
                        yield conn
                else:
                    yield conn
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(self.url, _reason(exc)) from exc

    # -- the schema ---------------------------------------------------------------------------

    def revision(self) -> str | None:
        """The schema revision the database is at, or None when it has none."""
        from alembic.runtime.migration import MigrationContext

        with self.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def upgrade(self) -> tuple[str | None, str]:
        """Bring the schema to the newest revision; returns (before, after)."""
        from alembic import command
        from alembic.util.exc import CommandError

        before = self.revision()
        head = _head()
        if before is not None and before not in _known_revisions():
            raise _too_new(self.url, before, head)
        with _MIGRATING, self.connect(write=True) as conn:
            config = _alembic_config()
            config.attributes["connection"] = conn
            try:
                command.upgrade(config, "head")
            except CommandError as exc:
                raise DatabaseUnavailable(self.url, f"migration failed: {exc}") from exc
        return before, head

    def ensure_schema(self) -> None:
        """Create the schema on an empty database; refuse one at another revision."""
        from alembic.runtime.migration import MigrationContext

        head = _head()
        current = self.revision()
        if current is None:
            with self.connect() as conn:
                existing = set(inspect(conn).get_table_names()) & {t.name for t in _TABLES}
                # Read again after listing the tables: another process creating the
                # schema commits tables and version together, so seeing its tables
                # means seeing its version too.
                current = MigrationContext.configure(conn).get_current_revision()
            if current is None and existing:
                raise SchemaMismatch(self.url, None, head,
                                     f"it has tables {sorted(existing)} but no alembic_version; "
                                     "it was not made by collector")
        if current == head:
            return
        if current is None:
            log.info("creating collector's schema in %s", self.url)
            try:
                self.upgrade()
            except DatabaseUnavailable:
                # Another process may have created it at the same moment.
                if self.revision() != head:
                    raise
            return
        if current in _known_revisions():
            raise SchemaMismatch(self.url, current, head, "run `collector db upgrade`")
        raise _too_new(self.url, current, head)

    def info(self) -> DatabaseInfo:
        """Which database, which revision, how many rows (when the schema is there)."""
        revision = self.revision()
        counts: dict[str, int] = {}
        if revision is not None:
            with self.connect() as conn:
                present = set(inspect(conn).get_table_names())  # an old schema lacks some
                for table in _TABLES:
                    if table.name in present:
                        counts[table.name] = conn.execute(
                            select(func.count()).select_from(table)).scalar_one()
        return DatabaseInfo(url=self.url, dialect=self.engine.dialect.name, revision=revision,
                            head=_head(), row_counts=counts)

    # -- batches ------------------------------------------------------------------------------

    def save_batch(self, result: BatchResult, *, job_name: str, trigger: str = "manual",
                   scheduled_for: datetime | None = None, worker: str | None = None) -> int:
        """Write the batch and all its requests in one transaction; returns the batch id."""
        row = {
            "job_name": job_name, "trigger": trigger, "scheduled_for": scheduled_for,
            "started_at": result.started_at, "finished_at": result.finished_at,
            "status": result.status, "url": result.url, "method": result.method,
            "pool_size": result.pool_size, "concurrency": result.concurrency,
            "num_connections": result.num_connections, "num_requests": result.num_requests,
            "tcp_connections": result.tcp_connections,
            "requests_succeeded": result.requests_succeeded,
            "requests_failed": result.requests_failed,
            "worker": worker or default_worker(),
        }
        with self.connect(write=True) as conn:
            batch_id: int = conn.execute(
                insert(batches).values(row).returning(batches.c.id)).scalar_one()
            if result.requests:
                conn.execute(insert(requests), [
                    {**dataclasses.asdict(r), "batch_id": batch_id} for r in result.requests
                ])
        return batch_id


    def load_batch(self, batch_id: int) -> tuple[Row[Any], BatchResult]:
        """A stored batch: its ``batches`` row and the result it recorded."""
        with self.connect() as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)).one_or_none()
            if row is None:
                raise UnknownBatch(batch_id)
            rows = conn.execute(select(requests).where(requests.c.batch_id == batch_id)
                                .order_by(requests.c.position)).all()
        fields = [f.name for f in dataclasses.fields(RequestResult)]
        result = BatchResult(
            url=row.url, method=row.method, pool_size=row.pool_size,
            concurrency=row.concurrency, started_at=row.started_at,
            finished_at=row.finished_at, num_connections=row.num_connections,
            num_requests=row.num_requests, tcp_connections=row.tcp_connections,
            requests=tuple(RequestResult(**{f: getattr(r, f) for f in fields}) for r in rows),
        )
        return row, result

    def prune(self, before: datetime, *, dry_run: bool = False) -> tuple[int, int]:
        """Delete batches started before ``before`` and their requests; returns both counts."""
        old = select(batches.c.id).where(batches.c.started_at < before)
        with self.connect(write=not dry_run) as conn:
            counts = (
                conn.execute(select(func.count()).select_from(old.subquery())).scalar_one(),
                conn.execute(select(func.count()).select_from(requests)
                             .where(requests.c.batch_id.in_(old))).scalar_one(),
            )
            if not dry_run:
                conn.execute(delete(requests).where(requests.c.batch_id.in_(old)))
                conn.execute(delete(batches).where(batches.c.started_at < before))
        return counts

    # -- jobs ---------------------------------------------------------------------------------

    def jobs(self) -> list[StoredJob]:
        """Every stored job, by name."""
        with self.connect() as conn:
            rows = conn.execute(select(jobs).order_by(jobs.c.name)).all()
        return [_stored_job(row) for row in rows]

    def job(self, name: str) -> StoredJob:
        """The stored job called ``name``; raises UnknownJob naming close matches."""
        with self.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.name == name)).one_or_none()
            if row is None:
                raise UnknownJob(name, _job_names(conn))
        return _stored_job(row)

    def save_jobs(self, *, create: Sequence[JobSpec] = (), update: Sequence[JobSpec] = (),
                  remove: Sequence[str] = ()) -> None:
        """Insert, replace and delete jobs in one transaction. Batches are never touched."""
        now = datetime.now(UTC)
        with self.connect(write=True) as conn:
            if create:
                conn.execute(insert(jobs), [{**_job_row(job), "created_at": now,
                                             "updated_at": now} for job in create])
            for job in update:
                conn.execute(_update_job(job.name, {**_job_row(job), "updated_at": now}))
            if remove:
                conn.execute(delete(jobs).where(jobs.c.name.in_(remove)))

    def add_job(self, job: JobSpec) -> None:
        """Store a new job; a job of that name must not exist."""
        with self.connect() as conn:
            existing = conn.execute(select(jobs.c.source).where(jobs.c.name == job.name))
            source = existing.scalar_one_or_none()
        if source is not None:
            raise ConfigError(f'a job named "{job.name}" exists already (from {source}); '
                              "remove it first or choose another name")
        self.save_jobs(create=[job])

    def set_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable a job; returns whether it changed."""
        with self.connect(write=True) as conn:
            changed = conn.execute(
                _update_job(name, {"enabled": enabled, "updated_at": datetime.now(UTC)})
                .where(jobs.c.enabled != enabled)).rowcount
            if not changed and name not in (names := _job_names(conn)):
                raise UnknownJob(name, names)
        return bool(changed)

    def remove_job(self, name: str) -> None:
        """Delete a job; its batches stay."""
        with self.connect(write=True) as conn:
            if not conn.execute(delete(jobs).where(jobs.c.name == name)).rowcount:
                raise UnknownJob(name, _job_names(conn))


def _job_names(conn: Connection) -> list[str]:
    """Every stored job's name, for UnknownJob's suggestions."""
    return list(conn.execute(select(jobs.c.name)).scalars())


def _job_row(job: JobSpec) -> dict[str, Any]:
    definition = job_definition(job)
    enabled = definition.pop("enabled")  # a column of its own
    return {"name": job.name, "definition": definition, "schedule": describe_schedule(job),
            "enabled": enabled, "source": job.source}


def _update_job(name: str, values: dict[str, Any]) -> Any:
    return update(jobs).where(jobs.c.name == name).values(values)


def _stored_job(row: Row[Any]) -> StoredJob:
    job = job_from_definition(row.name, {**row.definition, "enabled": row.enabled},
                              source=row.source)
    return StoredJob(job=job, schedule=row.schedule, created_at=row.created_at,
                     updated_at=row.updated_at)


def default_worker() -> str:
    """``host:pid``, stored with each batch to say who ran it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def open_store(url: str, *, ensure_schema: bool = True) -> Store:
    """Connect to the database at ``url`` (a SQLAlchemy URL).

    With ``ensure_schema`` an empty database gets the schema and one at another
    revision raises :class:`SchemaMismatch`.
    """
    store = Store(_engine(url))
    try:
        if ensure_schema:
            store.ensure_schema()
        else:
            store.revision()  # fail here, not later, when the database cannot be reached
    except BaseException:
        store.close()
        raise
    return store


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database URL {url!r} is not a URL (use a file path, sqlite:///PATH "
                          "or postgresql://USER@HOST/DB)") from None
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            directory = Path(parsed.database).parent
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailable(
                    parsed.render_as_string(), f"cannot create {directory}: {exc.strerror}"
                ) from None
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    elif parsed.get_backend_name() == "postgresql":
        options["pool_pre_ping"] = True  # a daemon outlives server restarts
    try:
        engine = create_engine(parsed, **options)
    except NoSuchModuleError:
        raise ConfigError(f"database URL {parsed.render_as_string()!r}: unknown database type "
                          f"{parsed.drivername!r} (use sqlite or postgresql)") from None
    except ModuleNotFoundError as exc:
        extra = " (pip install 'collector[postgres]')" if "psycopg" in str(exc) else ""
        raise ConfigError(f"database URL {parsed.render_as_string()!r} needs the Python module "
                          f"{exc.name!r}, which is not installed{extra}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling lets DDL commit by itself; take it
    # over (SQLAlchemy's documented pysqlite recipe) so that a migration is one
    # transaction and a second process never sees half a schema.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    # WAL lets readers and one writer work at once; it stays set in the file.
    # Switching a new file to it fails, busy timeout or not, while another
    # connection has the file open: wait for that one to finish.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A writer takes the write lock up front and waits its turn (busy timeout);
    # a read transaction that later tries to write fails at once instead.
    write = connection.get_execution_options().get("write_lock", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _reason(exc: SQLAlchemyError) -> str:
    """The first line of what the database driver said."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip() or type(original).__name__
    return text.splitlines()[0]


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def _head() -> str:
    return _revisions(MIGRATIONS)[0]


def _known_revisions() -> frozenset[str]:
    return _revisions(MIGRATIONS)[1]


@functools.cache
def _revisions(location: str) -> tuple[str, frozenset[str]]:
    """The newest revision and all revisions in ``location``, read once per process."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_alembic_config())
    head = scripts.get_current_head()
    assert head is not None, "collector ships at least one migration"
    return head, frozenset(s.revision for s in scripts.walk_revisions())


def _too_new(url: str, current: str, head: str) -> SchemaMismatch:
    return SchemaMismatch(url, current, head,
                          "a newer collector wrote it; upgrade collector to use this database")
