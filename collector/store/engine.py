"""Engines for SQLite and PostgreSQL, and SQLAlchemy's errors translated once, here.

SQLite (WAL, a busy timeout, foreign keys on, ``BEGIN IMMEDIATE`` for writes)
is the embedded default; PostgreSQL is reached through psycopg 3.

Errors (:func:`translated`): a database that cannot be reached, is locked past
its busy timeout or times out is :class:`~collector.errors.DatabaseUnavailable`
(transient: the spool will catch it); a value the database refuses (a type it
cannot hold, a constraint it breaks: a spooled file edited by hand) is
:class:`~collector.errors.DataRejected`; anything else is a bug and is not
translated.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import URL, Connection, Engine, Table, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from collector.errors import ConfigError, DatabaseUnavailable, DataRejected, NoDatabase
from collector.quantities import show
from collector.settings import without_password

SQLITE_BUSY_TIMEOUT = 30.0

# SQLite's result codes that mean the file cannot be used now, rather than a bug in a
# statement (SQLITE_ERROR: no such table, a syntax error).
_SQLITE_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR",
                       "SQLITE_FULL", "SQLITE_READONLY", "SQLITE_PROTOCOL", "SQLITE_PERM",
                       "SQLITE_AUTH")

log = logging.getLogger(__name__)


def make_engine(url: str, *, busy_timeout: float = SQLITE_BUSY_TIMEOUT,
                connect_timeout: float = 10.0, create: bool = True) -> Engine:
    """An engine for a SQLAlchemy URL; ConfigError for a URL or driver that cannot work.

    ``busy_timeout`` is how long a SQLite writer waits for another one, in
    seconds; ``connect_timeout`` how long connecting to PostgreSQL may take.
    PostgreSQL connections also get TCP keepalives and a user timeout, so a
    server that went away is noticed, and a statement timeout. Without
    ``create``, a SQLite file that does not exist is NoDatabase, and nothing
    is created.
    """
    parsed = parse_database_url(url)
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = (parsed.database or "").removeprefix("file:")
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise ConfigError(f"database URL {without_password(url)!r} is an in-memory "
                              "database, which keeps nothing once the command ends: give a "
                              "file path")
        # sqlite:///file:PATH?mode=ro&uri=true is SQLite's own URI form.
        path = Path(database)
        try:
            exists = path.exists()
        except OSError as exc:  # a name too long, a path through a file
            name = str(path) if len(str(path)) <= 120 else str(path)[:120] + "..."
            raise ConfigError(f"database {show(name)}: {exc.strerror}") from None
        if not create and not exists:
            raise NoDatabase(f"no database at {path} (running a batch, collector jobs "
                             "apply or collector db upgrade creates one)")
        directory = path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailable(
                parsed.render_as_string(), f"cannot create {directory}: {exc.strerror}"
            ) from None
        options["connect_args"] = {"timeout": busy_timeout}
    elif parsed.get_backend_name() == "postgresql":
        # No ping before every use (a round trip each): keepalives notice a server that
        # went away, and the store tries a call again once on a connection found dead.
        options["connect_args"] = {
            "connect_timeout": max(1, round(connect_timeout)),
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
            "keepalives_count": 3, "tcp_user_timeout": 30_000,
            "options": "-c statement_timeout=60000",
        }
    try:
        engine = create_engine(parsed, **options)
    except NoSuchModuleError:
        raise ConfigError(f"database URL {parsed.render_as_string()!r}: unknown database type "
                          f"{parsed.drivername!r} (use sqlite or postgresql)") from None
    except ModuleNotFoundError as exc:
        extra = " (pip install 'collector[postgres]')" if "psycopg" in str(exc) else ""
        raise ConfigError(f"database URL {parsed.render_as_string()!r} needs the Python module "
                          f"{exc.name!r}, which is not installed{extra}") from None
    if engine.dialect.name == "postgresql":
        from collector.models import for_postgresql

        for_postgresql()
    if engine.dialect.name == "sqlite":
        busy_ms = int(busy_timeout * 1000)
        event.listen(engine, "connect", lambda conn, _record: _sqlite_connect(conn, busy_ms))
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def parse_database_url(url: str) -> URL:
    """A database URL parsed by SQLAlchemy; ConfigError, never showing a password, if it
    cannot be.

    A password with a raw ``@`` in it (``postgresql://me:p@ss@host/db``) is
    taken as people mean it, up to the last ``@``, as the standard library
    splits an authority; SQLAlchemy would take ``ss@host`` for the host.
    """
    parsed = _parsed(url)
    if parsed is None:
        raise ConfigError(f"database URL {shown_database_url(url)!r} is not a valid URL "
                          "(use a file path, sqlite:///PATH or postgresql://USER@HOST/DB)")
    return parsed


def shown_database_url(url: str) -> str:
    """A database URL as a message may show it: the password as ``***``, whatever it holds."""
    parsed = _parsed(url)
    if parsed is None:
        return without_password(url)
    return parsed.render_as_string(hide_password=True)


def _parsed(url: str) -> URL | None:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # A password with a '/', '?' or ':' that was not percent-encoded: take the user
        # information up to the last '@' and encode it, as people meant it.
        scheme, sep, rest = url.partition("://")
        if not sep or "@" not in rest:
            return None
        userinfo, _, host = rest.rpartition("@")
        user, colon, password = userinfo.partition(":")
        encoded = quote(user, safe="") + (":" + quote(password, safe="") if colon else "")
        try:
            return make_url(f"{scheme}://{encoded}@{host}")
        except (ArgumentError, ValueError):
            return None
    if parsed.host and "@" in parsed.host:
        spilled, _, host = parsed.host.rpartition("@")
        if parsed.password is not None:
            parsed = parsed.set(password=f"{parsed.password}@{spilled}", host=host)
        else:
            parsed = parsed.set(username=f"{parsed.username}@{spilled}", host=host)
    return parsed


def _sqlite_connect(dbapi_connection: Any, busy_ms: int) -> None:
    # The driver's own transaction handling lets DDL commit by itself; take it
    # over (SQLAlchemy's documented pysqlite recipe) so that a migration is one
    # transaction and a second process never sees half a schema.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
    cursor.close()


def sqlite_wal(conn: Connection) -> None:
    """Switch a SQLite file collector creates to WAL, outside any transaction.

    WAL lets readers and one writer work at once and stays set in the file, so
    it is set once, when the schema is created: a file collector did not make,
    or may only read, is left as it is. Switching fails, busy timeout or not,
    while another connection has the file open: wait for that one to finish.
    """
    if conn.dialect.name != "sqlite":
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    while True:
        try:
            raw.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def sqlite_incremental(conn: Connection, *, convert: bool) -> None:
    """Turn on SQLite's incremental auto-vacuum, outside any transaction, so the pages
    a prune frees can be given back (:func:`sqlite_give_back`).

    Before the file's first table the pragma alone does it; ``convert`` rewrites a file
    that has tables (VACUUM: as long as copying the file, and as much free disk), once.
    """
    if conn.dialect.name != "sqlite":
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    if raw.execute("PRAGMA auto_vacuum").fetchone()[0] == _INCREMENTAL:
        return
    raw.execute("PRAGMA auto_vacuum = INCREMENTAL")
    if convert:
        log.info("rewriting %s once, so that prune gives space back (VACUUM)",
                 conn.engine.url.database)
        raw.execute("VACUUM")


_INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
GIVE_BACK_PAGES = 2000  # pages (of 4 KiB) given back a step: about 0.03 s of write lock


def sqlite_give_back(conn: Connection) -> None:
    """Give a SQLite file's free pages back to the file system, outside any transaction:
    the file shrinks by what a prune deleted (a file without incremental auto-vacuum,
    not upgraded to 0014 yet, is left as it is)."""
    if conn.dialect.name != "sqlite":
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    # A few thousand pages at a time, each its own short write (a daemon's writes wait
    # for one step at most); executescript steps the pragma to its end, where one
    # execute() frees a single page.
    if raw.execute("PRAGMA auto_vacuum").fetchone()[0] != _INCREMENTAL:
        return  # a file from before 0014 that `db upgrade` has not rewritten yet
    try:
        left = raw.execute("PRAGMA freelist_count").fetchone()[0]
        while left:
            raw.executescript(f"PRAGMA incremental_vacuum({GIVE_BACK_PAGES});")
            now = raw.execute("PRAGMA freelist_count").fetchone()[0]
            if now >= left:
                break
            left = now
        # The WAL holds the moved pages until a checkpoint writes them back; busy readers
        # only delay it (SQLite checkpoints by itself later).
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.OperationalError as exc:  # locked past the busy timeout: what was deleted
        # is gone either way, and the next prune gives back what this one could not
        log.warning("the space prune freed is not all given back yet: %s", exc)


def _sqlite_begin(connection: Connection) -> None:
    # A writer takes the write lock up front and waits its turn (busy timeout);
    # a read transaction that later tries to write fails at once instead.
    write = connection.get_execution_options().get("write_lock", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def sqlite_foreign_keys_off(conn: Connection) -> Iterator[None]:
    """Foreign keys off on a SQLite connection, outside any transaction, for a migration.

    Rebuilding a table (Alembic's batch mode) drops it; with foreign keys on,
    SQLite deletes the rows that point at it first (ON DELETE CASCADE), so the
    pragma must be off while the migration runs, and it can only change
    outside a transaction.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys = ON")


def is_unavailable(exc: SQLAlchemyError) -> bool:
    """Whether the error says the database cannot be used now (transient), not a bug."""
    if isinstance(exc, PoolTimeout | DisconnectionError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    name = _sqlite_error(exc)
    if name is None:  # PostgreSQL: connection failures, timeouts, lock and shutdown errors
        return True
    return name.startswith(_SQLITE_UNAVAILABLE)


def _sqlite_error(exc: SQLAlchemyError) -> str | None:
    """SQLite's result code name (``SQLITE_BUSY``) of the error, if SQLite raised it."""
    name = getattr(getattr(exc, "orig", None), "sqlite_errorname", None)
    return None if name is None else str(name)


@contextmanager
def translated(url: str) -> Iterator[None]:
    """SQLAlchemy's errors in the block as collector's (see the module's docstring)."""
    try:
        yield
    except SQLAlchemyError as exc:
        if is_unavailable(exc):
            raise DatabaseUnavailable(url, reason(exc)) from exc
        if isinstance(exc, DataError | IntegrityError):
            raise DataRejected(url, reason(exc)) from exc
        if _sqlite_error(exc) in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
            raise ConfigError(f"database {url}: {reason(exc)}: is it the right file?") from exc
        if isinstance(exc, DBAPIError) and exc.statement is None:
            # Refused before any statement: the URL asked for what the driver rejects
            # (an unknown connection parameter); the server was never the problem.
            raise ConfigError(f"database {url}: cannot connect: {reason(exc)}") from exc
        raise


def reason(exc: BaseException) -> str:
    """The first line of what the database driver said."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip() or type(original).__name__
    return text.splitlines()[0]


def conflict_insert(conn: Connection, table: Table) -> Any:
    """``INSERT`` into ``table`` with the connection's dialect's ``ON CONFLICT`` clauses.

    SQLite and PostgreSQL both have them; the dialect's module is imported here,
    when a statement needs it, not when the store is (PostgreSQL's costs about
    40 ms of start-up, which no SQLite command needs).
    """
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)
