"""The store on a real SQLite file and the real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, delete, inspect, select, text

from collector.config import BatchSpec
from collector.errors import ConfigError, DatabaseUnavailable, SchemaMismatch
from collector.models import batches, metadata, requests
from collector.results import BatchResult
from collector.runner import run_batch
from collector.store import _alembic_config, _head, open_store
from tests.server import LocalServer


@pytest.fixture
def result(server: LocalServer) -> BatchResult:
    return run_batch(BatchSpec(url=server.url("/search"),
                               queries=({"q": "python"}, {"q": "php"}, {"q": "hangup"}),
                               fields={"v": "1.0"}))


def test_save_batch_writes_every_request(db_url: str, result: BatchResult) -> None:
    with open_store(db_url) as store:
        batch_id = store.save_batch(result, job_name="search")
        with store.engine.connect() as conn:
            batch = conn.execute(select(batches).where(batches.c.id == batch_id)).one()
            rows = conn.execute(select(requests).where(requests.c.batch_id == batch_id)
                                .order_by(requests.c.position)).all()

    assert batch.job_name == "search" and batch.trigger == "manual"
    assert batch.status == "partial"
    assert (batch.num_connections, batch.num_requests, batch.tcp_connections) == (
        result.num_connections, result.num_requests, result.tcp_connections)
    assert (batch.requests_succeeded, batch.requests_failed) == (2, 1)
    assert batch.started_at == result.started_at and batch.started_at.tzinfo is not None
    assert batch.finished_at == result.finished_at
    assert batch.scheduled_for is None and ":" in batch.worker

    assert [r.query for r in rows] == ["q=python&v=1.0", "q=php&v=1.0", "q=hangup&v=1.0"]
    for row, request in zip(rows, result.requests, strict=True):
        for column in ("status", "content_type", "body_length", "content_length",
                       "body_sha256", "elapsed_ms", "connect_ms", "ttfb_ms", "reused",
                       "attempts", "error_kind", "error", "url", "method", "started_at"):
            assert getattr(row, column) == getattr(request, column), column
    assert rows[2].error_kind == "protocol" and rows[2].status is None


def test_batch_ids_increase(db_url: str, result: BatchResult) -> None:
    with open_store(db_url) as store:
        ids = [store.save_batch(result, job_name="search") for _ in range(3)]
        assert store.info().row_counts == {"jobs": 0, "batches": 3, "requests": 9}
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_a_schedule_fire_is_stored_once(db_url: str, result: BatchResult) -> None:
    fire = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with open_store(db_url) as store:
        store.save_batch(result, job_name="search", trigger="schedule", scheduled_for=fire)
        with pytest.raises(DatabaseUnavailable):
            store.save_batch(result, job_name="search", trigger="schedule", scheduled_for=fire)
        store.save_batch(result, job_name="search")  # manual runs never collide
        store.save_batch(result, job_name="search")
        assert store.info().row_counts["batches"] == 3  # the failed save left nothing


def test_deleting_a_batch_deletes_its_requests(db_url: str, result: BatchResult) -> None:
    with open_store(db_url) as store:
        batch_id = store.save_batch(result, job_name="search")
        with store.engine.begin() as conn:
            conn.execute(delete(batches).where(batches.c.id == batch_id))
        assert store.info().row_counts == {"jobs": 0, "batches": 0, "requests": 0}


def test_times_are_utc_whatever_the_offset(db_url: str, result: BatchResult) -> None:
    east = datetime(2026, 11, 25, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    with open_store(db_url) as store:
        batch_id = store.save_batch(result, job_name="tz", trigger="schedule",
                                    scheduled_for=east)
        with store.engine.connect() as conn:
            stored = conn.execute(select(batches.c.scheduled_for)
                                  .where(batches.c.id == batch_id)).scalar_one()
    assert stored == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    assert stored.utcoffset() == timedelta(0)


def test_an_empty_database_gets_the_schema_on_first_use(db_url: str) -> None:
    with open_store(db_url, ensure_schema=False) as store:
        assert store.revision() is None
        assert store.info().state.startswith("empty")
    with open_store(db_url) as store:
        assert store.revision() == _head()
        assert store.info().state == "up to date"
        assert {"batches", "requests", "alembic_version"} <= set(
            inspect(store.engine).get_table_names())


def test_models_and_migrations_agree(db_url: str) -> None:
    with open_store(db_url) as store, store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_migrations_go_down_and_up_again(db_url: str) -> None:
    with open_store(db_url) as store:
        for target, up in (("base", False), ("head", True)):
            with store.engine.begin() as conn:
                config = _alembic_config()
                config.attributes["connection"] = conn
                (command.upgrade if up else command.downgrade)(config, target)
            tables = set(inspect(store.engine).get_table_names())
            assert ({"batches", "requests"} <= tables) is up
        assert store.revision() == _head()


def test_upgrade_reports_before_and_after(db_url: str) -> None:
    with open_store(db_url, ensure_schema=False) as store:
        assert store.upgrade() == (None, _head())
        assert store.upgrade() == (_head(), _head())


def test_a_newer_schema_is_refused(db_url: str) -> None:
    with open_store(db_url) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(SchemaMismatch, match="newer collector"):
        open_store(db_url)
    with open_store(db_url, ensure_schema=False) as store, pytest.raises(SchemaMismatch):
        store.upgrade()


def test_foreign_tables_without_a_version_are_refused(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE batches (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(SchemaMismatch, match="not made by collector"):
        open_store(db_url)


def test_daemons_starting_together_create_the_schema_once(db_url: str) -> None:
    code = "import sys; from collector.store import open_store; open_store(sys.argv[1]).close()"
    processes = [subprocess.Popen([sys.executable, "-c", code, db_url],
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outcomes = [(p.communicate()[1], p.returncode) for p in processes]
    failures = [stderr for stderr, code in outcomes if code != 0]
    assert failures == []
    with open_store(db_url) as store:
        assert store.revision() == _head()


def test_threads_starting_together_create_the_schema_once(db_url: str) -> None:
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            open_store(db_url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with open_store(db_url) as store:
        assert store.revision() == _head()


def test_sqlite_is_set_up_for_several_processes(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 1000


def test_a_missing_sqlite_folder_is_created(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/a/b/c.db"
    with open_store(url) as store:
        assert store.revision() == _head()


def test_an_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert "\n" not in str(caught.value) and "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(("url", "message"), [
    ("nonsense://x", "unknown database type"),
    ("://", "not a URL"),
])
def test_a_bad_database_url_is_a_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(url)


def test_info_on_an_older_schema(db_url: str) -> None:
    with open_store(db_url) as store:
        with store.engine.begin() as conn:
            config = _alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "0001")  # before the jobs table
        about = store.info()
    assert about.revision == "0001" and about.state == "needs `collector db upgrade`"
    assert about.row_counts == {"batches": 0, "requests": 0}
