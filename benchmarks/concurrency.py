"""Threads through one pool against a slow server: batch time against the ideal."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import urllib3

from benchmarks import server
from benchmarks.harness import Figure, Scale, interleaved, median, timed
from collector.runner import run_batch
from collector.spec import BatchSpec

DELAY = 0.05


def _bare(url: str, queries: tuple[dict[str, str], ...], threads: int) -> None:
    parts = urlsplit(url)
    pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=threads, block=True)

    def one(query: dict[str, str]) -> int:
        return len(pool.request("GET", parts.path, fields=query).data)

    with ThreadPoolExecutor(threads) as executor:
        list(executor.map(one, queries))
    pool.close()


def run(scale: Scale) -> list[Figure]:
    count = scale.pick(400, 32)
    queries = tuple({"q": f"term{i}"} for i in range(count))
    figures = []
    with server.running(DELAY) as base:
        url = f"{base}/search"
        for threads in (1, 4, 16, 64):
            spec = BatchSpec(url=url, queries=queries, pool_size=threads, concurrency=threads)
            rounds = 1 if threads == 1 else scale.rounds
            times = interleaved(rounds, {
                "collector": lambda spec=spec: timed(lambda: run_batch(spec)),
                "bare": lambda threads=threads: timed(lambda: _bare(url, queries, threads)),
            })
            ideal = -(-count // threads) * DELAY
            for key, label in (("collector", "run_batch"), ("bare", "bare urllib3 + threads")):
                figures.append(Figure(
                    suite="concurrency",
                    name=f"{label}, {count} queries, 50 ms server, concurrency {threads}",
                    value=median(times[key]), unit="s",
                    baseline="ideal: 50 ms x queries / concurrency, rounded up",
                    baseline_value=ideal, kind="times",
                    goal=("<= 1.10" if threads < 64 else None) if key == "collector" else None))
    return figures
