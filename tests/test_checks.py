"""Checks: what a right answer is, evaluated on every response, stored as rows."""

from __future__ import annotations

import json
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from sqlalchemy import func, select

from collector.checks import OBSERVED_MAX, parse_checks
from collector.errors import JobFileError
from collector.jobfile import load_job_file
from collector.models import checks as checks_table
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.store import open_store
from tests.server import LocalServer

CHECKS: list[dict[str, object]] = [
    {"name": "answered", "status": "2xx"},
    {"name": "ok-or-empty", "status": [200, 204]},
    {"name": "json-type", "header": "Content-Type", "matches": "javascript"},
    {"name": "html-type", "header": "Content-Type", "matches": "html"},
    {"name": "has-results", "body_matches": r'"results": \['},
    {"name": "status-field", "json": "responseStatus", "equals": 200},
    {"name": "below", "json": "responseStatus", "below": 100},
    {"name": "above", "json": "responseStatus", "above": 100},
    {"name": "title", "json": "responseData.results[0].title", "matches": "^About "},
    {"name": "no-error", "json": "error", "exists": False},
    {"name": "quick", "elapsed_below": "10s"},
]


def test_each_check_on_each_response(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/search"), checks=parse_checks(CHECKS),
                                 queries=({"q": "python"}, {"q": "hangup"})))
    answered, hung_up = result.requests
    assert hung_up.status is None and hung_up.checks == ()  # no response: nothing checked
    got = {c.name: (c.passed, c.observed) for c in answered.checks}
    assert [c.name for c in answered.checks] == [c["name"] for c in CHECKS]
    assert got["answered"] == got["ok-or-empty"] == (True, "200")
    assert got["json-type"] == (True, "text/javascript; charset=utf-8")
    assert got["html-type"] == (False, "text/javascript; charset=utf-8")
    assert got["has-results"] == (True, '"results": [')
    assert got["status-field"] == (True, "200")
    assert got["below"] == (False, "200") and got["above"] == (True, "200")
    assert got["title"] == (True, '"About python"')
    assert got["no-error"] == (True, None)
    assert got["quick"][0] is True and (got["quick"][1] or "").endswith(" ms")
    assert (result.checks_passed, result.checks_failed) == (9, 2)


def test_statuses_and_bodies_that_fail(server: LocalServer) -> None:
    checks = parse_checks([{"name": "ok", "status": "2xx"},
                           {"name": "json", "json": "a", "exists": True},
                           {"name": "slow", "elapsed_below": "1ms"}])
    result = run_batch(BatchSpec(url=server.url("/status/503"), checks=checks))
    (request,) = result.requests
    assert [(c.name, c.passed, c.observed) for c in request.checks][:2] == [
        ("ok", False, "503"), ("json", False, "(the body is not JSON)")]
    long = run_batch(BatchSpec(url=server.url("/bytes/5000"), checks=parse_checks(
        [{"name": "bytes", "body_matches": "^.+"}])))
    observed = long.requests[0].checks[0].observed or ""
    assert len(observed) == OBSERVED_MAX and observed.endswith("…[cut]")


def test_certificate_expiry(ca: trustme.CA, ca_file: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    ca.issue_cert("127.0.0.1", not_after=expires).configure_cert(context)
    checks = parse_checks([{"name": "a-week", "cert_expires_after": "7d"},
                           {"name": "two-weeks", "cert_expires_after": "14d"}])
    with LocalServer(tls=context) as https:
        result = run_batch(BatchSpec(url=https.url("/search"), ca_file=ca_file,
                                     checks=checks, queries=({}, {})))
    for request in result.requests:  # the re-used connection's certificate too
        assert [(c.name, c.passed, c.observed) for c in request.checks] == [
            ("a-week", True, expires.isoformat()), ("two-weeks", False, expires.isoformat())]


def test_checks_are_rows(db_url: str, server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/search"), checks=parse_checks(CHECKS),
                                 queries=({"q": "a"}, {"q": "b"}, {"q": "hangup"})))
    with open_store(db_url) as store:
        batch_id = store.save_batch(result, job_name="checked")
        assert batch_id is not None
        stored = store.load_batch(batch_id)
        with store.connect() as conn:
            rows = conn.execute(select(checks_table.c.passed, func.count()).group_by(
                checks_table.c.passed)).all()
        assert stored.result is not None
        assert stored.result.requests == result.requests
        assert (stored.columns["checks_passed"], stored.columns["checks_failed"]) == (18, 4)
        assert dict((bool(p), n) for p, n in rows) == {True: 18, False: 4}
        assert store.prune(datetime.now(UTC) + timedelta(seconds=1)) == (1, 3)
        assert store.info().row_counts["checks"] == 0


def test_no_checks_no_rows(db_url: str, server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/search")))
    assert result.requests[0].checks == () and result.checks_failed == 0
    with open_store(db_url) as store:
        batch_id = store.save_batch(result, job_name="plain")
        assert batch_id is not None
        assert store.info().row_counts["checks"] == 0
        assert store.load_batch(batch_id).columns["checks_passed"] == 0


@pytest.mark.parametrize(("check", "message"), [
    ('{ name = "x", body_matches = "(" }',
     r'checks\[0\]\.body_matches: "\(" is not a regular expression \(missing \)'),
    ('{ name = "x", json = "a[", exists = true }',
     r'checks\[0\]\.json: "a\[" is not a JMESPath expression'),
    ('{ name = "x", json = "a" }', r"checks\[0\]: a json check has one of equals, below"),
    ('{ name = "x", json = "a", below = "ten" }', r'checks\[0\]\.below: "ten" is not a number'),
    ('{ name = "x", json = "a", exists = "yes" }', r"checks\[0\]\.exists: .* not true or false"),
    ('{ name = "x", shape = "round" }', r"checks\[0\]: a check has one test, one of status"),
    ('{ name = "x", status = "2xx", elapsed_below = "1s" }',
     r"checks\[0\]: a check has one test, .* \(status, elapsed_below given\)"),
    ('{ name = "x", status = "200" }', r"checks\[0\]\.status: .* not a list of statuses"),
    ('{ name = "x", header = "Server" }', r"checks\[0\]\.matches: a header check needs"),
    ('{ name = "x", status = "2xx", matches = "a" }',
     r"checks\[0\]\.matches: unknown key for a status check"),
    ('{ status = "2xx" }', r"checks\[0\]\.name: None is not a check name"),
    ('{ name = "x", elapsed_below = "soon" }', r"checks\[0\]\.elapsed_below: "),
])
def test_mistakes_name_the_file_the_job_and_the_key(tmp_path: Path, check: str,
                                                     message: str) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(f'[jobs.j]\nurl = "http://example.org/"\nchecks = [ {check} ]\n')
    with pytest.raises(JobFileError, match=rf'{path}: job "j": {message}'):
        load_job_file(path)


def test_two_checks_of_one_name(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text('[jobs.j]\nurl = "http://example.org/"\n'
                    'checks = [ { name = "a", status = "2xx" }, { name = "a", status = [200] } ]\n')
    with pytest.raises(JobFileError, match=r'checks\[1\]\.name: "a" is the name of an earlier'):
        load_job_file(path)


def test_a_job_keeps_its_checks_as_written(tmp_path: Path, sqlite_url: str) -> None:
    from tests.cli import invoke

    path = tmp_path / "jobs.toml"
    path.write_text('[jobs.j]\nurl = "http://example.org/"\n'
                    'checks = [ { name = "up", json = "status", equals = "UP" },\n'
                    '           { name = "fast", elapsed_below = "500ms" } ]\n')
    (job,) = load_job_file(path)
    code, _, err = invoke("jobs", "apply", str(path), "--db", sqlite_url)
    assert code == 0, err
    with open_store(sqlite_url) as store:
        (stored,) = store.jobs().jobs
    assert stored.job.batch.checks == job.batch.checks
    assert [c.table for c in stored.job.batch.checks] == [
        {"name": "up", "json": "status", "equals": "UP"},
        {"name": "fast", "elapsed_below": "500ms"}]


def test_show_report_and_fail_on_error(tmp_path: Path, sqlite_url: str,
                                       server: LocalServer) -> None:
    from tests.cli import invoke

    path = tmp_path / "jobs.toml"
    path.write_text(f'[jobs.c]\nurl = "{server.url("/search")}"\n'
                    'queries = [ { q = "a" }, { q = "b" } ]\n'
                    'checks = [ { name = "up", status = "2xx" },\n'
                    '           { name = "html", header = "Content-Type", matches = "html" } ]\n')
    assert invoke("jobs", "apply", str(path), "--db", sqlite_url)[0] == 0
    code, out, err = invoke("run-once", "c", "--db", sqlite_url)
    assert code == 0, err  # failed checks are data, unless asked
    assert "failed checks:\n  #0 html: saw text/javascript; charset=utf-8\n" in out
    assert "checks: 2 passed, 2 failed" in out
    code, out, err = invoke("run-once", "c", "--fail-on-error", "--db", sqlite_url)
    assert code == 3 and "2 of 2 requests failed, got a status >= 400 or failed a check" in err
    code, shown, err = invoke("show", "1", "--db", sqlite_url)
    assert code == 0 and "#1 html: saw text/javascript" in shown, err
    code, out, err = invoke("report", "--format", "json", "--db", sqlite_url)
    assert code == 0, err
    (job,) = json.loads(out)
    assert (job["checks_passed"], job["checks_failed"], job["checks_pass_pct"]) == (4, 4, 50.0)
    code, table, err = invoke("report", "--db", sqlite_url)
    assert code == 0 and "checks_%" in table and " 50.0 " in table, err


def test_the_daemon_counts_checks(sqlite_url: str, server: LocalServer, tmp_path: Path) -> None:
    import re
    import urllib.request

    from tests.daemons import DaemonProcess

    path = tmp_path / "jobs.toml"
    path.write_text(f'[jobs.c]\nurl = "{server.url("/search")}"\nevery = "1s"\n'
                    'checks = [ { name = "up", status = "2xx" },\n'
                    '           { name = "html", header = "Content-Type", matches = "html" } ]\n')
    daemon = DaemonProcess(sqlite_url, "--jobs", str(path), "--metrics-port", "0")
    try:
        line = daemon.wait_for(lambda line: line["message"].startswith("metrics on "))
        url = line["message"].removeprefix("metrics on ")
        daemon.wait_for(lambda line: "batch" in line)
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        assert daemon.stop() == 0
    assert re.search(r'collector_checks_total\{check="up",collector_job="c",result="passed"\} '
                     r'[1-9]', text), text
    assert re.search(r'collector_checks_total\{check="html",collector_job="c",result="failed"\} '
                     r'[1-9]', text)
    # present from the start, at 0: the results not seen yet
    assert 'collector_checks_total{check="up",collector_job="c",result="failed"} 0.0' in text
    # answered, but a check failed: not a success
    assert 'collector_last_batch_success{collector_job="c"} 0.0' in text


def test_a_spooled_batch_keeps_its_checks(tmp_path: Path, server: LocalServer) -> None:
    from collector.results import PendingBatch, new_batch_key
    from collector.spool import Spool

    result = run_batch(BatchSpec(url=server.url("/search"), checks=parse_checks(CHECKS)))
    spool = Spool(tmp_path / "spool")
    batch = PendingBatch(result=result, job_name="c", trigger="manual", worker="h:1",
                         batch_key=new_batch_key())
    assert spool.read(spool.put(batch, database=None)).batch.result == result
    assert result.requests[0].checks


def test_a_check_the_job_no_longer_has_loses_its_series() -> None:
    from prometheus_client import generate_latest

    from collector.metrics import Metrics

    metrics = Metrics()
    metrics.job_scheduled("a", ("gone", "kept"))
    metrics.job_scheduled("a", ("kept",))  # the job changed
    text = generate_latest(metrics.registry).decode()
    assert 'check="gone"' not in text
    assert 'collector_checks_total{check="kept",collector_job="a",result="failed"} 0.0' in text
    metrics.job_unscheduled("a")
    assert 'collector_job="a"' not in generate_latest(metrics.registry).decode()
