"""Reports as history grows: 20,000, 100,000 and 200,000 stored batches (1M, 5M and 10M
requests of the `reports` suite's generated history: 50 jobs over 90 days), SQLite and
PostgreSQL, whole process; each size against the 20,000-batch one in the same run
(flat: 1.00), and against ``collector jobs list`` on the same database (start-up). At
100,000 batches, with statistics present (``ANALYZE``), every SQL example of the README
through the bare driver. Usage: ``python -m benchmarks --only history`` (the databases
are generated once and kept, as the `reports` suite's are).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from benchmarks.harness import COLLECTOR, Figure, Scale, interleaved, median, process
from benchmarks.reports import readme_sql, stored_history

STARTUP = ("jobs", "list")  # a command that reads one small table: start-up, near enough
COMMANDS = {
    "collector report": ("report",),
    "collector report --since 30d": ("report", "--since", "30d"),
    "collector report --job job07 --since 7d": ("report", "--job", "job07", "--since", "7d"),
}


def _analyze(url: str, dialect: str) -> None:
    if dialect == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute("ANALYZE")
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("ANALYZE")


def run(scale: Scale, postgres: str | None) -> list[Figure]:
    sizes = scale.pick((20_000, 100_000, 200_000), (100, 200))
    per_batch = scale.pick(50, 20)
    stored = {size: stored_history(scale, postgres, batches=size) for size in sizes}
    figures: list[Figure] = kept_bodies()
    for at, (label, dialect, _) in enumerate(stored[sizes[0]]):
        runs = {(name, size): process(COLLECTOR, *args, "--db", stored[size][at][2])
                for size in sizes for name, args in {**COMMANDS, "start-up": STARTUP}.items()}
        times = interleaved(scale.rounds, {f"{name} @ {size}": run
                                           for (name, size), run in runs.items()})
        for size in sizes:
            report, startup = (median(times[f"{name} @ {size}"])
                               for name in ("collector report", "start-up"))
            figures.append(Figure(
                suite="history", name=f"collector report, {size:,} batches, {label}, "
                "whole process", value=report, unit="s", kind="absolute", goal="< 0.5"))
            figures.append(Figure(
                suite="history", name=f"collector report against start-up, {size:,} "
                f"batches, {label}", value=report, unit="s", kind="times",
                baseline="collector jobs list on the same database", baseline_value=startup,
                goal="<= 1.25"))
        for name in COMMANDS:
            first = median(times[f"{name} @ {sizes[0]}"])
            for size in sizes:
                figures.append(Figure(
                    suite="history", name=f"{name}, {size:,} batches, {label}",
                    value=median(times[f"{name} @ {size}"]), unit="s", kind="times",
                    baseline=f"the same at {sizes[0]:,} batches", baseline_value=first,
                    goal="<= 1.25"))
        inside = {size: _in_process(stored[size][at][2], scale.rounds) for size in sizes}
        for size in sizes:
            figures.append(Figure(
                suite="history", name=f"job_summaries() in process (the report less start-up),"
                f" {size:,} batches, {label}", value=inside[size], unit="s", kind="times",
                baseline=f"the same at {sizes[0]:,} batches", baseline_value=inside[sizes[0]],
                goal="<= 1.25"))
        for size in sizes:
            figures.append(Figure(suite="history", name=f"bytes a request, {size * per_batch:,} "
                                  f"requests, {label} (database size / requests)",
                                  value=_size(stored[size][at][2], dialect) / (size * per_batch),
                                  unit="B", kind="absolute"))
        middle = sizes[len(sizes) // 2]
        url = stored[middle][at][2]
        _analyze(url, dialect)
        figures.extend(readme_sql(url, dialect, f"{label}, with statistics",
                                  middle * per_batch, scale, goal="< 0.5"))
    return figures


def _size(url: str, dialect: str) -> int:
    """The database's bytes on disk (SQLite: the file and its WAL)."""
    if dialect == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        wal = Path(f"{path}-wal")
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    import psycopg

    with psycopg.connect(url) as pg:
        found = pg.execute("SELECT pg_database_size(current_database())").fetchone()
    assert found is not None
    return int(found[0])


def kept_bodies() -> list[Figure]:
    """What a kept body costs: pydoc's HTML pages of 20 standard modules (15 to 200 KB,
    made on any machine), compressed as the store compresses them."""
    import pydoc

    import zstandard

    names = ("json", "csv", "argparse", "logging", "pathlib", "socket", "ssl", "sqlite3",
             "datetime", "decimal", "email", "http.client", "urllib.request", "zipfile",
             "tarfile", "textwrap", "typing", "collections", "functools", "shutil")
    pages = [pydoc.HTMLDoc().page(name, pydoc.HTMLDoc().document(pydoc.locate(name)))
             .encode() for name in names]
    raw = sum(len(page) for page in pages)
    compressor = zstandard.ZstdCompressor()
    stored = sum(len(compressor.compress(page)) for page in pages)
    return [Figure(suite="history", name=f"a kept body: {len(pages)} pydoc HTML pages, "
                   f"{raw // len(pages):,} bytes on average, stored compressed",
                   value=stored / len(pages), unit="B", kind="times",
                   baseline="the page as delivered", baseline_value=raw / len(pages))]


def _in_process(url: str, rounds: int) -> float:
    """The median time of the report's own work, its database already open."""
    import time

    from collector.report import Filters, job_summaries
    from collector.store import open_store

    with open_store(url) as store:
        job_summaries(store, Filters())  # warm: the engine, the file's pages
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            job_summaries(store, Filters())
            times.append(time.perf_counter() - start)
    return median(times)
