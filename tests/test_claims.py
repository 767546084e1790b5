"""Claims, completion and the store's errors on a real SQLite file and the real PostgreSQL.

A lost claim is an answer (None), an outage is DatabaseUnavailable, a refused
value is DataRejected, and anything else is a bug that is not translated.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from collector.errors import DatabaseUnavailable, DataRejected
from collector.models import batches, requests
from collector.results import BatchResult, PendingBatch, new_batch_key
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.store import Store, open_store
from tests.conftest import database_outage
from tests.server import LocalServer

FIRE = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)


@pytest.fixture
def spec(server: LocalServer) -> BatchSpec:
    return BatchSpec(url=server.url("/search"), queries=({"q": "python"}, {"q": "php"}))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with open_store(db_url, busy_timeout=0.2) as opened:
        yield opened



def complete(store: Store, batch_id: int, result: BatchResult) -> int | None:
    """Record ``result`` as the claimed batch ``batch_id``, as the daemon's writer does."""
    (recorded,) = store.record([PendingBatch(result=result, job_name="search",
                                             trigger="schedule", worker="host-a:1",
                                             batch_key=new_batch_key(), claimed=batch_id)])
    return recorded

def test_a_claim_is_a_running_batch_completed_later(store: Store, spec: BatchSpec) -> None:
    batch_id = store.claim("search", spec, scheduled_for=FIRE, worker="host-a:1")
    assert isinstance(batch_id, int)
    running = store.load_batch(batch_id)
    assert (running.status, running.trigger, running.scheduled_for) == ("running", "schedule",
                                                                        FIRE)
    assert running.result is None and running.worker == "host-a:1"
    assert store.info().row_counts["requests"] == 0

    result = run_batch(spec)
    assert complete(store, batch_id, result) == batch_id
    done = store.load_batch(batch_id)
    assert done.status == "ok" and done.result is not None
    assert done.result.num_connections == 1 and done.result.tcp_connections == 1
    assert [r.query for r in done.result.requests] == ["q=python", "q=php"]
    assert done.started_at == result.started_at and done.finished_at == result.finished_at


def test_the_second_claim_of_a_fire_loses(store: Store, spec: BatchSpec) -> None:
    first = store.claim("search", spec, scheduled_for=FIRE, worker="host-a:1", exclusive=False)
    second = store.claim("search", spec, scheduled_for=FIRE, worker="host-b:2", exclusive=False)
    assert first is not None and second is None
    # another job's fire
    assert store.claim("other", spec, scheduled_for=FIRE, exclusive=False) is not None
    assert store.load_batch(first).worker == "host-a:1"
    assert store.info().row_counts["batches"] == 2


def at_once(db_url: str, claim: Callable[[Store, int], object], workers: int = 6) -> list[object]:
    """``claim(store, i)`` from ``workers`` threads at the same moment, each with its own store."""
    stores = [open_store(db_url) for _ in range(workers)]
    barrier = threading.Barrier(workers)
    outcomes: list[object] = [None] * workers

    def run(i: int) -> None:
        barrier.wait()
        outcomes[i] = claim(stores[i], i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in stores:
        opened.close()
    return outcomes


def test_workers_claiming_at_once_run_a_fire_once(db_url: str, spec: BatchSpec) -> None:
    won = at_once(db_url, lambda store, i: store.claim("search", spec, scheduled_for=FIRE,
                                                        worker=f"w:{i}", exclusive=False))
    assert sum(batch_id is not None for batch_id in won) == 1


def test_a_lost_claim_is_told_apart_from_an_outage(db_url: str, store: Store,
                                                   spec: BatchSpec) -> None:
    assert store.claim("search", spec, scheduled_for=FIRE, exclusive=False) is not None
    assert store.claim("search", spec, scheduled_for=FIRE, exclusive=False) is None
    with database_outage(db_url), pytest.raises(DatabaseUnavailable, match="database"):
        store.claim("search", spec, scheduled_for=datetime(2026, 11, 27, 12, 10, tzinfo=UTC),
                    exclusive=False)


def test_saving_during_an_outage_is_unavailable_and_leaves_nothing(
        db_url: str, store: Store, spec: BatchSpec) -> None:
    result = run_batch(spec)
    with database_outage(db_url), \
            pytest.raises(DatabaseUnavailable, match="database ") as caught:
        store.save_batch(result, job_name="search")
    assert "\n" not in str(caught.value)
    assert store.info().row_counts["batches"] == 0
    assert store.save_batch(result, job_name="search") is not None  # back again


def test_counters_are_null_only_while_running(store: Store, spec: BatchSpec) -> None:
    row = {"job_name": "j", "trigger": "schedule", "started_at": FIRE, "url": spec.url,
           "method": "GET", "pool_size": 1, "concurrency": 1, "worker": "w:1"}
    with store.engine.begin() as conn:
        conn.execute(insert(batches).values({**row, "status": "running"}))
        conn.execute(insert(batches).values({**row, "status": "abandoned"}))
    for status in ("ok", "partial", "failed", "interrupted"):
        with pytest.raises(IntegrityError, match="(?i)check"), store.engine.begin() as conn:
            conn.execute(insert(batches).values({**row, "status": status}))


@pytest.mark.parametrize(("column", "value"), [("status", "done"), ("trigger", "cron")])
def test_status_and_trigger_are_checked(store: Store, spec: BatchSpec, column: str,
                                        value: str) -> None:
    row = {"job_name": "j", "trigger": "manual", "started_at": FIRE, "url": spec.url,
           "method": "GET", "pool_size": 1, "concurrency": 1, "worker": "w:1",
           "status": "running", column: value}
    with pytest.raises(IntegrityError, match="(?i)check"), store.engine.begin() as conn:
        conn.execute(insert(batches).values(row))


def test_completing_a_batch_that_is_gone_is_refused(store: Store, spec: BatchSpec) -> None:
    batch_id = store.claim("search", spec, scheduled_for=FIRE, exclusive=False)
    assert batch_id is not None
    with store.engine.begin() as conn:
        conn.execute(batches.delete())
    assert complete(store, batch_id, run_batch(spec)) is None
    assert store.info().row_counts["requests"] == 0


def test_a_bug_is_not_called_an_outage(store: Store, spec: BatchSpec) -> None:
    result = run_batch(spec)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE requests"))  # broken behind collector's back
    with pytest.raises((OperationalError, ProgrammingError), match="requests"):
        store.save_batch(result, job_name="search")


def test_server_text_is_made_storable(db_url: str, spec: BatchSpec) -> None:
    result = run_batch(spec)
    request = result.requests[0]
    hostile = "text/plain\x00\x1b[31mred" + "x" * 1000
    poisoned = replace(result, requests=(replace(request, content_type=hostile),))
    with open_store(db_url) as store:
        batch_id = store.save_batch(poisoned, job_name="search")
        assert batch_id is not None
        stored = store.load_batch(batch_id)
    assert stored.result is not None
    content_type = stored.result.requests[0].content_type
    assert content_type is not None and len(content_type) == 255
    assert content_type.startswith("text/plain\\x00\\x1b[31mred") and content_type.endswith(
        "…[cut]")


def test_a_value_postgresql_refuses_is_rejected_not_unavailable(
        postgres_url: str, spec: BatchSpec) -> None:
    result = run_batch(spec)
    with open_store(postgres_url) as store:
        with pytest.raises(DataRejected, match="too long"):
            store.save_batch(result, job_name="j" * 300)  # the column holds 200
        assert store.info().row_counts["batches"] == 0
        with store.engine.connect() as conn:
            assert conn.execute(select(requests)).all() == []


def test_every_attempt_is_kept_in_sql(db_url: str, server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/unavailable/k/2"), retries=2,
                                 retry_statuses=(503,)))
    with open_store(db_url) as store:
        batch_id = store.save_batch(result, job_name="retry")
        assert batch_id is not None
        loaded = store.load_batch(batch_id)
        with store.engine.connect() as conn:
            row = conn.execute(select(requests.c.attempts, requests.c.status,
                                      requests.c.failed_attempts)).one()
    assert loaded.result is not None
    assert loaded.result.requests[0].failed_attempts == result.requests[0].failed_attempts
    assert (row.attempts, row.status) == (3, 200)  # the third try, after two 503s
    assert [(a["status"], a["error_kind"]) for a in row.failed_attempts] == [(503, None)] * 2


def test_two_fires_of_one_job_never_run_at_once(db_url: str, spec: BatchSpec) -> None:
    # Six different fires of one job claimed at the same moment: one runs, the others
    # find it running ("busy") - checked and claimed in one transaction.
    outcomes = at_once(db_url, lambda store, i: store.claim(
        "search", spec, scheduled_for=FIRE + timedelta(seconds=i), worker=f"w:{i}"))
    assert sum(isinstance(o, int) for o in outcomes) == 1
    assert outcomes.count("busy") == 5


def test_only_a_batch_running_somewhere_makes_a_job_busy(store: Store, spec: BatchSpec) -> None:
    # Running rows: job a's by another worker, job b's by this one and running here, job
    # c's by this one but not running here (it ran while the database was away and waits
    # in the spool to be completed): only c's next fire may be claimed.
    running = {name: store.claim(name, spec, scheduled_for=FIRE, worker=worker, exclusive=False)
               for name, worker in (("a", "other:1"), ("b", "me:1"), ("c", "me:1"))}
    later = FIRE + timedelta(seconds=1)
    outcome = store.claim_fires([(name, spec, later) for name in "abc"], worker="me:1",
                                now=later, running_here={running["b"]})  # type: ignore[arg-type]
    assert outcome[("a", later)] == "busy" and outcome[("b", later)] == "busy"
    assert isinstance(outcome[("c", later)], int)


def test_a_completed_claim_holds_what_a_saved_batch_does(store: Store, spec: BatchSpec) -> None:
    # A claimed batch is written in two steps (the claim, then its counters), a saved
    # one in one: every column they both write must come out the same.
    result = run_batch(spec)
    claimed = store.claim("j", spec, scheduled_for=FIRE, exclusive=False)
    assert claimed is not None and complete(store, claimed, result) == claimed
    saved = store.save_batch(result, job_name="j")
    with store.connect() as conn:
        rows = {row.id: row._asdict() for row in conn.execute(select(batches))}
    different = {"id", "trigger", "scheduled_for", "batch_key", "worker"}
    completed = {k: v for k, v in rows[claimed].items() if k not in different}
    assert completed == {k: v for k, v in rows[saved].items() if k not in different}
    assert completed["elapsed_histogram"] and completed["status_2xx"] == 2
