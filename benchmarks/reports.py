"""Reports at a million stored requests, on SQLite and PostgreSQL, whole process.

A generated history (50 jobs, 20,000 batches of 50 requests over 90 days up
to now: mostly 200s, some 3xx/4xx/5xx, some requests with no response,
log-normal times, bodies that change now and then, connections mostly
re-used) is stored once per database and kept between runs (it is
rebuilt when its size or the schema differs). Then ``collector report``,
``report --job X --since 7d``, ``batches --limit 50`` and ``show ID`` are timed
as whole processes, and every example query of the README through the bare
driver; the plan of anything slower than a second is printed.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.harness import (
    COLLECTOR,
    Figure,
    Scale,
    interleaved,
    median,
    postgres_database,
    process,
)
from collector.results import BatchResult, PendingBatch, RequestResult, new_batch_key
from collector.store import Store, open_store
from collector.store.schema import head_revision
from tests.test_docs import readme_queries

ERRORS = ("read_timeout", "connect_timeout", "connect_refused", "connection_reset")


def generate(store: Store, *, jobs: int, batches: int, per_batch: int, seed: int = 7) -> None:
    """``batches`` batches spread over the last 90 days, round robin over ``jobs`` jobs,
    recorded 200 at a time (as the daemon's writer does)."""
    rng = random.Random(seed)
    pending: list[PendingBatch] = []
    now = datetime.now(UTC)
    step = timedelta(days=90) / batches
    bodies = {}
    for i in range(batches):
        job = f"job{i % jobs:02d}"
        at = now - timedelta(days=90) + step * i
        rows = []
        reconnect = rng.random() < 0.1
        for position in range(per_batch):
            query = f"q=term{position}"
            draw = rng.random()
            status = (None if draw < 0.04 else 503 if draw < 0.06 else 404 if draw < 0.09
                      else 301 if draw < 0.11 else 200)
            elapsed = rng.lognormvariate(4.0, 0.6)  # median about 55 ms
            key = (job, query)
            if status == 200 and (key not in bodies or rng.random() < 0.02):
                bodies[key] = f"{rng.getrandbits(128):032x}"
            body = rng.randint(200, 20_000) if status else None
            rows.append(RequestResult(
                position=position, method="GET", url=f"http://h{i % jobs}.test/s?{query}",
                query=query, started_at=at + timedelta(milliseconds=position * 60),
                status=status, content_type="application/json" if status else None,
                body_length=body, content_length=body,
                body_sha256=bodies.get(key) if status == 200 else None,
                elapsed_ms=elapsed if status else 10_000.0,
                connect_ms=1.2 if position == 0 or reconnect else None,
                ttfb_ms=elapsed * 0.8 if status else None,
                reused=position > 0 and not (reconnect and position % 10 == 0), attempts=1,
                error_kind=None if status else rng.choice(ERRORS),  # type: ignore[arg-type]
                error=None if status else "no response"))
        pending.append(PendingBatch(result=BatchResult(
            url=f"http://h{i % jobs}.test/s", method="GET", pool_size=1, concurrency=1,
            started_at=at, finished_at=at + timedelta(seconds=3), num_connections=1,
            num_requests=per_batch, tcp_connections=1 + (per_batch // 10 if reconnect else 0),
            requests=tuple(rows)), job_name=job, trigger="manual", worker="bench:1",
            batch_key=new_batch_key()))
        if len(pending) == 200 or i == batches - 1:
            store.record(pending)
            pending = []


def _ready(url: str, *, batches: int, per_batch: int) -> bool:
    """The stored history is there, complete, at this collector's schema."""
    try:
        with open_store(url, ensure_schema=False) as store:
            if store.revision() != head_revision():
                return False
            counts = store.info().row_counts
    except Exception:  # noqa: BLE001 - a missing or foreign database is rebuilt
        return False
    return counts.get("batches") == batches and counts.get("requests") == batches * per_batch


def _run_sql(url: str, dialect: str, sql: str) -> float:
    start = time.perf_counter()
    if dialect == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute(sql).fetchall()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            pg.execute(sql).fetchall()
    return time.perf_counter() - start


def _plan(url: str, dialect: str, sql: str) -> str:
    if dialect == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
        conn.close()
        return "; ".join(str(r[-1]) for r in rows)
    import psycopg

    with psycopg.connect(url) as pg:
        return "; ".join(r[0].strip() for r in pg.execute(f"EXPLAIN {sql}").fetchall())


def stored_history(scale: Scale, postgres: str | None, *, batches: int
                   ) -> list[tuple[str, str, str]]:
    """(label, dialect, URL) of a kept database per dialect holding ``batches`` batches of
    the generated history, made when missing or stale."""
    jobs, per_batch = scale.pick((50, 50), (5, 20))
    total = batches * per_batch
    folder = Path(tempfile.gettempdir())
    targets = [("SQLite", "sqlite", f"sqlite:///{folder}/collector-bench-reports-{total}.db")]
    if postgres:
        targets.append(("PostgreSQL", "postgresql", postgres_database(
            postgres, f"collector_bench_reports_{total}", keep=True)))
    ready = []
    for label, dialect, url in targets:
        if not _ready(url, batches=batches, per_batch=per_batch):
            print(f"   generating {total:,} requests in {label}", file=sys.stderr, flush=True)
            if dialect == "sqlite":
                Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
            else:
                url = postgres_database(postgres or "", url.rsplit("/", 1)[1])
            with open_store(url) as store:
                today = datetime.now(UTC).date()  # PostgreSQL: each day in its partition
                store.make_partitions([today - timedelta(days=n) for n in range(92)])
                generate(store, jobs=jobs, batches=batches, per_batch=per_batch)
        ready.append((label, dialect, url))
    return ready


def run(scale: Scale, postgres: str | None) -> list[Figure]:
    batches = scale.pick(20_000, 100)
    figures = []
    for label, dialect, url in stored_history(scale, postgres, batches=batches):
        total = batches * scale.pick(50, 20)
        middle = batches // 2
        commands = {
            "collector report": ("report",),
            "collector report --job job07 --since 7d": ("report", "--job", "job07",
                                                        "--since", "7d"),
            "collector batches --limit 50": ("batches", "--limit", "50"),
            f"collector show {middle}": ("show", str(middle)),
        }
        times = interleaved(scale.pick(3, 1), {
            name: process(COLLECTOR, *args, "--db", url) for name, args in commands.items()})
        for name in commands:
            figures.append(Figure(suite="reports", name=f"{name}, {total:,} requests, {label}",
                                  value=median(times[name]), unit="s", kind="absolute",
                                  goal="< 1"))
        figures.extend(readme_sql(url, dialect, label, total, scale))
    return figures


def readme_sql(url: str, dialect: str, label: str, total: int, scale: Scale,
               goal: str = "< 1") -> list[Figure]:
    """Every example query of the README through the bare driver; the plan of a slow one."""
    figures = []
    for title, sql in readme_queries(dialect).items():
        value = median([_run_sql(url, dialect, sql) for _ in range(scale.pick(3, 1))])
        figure = Figure(suite="reports", name=f"README SQL: {title}, {total:,} requests, "
                        f"{label}", value=value, unit="s", kind="absolute", goal=goal)
        if value >= float(goal.split()[1]):
            figure.note = f"plan: {_plan(url, dialect, sql)}"
        figures.append(figure)
    return figures
