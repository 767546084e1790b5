"""Batches and their rows written: claimed, completed, saved (read back in
:mod:`~collector.store.readback`, pruned in :mod:`~collector.store.retention`).

A batch row never holds only part of its request rows: the rows and the final
status are written in one transaction. A scheduled fire is claimed first, by
inserting its row as ``running``; the unique (job_name, scheduled_for) decides
which daemon runs it, and a lost claim is an answer (None), not an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Column, Connection, Insert, bindparam, select, text, update
from sqlalchemy.exc import DBAPIError

from collector.models import batches, bodies, connections, requests
from collector.results import (
    CONNECTION_COLUMNS,
    BatchResult,
    ConnectionResult,
    PendingBatch,
    shortened,
)
from collector.spec import BatchSpec
from collector.store import partitions
from collector.store import rollups as _rollups
from collector.store.engine import conflict_insert


def _insert_batch(conn: Connection) -> Insert:
    """An INSERT into batches that does nothing when the fire is claimed already, or the
    batch (its ``batch_key``) is stored already."""
    statement: Insert = conflict_insert(conn, batches).on_conflict_do_nothing()
    return statement


def claim(conn: Connection, *, job_name: str, spec: BatchSpec, scheduled_for: datetime,
          worker: str, exclusive: bool = False) -> int | None | Literal["busy"]:
    """Insert the fire's batch as ``running``; its id, or None when another worker has it.

    With ``exclusive``, ``"busy"`` (and nothing inserted) while a batch of the job is
    running anywhere: checked and inserted in one transaction, which on PostgreSQL
    first takes a lock on the job's name, so two fires cannot both pass the check.
    """
    if exclusive:
        return claim_many(conn, [(job_name, spec, scheduled_for)], worker=worker,
                          now=datetime.now(UTC))[(job_name, scheduled_for)]
    row = _claim_row(job_name, spec, scheduled_for, worker, datetime.now(UTC))
    inserted = conn.execute(_insert_batch(conn).values(row).returning(batches.c.id))
    batch_id: int | None = inserted.scalar_one_or_none()
    return batch_id


def _claim_row(job_name: str, spec: BatchSpec, scheduled_for: datetime, worker: str,
               now: datetime) -> dict[str, Any]:
    """A claimed fire's ``batches`` row: running, without counters."""
    return {"job_name": job_name, "trigger": "schedule", "scheduled_for": scheduled_for,
            "started_at": now, "status": "running", "url": spec.url, "method": spec.method,
            "pool_size": spec.pool_size, "concurrency": spec.concurrency, "worker": worker}


def complete_many(conn: Connection,
                  finished: Sequence[tuple[int, BatchResult]]) -> dict[int, bool]:
    """Complete many claimed batches in one transaction (see :func:`complete`): by id,
    whether each was written. Three statements however many batches: the daemon's
    writer commits what finished since its last commit this way."""
    ids = [batch_id for batch_id, _ in finished]
    found = select(batches.c.id, batches.c.job_name, batches.c.status, batches.c.started_at,
                   batches.c.finished_at).where(batches.c.id.in_(ids))
    if conn.dialect.name == "postgresql":
        found = found.with_for_update()  # no abandon_stale in between
    rows = {row.id: row for row in conn.execute(found)}
    todo, written = [], {}
    for batch_id, result in finished:
        row = rows.get(batch_id)
        if row is not None and row.status in ("running", "abandoned"):
            todo.append((batch_id, result))
            written[batch_id] = True
        else:  # written already by a try whose commit went through unanswered: the same
            written[batch_id] = row is not None and row.finished_at == result.finished_at
    if todo:
        counters = [result.counters() for _, result in todo]
        conn.execute(update(batches).where(batches.c.id == bindparam("b_id")),
                     [{"b_id": batch_id, **columns, "started_at": result.started_at}
                      for (batch_id, result), columns in zip(todo, counters, strict=True)])
        _insert_requests(conn, todo)
        parts: list[_rollups.Part] = []
        for (batch_id, result), columns in zip(todo, counters, strict=True):
            row = rows[batch_id]
            if row.status == "abandoned":  # counted when it was abandoned: counted again here
                parts.append((row.job_name, row.started_at, None, -1))
            parts.append((row.job_name, result.started_at, columns, 1))
        _rollups.add(conn, parts)
    return written


Fire = tuple[str, BatchSpec, datetime]  # job name, what it sends, scheduled_for
Claimed = int | None | Literal["busy"]


def claim_many(conn: Connection, fires: Sequence[Fire], *, worker: str, now: datetime,
               running_here: Collection[int] = ()) -> dict[tuple[str, datetime], Claimed]:
    """Claim many fires at once, exclusively (see :func:`claim`): for each (job, time), its
    batch id, None (another worker has it) or "busy" (a batch of the job is running).

    At most one fire per job is claimed: of two fires of one job, the later is "busy"
    (the caller sends the latest only). A running batch of ``worker`` that is not in
    ``running_here`` is not running: the worker ran it while the database was away and
    the spool will complete it, so it keeps no later fire from running. Three
    statements however many fires.
    """
    names = sorted({name for name, _, _ in fires})
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:
        # One job's claims one at a time across daemons, locked in one order (no deadlock).
        conn.execute(text("SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtext(n) "
                          "AS h FROM unnest(CAST(:names AS text[])) AS n ORDER BY h) AS locks"),
                     {"names": names})
    found = (conn.exec_driver_sql(_RUNNING_PG, {"names": names}) if postgresql else conn.execute(
        select(batches.c.id, batches.c.job_name, batches.c.scheduled_for, batches.c.worker)
        .where(batches.c.job_name.in_(names), batches.c.status == "running")))
    running = {(row.job_name, row.scheduled_for): row for row in found}
    busy = {name for (name, _), row in running.items()
            if row.worker != worker or row.id in running_here}
    outcome: dict[tuple[str, datetime], Claimed] = {}
    rows = []
    for name, spec, scheduled_for in fires:
        if (this := running.get((name, scheduled_for))) is not None:
            # This very fire runs: elsewhere, or it is this worker's own claim from a
            # try whose commit went through unanswered (then it is this claim).
            outcome[(name, scheduled_for)] = this.id if this.worker == worker else None
            continue
        if name in busy:
            outcome[(name, scheduled_for)] = "busy"
            continue
        busy.add(name)
        outcome[(name, scheduled_for)] = None
        rows.append(_claim_row(name, spec, scheduled_for, worker, now))
    if rows and postgresql:
        inserted = conn.exec_driver_sql(_CLAIM_PG, {
            "now": now, "worker": worker,
            **{key: [row[column] for row in rows] for key, column in _CLAIM_PG_ARRAYS}})
    elif rows:
        inserted = conn.execute(_insert_batch(conn).returning(
            batches.c.id, batches.c.job_name, batches.c.scheduled_for), rows)
    for batch_id, name, scheduled_for in inserted if rows else ():
        outcome[(name, scheduled_for)] = batch_id
    return outcome


# On PostgreSQL a claim's statements take arrays, so their text is the same however many
# fires they claim: psycopg converts and prepares each once. Rendered with a placeholder
# a value, each group of fires was a new statement to parse: a tenth of the daemon's
# time at 500 fires a second (benchmarks/README.md).
_RUNNING_PG = ("SELECT id, job_name, scheduled_for, worker FROM batches "
               "WHERE job_name = ANY(%(names)s::text[]) AND status = 'running'")
_CLAIM_PG = (
    'INSERT INTO batches (job_name, "trigger", scheduled_for, started_at, status, url, method, '
    "pool_size, concurrency, worker) "
    "SELECT n, 'schedule', s, %(now)s, 'running', u, m, p, c, %(worker)s "
    "FROM unnest(%(names)s::text[], %(times)s::timestamptz[], %(urls)s::text[], "
    "%(methods)s::text[], %(pools)s::integer[], %(concurrencies)s::integer[]) "
    "AS f(n, s, u, m, p, c) ON CONFLICT DO NOTHING RETURNING id, job_name, scheduled_for")
_CLAIM_PG_ARRAYS = (("names", "job_name"), ("times", "scheduled_for"), ("urls", "url"),
                    ("methods", "method"), ("pools", "pool_size"),
                    ("concurrencies", "concurrency"))


def store_many(conn: Connection, pending: Sequence[PendingBatch]) -> list[int | None]:
    """Record finished batches in one transaction: for each, its batch id, or None when
    it, or its fire, is stored already, or its claim is no longer running.

    A batch without a claim whose fire turns out to be claimed by its own worker (a
    claim that went through after the worker gave up waiting) completes that claim.
    A handful of statements however many batches.
    """
    written: dict[int, int | None] = {}  # by position in ``pending``
    claims = {i: p.claimed for i, p in enumerate(pending) if p.claimed is not None}
    new = {i: p for i, p in enumerate(pending) if p.claimed is None}
    if new:
        rows = [p.columns() for p in new.values()]
        inserted: dict[str, int] = {key: batch_id for key, batch_id in conn.execute(
            _insert_batch(conn).returning(batches.c.batch_key, batches.c.id), rows)}
        # The first of a key is the one inserted (the spool may hold a batch twice).
        first = {p.batch_key: i for i, p in reversed(new.items())}
        written.update({i: inserted[p.batch_key] if p.batch_key in inserted
                        and first[p.batch_key] == i else None for i, p in new.items()})
        stored = {i: batch_id for i, batch_id in written.items() if batch_id is not None}
        _insert_requests(conn, [(batch_id, new[i].result) for i, batch_id in stored.items()])
        by_position = dict(zip(new, rows, strict=True))
        _rollups.add(conn, [(new[i].job_name, new[i].result.started_at, by_position[i], 1)
                            for i in stored])
        late = {i: p for i, p in new.items()
                if p.batch_key not in inserted and p.scheduled_for is not None}
        if late:
            own = _own_claims(conn, list(late.values()))
            claims.update({i: own[(p.job_name, p.scheduled_for, p.worker)]
                           for i, p in late.items()
                           if (p.job_name, p.scheduled_for, p.worker) in own})
    if claims:
        done = complete_many(conn, [(batch_id, pending[i].result)
                                    for i, batch_id in claims.items()])
        written.update({i: batch_id if done[batch_id] else None
                        for i, batch_id in claims.items()})
    return [written[i] for i in range(len(pending))]


def _own_claims(conn: Connection, fires: Sequence[PendingBatch]
                ) -> dict[tuple[str, datetime | None, str], int]:
    """The unfinished claims among ``fires``' (job, time, worker): their ids. (A claim
    this worker gave up waiting for may have gone through after all: that row is the
    batch, still running.)"""
    wanted = {(f.job_name, f.scheduled_for, f.worker) for f in fires}
    found = conn.execute(select(batches.c.id, batches.c.job_name, batches.c.scheduled_for,
                                batches.c.worker).where(
        batches.c.job_name.in_({f.job_name for f in fires}),
        batches.c.scheduled_for.in_({f.scheduled_for for f in fires}),
        batches.c.status.in_(("running", "abandoned"))))
    return {key: row.id for row in found
            if (key := (row.job_name, row.scheduled_for, row.worker)) in wanted}


# Control characters (C0 and DEL): PostgreSQL cannot store NUL, and the others have
# no business in a header; each is written as \xNN.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CONTENT_TYPE_MAX = 255
ERROR_MAX = 1000


def storable(text: str | None, limit: int | None = None) -> str | None:
    """Server-provided text as every database can hold it: control characters
    escaped, and cut to ``limit`` characters with the cut marked."""
    if text is None:
        return None
    if not text.isprintable():  # printable text has no control characters: most text
        text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if limit is None else shortened(text, limit)


# The request rows go to the driver directly, the way it takes many rows fastest: one
# executemany on SQLite, COPY on PostgreSQL (measured in benchmarks/: through
# SQLAlchemy's per-row parameter processing the same rows took three times as long).
REQUEST_COLUMNS = ("position", "method", "url", "query", "started_at", "status",
                    "content_type", "body_length", "content_length", "body_sha256",
                    "elapsed_ms", "connect_ms", "ttfb_ms", "queued_ms", "reused", "attempts",
                    "error_kind", "error", "failed_attempts", "dns_ms", "tcp_ms", "tls_ms",
                    "http_version", "content_sha256", "etag", "last_modified")
_INSERTED = ("batch_id", *REQUEST_COLUMNS, "connection_id")  # as the tuples built below
_CONNECTION_INSERTED = ("batch_id", *CONNECTION_COLUMNS)
_CHECK_INSERTED = ("batch_id", "request_id", "started_at", "name", "passed", "observed")
_CAPTURE_INSERTED = ("batch_id", "request_id", "started_at", "name", "value", "number")
VALIDATOR_MAX = 1000  # characters of an ETag or Last-Modified kept (a server's text)


def _insert_requests(conn: Connection, batched: Sequence[tuple[int, BatchResult]]) -> None:
    """The request rows of one or many batches, with their connections' and checks' rows:
    a statement for each table, and one to learn the ids of the rows referred to."""
    sqlite = conn.dialect.name == "sqlite"
    ids = _insert_connections(conn, batched, sqlite)
    values = [(
        batch_id, r.position, r.method, storable(r.url), storable(r.query),
        _sqlite_time(r.started_at) if sqlite else r.started_at, r.status,
        storable(r.content_type, CONTENT_TYPE_MAX), r.body_length, r.content_length,
        r.body_sha256, r.elapsed_ms, r.connect_ms, r.ttfb_ms, r.queued_ms, r.reused,
        r.attempts, r.error_kind, storable(r.error, ERROR_MAX),
        json.dumps([{**a.to_dict(), "error": storable(a.error, ERROR_MAX)}
                    for a in r.failed_attempts]) if r.failed_attempts else None,
        r.dns_ms, r.tcp_ms, r.tls_ms, r.http_version, r.content_sha256,
        storable(r.etag, VALIDATOR_MAX), storable(r.last_modified, VALIDATOR_MAX),
        None if r.connection is None else ids.get((batch_id, r.connection)),
    ) for batch_id, result in batched for r in result.requests]
    _insert_rows(conn, "requests", _INSERTED, values, sqlite)
    judged = [(batch_id, r) for batch_id, result in batched for r in result.requests
              if r.checks or r.captures]
    if judged:  # only for jobs with checks or captures: their rows need the requests' ids
        request_ids = _ids(conn, requests.c.position, {b for b, _ in judged},
                           min(r.started_at for _, r in judged))
        at = {id(r): _sqlite_time(r.started_at) if sqlite else r.started_at
              for _, r in judged}
        _insert_rows(conn, "checks", _CHECK_INSERTED, [
            (batch_id, request_ids[(batch_id, r.position)], at[id(r)], c.name, c.passed,
             storable(c.observed))
            for batch_id, r in judged for c in r.checks], sqlite)
        _insert_rows(conn, "captures", _CAPTURE_INSERTED, [
            (batch_id, request_ids[(batch_id, r.position)], at[id(r)], c.name,
             storable(c.value), c.number)
            for batch_id, r in judged for c in r.captures], sqlite)
    keeping = [result for _, result in batched if result.keeps_bodies]
    if keeping:
        _keep_bodies(conn, keeping, sqlite)


def _keep_bodies(conn: Connection, results: Sequence[BatchResult], sqlite: bool) -> None:
    """The bodies these batches kept, each once (compressed when that makes it smaller),
    and the last use of every stored body their requests stand for, so that prune keeps
    what a remaining request refers to (:func:`prune`)."""
    import zstandard

    used: dict[str, datetime] = {}
    given: dict[str, bytes] = {}
    for result in results:
        given.update(result.bodies)
        for r in result.requests:
            for sha256 in {r.body_sha256, r.content_sha256} - {None}:
                assert sha256 is not None
                if used.get(sha256, result.started_at) <= result.started_at:
                    used[sha256] = result.started_at
    known: set[str] = set()
    for chunk in _chunks(sorted(given), 500):
        known.update(conn.scalars(select(bodies.c.sha256).where(bodies.c.sha256.in_(chunk))))
    new = [sha256 for sha256 in given if sha256 not in known]
    if new:
        compressor = zstandard.ZstdCompressor()
        rows = []
        for sha256 in new:
            raw = given[sha256]
            packed = compressor.compress(raw)
            codec, data = ("zstd", packed) if len(packed) < len(raw) else ("identity", raw)
            rows.append({"sha256": sha256, "codec": codec, "raw_length": len(raw),
                         "stored_length": len(data), "data": data,
                         "stored_at": used[sha256], "last_used_at": used[sha256]})
        # Another daemon may store the same body meanwhile: one row, whoever is first.
        conn.execute(conflict_insert(conn, bodies).on_conflict_do_nothing(), rows)
    # A body stored before (by this job or another, or a version "changed" did not send
    # again): its last use moves on. One statement for all; a hash without a row, none.
    touched = [{"b_sha256": sha256, "b_used": when} for sha256, when in used.items()
               if sha256 not in given or sha256 in known]
    if touched:
        conn.execute(update(bodies).where(bodies.c.sha256 == bindparam("b_sha256"),
                                          bodies.c.last_used_at < bindparam("b_used"))
                     .values(last_used_at=bindparam("b_used")), touched)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _insert_connections(conn: Connection, batched: Sequence[tuple[int, BatchResult]],
                        sqlite: bool) -> dict[tuple[int, int], int]:
    """The connections rows of the batches: their ids by (batch id, number)."""
    values = [_connection_row(batch_id, c, sqlite)
              for batch_id, result in batched for c in result.connections]
    if not values:
        return {}
    _insert_rows(conn, "connections", _CONNECTION_INSERTED, values, sqlite)
    return _ids(conn, connections.c.number, {v[0] for v in values},
                min(c.opened_at for _, result in batched for c in result.connections))


def _ids(conn: Connection, key: Column[int], batch_ids: set[int], since: datetime
         ) -> dict[tuple[int, int], int]:
    """The ids of ``key``'s table's rows of these batches, by (batch id, ``key``): rows
    written by executemany or COPY, which give no ids back. ``since``: the earliest of
    their times (on PostgreSQL only the partitions from it on are looked into)."""
    table = key.table
    found = conn.execute(select(table.c.id, table.c.batch_id, key)
                         .where(table.c.batch_id.in_(batch_ids),
                                partitions.time_of(table) >= since))
    return {(batch_id, number): id_ for id_, batch_id, number in found}


# What a server chose (its certificate's names, its cipher) is text from the server: as
# every database holds it, and within its column.
_CONNECTION_TEXT = {"remote_address": 64, "tls_version": 20, "cipher": 100, "alpn": 50,
                    "cert_subject": 2000, "cert_issuer": 2000}


def _connection_row(batch_id: int, c: ConnectionResult, sqlite: bool) -> tuple[Any, ...]:
    row: list[Any] = [batch_id]
    for name in CONNECTION_COLUMNS:
        value = getattr(c, name)
        if isinstance(value, datetime) and sqlite:
            value = _sqlite_time(value)
        elif isinstance(value, str) and name in _CONNECTION_TEXT:
            value = storable(value, _CONNECTION_TEXT[name])
        row.append(value)
    return tuple(row)


def _insert_rows(conn: Connection, table: str, columns: tuple[str, ...],
                 values: list[tuple[Any, ...]], sqlite: bool) -> None:
    if not values:
        return
    names = ", ".join(columns)
    if sqlite:
        conn.exec_driver_sql(f"INSERT INTO {table} ({names}) "
                             f"VALUES ({', '.join('?' * len(columns))})", values)
        return
    statement = f"COPY {table} ({names}) FROM STDIN"
    driver: Any = conn.connection.dbapi_connection
    dbapi_error = conn.dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in values:
                copy.write_row(row)
    except dbapi_error as exc:
        # Raised as SQLAlchemy raises what it runs, so the store tells an outage from a
        # rejected value from a bug as for every other statement (the pool pings a
        # connection before re-using it, so a dead one is not handed out again).
        raise DBAPIError.instance(
            statement, None, exc, dbapi_error, dialect=conn.dialect,
            connection_invalidated=conn.dialect.is_disconnect(exc, driver, None)) from exc


def _sqlite_time(value: datetime) -> str:
    """A time as collector's UTCDateTime stores it in SQLite: UTC wall time, microseconds."""
    if value.tzinfo is UTC:  # as the runner stamps them: the text less its "+00:00"
        return value.isoformat(" ", "microseconds")[:26]
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
