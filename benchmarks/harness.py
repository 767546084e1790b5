"""What every benchmark shares: interleaved rounds, medians, figures with their goals."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COLLECTOR = str(BIN / "collector")


@dataclass(frozen=True, kw_only=True)
class Scale:
    """How big the benchmarks run: ``full`` for the recorded figures, ``tiny`` for CI."""

    tiny: bool
    rounds: int
    daemon_minutes: float = 10.0

    def pick(self, full: Any, tiny: Any) -> Any:
        return tiny if self.tiny else full


@dataclass(kw_only=True)
class Figure:
    """One line of the table: a measure, its baseline from the same run, and the goal.

    ``ratio`` is stated the way the goal is: ``speed`` figures are baseline time /
    time (1.00 is as fast as the baseline), ``times`` figures are time / baseline
    time (how many times longer), ``absolute`` figures have no baseline.
    """

    suite: str
    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    kind: str = "speed"
    goal: str | None = None
    note: str = ""
    ratio: float | None = field(default=None, init=False)
    met: bool | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.baseline_value:
            self.ratio = (self.baseline_value / self.value if self.kind == "speed"
                          else self.value / self.baseline_value)
        measured = self.ratio if self.ratio is not None else self.value
        if self.goal:
            op, threshold = self.goal.split()
            self.met = {">=": measured >= float(threshold), "<=": measured <= float(threshold),
                        "<": measured < float(threshold), "==": measured == float(threshold)}[op]

    def record(self) -> dict[str, Any]:
        return asdict(self)


def interleaved(rounds: int, runs: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Each run once per round, in an order that rotates, so drift hits all alike.

    A run returns the seconds it measured (so it can leave its set-up out).
    """
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            times[name].append(runs[name]())
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def process(*command: str, env: dict[str, str] | None = None) -> Callable[[], float]:
    """A run that times a whole command, its output discarded; it must exit 0."""
    def run() -> float:
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, **(env or {})}, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr}")
        return elapsed
    return run


def rss_kib(pid: int) -> int:
    """A process's resident memory, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def postgres_database(server_url: str, name: str, *, keep: bool = False) -> str:
    """A PostgreSQL database ``name`` on the server (made afresh unless ``keep``); its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(server_url).set(drivername="postgresql")
    with psycopg.connect(base.render_as_string(hide_password=False), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and not keep:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        if not exists or not keep:
            conn.execute(f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(hide_password=False)
