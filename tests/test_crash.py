"""Signals and kill -9 during run-once and spool replay: only whole batches, none twice."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from collector.models import batches, requests
from collector.results import PendingBatch
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.spool import Spool, new_batch_key
from collector.store import open_store
from tests.daemons import COLLECTOR, wait_until
from tests.server import LocalServer


def whole_batches(db_url: str) -> list[tuple[int, int, int]]:
    """Per batch: its id, the requests its row counts, the request rows it has."""
    with open_store(db_url) as store, store.connect() as conn:
        rows = conn.execute(
            select(batches.c.id, batches.c.requests_succeeded + batches.c.requests_failed,
                   select(func.count()).where(requests.c.batch_id == batches.c.id)
                   .scalar_subquery())).all()
    return [(r[0], r[1], r[2]) for r in rows]


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_run_once_keeps_what_was_collected(
        number: int, sqlite_url: str, server: LocalServer) -> None:
    args = [str(COLLECTOR), "run-once", "--url", server.url("/delay/0.2"), "--db", sqlite_url,
            *[f"--query=q={i}" for i in range(30)]]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: len(server.seen) >= 3)
    process.send_signal(number)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 128 + number, err
    assert "Batch interrupted" in out and "stopped by signal" in err
    (batch,) = whole_batches(sqlite_url)
    assert 3 <= batch[1] == batch[2] < 30
    with open_store(sqlite_url) as store:
        assert store.load_batch(batch[0]).status == "interrupted"


@pytest.mark.timeout(180)  # some 25 runs' time: a loaded machine's runs take longer
def test_kill_9_during_batches_leaves_only_whole_batches(sqlite_url: str,
                                                         server: LocalServer) -> None:
    rng = random.Random(20261127)
    args = [str(COLLECTOR), "run-once", "--url", server.url("/delay/0.02"), "--db", sqlite_url,
            *[f"--query=q={i}" for i in range(15)]]
    subprocess.run([str(COLLECTOR), "db", "upgrade", "--db", sqlite_url], check=True,
                   capture_output=True, timeout=60)
    def whole_run() -> float:
        start = time.monotonic()
        subprocess.run(args, check=True, capture_output=True, timeout=60)
        return time.monotonic() - start

    # A whole run first, and again every ninth: how long a run takes on this machine now,
    # so the kills land from early in start-up to after the batch is stored however
    # loaded the machine is, and as its load changes (a suite under load had all 30
    # kills land before the store when the load grew after the one first run).
    whole, finished = whole_run(), 1
    for i in range(1, 27):  # 24 kills
        if i % 9 == 0:
            whole, finished = whole_run(), finished + 1
            continue
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.5) * whole)
        process.kill()
        process.wait(timeout=10)
    found = whole_batches(sqlite_url)
    assert len(found) > finished, "only the whole runs stored: the kills came too early"
    assert all(counted == rows for _, counted, rows in found)


def test_kill_9_during_spool_replay_stores_each_batch_once(sqlite_url: str, tmp_path: Path,
                                                           server: LocalServer) -> None:
    spool = Spool(tmp_path / "spool")
    result = run_batch(BatchSpec(url=server.url("/search"), queries=({"q": "a"}, {"q": "b"})))
    for _ in range(60):
        spool.put(PendingBatch(batch_key=new_batch_key(), job_name="j", trigger="manual",
                               worker="h:1", result=result), database=None)
    open_store(sqlite_url).close()
    env = {"COLLECTOR_SPOOL_DIR": str(spool.folder), "PATH": "/usr/bin:/bin"}
    rng = random.Random(7)
    args = [str(COLLECTOR), "spool", "flush", "--db", sqlite_url]
    for _ in range(20):
        process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 0.9))
        process.kill()
        process.wait(timeout=10)
    final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert spool.depth() == 0
    found = whole_batches(sqlite_url)
    assert len(found) == 60  # each spooled batch once, whatever the kills
    assert all(counted == rows == 2 for _, counted, rows in found)
