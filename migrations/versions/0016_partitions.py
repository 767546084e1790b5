"""checks, captures: started_at (the request's); PostgreSQL: requests, connections, checks
and captures in daily partitions

Both databases: checks and captures get their request's ``started_at`` (filled in
from requests), the time PostgreSQL partitions them by.

PostgreSQL: each of the four tables is made again as a table partitioned by range
of its time (requests, checks, captures: started_at; connections: opened_at), with
a partition for each UTC day that has rows, for today and the week after it, and a
default one (collector.store.partitions); the rows are copied over, then the old
table dropped. A partitioned table's unique keys must hold its time, so the primary
key is (id, time) and the unique keys gain the time. The foreign keys to batches
become a trigger: deleting batches still deletes their rows, but once a statement
and only in the partitions of the batches' time (a foreign key looked into every
partition for each batch: a month's prune took minutes). It copies every row once,
in one transaction: about the time of a dump and restore, the daemons stopped.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTCDateTime = sa.DateTime(timezone=True)
COMMENT = "the request's started_at (PostgreSQL partitions by it)"
# table: (its time, its unique keys without the time, its plain indexes)
TABLES = {
    "requests": ("started_at", {"uq_requests_batch_id_position": "batch_id, \"position\""},
                 {"ix_requests_started_at": "started_at"}),
    "connections": ("opened_at", {"uq_connections_batch_id_number": "batch_id, number"}, {}),
    "checks": ("started_at", {"uq_checks_request_id_name": "request_id, name"},
               {"ix_checks_batch_id": "batch_id"}),
    "captures": ("started_at", {"uq_captures_request_id_name": "request_id, name"},
                 {"ix_captures_batch_id": "batch_id"}),
}
AHEAD = 7


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in ("checks", "captures"):
        op.add_column(table, sa.Column("started_at", UTCDateTime, comment=COMMENT))
        op.execute(f"UPDATE {table} SET started_at = COALESCE("
                   f"(SELECT r.started_at FROM requests r WHERE r.id = {table}.request_id), "
                   f"(SELECT b.started_at FROM batches b WHERE b.id = {table}.batch_id))")
        if postgresql:
            op.alter_column(table, "started_at", nullable=False)
        else:
            with op.batch_alter_table(table) as batch:
                batch.alter_column("started_at", existing_type=UTCDateTime, nullable=False,
                                   existing_comment=COMMENT)
    if postgresql:
        for table, (column, uniques, indexes) in TABLES.items():
            _partition(table, column, uniques, indexes)
        op.execute(CASCADE)
        op.execute("CREATE TRIGGER batches_deleted AFTER DELETE ON batches "
                   "REFERENCING OLD TABLE AS gone FOR EACH STATEMENT "
                   "EXECUTE FUNCTION collector_batches_deleted()")


# What the foreign keys' ON DELETE CASCADE did, once a statement, and only in the
# partitions the deleted batches' rows can be in: from the first start to the last end
# (a batch's rows are written with its end; one without an end has none).
CASCADE = """
CREATE FUNCTION collector_batches_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    low timestamptz;
    high timestamptz;
BEGIN
    SELECT min(started_at), max(finished_at) INTO low, high FROM gone;
    IF high IS NULL THEN
        RETURN NULL;
    END IF;
    DELETE FROM requests WHERE started_at BETWEEN low AND high
        AND batch_id IN (SELECT id FROM gone);
    DELETE FROM checks WHERE started_at BETWEEN low AND high
        AND batch_id IN (SELECT id FROM gone);
    DELETE FROM captures WHERE started_at BETWEEN low AND high
        AND batch_id IN (SELECT id FROM gone);
    DELETE FROM connections WHERE opened_at BETWEEN low AND high
        AND batch_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$$
"""


def _partition(table: str, column: str, uniques: dict[str, str],
               indexes: dict[str, str]) -> None:
    bind = op.get_bind()
    day_of = f"({column} AT TIME ZONE 'UTC')::date"
    found = {row[0] for row in bind.exec_driver_sql(f"SELECT DISTINCT {day_of} FROM {table}")}
    today = datetime.now(UTC).date()
    wanted = sorted(found | {today + timedelta(days=n) for n in range(AHEAD + 1)})
    op.execute(f"ALTER TABLE {table} RENAME TO {table}_unpartitioned")
    op.execute(f"CREATE TABLE {table} (LIKE {table}_unpartitioned INCLUDING DEFAULTS "
               f"INCLUDING COMMENTS) PARTITION BY RANGE ({column})")
    op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    for day in wanted:
        low = datetime(day.year, day.month, day.day, tzinfo=UTC)
        op.execute(f"CREATE TABLE {table}_p{day:%Y%m%d} PARTITION OF {table} FOR VALUES "
                   f"FROM ('{low.isoformat()}') TO ('{(low + timedelta(days=1)).isoformat()}')")
    op.execute(f"INSERT INTO {table} SELECT * FROM {table}_unpartitioned")
    op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id")
    op.execute(f"DROP TABLE {table}_unpartitioned")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY (id, {column})")
    for name, columns in uniques.items():
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({columns}, {column})")
    for name, columns in indexes.items():
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("DROP TRIGGER batches_deleted ON batches")
        op.execute("DROP FUNCTION collector_batches_deleted()")
        for table, (_, uniques, indexes) in TABLES.items():
            op.execute(f"CREATE TABLE {table}_plain (LIKE {table} INCLUDING DEFAULTS "
                       "INCLUDING COMMENTS)")
            op.execute(f"INSERT INTO {table}_plain SELECT * FROM {table}")
            op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}_plain.id")
            op.execute(f"DROP TABLE {table}")
            op.execute(f"ALTER TABLE {table}_plain RENAME TO {table}")
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY (id)")
            for name, columns in uniques.items():
                op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({columns})")
            for name, columns in indexes.items():
                op.execute(f"CREATE INDEX {name} ON {table} ({columns})")
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_batch_id_batches "
                       "FOREIGN KEY (batch_id) REFERENCES batches (id) ON DELETE CASCADE")
    for table in ("checks", "captures"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("started_at")
