"""The rollups reports read: written with the batches, always what the batches add up to."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from collector.histogram import percentiles
from collector.models import batches, rollups
from collector.report import Filters, job_summaries
from collector.results import PendingBatch, new_batch_key
from collector.spec import BatchSpec
from collector.store import Store, open_store
from collector.store import rollups as rolled
from collector.store.schema import head_revision
from tests.dataset import T0, batch, request

SPEC = BatchSpec(url="http://h.test/s", queries=({"q": "x"},))


def _random_batch(rng: random.Random, at: datetime) -> Any:
    rows = [request(i, rng.choice((200, 200, 301, 404, 503, None)),
                    round(rng.lognormvariate(3, 1), 3), body=rng.choice((None, 0, 10, 999)),
                    reused=i > 0 and rng.random() < 0.7, at=at,
                    error_kind=None, query=f"q={i}") for i in range(rng.randint(1, 6))]
    rows = [r if r.status else request(r.position, None, 1000.0, body=None, at=at,
                                       error_kind="read_timeout", query=r.query)
            for r in rows]
    return batch(at, rng.randint(0, 2), *rows)


def _fill(store: Store, seed: int, n: int = 60) -> None:
    """``n`` batches of three jobs over four days across a month's end, at odd times; a
    few claimed (their claims stamped now), some of those abandoned, and some of the
    abandoned completed later (by their spool)."""
    rng = random.Random(seed)
    for i in range(n):
        at = T0 + timedelta(minutes=rng.randint(-3500, 2000), seconds=rng.random())
        job = rng.choice("xyz")
        result = _random_batch(rng, at)
        if rng.random() < 0.8:
            store.save_batch(result, job_name=job)
            continue
        fire = T0 + timedelta(days=10, minutes=i)
        claimed = store.claim(job, SPEC, scheduled_for=fire, worker="dead:1", exclusive=False)
        assert isinstance(claimed, int)
        if rng.random() < 0.5:
            assert store.abandon_stale(timedelta(seconds=1)) >= 1
        if rng.random() < 0.7:  # the run's own start, not the claim's: another hour
            store.record([PendingBatch(result=result, job_name=job, trigger="schedule",
                                       worker="dead:1", batch_key=new_batch_key(),
                                       scheduled_for=fire, claimed=claimed)])


def _rows(store: Store) -> dict[tuple[str, str, datetime], dict[str, Any]]:
    with store.connect() as conn:
        found = conn.execute(select(rollups)).mappings().all()
    return {(r["period"], r["job_name"], r["starts_at"]): {
        **r, "elapsed_histogram": {k: v for k, v in (r["elapsed_histogram"] or {}).items()}}
        for r in found}


def _rebuilt(store: Store) -> dict[tuple[str, str, datetime], dict[str, Any]]:
    with store.connect(write=True) as conn:
        rolled.rebuild(conn)
    return _rows(store)


def _by_hand(store: Store, since: datetime | None, job: str | None = None
             ) -> dict[str, dict[str, Any]]:
    """Per job, the figures added up straight from its batch rows."""
    with store.connect() as conn:
        rows = conn.execute(select(batches)).mappings().all()
    found: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["status"] == "running" or (since is not None and r["started_at"] < since):
            continue
        if job is not None and r["job_name"] != job:
            continue
        mine = found.setdefault(r["job_name"], {"batches": 0, "requests": 0, "4xx": 0,
                                                "none": 0, "tcp": 0, "max": None,
                                                "histogram": Counter()})
        mine["batches"] += 1
        if r["requests_succeeded"] is None:
            continue
        mine["requests"] += r["requests_succeeded"] + r["requests_failed"]
        mine["4xx"] += r["status_4xx"]
        mine["none"] += r["no_response"]
        mine["tcp"] += r["tcp_connections"]
        if r["elapsed_max_ms"] is not None:
            mine["max"] = max(mine["max"] or 0, r["elapsed_max_ms"])
        mine["histogram"].update({int(k): v for k, v in (r["elapsed_histogram"] or {}).items()})
    return found


def _check_report(store: Store, since: datetime | None, job: str | None = None) -> None:
    expected = _by_hand(store, since, job)
    got = {s.job_name: s for s in job_summaries(store, Filters(job=job, since=since))}
    assert set(got) == set(expected), since
    for name, s in got.items():
        e = expected[name]
        assert (s.batches, s.requests, s.status_4xx, s.no_response, s.tcp_connections,
                s.max_ms) == (e["batches"], e["requests"], e["4xx"], e["none"], e["tcp"],
                              e["max"]), (name, since)
        p50, p95 = percentiles(e["histogram"], (0.5, 0.95), maximum=e["max"])
        assert (s.p50_ms, s.p95_ms) == (
            None if p50 is None else round(p50, 3), None if p95 is None else round(p95, 3))


@pytest.mark.parametrize("seed", [1, 2])
def test_rollups_are_what_the_batches_add_up_to(db_url: str, seed: int) -> None:
    with open_store(db_url) as store:
        _fill(store, seed)
        written = _rows(store)
        assert {key[0] for key in written} == {"hour", "day", "month"}
        assert {10, 11} <= {key[2].month for key in written}  # a month's end inside
        assert written == _rebuilt(store)
        with store.connect() as conn:
            statuses = set(conn.execute(select(batches.c.status)).scalars())
        assert {"ok", "abandoned"} <= statuses  # the data set has both kinds


@pytest.mark.parametrize("seed", [3])
def test_a_report_from_any_time_counts_exactly_the_batches_since(db_url: str,
                                                                 seed: int) -> None:
    rng = random.Random(seed)
    with open_store(db_url) as store:
        _fill(store, seed)
        _check_report(store, None)
        _check_report(store, None, job="y")
        for since in (T0, T0 - timedelta(hours=9), T0 + timedelta(days=1, hours=-9),
                      datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 10, 31, 12, tzinfo=UTC),
                      *(T0 + timedelta(minutes=rng.randint(-2100, 2100),
                                       seconds=rng.random()) for _ in range(12))):
            _check_report(store, since)
        _check_report(store, T0 + timedelta(minutes=17, seconds=3), job="x")


@pytest.mark.parametrize("seed", [4])
def test_prune_keeps_the_rollups_right(db_url: str, seed: int,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import collector.store

    monkeypatch.setattr(collector.store, "PRUNE_ROWS", 20)  # SQLite: many transactions
    with open_store(db_url) as store:
        _fill(store, seed, n=80)
        store.prune(datetime(2026, 10, 31, 13, 7, 1, tzinfo=UTC))  # in the first month
        assert _rows(store) == _rebuilt(store)
        store.prune(T0 + timedelta(minutes=-700, seconds=30.5), job="x")
        assert _rows(store) == _rebuilt(store)
        store.prune(T0 + timedelta(minutes=-123, seconds=7))
        assert _rows(store) == _rebuilt(store)
        _check_report(store, None)
        _check_report(store, T0 - timedelta(minutes=30))
        store.prune(datetime.now(UTC) + timedelta(days=1))  # claims are stamped now
        assert _rows(store) == {}


def test_a_prune_stopped_part_way_leaves_the_rollups_right(sqlite_url: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import collector.store

    monkeypatch.setattr(collector.store, "PRUNE_ROWS", 5)
    stop = threading.Event()
    stop.set()  # it ends after its first transaction
    with open_store(sqlite_url) as store:
        _fill(store, 5, n=40)
        gone, _ = store.prune(T0 + timedelta(days=2), stop=stop)
        with store.connect() as conn:
            left = conn.execute(select(batches.c.id)
                                .where(batches.c.started_at < T0 + timedelta(days=2))).all()
        assert gone >= 1 and left  # part way
        assert _rows(store) == _rebuilt(store)


def test_two_writers_adding_to_one_hour_lose_nothing(postgres_url: str) -> None:
    # Two daemons' writers, each recording batches of the same jobs and hours at once:
    # every batch is in the rollups once, and neither waits for the other forever.
    def write(seed: int) -> None:
        rng = random.Random(seed)
        with open_store(postgres_url) as store:
            for _ in range(30):
                at = T0 + timedelta(minutes=rng.randint(0, 119))
                store.record([PendingBatch(result=_random_batch(rng, at), job_name=job,
                                           trigger="manual", worker=f"w{seed}:1",
                                           batch_key=new_batch_key())
                              for job in ("p", "q", "r")])

    with open_store(postgres_url):
        pass
    threads = [threading.Thread(target=write, args=(seed,)) for seed in (10, 11)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()
    with open_store(postgres_url) as store:
        written = _rows(store)
        assert sum(r["batches"] for (period, _, _), r in written.items()
                   if period == "day") == 2 * 30 * 3
        assert written == _rebuilt(store)


def test_db_upgrade_fills_the_rollups_from_the_stored_batches(db_url: str) -> None:
    with open_store(db_url) as store:
        _fill(store, 6)
        written = _rows(store)
        store.downgrade("0017")
        assert {key[0] for key in _rows(store)} == {"hour", "day"}
        assert store.upgrade() == ("0017", head_revision())
        assert _rows(store) == written  # the months worked out from the days
        store.downgrade("0014")
        assert store.upgrade() == ("0014", head_revision())
        assert _rows(store) == written
