"""PostgreSQL: the per-request tables in daily partitions, made ahead, dropped by prune.

``requests``, ``checks`` and ``captures`` are partitioned by their request's
``started_at``, ``connections`` by ``opened_at``: one partition per UTC day
(``requests_p20261202`` holds 2026-12-02), and a default partition
(``requests_default``) for a row of a day that has none yet (a batch replayed
from an old spool, a clock far off), so no row is ever refused. Partitions are
made ahead: by ``collector db upgrade`` and by the daemon once a day (any one
daemon of a cluster: an advisory lock), for today and the :data:`AHEAD` days
after it. A day made while the default partition holds some of its rows takes
them over.

Every row of a partition wholly before a prune's bound belongs to a batch that
started before it (a request starts after its batch), so prune drops such
partitions whole: no row deleted, no dead tuple, no vacuum.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, text

# Each partitioned table and the time it is partitioned by.
TABLES = {"requests": "started_at", "connections": "opened_at", "checks": "started_at",
          "captures": "started_at"}
AHEAD = 7  # days made ahead of today
LOCK = "SELECT pg_advisory_xact_lock(hashtext('collector-partitions'))"
_DAY = re.compile(r"_p(\d{8})$")


def name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def _start(day: date) -> str:
    return datetime.combine(day, time(), UTC).isoformat()


def days(conn: Connection, table: str) -> dict[date, str]:
    """The daily partitions ``table`` has: their names by day."""
    found = conn.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :table"), {"table": table})
    held = {}
    for (relname,) in found:
        if (match := _DAY.search(relname)) is not None:
            held[datetime.strptime(match.group(1), "%Y%m%d").date()] = relname
    return held


def make(conn: Connection, wanted: Iterable[date]) -> int:
    """Make each table's partitions for the ``wanted`` days it lacks (rows of those days
    in its default partition moved into them); how many were made."""
    conn.execute(text(LOCK))
    wanted = sorted(set(wanted))
    made = 0
    for table, column in TABLES.items():
        held = days(conn, table)
        for day in wanted:
            if day in held:
                continue
            low, high = _start(day), _start(day + timedelta(days=1))
            partition, default = name(table, day), f"{table}_default"
            bounds = f"FOR VALUES FROM ('{low}') TO ('{high}')"
            within = f"{column} >= '{low}' AND {column} < '{high}'"
            stray = conn.execute(text(f"SELECT 1 FROM {default} WHERE {within} LIMIT 1")).first()
            if stray is None:
                conn.execute(text(f"CREATE TABLE {partition} PARTITION OF {table} {bounds}"))
            else:  # the default partition may not keep rows of a day that has its own
                conn.execute(text(f"CREATE TABLE {partition} (LIKE {table} INCLUDING DEFAULTS)"))
                conn.execute(text(f"WITH moved AS (DELETE FROM {default} WHERE {within} "
                                  f"RETURNING *) INSERT INTO {partition} SELECT * FROM moved"))
                conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {partition} {bounds}"))
            made += 1
    return made


def make_ahead(conn: Connection, today: date | None = None) -> int:
    """Today's partitions and those of the :data:`AHEAD` days after it."""
    today = today or datetime.now(UTC).date()
    return make(conn, (today + timedelta(days=n) for n in range(AHEAD + 1)))


def drop_before(conn: Connection, before: datetime) -> list[str]:
    """Drop the partitions of the days wholly before ``before``: their names."""
    conn.execute(text(LOCK))
    last = before.astimezone(UTC).date()  # the day ``before`` falls in is kept
    gone = []
    for table in TABLES:
        for day, partition in sorted(days(conn, table).items()):
            if day < last:
                conn.execute(text(f"DROP TABLE {partition}"))
                gone.append(partition)
    return gone
