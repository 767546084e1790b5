"""Retention on SQLite: the file's size after pruning nine tenths of its requests, against
its size before, and how long the prune took against the rows' own writing. On
PostgreSQL: a month pruned from the `history` suite's 10,000,000 requests over 90 days
(a fresh copy of its kept database each round), partitions dropped: its transaction,
and the whole call with the dropped days' files removed, against a count of the same rows;
and ``collector prune --older-than 60d`` whole process (the same on other fresh copies,
start-up included).

Rows are the tests' hand-made requests (tests/dataset.py), 200 a batch; the oldest 90% of
the batches are ninety days old. Usage: ``python -m benchmarks --only retention``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.harness import COLLECTOR, Figure, Scale, median, process
from collector.store import Store, open_store
from tests.dataset import batch, request

PER_BATCH = 200


def _size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def run(scale: Scale, postgres: str | None = None) -> list[Figure]:
    figures = _sqlite(scale)
    if postgres:
        figures += _postgresql(scale, postgres)
    return figures


def _sqlite(scale: Scale) -> list[Figure]:
    batches = scale.pick(2500, 20)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "retention.db"
        with open_store(f"sqlite:///{path}") as store:
            start = time.perf_counter()
            for n in range(batches):
                at = now - timedelta(days=90 if n < batches * 0.9 else 0, minutes=batches - n)
                store.save_batch(batch(at, 1, *(
                    request(i, 200, 10.0 + i, body=1000, sha=f"{n:032x}{i:032x}", at=at,
                            query=f"q=term{i}&page={n}") for i in range(PER_BATCH))),
                    job_name="history")
            written = time.perf_counter() - start
            with store.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            before = _size(path)
            start = time.perf_counter()
            pruned = store.prune(now - timedelta(days=30))
            took = time.perf_counter() - start
            after = _size(path)
    rows = batches * PER_BATCH
    assert pruned[1] == rows * 9 // 10
    return [
        Figure(suite="retention", name=f"SQLite file after pruning 90% of {rows:,} requests",
               value=after / 1e6, unit="MB", kind="times", baseline="the file before",
               baseline_value=before / 1e6, goal="<= 0.20"),
        Figure(suite="retention", name=f"prune of {pruned[1]:,} requests on SQLite, space "
               "given back", value=took, unit="s", kind="times",
               baseline=f"writing the {rows:,} rows", baseline_value=written),
    ]


def _postgresql(scale: Scale, postgres: str) -> list[Figure]:
    from benchmarks.reports import stored_history

    batches = scale.pick(200_000, 200)
    kept = [url for _, dialect, url in stored_history(scale, postgres, batches=batches)
            if dialect == "postgresql"][0]
    source = kept.rsplit("/", 1)[1].split("?")[0]
    runs, commands = [], []
    for _ in range(scale.pick(3, 1)):  # in turn: the machine's drift falls on both alike
        runs.append(_prune_a_copy(postgres, source))
        commands.append(_prune_a_copy(postgres, source, command=True))
    n, inside, freed = runs[0].n, runs[0].inside, runs[0].freed
    what = (f"prune of a month ({n:,} of {batches * scale.pick(50, 20):,} requests) on "
            f"PostgreSQL, partitions dropped; {inside:,} rows deleted inside the day of the "
            "bound")
    return [
        Figure(suite="retention", name=f"{what}: its transaction (what the daemons' writes "
               "can wait for)", value=median([r.transaction for r in runs]), unit="s",
               kind="absolute", goal="< 1"),
        Figure(suite="retention", name=f"{what}: the whole call, {freed / 1e6:,.0f} MB of "
               "files removed after the commit", value=median([r.took for r in runs]),
               unit="s", kind="absolute", goal="< 1"),
        Figure(suite="retention", name=f"{what}: collector prune --older-than 60d, whole "
               "process", value=median([r.took for r in commands]), unit="s",
               kind="absolute", goal="< 1"),
        Figure(suite="retention", name=f"{what}: the whole call against counting the rows",
               value=median([r.took for r in runs]), unit="s", kind="times",
               baseline="count(*) of the same rows",
               baseline_value=median([r.counted for r in runs])),
    ]


@dataclass
class _Pruned:
    n: int
    inside: int
    freed: int
    counted: float
    transaction: float
    took: float


def _prune_a_copy(postgres: str, source: str, *, command: bool = False) -> _Pruned:
    """A month pruned from a fresh copy of the kept database, timed: in this process
    (``Store.prune``, its transaction timed too), or by the command (``transaction`` is
    then 0)."""
    import psycopg

    from benchmarks.harness import postgres_database

    url = postgres_database(postgres, "collector_bench_prune")  # made afresh: dropped
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('DROP DATABASE "collector_bench_prune" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "collector_bench_prune" TEMPLATE "{source}"')
    before = datetime.now(UTC) - timedelta(days=60)  # the oldest of 90 days: a month
    size = "SELECT pg_database_size(current_database())"
    boundary = f"requests_p{before:%Y%m%d}"
    with open_store(url) as store:
        with store.connect() as conn:
            start = time.perf_counter()
            n = conn.exec_driver_sql(
                "SELECT count(*) FROM requests WHERE started_at < %(b)s", {"b": before}).scalar()
            counted = time.perf_counter() - start
            inside = conn.exec_driver_sql(f"SELECT count(*) FROM {boundary}").scalar()
            conn.exec_driver_sql("CHECKPOINT")  # every page's first change: a full image
            held = conn.exec_driver_sql(size).scalar()
        transaction = 0.0
        if command:  # its bound is a little later than ``before``: a few more batches
            took = process(COLLECTOR, "prune", "--older-than", "60d", "--db", url)()
        else:
            took, pruned, transaction = _timed_prune(store, before)
            assert pruned[1] == n, (pruned, n)
        with store.connect() as conn:
            left = conn.exec_driver_sql(f"SELECT count(*) FROM {boundary}").scalar()
            freed = held - conn.exec_driver_sql(size).scalar()
            assert conn.exec_driver_sql("SELECT count(*) FROM requests WHERE started_at < "
                                        "%(b)s", {"b": before}).scalar() == 0
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('DROP DATABASE "collector_bench_prune" WITH (FORCE)')
    return _Pruned(n=n, inside=inside - left, freed=freed, counted=counted,
                   transaction=transaction, took=took)


def _timed_prune(store: Store, before: datetime) -> tuple[float, tuple[int, int], float]:
    """``Store.prune``: how long it took, what it returned, how long its transaction was."""
    from sqlalchemy import event

    begun: list[float] = []  # prune's second transaction begins once its first is done

    def on_begin(_: object) -> None:
        begun.append(time.perf_counter())

    event.listen(store.engine, "begin", on_begin)
    start = time.perf_counter()
    pruned = store.prune(before)
    took = time.perf_counter() - start
    event.remove(store.engine, "begin", on_begin)
    assert len(begun) == 2, begun  # its transaction, then the detached days dropped
    return took, pruned, begun[1] - start
