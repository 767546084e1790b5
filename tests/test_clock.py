"""Daemons whose clocks disagree with the database's go by the database's.

The clocks are moved with ``tests/skew.c``, an ``LD_PRELOAD`` shim that shifts
one process's wall clock (``CLOCK_REALTIME``, ``gettimeofday``, ``time``) and
leaves its monotonic clock alone, built here with the system's C compiler.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from collector.store import open_store
from tests.cli import invoke
from tests.conftest import IN_CI
from tests.daemons import DaemonProcess, stored_batches, wait_until
from tests.server import LocalServer

SHIM = Path(__file__).with_name("skew.c")


@pytest.fixture(scope="session")
def skew_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc")
    if compiler is None:
        message = "no C compiler (cc) to build the clock-skew shim"
        if IN_CI:
            pytest.fail(f"{message}: under CI this test must run, not skip")
        pytest.skip(message)
    library = tmp_path_factory.mktemp("skew") / "skew.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(SHIM), "-ldl"],
                   check=True, capture_output=True, timeout=60)
    return library


def database_now(url: str) -> datetime:
    with open_store(url) as store, store.connect() as conn:
        now: datetime = conn.execute(select(func.now())).scalar_one()
    return now


def test_the_shim_moves_the_wall_clock_only(skew_library: Path) -> None:
    code = ("import time, datetime; m = time.monotonic(); "
            "print(time.time(), datetime.datetime.now().timestamp(), time.monotonic() - m)")
    out = subprocess.run(["python3", "-c", code], capture_output=True, text=True, check=True,
                         env={"LD_PRELOAD": str(skew_library), "SKEW_SECONDS": "45",
                              "PATH": "/usr/bin:/bin"}).stdout.split()
    now = datetime.now().timestamp()
    assert 44 < float(out[0]) - now < 46 and 44 < float(out[1]) - now < 46
    assert float(out[2]) < 1


def test_daemons_whose_clocks_are_off_by_45_s_go_by_the_database(
        postgres_url: str, server: LocalServer, tmp_path: Path, skew_library: Path) -> None:
    # One daemon 45 s ahead, one 45 s behind, a 2 s heartbeat timeout (DaemonProcess's):
    # on its own clock each would stamp batches 45 s off, run fires the other runs too
    # (each on its own grid of seconds), and take the other for dead at once.
    invoke("db", "upgrade", "--db", postgres_url)
    jobs = tmp_path / "jobs.toml"
    jobs.write_text("".join(f'[jobs.tick{i}]\nurl = "{server.url("/search")}"\nevery = "1s"\n'
                            for i in range(2)))
    began = database_now(postgres_url)
    daemons = [DaemonProcess(postgres_url, "--jobs", str(jobs), "--metrics-port", "0",
                             env={"LD_PRELOAD": str(skew_library), "SKEW_SECONDS": skew})
               for skew in ("45", "-45")]
    try:
        for daemon in daemons:
            daemon.started()
        def per_worker() -> list[int]:
            return list(Counter(r["worker"] for r in stored_batches(postgres_url)).values())

        wait_until(lambda: len(counts := per_worker()) == 2 and min(counts) >= 3,
                   timeout=60, message="both daemons did not store batches")
        offsets = [gauge(daemon, "collector_clock_offset_seconds") for daemon in daemons]
    finally:
        codes = [daemon.stop() for daemon in daemons]
    ended = database_now(postgres_url)
    assert codes == [0, 0]
    assert -45.5 < offsets[0] < -44.5 and 44.5 < offsets[1] < 45.5, offsets
    for daemon, word in zip(daemons, ("ahead of", "behind"), strict=True):
        assert any(re.search(rf"this host's clock is 45\.\d+s {word} the database's",
                             line["message"]) for line in daemon.lines), daemon.raw
    rows = stored_batches(postgres_url)
    assert {r["status"] for r in rows} == {"ok"}  # neither took the other for dead
    for row in rows:  # every time on the database's clock: none in the future
        assert began - timedelta(seconds=1) <= row["scheduled_for"] <= ended
        assert began <= row["started_at"] <= row["finished_at"] <= ended
        assert row["started_at"] - row["scheduled_for"] < timedelta(seconds=5)
    for job in ("tick0", "tick1"):  # each fire once: one batch a second, not two
        fires = sorted(r["scheduled_for"] for r in rows if r["job_name"] == job)
        span = (fires[-1] - fires[0]).total_seconds()
        assert len(fires) == len(set(fires)) and len(fires) <= span + 1, fires


def gauge(daemon: DaemonProcess, name: str) -> float:
    port = next(int(m[1]) for line in daemon.lines
                if (m := re.search(r":(\d+)/metrics", line["message"])))
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, text
    return float(match[1])
