"""Plans that stay right: the documented SQL and every command's queries read the rows
they need through an index, with and without the planner's statistics, on both
databases; none reads the whole requests table."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from collector.store import Store, open_store
from tests.cli import invoke
from tests.dataset import batch, request
from tests.test_docs import readme_queries

NOW = datetime.now(UTC).replace(microsecond=0)
BATCHES, PER_BATCH, EVERY = 800, 40, timedelta(hours=3)  # 100 days: a week is 7%


def _fill(store: Store) -> None:
    for n in range(BATCHES):
        at = NOW - EVERY * (BATCHES - n)
        store.save_batch(batch(at, 1, *(
            request(i, 200 if i % 9 else 503, 5.0 + i, body=100, sha=f"s{n % 5}", at=at,
                    query=f"q={i}") for i in range(PER_BATCH))), job_name=f"job{n % 16}")


def full_reads(dialect: str, plan: list[str]) -> list[str]:
    """The lines of a plan that read all of requests: a scan of it, or (SQLite) a scan of
    batches with requests looked up for each, which reads every request all the same."""
    if dialect == "postgresql":
        return [line for line in plan if re.search(r"Seq Scan on requests\b", line)]
    scans = [line for line in plan if re.match(r"\s*SCAN (requests|r)\b", line)]
    batch_scan = any(re.match(r"\s*SCAN (batches|b)\b", line) for line in plan)
    request_search = any(re.match(r"\s*SEARCH (requests|r)\b", line) for line in plan)
    if batch_scan and request_search:
        scans += [line for line in plan if re.match(r"\s*SCAN (batches|b)\b", line)]
    return scans


def _plan(conn: Any, dialect: str, sql: str, parameters: Any = None) -> list[str]:
    explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
    rows = conn.exec_driver_sql(explain + sql, parameters or ()).all()
    return [str(row[-1]) for row in rows]


@pytest.fixture(scope="module")
def populated(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of 32,000 requests over 100 days, for each dialect."""
    dialect = request.param
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('plans') / 'plans.db'}"
        with open_store(url) as store:
            _fill(store)
        yield url
        return
    from tests.conftest import POSTGRES_URL

    if not POSTGRES_URL:
        from tests.conftest import IN_CI

        if IN_CI:
            pytest.fail("COLLECTOR_TEST_POSTGRES_URL is not set under CI")
        pytest.skip("COLLECTOR_TEST_POSTGRES_URL is not set")
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS collector_test_plans")
        conn.execute("CREATE DATABASE collector_test_plans")
    url = make_url(POSTGRES_URL).set(database="collector_test_plans").render_as_string(
        hide_password=False)
    with open_store(url) as store:
        _fill(store)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS collector_test_plans WITH (FORCE)")


def _with_statistics(url: str) -> None:
    with open_store(url) as store, store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA optimize")
        else:
            conn.exec_driver_sql("ANALYZE")
        conn.commit()


@pytest.mark.parametrize("populated", ["sqlite", "postgresql"], indirect=True)
def test_the_documented_sql_never_reads_all_requests(populated: str) -> None:
    with open_store(populated) as store:
        dialect = store.engine.dialect.name
    for statistics in (False, True):
        if statistics:
            _with_statistics(populated)
        with open_store(populated) as store, store.engine.connect() as conn:
            for title, sql in readme_queries(dialect).items():
                plan = _plan(conn, dialect, sql)
                assert not full_reads(dialect, plan), (title, statistics, plan)


@pytest.mark.parametrize("populated", ["sqlite", "postgresql"], indirect=True)
def test_every_command_s_queries_never_read_all_requests(populated: str) -> None:
    _with_statistics(populated)
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        if not executemany and statement.lstrip().upper().startswith("SELECT") and re.search(
                r"\brequests\b", statement):
            seen.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        for args in (("report",), ("report", "--job", "job3", "--since", "7d"),
                     ("batches", "--limit", "5"), ("batches", "--job", "job3"),
                     ("show", "5"), ("prune", "--older-than", "90d", "--dry-run")):
            code, _, err = invoke(*args, "--db", populated)
            assert code == 0, (args, err)
        with open_store(populated) as store:
            store.known("job3", "http://h.test/s")
            store.load_batch(7)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert seen  # the commands did read requests
    with open_store(populated) as store, store.engine.connect() as conn:
        dialect = store.engine.dialect.name
        for statement, parameters in seen:
            plan = _plan(conn, dialect, statement, parameters)
            assert not full_reads(dialect, plan), (statement, plan)


def test_a_full_read_is_told_apart() -> None:
    # what the check catches, from real plans of this schema
    assert full_reads("sqlite", ["SCAN b USING COVERING INDEX ix_batches_job_name_started_at",
                                 "SEARCH r USING INDEX sqlite_autoindex_requests_1 "
                                 "(batch_id=?)"])
    assert full_reads("sqlite", ["SCAN r"])
    assert not full_reads("sqlite", ["SEARCH r USING INDEX ix_requests_started_at "
                                     "(started_at>?)", "SEARCH b USING INTEGER PRIMARY KEY "
                                     "(rowid=?)"])
    assert full_reads("postgresql", ["  ->  Seq Scan on requests r  (cost=0.00..1.00)"])
    assert not full_reads("postgresql", ["Seq Scan on requests_by_day (cost=0.00..1.00)",
                                         "Index Scan using ix_requests_started_at on "
                                         "requests r"])
