"""The store on a real SQLite file and the real PostgreSQL."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, delete, func, insert, inspect, select, text

from collector.errors import ConfigError, DatabaseUnavailable, ForeignDatabase, SchemaMismatch
from collector.models import batches, metadata, requests
from collector.results import BatchResult
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.store import open_store
from collector.store.schema import head_revision
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
                       "attempts", "error_kind", "error", "url", "method", "started_at",
                       "dns_ms", "tcp_ms", "tls_ms", "http_version"):
            assert getattr(row, column) == getattr(request, column), column
    assert rows[2].error_kind == "protocol" and rows[2].status is None
    # SQL NULL, as the README promises, not the JSON text null
    with open_store(db_url) as store, store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(requests).where(
            requests.c.batch_id == batch_id, requests.c.failed_attempts.is_(None))
        ).scalar_one() == sum(not r.failed_attempts for r in result.requests) == 2


def test_batch_ids_increase(db_url: str, result: BatchResult) -> None:
    with open_store(db_url) as store:
        ids = [store.save_batch(result, job_name="search") or 0 for _ in range(3)]
        assert store.info().row_counts == {"jobs": 0, "batches": 3, "requests": 9,
                                           "connections": 3 * len(result.connections),
                                           "checks": 0,
                                           "captures": 0, "bodies": 0, "workers": 0}
    assert result.connections
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_a_schedule_fire_is_stored_once(db_url: str, result: BatchResult) -> None:
    fire = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with open_store(db_url) as store:
        first = store.save_batch(result, job_name="search", trigger="schedule",
                                 scheduled_for=fire)
        assert first is not None
        again = store.save_batch(result, job_name="search", trigger="schedule",
                                 scheduled_for=fire)
        assert again is None  # claimed already: an answer, not an error
        store.save_batch(result, job_name="search")  # manual runs never collide
        store.save_batch(result, job_name="search")
        assert store.info().row_counts == {"jobs": 0, "batches": 3, "requests": 9,
                                           "connections": 3 * len(result.connections),
                                           "checks": 0,
                                           "captures": 0, "bodies": 0, "workers": 0}
    assert result.connections


def test_deleting_a_batch_deletes_its_requests(db_url: str, result: BatchResult) -> None:
    with open_store(db_url) as store:
        batch_id = store.save_batch(result, job_name="search")
        with store.engine.begin() as conn:
            conn.execute(delete(batches).where(batches.c.id == batch_id))
        assert store.info().row_counts == {"jobs": 0, "batches": 0, "requests": 0,
                                           "connections": 0, "checks": 0,
                                           "captures": 0, "bodies": 0, "workers": 0}


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
        assert store.revision() == head_revision()
        assert store.info().state == "up to date"
        assert {"batches", "requests", "alembic_version"} <= set(
            inspect(store.engine).get_table_names())


def _not_a_partition(obj: object, name: str | None, type_: str, reflected: bool,
                     compare_to: object) -> bool:
    return not (type_ == "table" and name is not None
                and re.search(r"_(p\d{8}|default)$", name) is not None)


def test_models_and_migrations_agree(db_url: str) -> None:
    with open_store(db_url) as store, store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_object": _not_a_partition})
        found = [(kind, item.name, item.table.name)
                 for kind, item, *_ in compare_metadata(context, metadata)]
    if store.engine.dialect.name == "sqlite":
        assert found == []
        return
    # PostgreSQL's partitioned tables, as migration 0016 made them (documented in
    # docs/schema.md): their unique keys hold the time too, and a trigger on batches
    # deletes their rows instead of foreign keys.
    expected = []
    for table, key in (("captures", "request_id_name"), ("checks", "request_id_name"),
                       ("connections", "batch_id_number"), ("requests", "batch_id_position")):
        expected += [("remove_constraint", f"uq_{table}_{key}", table),
                     ("add_constraint", f"uq_{table}_{key}", table),
                     ("add_fk", f"fk_{table}_batch_id_batches", table)]
    assert sorted(found) == sorted(expected)


def test_migrations_go_down_and_up_again(db_url: str) -> None:
    with open_store(db_url) as store:
        store.downgrade("base")
        assert not {"batches", "requests", "jobs"} & set(inspect(store.engine).get_table_names())
        store.upgrade()
        assert {"batches", "requests", "jobs"} <= set(inspect(store.engine).get_table_names())
        assert store.revision() == head_revision()


def test_migrating_keeps_every_row(db_url: str, result: BatchResult) -> None:
    # 0003 rebuilds the batches table on SQLite; with foreign keys on, dropping the
    # old table would cascade to every request row.
    with open_store(db_url) as store:
        store.downgrade("0002")
        with store.engine.begin() as conn:
            conn.execute(insert(batches).values(
                job_name="old", trigger="manual", started_at=result.started_at,
                finished_at=result.finished_at, status="ok", url=result.url, method="GET",
                pool_size=1, concurrency=1, num_connections=1, num_requests=1,
                tcp_connections=1, requests_succeeded=1, requests_failed=0, worker="h:1"))
            batch_id = conn.execute(select(batches.c.id)).scalar_one()
            conn.execute(insert(requests).values(
                batch_id=batch_id, position=0, method="GET", url=result.url, query="",
                started_at=result.started_at, elapsed_ms=1.0, reused=False, attempts=1))
        store.upgrade()
        assert store.info().row_counts == {"jobs": 0, "batches": 1, "requests": 1,
                                           "connections": 0, "checks": 0,
                                           "captures": 0, "bodies": 0, "workers": 0}
        fire = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
        running = store.claim("new", BatchSpec(url=result.url), scheduled_for=fire, exclusive=False)
        assert running is not None
        store.downgrade("0002")  # what never finished becomes failed, with zero counters
        with store.engine.connect() as conn:
            rows = conn.execute(select(batches.c.job_name, batches.c.status,
                                       batches.c.num_connections)
                                .order_by(batches.c.id)).all()
        assert [tuple(r) for r in rows] == [("old", "ok", 1), ("new", "failed", 0)]
        assert store.info().row_counts["requests"] == 1


def test_0013_fills_in_the_content_of_stored_200s(db_url: str, result: BatchResult) -> None:
    with open_store(db_url) as store:
        batch_id = store.save_batch(result, job_name="before")
        store.downgrade("0012")
        store.upgrade()
        with store.engine.connect() as conn:
            rows = conn.execute(select(requests.c.status, requests.c.body_sha256,
                                       requests.c.content_sha256)
                                .where(requests.c.batch_id == batch_id)).all()
    assert any(status == 200 for status, _, _ in rows)
    assert [content for _, _, content in rows] == [
        body if status == 200 else None for status, body, _ in rows]


def test_upgrade_reports_before_and_after(db_url: str) -> None:
    with open_store(db_url, ensure_schema=False) as store:
        assert store.upgrade() == (None, head_revision())
        assert store.upgrade() == (head_revision(), head_revision())


def test_a_newer_schema_is_refused(db_url: str) -> None:
    with open_store(db_url) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(SchemaMismatch, match="newer collector"):
        open_store(db_url)
    with open_store(db_url, ensure_schema=False) as store, \
            pytest.raises(SchemaMismatch, match="newer collector"):
        store.upgrade()


def test_foreign_tables_without_a_version_are_refused(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE batches (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(ForeignDatabase, match="not made by collector"):
        open_store(db_url)
    with open_store(db_url, ensure_schema=False) as store, pytest.raises(
            ForeignDatabase, match=r"has tables \(batches\)"):
        store.upgrade()
    engine = create_engine(db_url)
    with engine.connect() as conn:  # nothing added
        assert sorted(inspect(conn).get_table_names()) == ["batches"]
    engine.dispose()


def test_daemons_starting_together_create_the_schema_once(db_url: str) -> None:
    code = "import sys; from collector.store import open_store; open_store(sys.argv[1]).close()"
    processes = [subprocess.Popen([sys.executable, "-c", code, db_url],
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outcomes = [(p.communicate()[1], p.returncode) for p in processes]
    failures = [stderr for stderr, code in outcomes if code != 0]
    assert failures == []
    with open_store(db_url) as store:
        assert store.revision() == head_revision()


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
        assert store.revision() == head_revision()


def test_sqlite_is_set_up_for_several_processes(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 1000


def test_a_missing_sqlite_folder_is_created(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/a/b/c.db"
    with open_store(url) as store:
        assert store.revision() == head_revision()


def test_an_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(DatabaseUnavailable, match="127.0.0.1") as caught:
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert "\n" not in str(caught.value) and "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(("url", "message"), [
    ("nonsense://x", "unknown database type"),
    ("://", "is not a valid URL"),
    ("postgresql://u:secret@127.0.0.1:abc/x", r"u:\*\*\*@127.0.0.1:abc/x. is not a valid URL"),
])
def test_a_bad_database_url_is_a_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(url)


def test_info_on_an_older_schema(db_url: str) -> None:
    with open_store(db_url) as store:
        store.downgrade("0001")  # before the jobs table
        about = store.info()
    assert about.revision == "0001" and about.state == "needs `collector db upgrade`"
    assert about.row_counts == {"batches": 0, "requests": 0}


def test_the_known_head_is_the_migrations_head() -> None:
    from alembic.script import ScriptDirectory

    from collector.store import schema

    scripts = ScriptDirectory.from_config(schema.alembic_config())
    assert schema.HEAD == scripts.get_current_head()
    assert schema.REVISIONS == {s.revision for s in scripts.walk_revisions()}


def test_the_jobs_marker_changes_with_any_change_and_only_then(db_url: str) -> None:
    from collector.spec import JobSpec

    def job(name: str, url: str) -> JobSpec:
        return JobSpec(name=name, batch=BatchSpec(url=url), every=60.0)

    with open_store(db_url) as store:
        seen = [store.jobs_marker()]
        steps = [lambda: store.add_job(job("a", "http://127.0.0.1:9/")),
                 lambda: store.add_job(job("b", "http://127.0.0.1:9/")),
                 lambda: store.save_jobs(update=[job("a", "http://127.0.0.1:9/x")]),
                 lambda: store.set_enabled("b", False),
                 lambda: store.set_enabled("b", True),
                 lambda: store.remove_job("a")]
        for step in steps:
            step()
            assert store.jobs_marker() == store.jobs_marker()  # nothing changed between
            seen.append(store.jobs_marker())
        assert len(set(seen)) == len(seen), seen  # each step showed
