"""A batch in one process: collector's runner (and store) against a bare urllib3 loop."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import urllib3

from benchmarks import server
from benchmarks.harness import Figure, Scale, interleaved, median, timed
from collector.runner import run_batch
from collector.spec import BatchSpec, Timeouts
from collector.store import open_store


def bare_loop(url: str, queries: tuple[dict[str, str], ...]) -> None:
    """What a user would write with urllib3 alone: the example's loop, body read."""
    parts = urlsplit(url)
    pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=1)
    for query in queries:
        response = pool.request("GET", parts.path, fields=query)
        response.status, response.headers.get("Content-Type"), len(response.data)
    pool.close()


def run(scale: Scale) -> list[Figure]:
    count = scale.pick(10_000, 200)
    queries = tuple({"q": f"term{i}"} for i in range(count))
    with server.running() as base, tempfile.TemporaryDirectory() as folder:
        url = f"{base}/search"
        spec = BatchSpec(url=url, queries=queries)
        # A total timeout: one deadline per request and a watchdog thread per batch.
        bounded = BatchSpec(url=url, queries=queries,
                            timeout=Timeouts(connect=10, read=10, total=30))
        with open_store(f"sqlite:///{Path(folder) / 'bench.db'}") as store:
            def stored() -> None:
                result = run_batch(spec)
                assert result.tcp_connections == 1 and result.requests_failed == 0
                store.save_batch(result, job_name="bench")

            times = interleaved(scale.rounds, {
                "bare": lambda: timed(lambda: bare_loop(url, queries)),
                "run_batch": lambda: timed(lambda: run_batch(spec)),
                "total": lambda: timed(lambda: run_batch(bounded)),
                "stored": lambda: timed(stored),
            })
    bare = median(times["bare"])
    name = f"{count:,} queries, one pool of maxsize 1, in process"
    return [
        Figure(suite="batch", name=f"run_batch, {name}", value=median(times["run_batch"]),
               unit="s", baseline="bare urllib3 loop", baseline_value=bare),
        Figure(suite="batch", name=f"run_batch with total = 30s, {name}",
               value=median(times["total"]), unit="s", baseline="run_batch without",
               baseline_value=median(times["run_batch"]), goal=">= 0.95"),
        Figure(suite="batch", name=f"run_batch + store in SQLite, {name}",
               value=median(times["stored"]), unit="s", baseline="bare urllib3 loop",
               baseline_value=bare, goal=">= 0.90"),
    ]
