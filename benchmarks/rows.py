"""Where a batch's request rows are written: after it (collector's way) or as they finish.

Issue 15 asked for the request rows to be taken off the critical path if that
measures better than the store written after the batch. This suite measures
both on the same batch, server and database, in turns:

- ``after``: ``run_batch``, then ``Store.save_batch`` (one transaction);
- ``streamed``: a writer thread holds one transaction for the whole batch (its
  batch row first, as a claim's, so the rows have their batch id), writes the
  rows in groups of 256 as the sending thread hands them over, then fills in
  the batch's counters and commits: still never a half-stored batch, but the
  write lock (SQLite) is held while the batch runs.

Both are against the bare urllib3 loop of the same round. Usage:

    python -m benchmarks --only rows [--postgres URL]
"""

from __future__ import annotations

import queue
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, update

from benchmarks import server
from benchmarks.batch import bare_loop
from benchmarks.harness import Figure, Scale, interleaved, median, postgres_database, timed
from collector.models import batches
from collector.results import BatchResult, RequestResult, new_batch_key
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.store import Store, open_store
from collector.store.batches import _insert_requests

GROUP = 256


@dataclass(frozen=True)
class _Rows:
    """A group of finished requests, as the store's row writer takes a batch's rows."""

    requests: tuple[RequestResult, ...]
    connections: tuple[()] = ()  # known when the batch is over: written after it
    keeps_bodies: bool = False  # the benchmark's job keeps no bodies


def streamed(store: Store, spec: BatchSpec) -> None:
    """The batch run with its rows written by a writer thread as they finish."""
    # Groups of finished requests, then the finished batch (its counters).
    handed: queue.SimpleQueue[tuple[RequestResult, ...] | BatchResult] = queue.SimpleQueue()
    done: list[BaseException] = []

    def write() -> None:
        try:
            with store.connect(write=True) as conn:
                batch_id = conn.execute(insert(batches).values(
                    job_name="bench", trigger="manual", started_at=datetime.now(UTC),
                    url=spec.url, method=spec.method, pool_size=spec.pool_size,
                    concurrency=spec.concurrency, worker="bench", batch_key=new_batch_key(),
                    status="running")).inserted_primary_key[0]
                while isinstance(group := handed.get(), tuple):
                    _insert_requests(conn, [(batch_id, _Rows(group))])  # type: ignore[list-item]
                conn.execute(update(batches).where(batches.c.id == batch_id).values(
                    **group.counters(), started_at=group.started_at))
        except BaseException as exc:  # re-raised in the sending thread below
            done.append(exc)

    pending: list[RequestResult] = []

    def on_request(request: RequestResult) -> None:
        pending.append(request)
        if len(pending) == GROUP:
            handed.put(tuple(pending))
            pending.clear()

    writer = threading.Thread(target=write)
    writer.start()
    result = run_batch(spec, on_request=on_request)
    handed.put(tuple(pending))
    handed.put(result)
    writer.join()
    if done:
        raise done[0]
    assert result.requests_failed == 0


def _figures(url: str, spec: BatchSpec, database: str, scale: Scale) -> list[Figure]:
    with open_store(database) as store:
        def after() -> None:
            result = run_batch(spec)
            assert result.requests_failed == 0
            store.save_batch(result, job_name="bench")

        times = interleaved(scale.rounds, {
            "bare": lambda: timed(lambda: bare_loop(url, spec.queries)),
            "after": lambda: timed(after),
            "streamed": lambda: timed(lambda: streamed(store, spec)),
        })
    bare = median(times["bare"])
    kind = database.partition(":")[0]
    name = f"{len(spec.queries):,} queries, {kind}"
    return [
        Figure(suite="rows", name=f"run_batch, then save_batch (collector), {name}",
               value=median(times["after"]), unit="s", baseline="bare urllib3 loop",
               baseline_value=bare),
        Figure(suite="rows", name=f"rows streamed to a writer thread as they finish, {name}",
               value=median(times["streamed"]), unit="s", baseline="bare urllib3 loop",
               baseline_value=bare),
    ]


def run(scale: Scale, postgres: str | None) -> list[Figure]:
    count = scale.pick(10_000, 300)
    queries = tuple({"q": f"term{i}"} for i in range(count))
    figures = []
    with server.running() as base, tempfile.TemporaryDirectory() as folder:
        url = f"{base}/search"
        spec = BatchSpec(url=url, queries=queries)
        figures += _figures(url, spec, f"sqlite:///{Path(folder) / 'rows.db'}", scale)
        if postgres:
            figures += _figures(url, spec, postgres_database(postgres, "collector_bench_rows"),
                                scale)
    return figures
