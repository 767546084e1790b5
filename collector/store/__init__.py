"""Keep batch results and jobs in SQL: the :class:`Store` facade over a database.

The package keeps its parts apart: :mod:`~collector.store.engine` (engines,
SQLite's settings, SQLAlchemy's errors translated once),
:mod:`~collector.store.schema` (the Alembic revision),
:mod:`~collector.store.batches` (claims, batches and their rows written),
:mod:`~collector.store.readback` (read back), :mod:`~collector.store.retention`
(pruned), :mod:`~collector.store.partitions` and :mod:`~collector.store.rollups`
(PostgreSQL's days, the reports' totals) and :mod:`~collector.store.jobs` (the jobs
table). Reads return collector's own dataclasses, never SQLAlchemy rows. This package
knows nothing about HTTP: it records a plain :class:`~collector.results.PendingBatch`
(:meth:`Store.record`, the one way a batch that ran is written).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeVar, overload

from sqlalchemy import Connection, Engine, func, select, text

from collector import models
from collector.errors import (
    ConfigError,
    DatabaseUnavailable,
    ForeignDatabase,
    JobExists,
    NoDatabase,
    SchemaMismatch,
    StoreError,
    UnknownBatch,
    UnknownBody,
    UnknownJob,
)
from collector.results import BatchResult, Known, PendingBatch, Trigger, new_batch_key
from collector.settings import worker_id
from collector.spec import BatchSpec, JobSpec
from collector.store import batches as _batches
from collector.store import jobs as _jobs
from collector.store import readback as _readback
from collector.store import retention as _retention
from collector.store import rollups as _rollups
from collector.store import schema
from collector.store import workers as _workers
from collector.store.engine import (
    SQLITE_BUSY_TIMEOUT,
    make_engine,
    sqlite_foreign_keys_off,
    sqlite_give_back,
    sqlite_incremental,
    sqlite_wal,
    translated,
)
from collector.store.jobs import BrokenJob, StoredJob
from collector.store.readback import StoredBatch

__all__ = ["BrokenJob", "DatabaseInfo", "Store", "StoredBatch", "StoredJob",
           "StoredJobs", "open_store"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# How long reading the revision, a claim or a save may take before the database is
# taken for unavailable: past SQLite's busy timeout, so a locked file says "locked".
OPERATION_TIMEOUT = 60.0
# Requests deleted in one transaction by a prune on SQLite (about 0.1 s of write lock).
PRUNE_ROWS = 20_000

# Submodules share names with the tables (collector.store.batches), so the tables are
# reached through collector.models.
_TABLES = (models.jobs, models.batches, models.requests, models.connections, models.checks,
           models.captures, models.bodies, models.workers)


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
class StoredJobs:
    """The ``jobs`` table read back: valid jobs by name, and rows that are not valid jobs."""

    jobs: list[StoredJob]
    broken: list[BrokenJob]


class Store:
    """One database: claim and save batches, keep jobs, read its state, upgrade its schema.

    Open it with :func:`open_store`; close it (or use it as a context manager)
    to dispose of its connections.
    """

    def __init__(self, engine: Engine, *, operation_timeout: float | None = None) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        self.operation_timeout = operation_timeout
        from concurrent.futures import ThreadPoolExecutor

        # Threads that make bounded calls: re-used, and more of them while some are stuck.
        self._calls = ThreadPoolExecutor(max_workers=64, thread_name_prefix="collector-db")

    def _bounded(self, what: str, work: Callable[[], _T], timeout: float | None = None) -> _T:
        """``work()`` within ``timeout`` (else ``operation_timeout``), else
        DatabaseUnavailable.

        A database that stops answering with the connection open (a frozen
        server or proxy) would block a driver call forever: the call runs on a
        thread of the store's own pool, and is given up on when the time is up.
        """
        timeout = self.operation_timeout if timeout is None else timeout
        if timeout is None:
            return work()
        from concurrent.futures import TimeoutError as Late

        future = self._calls.submit(work)
        try:
            return future.result(timeout)
        except Late:
            raise DatabaseUnavailable(
                self.url, f"no answer within {timeout:g}s ({what})") from None

    def _bounded_on(self, what: str, work: Callable[[Connection], _T], *,
                    write: bool = False, timeout: float | None = None) -> _T:
        """``work(conn)`` on a connection of its own (in a transaction when ``write``),
        within the operation timeout (see :meth:`_bounded`).

        A call given up on is cut: its connection's socket is shut (PostgreSQL) or its
        statement interrupted (SQLite), so a claim or a save that timed out does not
        commit later. A connection found dead on first use is tried once more.
        """
        cut = _Cut()

        def run() -> _T:
            with self.connect(write=write) as conn:
                cut.arm(conn)
                try:
                    return work(conn)
                finally:
                    cut.disarm()

        for attempt in (1, 2):
            try:
                return self._bounded(what, run, timeout)
            except DatabaseUnavailable as exc:
                if cut.armed:
                    cut.now()
                if attempt == 1 and _stale_connection(exc) and not cut.fired:
                    continue
                raise
        raise AssertionError("unreachable")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._calls.shutdown(wait=False)
        self.engine.dispose()

    @contextmanager
    def connect(self, *, write: bool = False) -> Iterator[Connection]:
        """A connection (in a transaction when ``write``), SQLAlchemy's errors translated."""
        with translated(self.url), self.engine.connect() as conn:
            if write:
                with conn.execution_options(write_lock=True).begin():
                    yield conn
            else:
                yield conn

    # -- the schema ---------------------------------------------------------------------------

    def revision(self) -> str | None:
        """The schema revision the database is at, or None when it has none."""
        return self._bounded_on("revision", schema.current_revision)

    def upgrade(self, target: str = "head") -> tuple[str | None, str]:
        """Bring the schema to ``target`` (the newest by default); returns (before, after)."""
        from alembic.util.exc import CommandError

        before = self.revision()
        head = schema.head_revision()
        if before is None:
            before = self._refuse_foreign()
        if before is not None and before not in schema.known_revisions():
            raise _too_new(self.url, before, head)
        try:
            self._migrate(lambda conn: schema.run_upgrade(conn, target))
        except CommandError as exc:
            raise DatabaseUnavailable(self.url, f"migration failed: {exc}") from exc
        after = self.revision() or "none"
        if (self.engine.dialect.name == "postgresql" and after in schema.known_revisions()
                and after >= schema.PARTITIONS):
            self.make_partitions()
        if (self.engine.dialect.name == "sqlite" and after in schema.known_revisions()
                and after >= schema.INCREMENTAL_VACUUM):
            # Revision 0014's change, made outside any transaction as SQLite needs: a file
            # from before it is rewritten once (VACUUM) to give pages back from now on.
            with translated(self.url), self.engine.connect() as conn:
                sqlite_incremental(conn, convert=True)
        return before, after

    def make_partitions(self, days: Collection[date] | None = None) -> int:
        """PostgreSQL: the daily partitions of today and the week after it (or of ``days``)
        that are missing, made; how many. SQLite: nothing (0)."""
        if self.engine.dialect.name != "postgresql":
            return 0
        from collector.store import partitions

        return self._bounded_on("partitions", lambda conn: partitions.make_ahead(conn)
                                if days is None else partitions.make(conn, days), write=True)

    def downgrade(self, target: str) -> None:
        """Take the schema down to ``target`` (``base``: no tables). For developers and tests."""
        self._migrate(lambda conn: schema.run_downgrade(conn, target))

    def _migrate(self, run: object) -> None:
        assert callable(run)
        with translated(self.url), self.engine.connect() as conn:
            new = schema.current_revision(conn) is None
            conn.rollback()  # end the read: pragmas and the migration need none open
            if new:
                # A new collector database: pages freed by prune given back (set before
                # the first table, so no VACUUM is needed), and WAL, once, in the file.
                sqlite_incremental(conn, convert=False)
                sqlite_wal(conn)
            with sqlite_foreign_keys_off(conn), conn.execution_options(write_lock=True).begin():
                run(conn)

    def ensure_schema(self, *, create: bool = True) -> None:
        """Create the schema on an empty database (without ``create``: NoDatabase); refuse
        one at another revision, and one with tables collector did not make."""
        head = schema.head_revision()
        current = self.revision()
        if current is None:
            current = self._refuse_foreign()
        if current == head:
            return
        if current is None and not create:
            raise NoDatabase(f"database {self.url} has no collector data yet (running a batch, "
                             "collector jobs apply or collector db upgrade creates it)")
        if current is None:
            log.info("creating collector's schema in %s", self.url)
            try:
                self.upgrade()
            except StoreError:
                # Another process may have created it at the same moment.
                if self.revision() != head:
                    raise
            return
        if current in schema.known_revisions():
            raise SchemaMismatch(self.url, current, head, "run `collector db upgrade`")
        raise _too_new(self.url, current, head)

    def _refuse_foreign(self) -> str | None:
        """For a database without a revision: ForeignDatabase when it holds tables collector
        did not make (another application's), else its revision read again."""
        with self.connect() as conn:
            # An empty alembic_version alone is what a schema taken down to base leaves.
            existing = {t for t in schema.table_names(conn)
                        if not t.startswith("sqlite_") and t != "alembic_version"}
            # Read again after listing the tables: another process creating the
            # schema commits tables and version together, so seeing its tables
            # means seeing its version too.
            current = schema.current_revision(conn)
        if current is None and existing:
            raise ForeignDatabase(self.url, sorted(existing))
        return current

    def info(self) -> DatabaseInfo:
        """Which database, which revision, how many rows (when the schema is there)."""
        revision = self.revision()
        counts: dict[str, int] = {}
        if revision is not None:
            with self.connect() as conn:
                present = schema.table_names(conn)  # an old schema lacks some
                for table in _TABLES:
                    if table.name in present:
                        counts[table.name] = conn.execute(
                            select(func.count()).select_from(table)).scalar_one()
        return DatabaseInfo(url=self.url, dialect=self.engine.dialect.name, revision=revision,
                            head=schema.head_revision(), row_counts=counts)

    # -- batches ------------------------------------------------------------------------------

    @overload
    def claim(self, job_name: str, spec: BatchSpec, *, scheduled_for: datetime,
              worker: str | None = None, exclusive: Literal[True] = True
              ) -> int | None | Literal["busy"]: ...

    @overload
    def claim(self, job_name: str, spec: BatchSpec, *, scheduled_for: datetime,
              worker: str | None = None, exclusive: Literal[False]) -> int | None: ...

    def claim(self, job_name: str, spec: BatchSpec, *, scheduled_for: datetime,
              worker: str | None = None, exclusive: bool = True
              ) -> int | None | Literal["busy"]:
        """Claim a scheduled fire by inserting its batch as ``running``: its id.

        None when another worker claimed this (job, scheduled time) first: the fire
        is run elsewhere, not an error. ``"busy"`` while a batch of the job runs
        anywhere: no job runs two batches at once in the cluster. ``exclusive=False``
        lets the fire's own uniqueness alone decide (for tests of that rule).
        """
        return self._bounded_on("claim", lambda conn: _batches.claim(
            conn, job_name=job_name, spec=spec, scheduled_for=scheduled_for,
            worker=worker or worker_id(), exclusive=exclusive), write=True)

    def claim_fires(self, fires: Sequence[_batches.Fire], *, worker: str, now: datetime,
                    running_here: Collection[int] = (),
                    timeout: float | None = None) -> dict[tuple[str, datetime], _batches.Claimed]:
        """Claim many fires exclusively in one transaction (see :meth:`claim`):
        for each (job, scheduled time), its batch id, None or "busy". ``now`` is stamped
        as their ``started_at`` until they complete. A running batch of ``worker`` that
        is not in ``running_here`` makes no job busy (it ran, and waits in the spool to
        be completed). ``timeout``: how long the claim may take, when not the store's."""
        if not fires:
            return {}
        return self._bounded_on("claim", lambda conn: _batches.claim_many(
            conn, fires, worker=worker, now=now, running_here=running_here),
            write=True, timeout=timeout)

    def record(self, pending: Sequence[PendingBatch]) -> list[int | None]:
        """Record finished batches, their requests and counters, in one transaction: the
        one way a batch that ran reaches the database (run-once's, the daemon's, the
        spool's). For each, its batch id; None when it, or its fire, is stored already
        (a replay that went through before), or its claim is no longer running.
        """
        if not pending:
            return []
        return self._bounded_on("record", lambda conn: _batches.store_many(conn, pending),
                                write=True)

    def save_batch(self, result: BatchResult, *, job_name: str, trigger: Trigger = "manual",
                   scheduled_for: datetime | None = None, worker: str | None = None,
                   batch_key: str | None = None) -> int | None:
        """:meth:`record` for one batch without a claim (a new ``batch_key`` unless given):
        its id, or None when its fire or its key is stored already."""
        (batch_id,) = self.record([PendingBatch(
            result=result, job_name=job_name, trigger=trigger, scheduled_for=scheduled_for,
            worker=worker or worker_id(), batch_key=batch_key or new_batch_key())])
        return batch_id

    def load_batch(self, batch_id: int) -> StoredBatch:
        """A stored batch and what it recorded; UnknownBatch when there is none."""
        with self.connect() as conn:
            found = _readback.load(conn, batch_id)
        if found is None:
            raise UnknownBatch(batch_id)
        return found

    def prune(self, before: datetime, *, dry_run: bool = False, job: str | None = None,
              stop: threading.Event | None = None) -> tuple[int, int]:
        """Delete batches started before ``before`` (only ``job``'s, when given) and their
        requests; returns both counts. Without ``job``, the bodies no remaining request
        refers to go too.

        On SQLite the batches go oldest first, about PRUNE_ROWS requests a transaction (a
        daemon's writes wait for one of them at most, never for the whole prune), and
        the pages freed are then given back to the file system (incremental vacuum);
        ``stop`` set ends it between two transactions. On PostgreSQL two prunes take
        turns (an advisory lock), so daemons applying their retention at once do not
        contend for the same rows; the days wholly before ``before`` are detached in
        its transaction and dropped after it (:func:`_retention.prune_partitioned`).
        """
        if dry_run:
            with self.connect() as conn:
                return _retention.count_old(conn, before, job)
        sqlite = self.engine.dialect.name == "sqlite"
        total = [0, 0]
        while True:
            with self.connect(write=True) as conn:
                if not sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('collector-prune'))"))
                n_batches, n_requests = (
                    _retention.prune(conn, before, job=job, rows=PRUNE_ROWS) if sqlite
                    else _retention.prune_partitioned(conn, before, job=job))
                done = not n_batches or not sqlite
                stopped = not done and stop is not None and stop.is_set()
                if done or stopped:
                    # The reports' rollups follow, up to where the batches are gone.
                    _rollups.after_prune(conn, _retention.pruned_up_to(conn, before, job)
                                         if stopped else before, job)
                if job is None and done:
                    _retention.prune_bodies(conn, before)
            total[0] += n_batches
            total[1] += n_requests
            if done or stopped:
                break
        if sqlite and total[0]:
            with translated(self.url), self.engine.connect() as conn:
                sqlite_give_back(conn)
        elif not sqlite and job is None:
            from collector.store import partitions

            with self.connect(write=True) as conn:  # the space back: the detached days
                partitions.drop_detached(conn)
        return total[0], total[1]

    def known(self, job_name: str, url: str, *, timeout: float | None = None
              ) -> dict[str, Known]:
        """What the job last got for each query (by the query as stored), among its latest
        batches to ``url``: the content's hash and validators (:func:`_readback.known`)."""
        return self._bounded_on("read", lambda conn: _readback.known(conn, job_name, url),
                                timeout=timeout)

    def body(self, sha256: str) -> bytes:
        """A kept body, byte for byte as it was delivered; UnknownBody when none is stored."""
        with self.connect() as conn:
            found = _readback.body(conn, sha256)
        if found is None:
            raise UnknownBody(sha256)
        return found

    # -- workers ------------------------------------------------------------------------------

    def register_worker(self, worker: str, *, now: datetime | None = None) -> int:
        """Start ``worker``'s heartbeat row; returns how many of its earlier batches it
        abandoned (left running by a process that had its id before). ``now`` here and
        below: the database's time as the daemon sees it (default: this host's)."""
        with self.connect(write=True) as conn:
            return _workers.register(conn, worker, now or datetime.now(UTC))

    def heartbeat(self, worker: str, *, now: datetime | None = None) -> None:
        self._bounded_on("heartbeat", lambda conn: _workers.heartbeat(
            conn, worker, now or datetime.now(UTC)), write=True)

    def worker_stopped(self, worker: str, *, now: datetime | None = None) -> None:
        with self.connect(write=True) as conn:
            _workers.stopped(conn, worker, now or datetime.now(UTC))

    def abandon_stale(self, timeout: timedelta, *, now: datetime | None = None) -> int:
        """Mark ``abandoned`` the running batches of workers whose heartbeat is older than
        ``timeout`` (or that stopped, or never registered); returns how many."""
        return self._bounded_on("abandon_stale", lambda conn: _workers.abandon_stale(
            conn, timeout, now or datetime.now(UTC)), write=True)

    def abandon_strays(self, worker: str, *, keep: Collection[int], before: datetime,
                       now: datetime | None = None) -> int:
        """Mark ``abandoned`` ``worker``'s running batches claimed before ``before`` that it
        is not running (``keep``: the ones it is); returns how many."""
        return self._bounded_on("abandon_strays", lambda conn: _workers.abandon_strays(
            conn, worker, keep, before, now or datetime.now(UTC)), write=True)

    def ping(self, *, write: bool = False) -> None:
        """A round trip within the operation timeout, else DatabaseUnavailable; with
        ``write``, in a write transaction (on SQLite it must get the write lock)."""
        self._bounded_on("ping", lambda conn: conn.execute(select(1)).scalar(), write=write)

    def clock_offset(self) -> timedelta | None:
        """The database's clock minus this host's; None when it has none of its own."""
        return self._bounded_on("clock", _workers.clock_offset)

    # -- jobs ---------------------------------------------------------------------------------

    def jobs_marker(self) -> str:
        """A digest of each job's name and last change: one short value to read, and
        different after any change."""
        return self._bounded_on("jobs_marker", _jobs.marker)

    def jobs(self) -> StoredJobs:
        """Every stored job by name; a row that is not a valid job is in ``broken``."""
        with self.connect() as conn:
            good, broken = _jobs.read_all(conn)
        return StoredJobs(jobs=good, broken=broken)

    def job(self, name: str) -> StoredJob:
        """The stored job called ``name``; UnknownJob naming close matches, or ConfigError."""
        with self.connect() as conn:
            found = _jobs.read_one(conn, name)
            if found is None:
                raise UnknownJob(name, _jobs.names(conn))
        if isinstance(found, BrokenJob):
            raise ConfigError(str(found))
        return found

    def save_jobs(self, *, create: Sequence[JobSpec] = (), update: Sequence[JobSpec] = (),
                  remove: Sequence[str] = ()) -> None:
        """Insert, replace and delete jobs in one transaction. Batches are never touched."""
        with self.connect(write=True) as conn:
            _jobs.save(conn, create=create, update_=update, remove=remove)

    def add_job(self, job: JobSpec) -> None:
        """Store a new job; JobExists when a job of that name is stored, whoever wrote it first."""
        with self.connect(write=True) as conn:
            if _jobs.insert_new(conn, job):
                return
            source = _jobs.source_of(conn, job.name)
        raise JobExists(job.name, source)

    def set_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable a job; returns whether it changed."""
        with self.connect(write=True) as conn:
            changed = _jobs.set_enabled(conn, name, enabled)
            if not changed and name not in (names := _jobs.names(conn)):
                raise UnknownJob(name, names)
        return bool(changed)

    def remove_job(self, name: str) -> None:
        """Delete a job; its batches stay."""
        with self.connect(write=True) as conn:
            if not _jobs.delete_one(conn, name):
                raise UnknownJob(name, _jobs.names(conn))


def open_store(url: str, *, ensure_schema: bool = True, create: bool = True,
               busy_timeout: float = SQLITE_BUSY_TIMEOUT,
               operation_timeout: float | None = OPERATION_TIMEOUT) -> Store:
    """Connect to the database at ``url`` (a SQLAlchemy URL).

    With ``ensure_schema`` an empty database gets the schema and one at another
    revision raises :class:`SchemaMismatch`. Without ``create`` (commands that
    only read) nothing is created: a missing SQLite file or an empty database
    is NoDatabase. ``busy_timeout`` is how long a SQLite writer waits for
    another, in seconds; ``operation_timeout`` bounds reading the revision,
    claiming and saving (None: no bound).
    """
    connect_timeout = min(10.0, operation_timeout or 10.0)
    store = Store(make_engine(url, busy_timeout=busy_timeout, connect_timeout=connect_timeout,
                              create=create),
                  operation_timeout=operation_timeout)
    try:
        if ensure_schema:
            store.ensure_schema(create=create)
        else:
            store.revision()  # fail here, not later, when the database cannot be reached
    except BaseException:
        store.close()
        raise
    return store


class _Cut:
    """The connection a bounded call is on, and how to cut it from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._driver: Any = None
        self.fired = False

    @property
    def armed(self) -> bool:
        return self._driver is not None

    def arm(self, conn: Connection) -> None:
        with self._lock:
            self._driver = conn.connection.dbapi_connection

    def disarm(self) -> None:
        with self._lock:
            self._driver = None

    def now(self) -> None:
        """Cut the call short: nothing more reaches the database on that connection."""
        with self._lock:
            driver, self._driver = self._driver, None
            if driver is None:
                return
            self.fired = True
            pgconn = getattr(driver, "pgconn", None)
            if pgconn is None:  # sqlite3
                driver.interrupt()
                return
            try:
                with socket.socket(fileno=os.dup(pgconn.socket)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError as exc:  # closed meanwhile: nothing left to cut
                log.debug("cutting a database connection: %s", exc)


def _stale_connection(exc: DatabaseUnavailable) -> bool:
    """Whether the call failed because its pooled connection had died (a server restart
    since it was last used): nothing reached the database, and a new one may work."""
    from sqlalchemy.exc import DBAPIError

    cause = exc.__cause__
    return isinstance(cause, DBAPIError) and bool(cause.connection_invalidated)


def _too_new(url: str, current: str, head: str) -> SchemaMismatch:
    return SchemaMismatch(url, current, head,
                          "a newer collector wrote it; upgrade collector to use this database")
