"""Run collector's benchmarks and print figure, baseline, ratio and goal; write JSON.

    python -m benchmarks                          # everything, at the recorded scale
    python -m benchmarks --tiny                   # every benchmark, tiny (what CI runs)
    python -m benchmarks --only batch,store --rounds 7 --json out.json

PostgreSQL figures need --postgres URL (or $COLLECTOR_TEST_POSTGRES_URL); the
benchmarks create their own databases on that server (collector_bench_*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.harness import Figure, Scale

SUITES = ("batch", "instructions", "peers", "phases", "store", "rows", "run-once", "start-up",
          "concurrency", "reports", "history", "retention", "daemon")


def _suite(name: str, scale: Scale, postgres: str | None) -> Callable[[], list[Figure]]:
    # Each suite imported when it runs: --only batch never imports the others' needs.
    if name == "batch":
        from benchmarks import batch
        return lambda: batch.run(scale)
    if name == "instructions":
        from benchmarks import instructions
        return lambda: instructions.run(scale)
    if name == "peers":
        from benchmarks import peers
        return lambda: peers.run(scale)
    if name == "phases":
        from benchmarks import phases
        return lambda: phases.run(scale)
    if name == "store":
        from benchmarks import store
        return lambda: store.run(scale, postgres)
    if name == "rows":
        from benchmarks import rows
        return lambda: rows.run(scale, postgres)
    if name == "run-once":
        from benchmarks import process
        return lambda: process.run_once(scale)
    if name == "start-up":
        from benchmarks import process
        return lambda: process.start_up(scale)
    if name == "concurrency":
        from benchmarks import concurrency
        return lambda: concurrency.run(scale)
    if name == "reports":
        from benchmarks import reports
        return lambda: reports.run(scale, postgres)
    if name == "history":
        from benchmarks import history
        return lambda: history.run(scale, postgres)
    if name == "retention":
        from benchmarks import retention
        return lambda: retention.run(scale, postgres)
    from benchmarks import daemon
    return lambda: daemon.run(scale, postgres)


def _ratio(figure: Figure) -> str:
    if figure.ratio is None:
        return "-"
    return f"{figure.ratio:.2f}" + ("x" if figure.kind == "times" else "")


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "instructions":
        return f"{value:,.0f}"
    return f"{value * 1000:.1f} ms" if unit == "s" and value < 10 else f"{value:.3g} {unit}"


def print_table(figures: list[Figure]) -> None:
    print("| suite | figure | value | baseline | baseline value | ratio | goal | met |")
    print("|---|---|---|---|---|---|---|---|")
    for f in figures:
        met = {True: "yes", False: "**no**", None: ""}[f.met]
        print(f"| {f.suite} | {f.name} | {_value(f.value, f.unit)} | {f.baseline or '-'} | "
              f"{_value(f.baseline_value, f.unit)} | {_ratio(f)} | {f.goal or ''} | {met} |"
              + (f" {f.note}" if f.note else ""))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true",
                        help="every benchmark at a tiny scale, one round (CI: it must run)")
    parser.add_argument("--only", help=f"comma-separated suites: {', '.join(SUITES)}")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--postgres", default=os.environ.get("COLLECTOR_TEST_POSTGRES_URL"),
                        help="a PostgreSQL server URL; without it PostgreSQL figures are skipped")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--daemon-minutes", type=float, default=10.0,
                        help="how long each daemon run lasts at full scale (default 10)")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(SUITES)
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}: choose from {', '.join(SUITES)}")
    scale = Scale(tiny=args.tiny, rounds=1 if args.tiny else args.rounds,
                  daemon_minutes=args.daemon_minutes)

    figures: list[Figure] = []
    started = time.perf_counter()
    for name in chosen:
        print(f"-- {name}", file=sys.stderr, flush=True)
        found = _suite(name, scale, args.postgres)()
        for figure in found:  # as they come: the whole run takes a while
            print(f"   {figure.name}: {_value(figure.value, figure.unit)}, ratio "
                  f"{_ratio(figure)}", file=sys.stderr, flush=True)
        figures += found
    print_table(figures)
    if args.json:
        args.json.write_text(json.dumps({
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(), "processor": platform.processor()},
            "scale": "tiny" if args.tiny else "full", "rounds": scale.rounds,
            "seconds": round(time.perf_counter() - started, 1),
            "figures": [f.record() for f in figures],
        }, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
