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
started before it (a request starts after its batch), so prune detaches such
partitions whole in its transaction (no row deleted, no dead tuple, no vacuum)
and drops them once it has committed: removing the files (a month of them took
half a second here) then holds no lock the daemons wait for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, text

# Each partitioned table and the time it is partitioned by.
TABLES = {"requests": "started_at", "connections": "opened_at", "checks": "started_at",
          "captures": "started_at"}
AHEAD = 7  # days made ahead of today
LOCK = "SELECT pg_advisory_xact_lock(hashtext('collector-partitions'))"
_DAY = re.compile(r"_p(\d{8})$")


def time_of(table: Any) -> Any:
    """The time column a per-request table (a SQLAlchemy ``Table``) is partitioned by."""
    return table.c[TABLES[table.name]]


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
    drop_detached(conn)  # a day pruned, then made again (an old spool replayed)
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


def detach_before(conn: Connection, before: datetime) -> list[str]:
    """Detach the partitions of the days wholly before ``before`` (the day ``before``
    falls in is kept): their names. Their rows are out of the tables at once; the
    space comes back when :func:`drop_detached` drops them, after the transaction,
    so that the files' removal does not hold the tables' locks."""
    conn.execute(text(LOCK))
    last = before.astimezone(UTC).date()
    gone = []
    for table in TABLES:
        for day, partition in sorted(days(conn, table).items()):
            if day < last:
                conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {partition}"))
                gone.append(partition)
    return gone


def drop_detached(conn: Connection) -> list[str]:
    """Drop the tables named as daily partitions that are no longer attached: those
    :func:`detach_before` detached, and any a prune stopped before dropping."""
    conn.execute(text(LOCK))
    pattern = f"^({'|'.join(TABLES)})_p[0-9]{{8}}$"
    found = [row[0] for row in conn.execute(text(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT c.relispartition "
        "AND c.relname ~ :pattern ORDER BY c.relname"), {"pattern": pattern})]
    if found:  # one statement: one look at the catalogs, not one a table
        conn.execute(text(f"DROP TABLE {', '.join(found)}"))
    return found
