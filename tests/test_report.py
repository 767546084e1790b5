"""Report figures against a data set worked out by hand, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from collector.cli.render import sparkline
from collector.histogram import RELATIVE_ERROR
from collector.report import Filters, TrendPoint, batch_history, job_summaries
from collector.store import Store, open_store
from tests.cli import assert_one_line_error, invoke
from tests.dataset import T0, fill


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with open_store(db_url) as opened:
        fill(opened)
        yield opened


def test_job_summaries_by_hand(store: Store) -> None:
    a, b = job_summaries(store, Filters())
    # job a: 7 requests in 3 batches; responses' times 5 10 20 30 40 50 (the 1000 ms
    # timeout got no response): nearest rank p50 = 3rd = 20, p95 = 6th = 50, each read
    # from the merged histograms within RELATIVE_ERROR; the maximum is exact.
    assert (a.job_name, a.batches, a.requests) == ("a", 3, 7)
    assert (a.status_2xx, a.status_3xx, a.status_4xx, a.status_5xx, a.no_response) == (
        3, 1, 1, 1, 1)
    assert a.p50_ms == pytest.approx(20, rel=RELATIVE_ERROR) and a.p50_ms != 20
    assert a.p95_ms == pytest.approx(50, rel=RELATIVE_ERROR)
    assert a.max_ms == 50
    assert a.mean_body_length == pytest.approx(650 / 6)
    assert (a.tcp_connections, a.requests_per_connection) == (4, 1.75)
    assert a.last_started_at == T0 + timedelta(hours=2) and a.last_status == "ok"
    assert a.trend == (TrendPoint(p50_ms=20, status="ok"), TrendPoint(p50_ms=50, status="partial"),
                       TrendPoint(p50_ms=5, status="ok"))

    assert (b.job_name, b.batches, b.requests, b.no_response, b.status_2xx) == ("b", 1, 1, 1, 0)
    assert (b.p50_ms, b.p95_ms, b.max_ms, b.mean_body_length) == (None, None, None, None)
    assert (b.tcp_connections, b.requests_per_connection, b.last_status) == (0, None, "failed")
    assert b.trend == (TrendPoint(p50_ms=None, status="failed"),)


def test_filters(store: Store) -> None:
    (a,) = job_summaries(store, Filters(since=T0 + timedelta(hours=1)))
    # responses 5 and 50: the nearest-rank median is the 1st of 2
    assert (a.job_name, a.batches, a.requests) == ("a", 2, 3)
    assert a.p50_ms == pytest.approx(5, rel=RELATIVE_ERROR)
    assert a.p95_ms == pytest.approx(50, rel=RELATIVE_ERROR)
    (b,) = job_summaries(store, Filters(job="b"))
    assert b.job_name == "b"
    assert job_summaries(store, Filters(job="nobody")) == []


def test_the_trend_keeps_the_newest_batches(store: Store) -> None:
    (a, _) = job_summaries(store, Filters(), trend_batches=2)
    assert [p.p50_ms for p in a.trend] == [50, 5]


def test_batch_history(store: Store) -> None:
    rows = batch_history(store, Filters(), limit=3)
    assert [(r.job_name, r.started_at - T0) for r in rows] == [
        ("a", timedelta(hours=2)), ("a", timedelta(hours=1)), ("b", timedelta(minutes=30))]
    assert (rows[1].requests, rows[1].failed, rows[1].status, rows[1].duration_ms) == (
        2, 1, "partial", 1000.0)
    assert [r.job_name for r in batch_history(store, Filters(job="b"), limit=10)] == ["b"]


def test_prune(store: Store) -> None:
    before = T0 + timedelta(minutes=90)  # a1, b1 and a2 started before it: 4 + 1 + 2 requests
    assert store.prune(before, dry_run=True) == (3, 7)
    assert store.info().row_counts["batches"] == 4
    assert store.info().row_counts["connections"] == 4
    assert store.prune(before) == (3, 7)
    assert store.info().row_counts == {"jobs": 0, "batches": 1, "requests": 1,
                                       "connections": 1, "checks": 0,
                                       "captures": 0, "bodies": 0, "workers": 0}
    assert store.prune(before) == (0, 0)


def test_sparkline() -> None:
    assert sparkline([1, 8, None, 4.5], ["", "", "", ""]) == "▁█·▅"
    assert sparkline([3, 3, None], ["", "", "×"]) == "▅▅×"
    assert sparkline([], []) == ""


def cli(db_url: str, *args: str) -> str:
    code, out, err = invoke(*args, "--db", db_url)
    assert code == 0, err
    return out


def test_report_formats(store: Store, db_url: str) -> None:
    document = json.loads(cli(db_url, "report", "--format", "json"))
    assert [(r["job_name"], r["requests_per_connection"]) for r in document] == [
        ("a", 1.75), ("b", None)]
    assert document[0]["p50_ms"] == pytest.approx(20, rel=RELATIVE_ERROR)
    assert document[1]["p50_ms"] is None
    assert document[0]["trend"] == [{"p50_ms": 20, "status": "ok"},
                                    {"p50_ms": 50, "status": "partial"},
                                    {"p50_ms": 5, "status": "ok"}]
    rows = list(csv.DictReader(io.StringIO(cli(db_url, "report", "--format", "csv"))))
    assert [(r["job_name"], r["status_4xx"], r["no_response"]) for r in rows] == [
        ("a", "1", "1"), ("b", "0", "1")]
    table = cli(db_url, "report", "--job", "a")
    assert "▁!▁" not in table and "█" in table and "!" in table  # the partial batch is marked
    assert "×" in cli(db_url, "report", "--job", "b")
    since = cli(db_url, "report", "--since", (T0 + timedelta(hours=1)).isoformat(),
                "--format", "json")
    assert [(r["job_name"], r["batches"]) for r in json.loads(since)] == [("a", 2)]


def test_batches_and_show(store: Store, db_url: str) -> None:
    listed = json.loads(cli(db_url, "batches", "--format", "json", "--limit", "2"))
    assert [b["job_name"] for b in listed] == ["a", "a"]
    shown = json.loads(cli(db_url, "show", str(listed[1]["id"]), "--format", "json"))
    assert shown["batch_id"] == listed[1]["id"] and shown["status"] == "partial"
    assert [r["error_kind"] for r in shown["requests"]] == [None, "read_timeout"]
    table = cli(db_url, "show", str(listed[1]["id"]))
    assert "Number of requests: 2" in table and "#1 read_timeout: it failed" in table
    rows = list(csv.DictReader(io.StringIO(cli(db_url, "show", str(listed[1]["id"]),
                                               "--format", "csv"))))
    assert [r["status"] for r in rows] == ["200", ""]


def test_prune_command(store: Store, db_url: str) -> None:
    # all of the data set is older than a day
    assert "would delete 4 batches and 8 requests" in cli(db_url, "prune", "--older-than", "1d",
                                                         "--dry-run")
    assert "deleted 4 batches and 8 requests" in cli(db_url, "prune", "--older-than", "1d")
    assert json.loads(cli(db_url, "batches", "--format", "json")) == []


def test_prune_one_job(store: Store, db_url: str) -> None:
    assert "would delete 1 batches of b and 1 requests" in cli(
        db_url, "prune", "--older-than", "1d", "--job", "b", "--dry-run")
    assert "deleted 1 batches of b and 1 requests" in cli(db_url, "prune", "--older-than", "1d",
                                                          "--job", "b")
    left = json.loads(cli(db_url, "batches", "--format", "json"))
    assert {row["job_name"] for row in left} == {"a"} and len(left) == 3


def test_batches_in_colour_on_a_terminal_and_plain_when_piped(store: Store,
                                                              db_url: str) -> None:
    import os
    import pty
    import re
    import subprocess
    import sys
    from pathlib import Path

    command = [str(Path(sys.executable).parent / "collector"), "batches", "--db", db_url]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm"}
    leader, follower = pty.openpty()
    with subprocess.Popen(command, stdout=follower, stderr=subprocess.PIPE, env=env) as child:
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            shown += chunk
        assert child.wait(timeout=60) == 0, child.stderr.read() if child.stderr else ""
    os.close(leader)
    painted = shown.decode().replace("\r\n", "\n")
    plain = cli(db_url, "batches")
    assert "\x1b[" in painted and "\x1b[" not in plain
    assert re.sub(r"\x1b\[[0-9;]*m", "", painted).strip() == plain.strip()  # same table
    assert re.search(r"\x1b\[[0-9;]*31mfailed\x1b\[0m", painted)  # b's batch, in red
    assert re.search(r"\x1b\[[0-9;]*32mok\x1b\[0m", painted)  # a's, in green
    env["NO_COLOR"] = "1"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == plain.strip()


@pytest.mark.parametrize(("args", "message"), [
    (["show", "999"], "no batch 999"),
    (["show", "abc"], 'BATCH_ID: "abc" is not a whole number'),
    (["batches", "--format", "xml"], '--format: "xml" is not one of table, json, csv'),
    (["batches", "--limit", "0"], "--limit: 0 must be between 1 and 1000000"),
    (["report", "--since", "last week"], '--since: "last week" is neither a duration nor'),
    (["prune", "--older-than", "old"], '--older-than: "old" is not a duration'),
])
def test_report_usage_errors(sqlite_url: str, args: list[str], message: str) -> None:
    open_store(sqlite_url).close()  # an empty collector database
    code, _, err = invoke(*args, "--db", sqlite_url)
    assert code == 2
    assert_one_line_error(err, message)
