"""Several daemons sharing one database: every fire once, and how late.

Starts N ``collector run`` processes on one database with J jobs firing every
second against a local server (tests/server.py), for S seconds, then reads
the batches: fires expected and stored, duplicates (must be 0), and the
lateness of each batch (started_at - scheduled_for). Usage:

    python benchmarks/daemons.py --db postgresql://postgres@127.0.0.1/test_bench \
        [--daemons 3] [--jobs 60] [--seconds 30]

The database should be empty (its batches are counted).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.daemons import DaemonProcess, stored_batches  # noqa: E402
from tests.server import LocalServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--daemons", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()

    with LocalServer() as server, tempfile.TemporaryDirectory() as folder:
        jobs = Path(folder) / "jobs.toml"
        jobs.write_text("".join(
            f'[jobs.j{i}]\nurl = "{server.url("/search")}"\nevery = "1s"\n'
            f'queries = [ {{ q = "a" }}, {{ q = "b" }} ]\n\n' for i in range(args.jobs)))
        daemons = [DaemonProcess(args.db, "--jobs", str(jobs), "--workers", "8")
                   for _ in range(args.daemons)]
        for daemon in daemons:
            daemon.started()
        start = time.time()
        time.sleep(args.seconds)
        codes = [daemon.stop(timeout=60) for daemon in daemons]
        elapsed = time.time() - start
    rows = stored_batches(args.db)
    keys = Counter((r["job_name"], r["scheduled_for"]) for r in rows)
    late = sorted((r["started_at"] - r["scheduled_for"]) / timedelta(milliseconds=1)
                  for r in rows)
    workers = Counter(r["worker"] for r in rows)
    print(f"{args.daemons} daemons, {args.jobs} jobs every 1s, {elapsed:.0f}s; exit codes {codes}")
    print(f"  batches {len(rows)}, distinct fires {len(keys)}, "
          f"duplicates {sum(n - 1 for n in keys.values())}, "
          f"expected about {int(args.jobs * elapsed)}")
    print(f"  per daemon: {sorted(workers.values())}")
    print(f"  lateness ms: p50 {statistics.median(late):.0f}, "
          f"p95 {late[int(len(late) * 0.95)]:.0f}, max {late[-1]:.0f}")
    print(f"  statuses: {dict(Counter(r['status'] for r in rows))}")


if __name__ == "__main__":
    main()
