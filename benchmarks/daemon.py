"""The daemon: through outages, at load, and several daemons on one PostgreSQL.

Outages (benchmarks/outage.py): a 7 s cut at 150 fires a second, a 12 s
freeze and a 12 s SQLite write lock with a 1 s job; every fire of the outage
stored once, and the spool empty soon after the return. Load
(benchmarks/load.py): 1,000 jobs every 5 s, 10,000 every 60 s and 3,000 every
5 s, each fire stored, p99 lateness and the daemon's CPU per fire.

1,000 jobs every 60 s, spread over the minute by ``jitter``, two queries each
against the fast local server; ``collector run`` as a real process for
``--daemon-minutes``. Lateness is ``started_at - scheduled_for`` of every batch
after the first cycle (the warm-up), memory the daemon's resident set, read
from /proc every few seconds: its growth from the end of the warm-up to the
end. Then the same jobs on PostgreSQL with one daemon and with three: every
fire stored once. Last, how many claims per second PostgreSQL takes from four
threads, each claiming fires of its own.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import server
from benchmarks.harness import Figure, Scale, percentile, postgres_database, rss_kib
from collector.spec import BatchSpec
from collector.store import open_store
from tests.daemons import DaemonProcess, stored_batches


def _jobs_file(folder: str, url: str, jobs: int, every: int) -> str:
    path = Path(folder) / "jobs.toml"
    path.write_text("".join(
        f'[jobs.j{i:04d}]\nurl = "{url}"\nevery = "{every}s"\njitter = "{every}s"\n'
        f'queries = [ {{ q = "a" }}, {{ q = "b" }} ]\n\n' for i in range(jobs)))
    return str(path)


def _run_daemons(db: str, jobs_file: str, count: int, seconds: float,
                 every: int) -> tuple[list[dict[str, object]], list[tuple[float, int]]]:
    """``count`` daemons for ``seconds``; the stored batches, and the first daemon's RSS."""
    daemons = [DaemonProcess(db, "--jobs", jobs_file, "--workers", "8") for _ in range(count)]
    for daemon in daemons:
        daemon.started()
    start, memory = time.monotonic(), []
    while time.monotonic() - start < seconds:
        memory.append((time.monotonic() - start, rss_kib(daemons[0].pid)))
        time.sleep(min(5.0, every / 4))
    codes = [daemon.stop(timeout=60) for daemon in daemons]
    if any(codes):
        raise RuntimeError(f"a daemon exited {codes}")
    return stored_batches(db), memory


def _lateness_ms(rows: list[dict[str, object]], after: datetime) -> list[float]:
    return [(r["started_at"] - r["scheduled_for"]) / timedelta(milliseconds=1)  # type: ignore[operator]
            for r in rows if r["scheduled_for"] is not None and r["scheduled_for"] >= after]  # type: ignore[operator]


def _claims_per_second(url: str, seconds: float, group: int = 0) -> float:
    """Claims a second from 4 threads, each claiming fires of its own: one a call with
    Store.claim (``group`` 0), else ``group`` a call with Store.claim_fires, as the
    daemon's claims thread makes them (new jobs each call, so none is busy)."""
    spec = BatchSpec(url="http://127.0.0.1:9/")
    done = Counter[int]()
    with open_store(url) as store:
        base = datetime(2030, 1, 1, tzinfo=UTC)

        def claim(thread: int) -> None:
            end, i = time.monotonic() + seconds, 0
            while time.monotonic() < end:
                at = base + timedelta(seconds=i)
                if group:
                    store.claim_fires([(f"g{thread}-{i}-{j}", spec, at) for j in range(group)],
                                      worker=f"bench:{thread}", now=at)
                else:
                    store.claim(f"claims{thread}", spec, scheduled_for=at, exclusive=False)
                i += 1
            done[thread] = i * max(1, group)

        threads = [threading.Thread(target=claim, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return sum(done.values()) / seconds


def load_figures(scale: Scale, postgres: str) -> list[Figure]:
    """One daemon at a load (benchmarks/load.py): every fire stored, lateness, CPU per fire."""
    from benchmarks import load

    figures = []
    runs = scale.pick([(1000, 5, 30), (10000, 60, 60), (3000, 5, 30)], [(50, 1, 3)])
    for jobs, every, window in runs:
        label = f"{jobs} jobs every {every}s, PostgreSQL"
        print(f"   {label}, {window}s window", file=sys.stderr, flush=True)
        url = load.fresh_database(postgres, "collector_bench_load")
        measured = load.measure(url, jobs=jobs, every=every, window=window)
        late = measured.late_ms or [float("nan")]
        figures += [
            Figure(suite="daemon", name=f"fires stored / scheduled, {label}",
                   value=measured.stored / max(1, measured.scheduled) * 100, unit="%",
                   kind="absolute", goal=">= 100", note=measured.summary()),
            Figure(suite="daemon", name=f"fire lateness p99, {label}",
                   value=percentile(late, 0.99), unit="ms", kind="absolute", goal="< 250"),
            Figure(suite="daemon", name=f"daemon CPU per fire, {label}",
                   value=measured.cpu_per_fire_ms, unit="ms", kind="absolute", goal="<= 1",
                   note=f"{measured.cpu_share:.1%} of a core"),
        ]
    return figures


def outage_figures(scale: Scale, postgres: str | None) -> list[Figure]:
    """A cut, a freeze and a SQLite lock (benchmarks/outage.py): every fire stored once."""
    from benchmarks import outage

    runs = scale.pick([("cut", 750, 5, 7), ("freeze", 1, 1, 12), ("lock", 1, 1, 12)],
                      [("cut", 20, 1, 2), ("freeze", 1, 1, 2), ("lock", 1, 1, 2)])
    figures = []
    with tempfile.TemporaryDirectory() as folder:
        for mode, jobs, every, seconds in runs:
            if mode != "lock" and not postgres:
                continue
            print(f"   {mode} {seconds}s, {jobs} jobs every {every}s", file=sys.stderr,
                  flush=True)
            done = outage.measure(outage.database(postgres or "", mode, folder), mode=mode,
                                  jobs=jobs, every=every, seconds=seconds)
            figures += [
                Figure(suite="daemon", name=f"{mode} {seconds}s, {jobs} jobs every {every}s: "
                       "fires stored once / scheduled", unit="%", kind="absolute",
                       value=(done.stored - done.duplicates) / max(1, done.scheduled) * 100,
                       goal=">= 100", note=done.summary()),
                Figure(suite="daemon", name=f"{mode} {seconds}s, {jobs} jobs every {every}s: "
                       "spool empty after the return", unit="seconds", kind="absolute",
                       value=done.drained_after if done.drained_after is not None else 0.0,
                       goal="< 10"),
            ]
    return figures


def run(scale: Scale, postgres: str | None) -> list[Figure]:
    figures = outage_figures(scale, postgres)
    if postgres:
        figures += load_figures(scale, postgres)
    return figures + cluster_figures(scale, postgres)


def cluster_figures(scale: Scale, postgres: str | None) -> list[Figure]:
    """1,000 jobs a minute for ``--daemon-minutes``: lateness and memory on SQLite; one
    and three daemons on PostgreSQL; claims a second."""
    jobs, every = scale.pick((1000, 60), (20, 2))
    seconds = scale.pick(scale.daemon_minutes * 60, 8.0)
    figures = []
    with server.running() as base, tempfile.TemporaryDirectory() as folder:
        jobs_file = _jobs_file(folder, f"{base}/search", jobs, every)
        db = f"sqlite:///{folder}/daemon.db"
        warm = datetime.now(UTC) + timedelta(seconds=every)
        print(f"   1 daemon, {jobs} jobs every {every}s, SQLite, {seconds:.0f}s",
              file=sys.stderr, flush=True)
        rows, memory = _run_daemons(db, jobs_file, 1, seconds, every)
        late = _lateness_ms(rows, warm)
        after_warm = [kib for at, kib in memory if at >= every] or [memory[-1][1]]
        label = f"{jobs} jobs every {every}s, {seconds / 60:.1f} min, SQLite"
        figures += [
            Figure(suite="daemon", name=f"fire lateness p99, {label}",
                   value=percentile(late, 0.99) if late else float("nan"), unit="ms",
                   kind="absolute", goal="< 100",
                   note=f"p50 {percentile(late, 0.5):.0f} ms, max {max(late):.0f} ms, "
                   f"{len(late)} fires after warm-up" if late else "no fires after warm-up"),
            Figure(suite="daemon", name=f"resident memory growth after warm-up, {label}",
                   value=(after_warm[-1] - after_warm[0]) / 1024, unit="MiB", kind="absolute",
                   goal="< 5", note=f"{after_warm[0] / 1024:.0f} MiB after warm-up"),
        ]
        if postgres:
            single_late: list[float] = []
            for count in (1, 3):
                url = postgres_database(postgres, f"collector_bench_daemons_{count}")
                print(f"   {count} daemon(s), {jobs} jobs every {every}s, PostgreSQL, "
                      f"{seconds:.0f}s", file=sys.stderr, flush=True)
                warm = datetime.now(UTC) + timedelta(seconds=every)
                rows, _ = _run_daemons(url, jobs_file, count, seconds, every)
                keys = Counter((r["job_name"], r["scheduled_for"]) for r in rows)
                late = _lateness_ms(rows, warm)
                workers = sorted(Counter(r["worker"] for r in rows).values())
                figures.append(Figure(
                    suite="daemon",
                    name=f"duplicate fires, {count} daemon{'s' * (count > 1)} on one PostgreSQL",
                    value=sum(n - 1 for n in keys.values()), unit="fires", kind="absolute",
                    goal="== 0", note=f"{len(keys)} fires, per daemon {workers}"))
                if count == 1:
                    single_late = late
                elif late and single_late:
                    figures.append(Figure(
                        suite="daemon", name=f"fire lateness p99, {count} daemons, PostgreSQL",
                        value=percentile(late, 0.99), unit="ms", kind="times",
                        baseline="one daemon, same jobs",
                        baseline_value=percentile(single_late, 0.99)))
            url = postgres_database(postgres, "collector_bench_claims")
            one = _claims_per_second(url, scale.pick(10.0, 2.0))
            figures += [
                Figure(suite="daemon", name="claims per second, 4 threads, one a call, "
                       "PostgreSQL", value=one, unit="claims/s", kind="absolute"),
                Figure(suite="daemon", name="claims per second, 4 threads, 100 a call "
                       "(the daemon's way), PostgreSQL", unit="claims/s", kind="absolute",
                       value=_claims_per_second(url, scale.pick(10.0, 2.0), group=100),
                       note=f"{one:.0f} claims/s one a call"),
            ]
    return figures
