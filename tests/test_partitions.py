"""PostgreSQL's daily partitions: where rows land, the conversion of a populated
database, and prune dropping whole partitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from collector.models import batches
from collector.results import CaptureResult, CheckResult
from collector.store import Store, open_store
from collector.store import partitions as parts
from collector.store.schema import head_revision
from tests.dataset import batch, request

DAY0 = datetime(2026, 10, 1, tzinfo=UTC)


def _where(store: Store, table: str) -> dict[str, int]:
    """How many of ``table``'s rows each of its partitions holds."""
    with store.connect() as conn:
        rows = conn.execute(text(f"SELECT tableoid::regclass::text, count(*) FROM {table} "
                                 "GROUP BY 1")).all()
    return {name: count for name, count in rows}


def _judged_batch(at: datetime, n: int = 3) -> Any:
    from dataclasses import replace

    rows = [replace(request(i, 200, 5.0 + i, body=10, at=at + timedelta(milliseconds=i),
                            query=f"q={i}"),
                    checks=(CheckResult(name="ok", passed=True, observed="200"),),
                    captures=(CaptureResult(name="v", value=str(i), number=float(i)),))
            for i in range(n)]
    return batch(at, 1, *rows)


def _fill(store: Store, days: int) -> None:
    """A batch at 06:00 and one at 18:00 of each day from DAY0, with checks, captures and
    a connection."""
    for d in range(days):
        for hour in (6, 18):
            store.save_batch(_judged_batch(DAY0 + timedelta(days=d, hours=hour)), job_name="j")


def _everything(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    with store.connect() as conn:
        return {table: [tuple(r) for r in conn.execute(text(
            f"SELECT * FROM {table} ORDER BY id")).all()]
                for table in ("batches", *parts.TABLES)}


def test_rows_land_in_their_days_partition_and_an_unmade_day_in_the_default(
        postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        today = datetime.now(UTC).date()
        for table in parts.TABLES:  # db upgrade made today and the week ahead
            with store.connect() as conn:
                held = parts.days(conn, table)
            assert {today + timedelta(days=n) for n in range(parts.AHEAD + 1)} <= set(held)
        store.save_batch(_judged_batch(datetime.now(UTC).replace(microsecond=0)), job_name="j")
        assert _where(store, "requests") == {parts.name("requests", today): 3}
        store.save_batch(_judged_batch(DAY0), job_name="j")  # a day with no partition
        for table in parts.TABLES:
            assert _where(store, table)[f"{table}_default"] >= 1
        before = _everything(store)
        assert store.make_partitions([DAY0.date()]) == len(parts.TABLES)
        for table in parts.TABLES:  # the day's rows moved from the default into it
            assert f"{table}_default" not in _where(store, table)
            assert parts.name(table, DAY0.date()) in _where(store, table)
        assert _everything(store) == before
        assert store.make_partitions([DAY0.date()]) == 0
        loaded = store.load_batch(2).result
        assert loaded is not None and [len(r.checks) for r in loaded.requests] == [1, 1, 1]


def test_db_upgrade_converts_a_populated_database(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        store.downgrade("0015")
        with store.connect() as conn:
            kinds = conn.execute(text("SELECT relkind FROM pg_class WHERE relname = 'requests'"))
            assert kinds.scalar() == "r"  # a plain table again
        # rows written at 0015 (the store's own writer is at head: written by hand)
        with store.connect(write=True) as conn:
            conn.execute(text(
                "INSERT INTO batches (job_name, trigger, started_at, finished_at, status, url, "
                "method, pool_size, concurrency, worker, num_connections, num_requests, "
                "tcp_connections, requests_succeeded, requests_failed) VALUES "
                "('j', 'manual', :at, :at, 'ok', 'http://h.test/', 'GET', 1, 1, 'w:1', 1, 2, "
                "1, 2, 0)"), [{"at": DAY0 + timedelta(days=d)} for d in range(3)])
            ids = conn.execute(select(batches.c.id, batches.c.started_at)).all()
            for batch_id, at in ids:
                conn.execute(text(
                    "INSERT INTO requests (batch_id, position, method, url, query, started_at, "
                    "elapsed_ms, reused, attempts) VALUES "
                    "(:b, :p, 'GET', 'http://h.test/', '', :at, 1.5, false, 1)"),
                    [{"b": batch_id, "p": p, "at": at} for p in range(2)])
                conn.execute(text(
                    "INSERT INTO connections (batch_id, number, opened_at) VALUES (:b, 1, :at)"),
                    {"b": batch_id, "at": at})
                conn.execute(text(
                    "INSERT INTO checks (batch_id, request_id, name, passed) SELECT batch_id, "
                    "id, 'ok', true FROM requests WHERE batch_id = :b"), {"b": batch_id})
        with store.connect() as conn:
            before = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                      for t in parts.TABLES}
        assert store.upgrade() == ("0015", head_revision())
        with store.connect() as conn:
            assert conn.execute(text(
                "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = "
                "p.partrelid WHERE c.relname IN ('requests', 'connections', 'checks', "
                "'captures')")).scalar() == 4
            after = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                     for t in parts.TABLES}
            started = conn.execute(text("SELECT c.started_at = r.started_at FROM checks c "
                                        "JOIN requests r ON r.id = c.request_id")).scalars()
            assert set(started) == {True}  # checks got their request's time
        assert after == before == {"requests": 6, "connections": 3, "checks": 6, "captures": 0}
        for d in range(3):
            assert _where(store, "requests")[parts.name("requests", (DAY0 + timedelta(
                days=d)).date())] == 2
        # and the store goes on at head: a new batch, read back whole
        new = store.save_batch(_judged_batch(DAY0 + timedelta(days=1, hours=3)), job_name="j")
        assert new is not None
        loaded = store.load_batch(new).result
        assert loaded is not None and len(loaded.requests) == 3


@pytest.mark.parametrize("hour", [0, 12])
def test_prune_drops_the_partitions_wholly_before_its_bound(postgres_url: str,
                                                           hour: int) -> None:
    with open_store(postgres_url) as store:
        store.make_partitions([(DAY0 + timedelta(days=d)).date() for d in range(5)])
        _fill(store, 5)
        bound = DAY0 + timedelta(days=3, hours=hour)
        expected = 6 + (1 if hour == 12 else 0)  # batches; day 3's 06:00 one at noon
        assert store.prune(bound) == (expected, expected * 3)
        for table in parts.TABLES:
            with store.connect() as conn:
                held = set(parts.days(conn, table))
            assert not {(DAY0 + timedelta(days=d)).date() for d in range(3)} & held
            assert {(DAY0 + timedelta(days=d)).date() for d in (3, 4)} <= held
        day3 = parts.name("requests", date(2026, 10, 4))
        assert _where(store, "requests")[day3] == (3 if hour == 12 else 6)
        with store.connect() as conn:
            left = conn.execute(select(batches.c.started_at)).scalars().all()
        assert min(left) >= bound and len(left) == 10 - expected
        assert sum(_where(store, "checks").values()) == 3 * len(left)
        assert sum(_where(store, "connections").values()) == len(left)


def _orphans(store: Store) -> dict[str, int]:
    """Per table, its rows whose batch is gone."""
    with store.connect() as conn:
        return {table: conn.execute(text(
            f"SELECT count(*) FROM {table} t WHERE NOT EXISTS "
            "(SELECT 1 FROM batches b WHERE b.id = t.batch_id)")).scalar_one()
            for table in parts.TABLES}


def _detached(store: Store) -> list[str]:
    with store.connect() as conn:
        return list(conn.execute(text(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition "
            "AND relname ~ '_p[0-9]{8}$'")).scalars())


def test_prune_deletes_the_rows_the_dropped_days_do_not_hold(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        store.make_partitions([(DAY0 + timedelta(days=d)).date() for d in range(1, 5)])
        _fill(store, 5)  # day 0 has no partition: its rows are in the default ones
        # Going on past midnight into the day of the bound: rows on both sides of it.
        late = DAY0 + timedelta(days=3) - timedelta(milliseconds=1)
        store.save_batch(_judged_batch(late), job_name="late")
        bound = DAY0 + timedelta(days=3, hours=12)
        assert _where(store, "requests")["requests_default"] == 6
        assert store.prune(bound) == (8, 24)
        assert _orphans(store) == dict.fromkeys(parts.TABLES, 0)
        assert _detached(store) == []  # dropped once the prune committed
        for table in parts.TABLES:
            assert f"{table}_default" not in _where(store, table)
        with store.connect() as conn:
            left = conn.execute(select(batches.c.started_at)).scalars().all()
        assert len(left) == 3 and min(left) >= bound
        assert sum(_where(store, "requests").values()) == 9
        assert sum(_where(store, "checks").values()) == 9
        assert sum(_where(store, "connections").values()) == 3


def test_days_detached_and_left_by_a_stopped_prune_are_dropped_later(postgres_url: str
                                                                     ) -> None:
    with open_store(postgres_url) as store:
        store.make_partitions([DAY0.date()])
        with store.connect(write=True) as conn:  # as if the process died after the commit
            assert len(parts.detach_before(conn, DAY0 + timedelta(days=1))) == len(parts.TABLES)
        assert len(_detached(store)) == len(parts.TABLES)
        # The day can be made again (its name is free), and the leftovers are gone.
        assert store.make_partitions([DAY0.date()]) == len(parts.TABLES)
        assert _detached(store) == []
        with store.connect(write=True) as conn:
            parts.detach_before(conn, DAY0 + timedelta(days=1))
        store.prune(DAY0 + timedelta(days=1))  # nothing to prune: the space still comes back
        assert _detached(store) == []


def test_what_a_conditional_job_last_got_is_read_from_its_latest_days(postgres_url: str
                                                                      ) -> None:
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM requests" in statement:
            seen.append((statement, parameters))

    with open_store(postgres_url) as store:
        store.make_partitions([(DAY0 + timedelta(days=d)).date() for d in range(10)])
        _fill(store, 10)
        event.listen(store.engine, "before_cursor_execute", record)
        store.known("j", "http://h.test/s")  # its 10 latest batches: days 5 to 9
        event.remove(store.engine, "before_cursor_execute", record)
        [(statement, parameters)] = seen
        with store.connect() as conn:
            plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                             .scalars())
    assert parts.name("requests", date(2026, 10, 6)) in plan
    assert parts.name("requests", date(2026, 10, 5)) not in plan


def test_a_prune_and_a_day_being_made_take_turns(postgres_url: str) -> None:
    # A daemon's maintenance making a day whose rows are in the default partitions (it
    # moves them) while another prunes: the prune waits for it, before touching a table.
    import threading
    import time

    with open_store(postgres_url) as store:
        _fill(store, 3)  # no day made: every row in the default partitions
        pruned: list[tuple[int, int]] = []
        with store.connect(write=True) as maker:
            maker.execute(text(parts.LOCK))
            pruning = threading.Thread(target=lambda: pruned.append(
                store.prune(DAY0 + timedelta(days=1, hours=12))))
            pruning.start()
            deadline = time.monotonic() + 60
            while not maker.execute(text(  # the prune waits for the lock
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND NOT granted")).scalar_one():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert parts.make(maker, [(DAY0 + timedelta(days=d)).date() for d in range(3)])
        pruning.join(timeout=60)
        assert pruned == [(3, 9)]
        assert _orphans(store) == dict.fromkeys(parts.TABLES, 0)


def test_prune_of_one_job_deletes_its_rows_and_drops_nothing(postgres_url: str) -> None:
    with open_store(postgres_url) as store:
        store.make_partitions([(DAY0 + timedelta(days=d)).date() for d in range(2)])
        _fill(store, 2)
        store.save_batch(_judged_batch(DAY0 + timedelta(hours=7)), job_name="other")
        assert store.prune(DAY0 + timedelta(days=5), job="j") == (4, 12)
        with store.connect() as conn:
            assert parts.days(conn, "requests").keys() >= {DAY0.date()}
            assert conn.execute(select(batches.c.job_name)).scalars().all() == ["other"]
        assert sum(_where(store, "requests").values()) == 3
        assert sum(_where(store, "captures").values()) == 3


def test_deleting_a_batch_by_hand_deletes_its_rows_in_every_table(postgres_url: str) -> None:
    from collector.store.retention import SKIP_CASCADE

    with open_store(postgres_url) as store:
        _fill(store, 1)
        with store.engine.connect() as conn:
            with conn.begin():  # a prune's transaction before, on the same connection
                conn.execute(text(SKIP_CASCADE))
            with conn.begin():
                conn.execute(text("DELETE FROM batches WHERE started_at < :t"),
                             {"t": DAY0 + timedelta(hours=12)})
        for table in parts.TABLES:
            assert sum(_where(store, table).values()) == (1 if table == "connections" else 3)


def test_a_daemon_makes_the_days_ahead(postgres_url: str) -> None:
    from tests.daemons import DaemonProcess

    last = datetime.now(UTC).date() + timedelta(days=parts.AHEAD)
    with open_store(postgres_url) as store, store.connect(write=True) as conn:
        for table in parts.TABLES:
            conn.execute(text(f"DROP TABLE {parts.name(table, last)}"))
    daemon = DaemonProcess(postgres_url)
    try:
        line = daemon.wait_for(lambda line: line["message"].startswith("made "))
    finally:
        assert daemon.stop() == 0
    assert line["message"] == f"made {len(parts.TABLES)} partitions for the days ahead"
    with open_store(postgres_url) as store, store.connect() as conn:
        assert all(last in parts.days(conn, table) for table in parts.TABLES)
