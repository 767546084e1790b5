"""Retention on SQLite: the file's size after pruning nine tenths of its requests, against
its size before, and how long the prune took against the rows' own writing.

Rows are the tests' hand-made requests (tests/dataset.py), 200 a batch; the oldest 90% of
the batches are ninety days old. Usage: ``python -m benchmarks --only retention``.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.harness import Figure, Scale
from collector.store import open_store
from tests.dataset import batch, request

PER_BATCH = 200


def _size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def run(scale: Scale) -> list[Figure]:
    batches = scale.pick(2500, 20)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "retention.db"
        with open_store(f"sqlite:///{path}") as store:
            start = time.perf_counter()
            for n in range(batches):
                at = now - timedelta(days=90 if n < batches * 0.9 else 0, minutes=batches - n)
                store.save_batch(batch(at, 1, *(
                    request(i, 200, 10.0 + i, body=1000, sha=f"{n:032x}{i:032x}", at=at,
                            query=f"q=term{i}&page={n}") for i in range(PER_BATCH))),
                    job_name="history")
            written = time.perf_counter() - start
            with store.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            before = _size(path)
            start = time.perf_counter()
            pruned = store.prune(now - timedelta(days=30))
            took = time.perf_counter() - start
            after = _size(path)
    rows = batches * PER_BATCH
    assert pruned[1] == rows * 9 // 10
    return [
        Figure(suite="retention", name=f"SQLite file after pruning 90% of {rows:,} requests",
               value=after / 1e6, unit="MB", kind="times", baseline="the file before",
               baseline_value=before / 1e6, goal="<= 0.20"),
        Figure(suite="retention", name=f"prune of {pruned[1]:,} requests on SQLite, space "
               "given back", value=took, unit="s", kind="times",
               baseline=f"writing the {rows:,} rows", baseline_value=written),
    ]
