"""Saving a batch of 10,000 request rows: collector's store against the bare driver."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import tempfile
from dataclasses import replace
from pathlib import Path

from benchmarks import server
from benchmarks.harness import (
    ROOT,
    Figure,
    Scale,
    interleaved,
    median,
    postgres_database,
    timed,
)
from collector.results import BatchResult
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.store import Store, open_store

COLUMNS = ("batch_id", "position", "method", "url", "query", "started_at", "status",
           "content_type", "body_length", "content_length", "body_sha256", "elapsed_ms",
           "connect_ms", "ttfb_ms", "queued_ms", "reused", "attempts", "error_kind", "error",
           "failed_attempts")


def _rows(result: BatchResult, batch_id: int, *, naive: bool) -> list[tuple[object, ...]]:
    """The rows a driver user would build: the same values, times as the database takes them."""
    return [(batch_id, r.position, r.method, r.url, r.query,
             str(r.started_at.replace(tzinfo=None)) if naive else r.started_at, r.status,
             r.content_type, r.body_length, r.content_length, r.body_sha256, r.elapsed_ms,
             r.connect_ms, r.ttfb_ms, r.queued_ms, r.reused, r.attempts, r.error_kind, r.error,
             None) for r in result.requests]


def _sample(count: int) -> BatchResult:
    with server.running() as base:
        return run_batch(BatchSpec(url=f"{base}/search",
                                   queries=tuple({"q": f"term{i}"} for i in range(count))))


DISTINCT_BODIES = 100  # a batch's distinct bodies, each about 11 KB of text


def _keeping(result: BatchResult, versions: itertools.count[int]) -> BatchResult:
    """``result`` as a job with keep_bodies gets it: DISTINCT_BODIES bodies (a page of
    text, each a version of its own), kept, and its requests referring to them."""
    page = (ROOT / "README.md").read_bytes()
    version = next(versions)
    bodies = {}
    requests = []
    for r in result.requests:
        data = page + f"<!-- {version}.{r.position % DISTINCT_BODIES} -->".encode()
        sha256 = hashlib.sha256(data).hexdigest()
        bodies[sha256] = data
        requests.append(replace(r, body_sha256=sha256, content_sha256=sha256))
    return replace(result, requests=tuple(requests), bodies=bodies, keeps_bodies=True)


def _kept_figures(store: Store, result: BatchResult, scale: Scale, database: str
                  ) -> list[Figure]:
    """What keeping bodies costs a save: new ones (hashed, compressed, inserted), and the
    same again (looked up, their last use moved on), against the same rows without."""
    versions = itertools.count()
    again = _keeping(result, versions)
    store.save_batch(again, job_name="kept")

    def new() -> float:
        fresh = _keeping(result, versions)  # made before the clock starts
        return timed(lambda: store.save_batch(fresh, job_name="kept"))

    times = interleaved(scale.rounds, {
        "without": lambda: timed(lambda: store.save_batch(result, job_name="bench")),
        "new": new,
        "again": lambda: timed(lambda: store.save_batch(again, job_name="kept")),
    })
    rows = len(result.requests)
    return [
        Figure(suite="store", name=f"save_batch, {rows:,} rows with {DISTINCT_BODIES} new "
               f"kept bodies, {database}", value=median(times["new"]), unit="s",
               kind="times", baseline="save_batch without kept bodies",
               baseline_value=median(times["without"])),
        Figure(suite="store", name=f"save_batch, {rows:,} rows with {DISTINCT_BODIES} kept "
               f"bodies stored already, {database}", value=median(times["again"]), unit="s",
               kind="times", baseline="save_batch without kept bodies",
               baseline_value=median(times["without"])),
    ]


def run(scale: Scale, postgres: str | None) -> list[Figure]:
    count = scale.pick(10_000, 100)
    result = _sample(count)
    figures = []
    names = ", ".join(COLUMNS)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "bench.db")
        with open_store(f"sqlite:///{path}") as store:
            bare = sqlite3.connect(path)
            bare.execute("PRAGMA journal_mode=WAL")
            create = bare.execute("SELECT sql FROM sqlite_master WHERE name = 'requests'"
                                  ).fetchone()[0]
            bare.execute(create.replace("requests", "bare_requests", 1))
            # The same indexes, so that the baseline pays what the database itself does.
            for (index,) in bare.execute("SELECT sql FROM sqlite_master WHERE type = 'index' "
                                         "AND tbl_name = 'requests' AND sql IS NOT NULL"
                                         ).fetchall():
                bare.execute(index.replace(" ON requests", " ON bare_requests", 1)
                             .replace("INDEX ix_", "INDEX bare_ix_", 1))
            bare.commit()
            next_id = iter(range(1, 1_000_000))
            insert = (f"INSERT INTO bare_requests ({names}) "
                      f"VALUES ({', '.join('?' * len(COLUMNS))})")

            def executemany() -> None:
                bare.executemany(insert, _rows(result, next(next_id), naive=True))
                bare.commit()

            times = interleaved(scale.rounds, {
                "collector": lambda: timed(lambda: store.save_batch(result, job_name="bench")),
                "bare": lambda: timed(executemany),
            })
            bare.close()
        figures.append(Figure(
            suite="store", name=f"save_batch, {count:,} rows, SQLite",
            value=median(times["collector"]), unit="s",
            baseline="sqlite3 executemany", baseline_value=median(times["bare"]),
            goal=">= 0.80"))
        with open_store(f"sqlite:///{path}") as store:
            figures += _kept_figures(store, result, scale, "SQLite")

    if postgres:
        import psycopg

        url = postgres_database(postgres, "collector_bench_store")
        with open_store(url) as store, psycopg.connect(url) as bare:
            bare.execute("CREATE TABLE bare_requests (LIKE requests INCLUDING ALL)")
            bare.commit()
            next_id = iter(range(1, 1_000_000))
            insert = (f"INSERT INTO bare_requests ({names}) "
                      f"VALUES ({', '.join(['%s'] * len(COLUMNS))})")

            def pg_executemany() -> None:
                with bare.cursor() as cursor:
                    cursor.executemany(insert, _rows(result, next(next_id), naive=False))
                bare.commit()

            def pg_copy() -> None:
                with bare.cursor() as cursor, \
                        cursor.copy(f"COPY bare_requests ({names}) FROM STDIN") as copy:
                    for row in _rows(result, next(next_id), naive=False):
                        copy.write_row(row)
                bare.commit()

            times = interleaved(scale.rounds, {
                "collector": lambda: timed(lambda: store.save_batch(result, job_name="bench")),
                "executemany": lambda: timed(pg_executemany),
                "copy": lambda: timed(pg_copy),
            })
        value = median(times["collector"])
        figures += [
            Figure(suite="store", name=f"save_batch, {count:,} rows, PostgreSQL", value=value,
                   unit="s", baseline="psycopg executemany",
                   baseline_value=median(times["executemany"]), goal=">= 0.80"),
            Figure(suite="store", name=f"save_batch, {count:,} rows, PostgreSQL", value=value,
                   unit="s", baseline="psycopg COPY", baseline_value=median(times["copy"]),
                   goal=">= 0.80"),
        ]
        with open_store(url) as store:
            figures += _kept_figures(store, result, scale, "PostgreSQL")
    return figures
