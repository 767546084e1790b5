"""Daemons' heartbeats, and batches whose worker died.

Each daemon keeps a row in ``workers`` and refreshes ``last_heartbeat``; a
batch left ``running`` by a worker whose heartbeat is older than a timeout
(kill -9, power loss) is marked ``abandoned`` by whichever daemon notices.
Its fire keeps its row, so it is never run again.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Connection, and_, delete, func, select, update

from collector import __version__
from collector.models import batches, workers
from collector.store import rollups


def register(conn: Connection, worker: str, now: datetime) -> int:
    """(Re)start ``worker``'s row; its own batches left running by an earlier life are
    abandoned (a process id can come back, as in a container). Returns how many.

    ``now`` here and below is the database's time as the daemon sees it
    (collector.daemon.firing.Clock): every daemon judges staleness on one clock.
    """
    abandoned = _abandon(conn, batches.c.worker == worker, now)
    conn.execute(delete(workers).where(workers.c.id == worker))
    conn.execute(workers.insert().values(
        id=worker, host=socket.gethostname(), pid=os.getpid(), version=__version__,
        started_at=now, last_heartbeat=now, stopped_at=None))
    return abandoned


def heartbeat(conn: Connection, worker: str, now: datetime) -> None:
    conn.execute(update(workers).where(workers.c.id == worker).values(last_heartbeat=now))


def stopped(conn: Connection, worker: str, now: datetime) -> None:
    conn.execute(update(workers).where(workers.c.id == worker)
                 .values(last_heartbeat=now, stopped_at=now))


def abandon_stale(conn: Connection, timeout: timedelta, now: datetime) -> int:
    """Mark ``abandoned`` the running batches of workers silent for longer than ``timeout``,
    or stopped, or unknown. Returns how many."""
    alive = (select(workers.c.id)
             .where(workers.c.last_heartbeat >= now - timeout, workers.c.stopped_at.is_(None)))
    return _abandon(conn, batches.c.worker.not_in(alive), now)


def abandon_strays(conn: Connection, worker: str, keep: Collection[int], before: datetime,
                   now: datetime) -> int:
    """Mark ``abandoned`` the running batches of ``worker`` claimed before ``before`` that
    it is not running (not in ``keep``): claims that went through after it had given up
    waiting. Its spool holds what those fires collected; replay completes them."""
    condition = and_(batches.c.worker == worker, batches.c.started_at < before)
    if keep:
        condition = and_(condition, batches.c.id.not_in(sorted(keep)))
    return _abandon(conn, condition, now)


def clock_offset(conn: Connection) -> timedelta | None:
    """The database's clock minus this host's (None: SQLite, which has no clock but this
    host's), measured against the middle of the round trip."""
    if conn.dialect.name != "postgresql":
        return None
    sent = datetime.now(UTC)
    server: datetime = conn.execute(select(func.clock_timestamp())).scalar_one()
    received = datetime.now(UTC)
    return server - (sent + (received - sent) / 2)


def _abandon(conn: Connection, condition: ColumnElement[bool], now: datetime) -> int:
    done = conn.execute(update(batches)
                        .where(batches.c.status == "running", condition)
                        .values(status="abandoned", finished_at=now)
                        .returning(batches.c.job_name, batches.c.started_at)).all()
    rollups.add(conn, [(job_name, started_at, None, 1) for job_name, started_at in done])
    return len(done)
