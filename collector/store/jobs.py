"""The ``jobs`` table: stored job definitions, read back without looking at this machine.

A row whose definition is not a valid job (edited by hand, or written by
another version) is returned as a :class:`BrokenJob` naming the problem, and
never stops the other jobs from being read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update

from collector.definition import job_definition, job_from_definition
from collector.errors import InvalidDefinition
from collector.models import jobs
from collector.schedule import describe_schedule
from collector.spec import JobSpec
from collector.store.engine import conflict_insert


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


@dataclass(frozen=True, kw_only=True)
class BrokenJob:
    """A row of the ``jobs`` table whose definition is not a valid job."""

    name: str
    source: str
    problem: str

    def __str__(self) -> str:
        return (f'stored job "{self.name}": {self.problem} (fix it with collector jobs apply '
                "or remove it)")


def read_all(conn: Connection) -> tuple[list[StoredJob], list[BrokenJob]]:
    """Every stored job by name, and the rows that are not valid jobs."""
    good: list[StoredJob] = []
    broken: list[BrokenJob] = []
    for row in conn.execute(select(jobs).order_by(jobs.c.name)):
        try:
            good.append(_stored_job(row))
        except InvalidDefinition as exc:
            broken.append(BrokenJob(name=row.name, source=row.source, problem=exc.problem))
    return good, broken


def read_one(conn: Connection, name: str) -> StoredJob | BrokenJob | None:
    row = conn.execute(select(jobs).where(jobs.c.name == name)).one_or_none()
    if row is None:
        return None
    try:
        return _stored_job(row)
    except InvalidDefinition as exc:
        return BrokenJob(name=row.name, source=row.source, problem=exc.problem)


def marker(conn: Connection) -> str:
    """What every job's (name, updated_at) add up to: any add, change, enable, disable or
    remove changes it. Made by the database: a daemon reads it every 2 s, and at 10,000
    jobs reading the rows themselves was 6% of its CPU."""
    statement = _MARKER_PG if conn.dialect.name == "postgresql" else _MARKER_SQLITE
    count, digest = conn.exec_driver_sql(statement).one()
    return f"{count}:{digest or ''}"


_MARKER_PG = ("SELECT count(*), md5(string_agg(name || '@' || updated_at::text, ',' "
              "ORDER BY name)) FROM jobs")
_MARKER_SQLITE = ("SELECT count(*), group_concat(name || '@' || updated_at, ',') "
                  "FROM (SELECT name, updated_at FROM jobs ORDER BY name)")


def names(conn: Connection) -> list[str]:
    """Every stored job's name, for suggestions."""
    return list(conn.execute(select(jobs.c.name).order_by(jobs.c.name)).scalars())


def source_of(conn: Connection, name: str) -> str | None:
    found: str | None = conn.execute(
        select(jobs.c.source).where(jobs.c.name == name)).scalar_one_or_none()
    return found


def insert_new(conn: Connection, job: JobSpec) -> bool:
    """Insert a job unless one of that name exists; whether it was inserted."""
    now = datetime.now(UTC)
    row = {**_job_row(job), "created_at": now, "updated_at": now}
    statement = (conflict_insert(conn, jobs).values(row)
                 .on_conflict_do_nothing(index_elements=["name"]).returning(jobs.c.id))
    return conn.execute(statement).scalar_one_or_none() is not None


def save(conn: Connection, *, create: Sequence[JobSpec], update_: Sequence[JobSpec],
         remove: Sequence[str]) -> None:
    """Create (or, when another process created it meanwhile, replace), update, remove.

    Daemons on several hosts apply the same job files as they start: a job
    created by one a moment earlier is replaced, never a unique violation.
    """
    now = datetime.now(UTC)
    for job in create:
        row = _job_row(job)
        insert = conflict_insert(conn, jobs).values({**row, "created_at": now, "updated_at": now})
        conn.execute(insert.on_conflict_do_update(index_elements=["name"],
                                                  set_={**row, "updated_at": now}))
    for job in update_:
        conn.execute(_update(job.name, {**_job_row(job), "updated_at": now}))
    if remove:
        conn.execute(delete(jobs).where(jobs.c.name.in_(remove)))


def set_enabled(conn: Connection, name: str, enabled: bool) -> int:
    """Rows changed: 1, or 0 when the job is missing or already so."""
    return conn.execute(_update(name, {"enabled": enabled, "updated_at": datetime.now(UTC)})
                        .where(jobs.c.enabled != enabled)).rowcount


def delete_one(conn: Connection, name: str) -> int:
    return conn.execute(delete(jobs).where(jobs.c.name == name)).rowcount


def _job_row(job: JobSpec) -> dict[str, Any]:
    definition = job_definition(job)
    enabled = definition.pop("enabled")  # a column of its own
    return {"name": job.name, "definition": definition, "schedule": describe_schedule(job),
            "enabled": enabled, "source": job.source}


def _update(name: str, values: dict[str, Any]) -> Any:
    return update(jobs).where(jobs.c.name == name).values(values)


def _stored_job(row: Row[Any]) -> StoredJob:
    definition = row.definition
    if not isinstance(definition, dict):
        raise InvalidDefinition(row.name, "the definition is not a table of job-file keys")
    job = job_from_definition(row.name, {**definition, "enabled": row.enabled},
                              source=row.source)
    return StoredJob(job=job, schedule=row.schedule, created_at=row.created_at,
                     updated_at=row.updated_at)
