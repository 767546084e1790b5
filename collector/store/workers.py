"""Daemons' heartbeats, and batches whose worker died.

Each daemon keeps a row in ``workers`` and refreshes ``last_heartbeat``; a
batch left ``running`` by a worker whose heartbeat is older than a timeout
(kill -9, power loss) is marked ``abandoned`` by whichever daemon notices.
Its fire keeps its row, so it is never run again.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Connection, delete, select, update

from collector import __version__
from collector.models import batches, workers


def register(conn: Connection, worker: str) -> int:
    """(Re)start ``worker``'s row; its own batches left running by an earlier life are
    abandoned (a process id can come back, as in a container). Returns how many."""
    now = datetime.now(UTC)
    abandoned = _abandon(conn, batches.c.worker == worker, now)
    conn.execute(delete(workers).where(workers.c.id == worker))
    conn.execute(workers.insert().values(
        id=worker, host=socket.gethostname(), pid=os.getpid(), version=__version__,
        started_at=now, last_heartbeat=now, stopped_at=None))
    return abandoned


def heartbeat(conn: Connection, worker: str) -> None:
    conn.execute(update(workers).where(workers.c.id == worker)
                 .values(last_heartbeat=datetime.now(UTC)))


def stopped(conn: Connection, worker: str) -> None:
    now = datetime.now(UTC)
    conn.execute(update(workers).where(workers.c.id == worker)
                 .values(last_heartbeat=now, stopped_at=now))


def abandon_stale(conn: Connection, timeout: timedelta) -> int:
    """Mark ``abandoned`` the running batches of workers silent for longer than ``timeout``,
    or stopped, or unknown. Returns how many."""
    now = datetime.now(UTC)
    alive = (select(workers.c.id)
             .where(workers.c.last_heartbeat >= now - timeout, workers.c.stopped_at.is_(None)))
    return _abandon(conn, batches.c.worker.not_in(alive), now)


def _abandon(conn: Connection, condition: ColumnElement[bool], now: datetime) -> int:
    done = conn.execute(update(batches)
                        .where(batches.c.status == "running", condition)
                        .values(status="abandoned", finished_at=now))
    return done.rowcount
