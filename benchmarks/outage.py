"""One daemon through an outage: every fire of the outage stored once, and how soon.

``collector run`` as a real process with J one-query jobs every E seconds
(spread by ``jitter``) against the fast local server. After a warm-up, the
database goes away for S seconds in one of three ways, then comes back:

- ``cut``: PostgreSQL behind a TCP proxy (tests/proxy.py) that closes every
  connection and refuses new ones;
- ``freeze``: the same proxy keeps every connection open and forwards nothing
  (a frozen server, a network that drops packets);
- ``lock``: SQLite, another connection holds the write lock (``BEGIN
  IMMEDIATE``) for S seconds.

Measured: the fires the schedule holds from three intervals before the outage
to four after it (a 12 s outage of a 1 s job: 19 fires) (computed with the daemon's own
:class:`~collector.schedule.Fires`), how many of them are stored, how many
twice, the skips the daemon logged for them, how long after the return the
spool was empty, and the lateness of the stored fires. Usage:

    python -m benchmarks.outage --db postgresql://postgres@127.0.0.1/test --mode cut \\
        --jobs 750 --every 5 --outage 7
    python -m benchmarks.outage --db sqlite:// --mode lock --jobs 1 --every 1 --outage 12
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from benchmarks import server
from benchmarks.harness import percentile, postgres_database
from benchmarks.load import jobs_file, scheduled_fires
from tests.daemons import COLLECTOR, DaemonProcess, stored_batches
from tests.proxy import Proxy

MODES = ("cut", "freeze", "lock")
BEFORE, AFTER = 3, 4  # the window: from 3 intervals before the outage to 4 after it


@dataclass(frozen=True, kw_only=True)
class Outage:
    """What one run measured."""

    mode: str
    seconds: float
    scheduled: int
    stored: int
    duplicates: int
    skipped: dict[str, int]
    spooled: int
    drained_after: float | None  # seconds from the return to an empty spool
    late_ms: list[float]

    def summary(self) -> str:
        late = self.late_ms or [float("nan")]
        drained = ("never spooled" if self.drained_after is None
                   else f"spool empty {self.drained_after:.1f}s after the return")
        return (f"{self.mode} {self.seconds:g}s: stored {self.stored}/{self.scheduled} "
                f"({self.stored / max(1, self.scheduled):.1%}), duplicates {self.duplicates}, "
                f"skipped {self.skipped or 'none'}, {self.spooled} batches spooled, {drained}; "
                f"late p50 {percentile(late, 0.5):.0f} ms p99 {percentile(late, 0.99):.0f} ms "
                f"max {max(late):.0f} ms")


@contextmanager
def _reached(db: str, mode: str) -> Iterator[tuple[str, Proxy | None]]:
    """The URL the daemon is given, and the proxy in between (cut and freeze)."""
    if mode == "lock":
        yield db, None
        return
    url = make_url(db)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False), proxy
    finally:
        proxy.close()


def _spooled(folder: Path) -> int:
    try:
        return sum(name.endswith(".json") and not name.startswith(".")
                   for name in os.listdir(folder))
    except FileNotFoundError:
        return 0


def _drained(lines: list[dict[str, Any]], back: datetime) -> datetime | None:
    """When the daemon last said its spool was empty, after ``back``; None if it did not
    (or spooled nothing)."""
    said = [datetime.fromisoformat(line["time"]) for line in list(lines)
            if line["message"].startswith("spool: ") and line["message"].endswith(" 0 left")]
    return said[-1] if said and said[-1] > back else None


def measure(db: str, *, mode: str, jobs: int, every: float, seconds: float,
            timeout: float = 120) -> Outage:
    """``db``: a PostgreSQL database (cut, freeze) or a SQLite file (lock)."""
    subprocess.run([str(COLLECTOR), "db", "upgrade", "--db", db], check=True,
                   capture_output=True, timeout=120)
    with server.running() as base, tempfile.TemporaryDirectory() as folder, \
            _reached(db, mode) as (through, proxy):
        spool = Path(folder) / "spool"
        path = jobs_file(folder, f"{base}/search", jobs, every)
        daemon = DaemonProcess(through, "--jobs", str(path), "--log-level", "debug",
                               env={"COLLECTOR_SPOOL_DIR": str(spool)})
        locker = None
        try:
            daemon.started()
            time.sleep((BEFORE + 1) * every + 1)  # warm-up, and the window's first fires
            start = datetime.now(UTC)
            if proxy is not None:
                proxy.cut() if mode == "cut" else proxy.freeze()
            else:
                locker = sqlite3.connect(make_url(db).database or "", isolation_level=None)
                locker.execute("BEGIN IMMEDIATE")
            time.sleep(seconds)
            if proxy is not None:
                proxy.restore()
            else:
                assert locker is not None
                locker.execute("ROLLBACK")
            back = datetime.now(UTC)
            deadline = time.monotonic() + timeout
            while not (_spooled(spool) == 0 and _drained(daemon.lines, back) is not None):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the spool still held {_spooled(spool)} batches "
                                       f"{timeout:g}s after the return")
                time.sleep(0.05)
            # The window's last fires are written.
            time.sleep(max(0.0, (back - datetime.now(UTC)).total_seconds() + AFTER * every + 2))
        finally:
            if locker is not None:
                locker.close()
            code = daemon.stop(timeout=120)
            if os.environ.get("COLLECTOR_BENCH_LOG"):
                Path(os.environ["COLLECTOR_BENCH_LOG"]).write_text("".join(daemon.raw))
    if code:
        raise RuntimeError(f"the daemon exited {code}: {''.join(daemon.raw[-20:])}")
    window_start = start - timedelta(seconds=BEFORE * every)
    window_end = back + timedelta(seconds=AFTER * every)
    wanted = scheduled_fires([f"j{i:05d}" for i in range(jobs)], every, window_start, window_end)
    rows = [r for r in stored_batches(db) if (r["job_name"], r["scheduled_for"]) in wanted]
    keys = Counter((r["job_name"], r["scheduled_for"]) for r in rows)
    skips = Counter(line["skipped"]["reason"] for line in daemon.lines
                    if "skipped" in line and (line["skipped"]["job"], datetime.fromisoformat(
                        line["skipped"]["scheduled_for"])) in wanted)
    spooled = sum(line["message"].startswith("batch spooled") for line in daemon.lines)
    drained = _drained(daemon.lines, back)
    return Outage(mode=mode, seconds=seconds, scheduled=len(wanted), stored=len(keys),
                  duplicates=sum(n - 1 for n in keys.values()), skipped=dict(skips),
                  spooled=spooled,
                  drained_after=None if drained is None else (drained - back).total_seconds(),
                  late_ms=[(r["started_at"] - r["scheduled_for"]) / timedelta(milliseconds=1)
                           for r in rows])


def database(db: str, mode: str, folder: str) -> str:
    """A fresh database for ``mode``: one of its own on the PostgreSQL server of ``db``,
    or a SQLite file in ``folder``."""
    if mode == "lock":
        return f"sqlite:///{folder}/outage.db"
    return postgres_database(db, f"collector_bench_outage_{mode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=os.environ.get("COLLECTOR_TEST_POSTGRES_URL"),
                        help="a PostgreSQL server URL (cut, freeze: a database is made on it)")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--every", type=float, default=1)
    parser.add_argument("--outage", type=float, default=12)
    args = parser.parse_args()
    if args.mode != "lock" and not args.db:
        parser.error("--db (a PostgreSQL server) is needed for cut and freeze")
    with tempfile.TemporaryDirectory() as folder:
        result = measure(database(args.db or "", args.mode, folder), mode=args.mode,
                         jobs=args.jobs, every=args.every, seconds=args.outage)
    print(f"{args.jobs} jobs every {args.every:g}s: {result.summary()}", file=sys.stderr)


if __name__ == "__main__":
    main()
