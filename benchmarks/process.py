"""Whole processes: ``collector run-once`` against a bare urllib3 script, and start-up."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks import server
from benchmarks.harness import COLLECTOR, ROOT, Figure, Scale, interleaved, median, process

# What a command that reads the database cannot avoid, with no collector code: typer,
# SQLAlchemy with its SQLite dialect, and pydantic, which typer's coercion imports for
# every option that is not a flag (it builds a TypeAdapter for each, value given or not).
_LIBRARIES = "import typer, pydantic, sqlite3, sqlalchemy.dialects.sqlite"


def _job_file(folder: str, name: str, url: str, count: int) -> str:
    path = Path(folder) / f"{name}.toml"
    queries = ", ".join(f'{{ q = "term{i}" }}' for i in range(count))
    path.write_text(f'[jobs.{name}]\nurl = "{url}"\nqueries = [ {queries} ]\n')
    return str(path)


def run_once(scale: Scale) -> list[Figure]:
    count = scale.pick(10_000, 100)
    figures = []
    with server.running() as base, tempfile.TemporaryDirectory() as folder:
        url = f"{base}/search"
        db = str(Path(folder) / "bench.db")
        process(COLLECTOR, "db", "upgrade", "--db", db)()
        big, small = _job_file(folder, "big", url, count), _job_file(folder, "small", url, 2)
        bare = [sys.executable, str(ROOT / "benchmarks" / "bare_script.py")]
        times = interleaved(scale.rounds, {
            "bare": process(*bare, big),
            "stored": process(COLLECTOR, "run-once", big, "--db", db),
            "json": process(COLLECTOR, "run-once", big, "--db", db, "--json"),
            "no-store": process(COLLECTOR, "run-once", big, "--no-store"),
        })
        baseline = median(times["bare"])
        for key, label in (("stored", "stored"), ("json", "stored, --json"),
                           ("no-store", "--no-store")):
            figures.append(Figure(
                suite="process", name=f"collector run-once, {count:,}-query job, {label}",
                value=median(times[key]), unit="s", baseline="bare urllib3 script",
                baseline_value=baseline, goal=">= 0.85" if key == "stored" else None))
        # The floor for a small job: the libraries' imports, then the bare script's work.
        floor = (f"{_LIBRARIES}; import runpy, sys; sys.argv[1:] = [{small!r}]; "
                 f"runpy.run_path({str(bare[1])!r}, run_name='__main__')")
        times = interleaved(scale.pick(scale.rounds * 3, 1), {
            "bare": process(*bare, small),
            "stored": process(COLLECTOR, "run-once", small, "--db", db),
            "floor": process(sys.executable, "-c", floor),
        })
        for key, label, goal in (
                ("stored", "collector run-once, 2-query job, stored", "<= 3.5"),
                ("floor", "the libraries' imports, then the bare script (no collector code), "
                          "2-query job", None)):
            figures.append(Figure(
                suite="process", name=label, value=median(times[key]), unit="s",
                baseline="bare urllib3 script", baseline_value=median(times["bare"]),
                kind="times", goal=goal))
    return figures


def start_up(scale: Scale) -> list[Figure]:
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "small.db")
        process(COLLECTOR, "demo", "--db", db)()
        process(COLLECTOR, "jobs", "apply", str(ROOT / "jobs"), "--db", db)()
        times = interleaved(scale.pick(scale.rounds * 3, 1), {
            "typer": process(sys.executable, "-c", "import typer"),
            "libraries": process(sys.executable, "-c", _LIBRARIES),
            "help": process(COLLECTOR, "--help"),
            "jobs list": process(COLLECTOR, "jobs", "list", "--db", db),
            "report": process(COLLECTOR, "report", "--db", db),
        })
    baseline = median(times["typer"])
    figures = [Figure(suite="start-up",
                      name=f"collector {name}" + ("" if key == "help" else " (small database)"),
                      value=median(times[key]), unit="s", baseline='python -c "import typer"',
                      baseline_value=baseline, kind="times",
                      goal="<= 1.3" if key == "help" else "<= 4.5")
               for key, name in (("help", "--help"), ("jobs list", "jobs list"),
                                 ("report", "report"))]
    figures.append(Figure(
        suite="start-up", name="the libraries alone: typer, pydantic, SQLAlchemy (no collector)",
        value=median(times["libraries"]), unit="s", baseline='python -c "import typer"',
        baseline_value=baseline, kind="times"))
    return figures
