"""One daemon at a load: fires scheduled, stored and skipped, lateness, CPU per fire.

``collector run`` as a real process with J one-query jobs every E seconds,
spread over the interval by ``jitter`` (as a user with many jobs writes them),
against the fast local server (its own process). After a warm-up of one
interval, a measuring window of W seconds: the fires the schedule holds in it
(computed with the daemon's own :class:`~collector.schedule.Fires`), the
batches stored for them, the skips the daemon counted (its metrics), the
lateness of each stored fire (``started_at - scheduled_for``) and the
daemon's CPU time over the window (``/proc/PID/stat``), per fire. Usage:

    python -m benchmarks.load --db postgresql://postgres@127.0.0.1/test --jobs 1000 --every 5

The database is made afresh (PostgreSQL: a database of its own on the server).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import server
from benchmarks.harness import percentile, postgres_database
from collector.schedule import Fires
from collector.spec import BatchSpec, JobSpec
from tests.daemons import DaemonProcess, stored_batches

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, kw_only=True)
class Load:
    """What one run measured."""

    scheduled: int
    stored: int
    duplicates: int
    skipped: dict[str, float]
    late_ms: list[float]
    cpu_seconds: float
    window: float
    scrape_seconds: float

    @property
    def cpu_per_fire_ms(self) -> float:
        return self.cpu_seconds / max(1, self.stored) * 1000

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.window

    def summary(self) -> str:
        late = self.late_ms or [float("nan")]
        return (f"stored {self.stored}/{self.scheduled} ({self.stored / self.scheduled:.1%}), "
                f"duplicates {self.duplicates}, skipped {self.skipped or 'none'}, "
                f"late p50 {percentile(late, 0.5):.0f} ms p99 {percentile(late, 0.99):.0f} ms "
                f"max {max(late):.0f} ms, CPU {self.cpu_share:.1%} of a core, "
                f"{self.cpu_per_fire_ms:.2f} ms per fire; a /metrics scrape took "
                f"{self.scrape_seconds:.2f}s")


def jobs_file(folder: str, url: str, jobs: int, every: float, queries: int = 1) -> Path:
    path = Path(folder) / "jobs.toml"
    batch = ", ".join(f'{{ q = "q{i}" }}' for i in range(queries))
    path.write_text("".join(
        f'[jobs.j{i:05d}]\nurl = "{url}"\nevery = "{every:g}s"\njitter = "{every:g}s"\n'
        f'queries = [ {batch} ]\n\n' for i in range(jobs)))
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def skipped(metrics_url: str) -> Counter[str]:
    """collector_fires_skipped_total by reason, summed over jobs."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    counts: Counter[str] = Counter()
    for match in re.finditer(r'^collector_fires_skipped_total\{[^}]*reason="([^"]+)"[^}]*\} '
                             r'(\S+)$', text, re.M):
        counts[match[1]] += float(match[2])
    return counts


def scheduled_fires(names: Sequence[str], every: float, start: datetime,
                    end: datetime) -> set[tuple[str, datetime]]:
    fires: set[tuple[str, datetime]] = set()
    for name in names:
        schedule = Fires(JobSpec(name=name, batch=BatchSpec(url="http://127.0.0.1/"),
                                 every=every, jitter=every))
        fire = schedule.next_after(None, start)
        while fire is not None and fire < end:
            fires.add((name, fire))
            fire = schedule.next_after(fire, end)
    return fires


def measure(db: str, *, jobs: int, every: float, window: float,
            options: Sequence[str] = (), queries: int = 1) -> Load:
    with server.running() as base, tempfile.TemporaryDirectory() as folder:
        path = jobs_file(folder, f"{base}/search", jobs, every, queries)
        daemon = DaemonProcess(db, "--jobs", str(path), "--metrics-port", "0", *options)
        try:
            daemon.started()
            port = next(int(m[1]) for line in daemon.lines
                        if (m := re.search(r":(\d+)/metrics", line["message"])))
            metrics = f"http://127.0.0.1:{port}/metrics"
            time.sleep(every)  # warm-up: the first interval, the start-up catch-up
            # A scrape at 10,000 jobs costs the daemon seconds of CPU (every job's series):
            # made outside the window, and the window starts once its backlog is gone.
            scrape = time.monotonic()
            skips_before = skipped(metrics)
            scrape = time.monotonic() - scrape
            time.sleep(min(every, 2 * scrape + 1))
            start, cpu_before = datetime.now(UTC), cpu_seconds(daemon.pid)
            time.sleep(window)
            end, cpu_after = datetime.now(UTC), cpu_seconds(daemon.pid)
            skips_after = skipped(metrics)
            time.sleep(min(every, 10) + 2)  # the last fires of the window finish
        finally:
            code = daemon.stop(timeout=120)
            if os.environ.get("COLLECTOR_BENCH_LOG"):
                Path(os.environ["COLLECTOR_BENCH_LOG"]).write_text("".join(daemon.raw))
    if code:
        raise RuntimeError(f"the daemon exited {code}: {''.join(daemon.raw[-20:])}")
    wanted = scheduled_fires([f"j{i:05d}" for i in range(jobs)], every, start, end)
    rows = [r for r in stored_batches(db) if (r["job_name"], r["scheduled_for"]) in wanted]
    keys = Counter((r["job_name"], r["scheduled_for"]) for r in rows)
    return Load(scheduled=len(wanted), stored=len(keys),
                duplicates=sum(n - 1 for n in keys.values()),
                skipped={k: v for k, v in (skips_after - skips_before).items() if v},
                late_ms=[(r["started_at"] - r["scheduled_for"]) / timedelta(milliseconds=1)
                         for r in rows],
                cpu_seconds=cpu_after - cpu_before, window=(end - start).total_seconds(),
                scrape_seconds=scrape)


def fresh_database(db: str, name: str) -> str:
    if db.startswith("postgresql"):
        return postgres_database(db, name)
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True,
                        help="a PostgreSQL server URL (a database is made on it) or sqlite:///")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--every", type=float, default=5)
    parser.add_argument("--window", type=float, default=30)
    parser.add_argument("--queries", type=int, default=1)
    parser.add_argument("options", nargs="*", help="collector run options (after --)")
    args = parser.parse_args()
    db = fresh_database(args.db, "collector_bench_load")
    load = measure(db, jobs=args.jobs, every=args.every, window=args.window,
                   options=args.options, queries=args.queries)
    print(f"{args.jobs} jobs every {args.every:g}s, {args.window:g}s window: {load.summary()}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
