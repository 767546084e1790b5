"""History that costs the same later: SQLite gives the space prune frees back, and a
prune on SQLite never holds the write lock for long."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from collector.store import open_store
from collector.store.schema import head_revision
from tests.dataset import batch, request

NOW = datetime.now(UTC).replace(microsecond=0)


def _file_size(path: Path) -> int:
    """The database's bytes on disk: the file and its write-ahead log."""
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _fill(url: str, batches: int, requests: int, *, old: int) -> None:
    """``batches`` batches of ``requests`` rows each; the first ``old`` ninety days old."""
    with open_store(url) as store:
        for n in range(batches):
            at = NOW - timedelta(days=90 if n < old else 0, minutes=batches - n)
            store.save_batch(batch(at, 1, *(
                request(i, 200, 10.0 + i, body=1000, sha=f"{n:032x}{i:032x}", at=at,
                        query=f"q=term{i}&page={n}") for i in range(requests))),
                job_name="history")


def _auto_vacuum(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        mode: int = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
    return mode


def test_a_new_sqlite_database_gives_space_back(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with open_store(f"sqlite:///{path}"):
        pass
    assert _auto_vacuum(path) == 2  # INCREMENTAL, from its first table


def test_pruning_nine_tenths_leaves_a_file_of_about_a_tenth(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    url = f"sqlite:///{path}"
    _fill(url, 100, 200, old=90)
    with open_store(url) as store:
        with store.engine.connect() as conn:  # everything written back into the file
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        before = _file_size(path)
        assert store.prune(NOW - timedelta(days=30)) == (90, 90 * 200)
        after = _file_size(path)
        assert store.info().row_counts["requests"] == 10 * 200
    assert before > 5_000_000  # the data set is not too small to tell
    print(f"{before} -> {after} bytes ({after / before:.1%})")
    assert after <= before * 0.20, (before, after)


def test_db_upgrade_converts_a_file_that_could_not_give_space_back(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    _fill(url, 3, 10, old=0)
    with open_store(url) as store:
        store.downgrade("0013")
    with sqlite3.connect(path, isolation_level=None) as conn:  # as collector made files before
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
    assert _auto_vacuum(path) == 0
    with open_store(url, ensure_schema=False) as store:
        assert store.upgrade() == ("0013", head_revision())
        assert store.info().row_counts["requests"] == 30
        assert store.prune(NOW - timedelta(minutes=2, seconds=30)) == (1, 10)
    assert _auto_vacuum(path) == 2


def test_a_sqlite_prune_is_many_short_transactions(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import collector.store

    url = f"sqlite:///{tmp_path / 'chunks.db'}"
    _fill(url, 12, 30, old=10)
    monkeypatch.setattr(collector.store, "PRUNE_ROWS", 100)  # three batches a transaction
    with open_store(url) as store:
        commits: list[object] = []
        event.listen(store.engine, "commit", lambda conn: commits.append(conn))
        assert store.prune(NOW - timedelta(days=30)) == (10, 300)
        assert len(commits) >= 4  # 10 batches, at most 3 (90 requests) in each
        assert store.info().row_counts["batches"] == 2
        assert store.prune(NOW - timedelta(days=30)) == (0, 0)
        # a batch larger than one transaction's share still goes, alone
        monkeypatch.setattr(collector.store, "PRUNE_ROWS", 10)
        assert store.prune(NOW + timedelta(seconds=1)) == (2, 60)


def test_prune_of_one_job_leaves_the_others(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    _fill(url, 4, 5, old=4)
    with open_store(url) as store:
        store.save_batch(batch(NOW - timedelta(days=90), 1, request(0, 200, 1.0, at=NOW)),
                         job_name="other")
        assert store.prune(NOW - timedelta(days=30), job="history") == (4, 20)
        assert store.info().row_counts["batches"] == 1


def test_a_daemon_with_a_retention_prunes_at_start(db_url: str) -> None:
    from tests.daemons import DaemonProcess

    _fill(db_url, 5, 4, old=3)  # three batches 90 days old, two of now
    daemon = DaemonProcess(db_url, "--retention", "30d")
    try:
        line = daemon.wait_for(lambda line: line["message"].startswith("retention: "))
    finally:
        assert daemon.stop() == 0
    assert line["retention"]["batches"] == 3 and line["retention"]["requests"] == 12
    with open_store(db_url) as store:
        assert store.info().row_counts["batches"] == 2


@pytest.mark.parametrize(("value", "message"), [
    ("10m", "--retention: '10m' keeps less than an hour of history"),
    ("soon", '--retention: "soon" is not a duration'),
])
def test_a_retention_too_short_or_unreadable_is_refused(sqlite_url: str, value: str,
                                                        message: str) -> None:
    from tests.cli import assert_one_line_error, invoke

    code, _, err = invoke("run", "--retention", value, "--db", sqlite_url)
    assert code == 2
    assert_one_line_error(err, message)
