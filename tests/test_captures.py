"""Captures: the values a job keeps from each response, as rows of the captures table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from collector.captures import VALUE_MAX, parse_captures
from collector.checks import parse_checks
from collector.errors import JobFileError
from collector.jobfile import load_job_file
from collector.models import captures as captures_table
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.store import open_store
from tests.server import LocalServer

CAPTURES = {
    "title": {"json": "responseData.results[0].title"},
    "status": {"json": "responseStatus"},
    "results": {"json": "responseData.results"},
    "missing": {"json": "nowhere"},
    "word": {"regex": r'"About (\w+)"'},
    "type": {"header": "Content-Type"},
    "length": {"header": "Content-Length"},
}


def test_each_capture_on_each_response(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/search"), captures=parse_captures(CAPTURES),
                                 queries=({"q": "python"}, {"q": "hangup"})))
    answered, hung_up = result.requests
    assert hung_up.captures == ()  # no response: nothing to capture
    got = {c.name: (c.value, c.number) for c in answered.captures}
    # found nothing: no row; the others in the job's order
    assert [c.name for c in answered.captures] == [n for n in CAPTURES if n != "missing"]
    assert got["title"] == ("About python", None)
    assert got["status"] == ("200", 200.0)  # a JSON number: text and number
    assert got["results"] == ('[{"title": "About python"}]', None)  # other JSON as JSON
    assert got["word"] == ("python", None)  # the first group
    assert got["type"] == ("text/javascript; charset=utf-8", None)
    assert got["length"][1] == answered.body_length  # decimal text is a number too


def test_values_numbers_and_bounds(server: LocalServer) -> None:
    found = run_batch(BatchSpec(url=server.url("/bytes/3000"), captures=parse_captures({
        "all": {"regex": "^(x+)$"}, "none": {"regex": "(y)"}}))).requests[0].captures
    (whole,) = found
    assert len(whole.value) == VALUE_MAX and whole.value.endswith("…[cut]")
    assert whole.number is None
    # gzip-encoded JSON, as a job that sends Accept-Encoding gets it, is read decoded
    gz = run_batch(BatchSpec(url=server.url("/gzip"), captures=parse_captures({
        "load": {"json": "load"}, "up": {"json": "status"}}), checks=parse_checks([
            {"name": "up", "json": "status", "equals": "UP"}]))).requests[0]
    assert [(c.value, c.number) for c in gz.captures] == [("0.25", 0.25), ("UP", None)]
    assert gz.checks[0].passed


def test_captures_are_rows(db_url: str, server: LocalServer) -> None:
    spec = BatchSpec(url=server.url("/search"), captures=parse_captures(CAPTURES),
                     checks=parse_checks([{"name": "up", "status": "2xx"}]),
                     queries=({"q": "a"}, {"q": "b"}, {"q": "hangup"}))
    with open_store(db_url) as store:
        first = store.save_batch(run_batch(spec), job_name="captured")
        second = store.save_batch(result := run_batch(spec), job_name="captured")
        assert first is not None and second is not None
        stored = store.load_batch(second)
        assert stored.result is not None and stored.result.requests == result.requests
        with store.connect() as conn:
            # the README's "a captured value over time", for one capture
            rows = conn.execute(text(
                "SELECT r.started_at, r.query, c.value, c.number FROM captures c "
                "JOIN requests r ON r.id = c.request_id JOIN batches b ON b.id = r.batch_id "
                "WHERE b.job_name = 'captured' AND c.name = 'status' "
                "ORDER BY r.started_at")).all()
            assert [(q, v, n) for _, q, v, n in rows] == [
                ("q=a", "200", 200.0), ("q=b", "200", 200.0)] * 2
            assert conn.execute(select(captures_table.c.name).where(
                captures_table.c.batch_id == second)).scalars().all().count("word") == 2
        assert store.info().row_counts["captures"] == 2 * 2 * 6
        assert store.prune(datetime.now(UTC) + timedelta(seconds=1)) == (2, 6)
        assert store.info().row_counts["captures"] == 0


def test_a_job_keeps_its_captures_as_written(tmp_path: Path, sqlite_url: str) -> None:
    from tests.cli import invoke

    path = tmp_path / "jobs.toml"
    path.write_text('[jobs.j]\nurl = "http://example.org/"\n'
                    'captures = { price = { json = "data.price" }, '
                    'title = { regex = "<title>(.*)</title>" }, server = { header = "Server" } }\n'
                    'keep_bodies = "changed"\nmax_kept_body = "1MiB"\nconditional = true\n')
    (job,) = load_job_file(path)
    assert invoke("jobs", "apply", str(path), "--db", sqlite_url)[0] == 0
    with open_store(sqlite_url) as store:
        (stored,) = store.jobs().jobs
    assert stored.job.batch == job.batch
    batch = job.batch
    assert (batch.keep_bodies, batch.max_kept_body, batch.conditional) == (
        "changed", 1024 * 1024, True)
    code, shown, err = invoke("jobs", "show", "j", "--db", sqlite_url)
    assert code == 0, err
    assert 'keep_bodies = "changed"' in shown and "conditional = true" in shown


@pytest.mark.parametrize(("key", "message"), [
    ('captures = { a = { regex = "(" } }', r'captures\.a\.regex: "\(" is not a regular expr'),
    ('captures = { a = { regex = "no group" } }', r"captures\.a\.regex: .* has no group"),
    ('captures = { a = { json = "a[" } }', r'captures\.a\.json: "a\[" is not a JMESPath'),
    ('captures = { a = { xpath = "//a" } }', r"captures\.a: .* is not one of"),
    ('captures = { a = { json = "a", header = "b" } }', r"captures\.a: .* is not one of"),
    ('captures = { "a b" = { json = "a" } }', r'captures\.a b: "a b" is not a capture name'),
    ('captures = [ "a" ]', r"captures: .* is not a table like"),
    ('keep_bodies = "yes"', r'keep_bodies: "yes" is not true, false or "changed"'),
    ("max_kept_body = 0", r"max_kept_body: 0 must be > 0"),
    ('conditional = "yes"', r'conditional: "yes" is not true or false'),
])
def test_mistakes_name_the_file_the_job_and_the_key(tmp_path: Path, key: str,
                                                     message: str) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(f'[jobs.j]\nurl = "http://example.org/"\n{key}\n')
    with pytest.raises(JobFileError, match=rf'{path}: job "j": {message}'):
        load_job_file(path)


def test_run_once_json_has_the_captures(sqlite_url: str, server: LocalServer,
                                        tmp_path: Path) -> None:
    from tests.cli import invoke

    path = tmp_path / "jobs.toml"
    path.write_text(f'[jobs.c]\nurl = "{server.url("/search")}"\nqueries = [ {{ q = "a" }} ]\n'
                    'captures = { title = { json = "responseData.results[0].title" } }\n')
    code, out, err = invoke("run-once", str(path), "--json", "--db", sqlite_url)
    assert code == 0, err
    (request,) = json.loads(out)["requests"]
    assert request["captures"] == [{"name": "title", "value": "About a", "number": None}]


def test_run_once_and_show_list_the_captures(sqlite_url: str, server: LocalServer,
                                             tmp_path: Path) -> None:
    from tests.cli import invoke

    path = tmp_path / "jobs.toml"
    path.write_text(f'[jobs.c]\nurl = "{server.url("/search")}"\n'
                    'queries = [ { q = "a" }, { q = "b" } ]\n'
                    'captures = { title = { json = "responseData.results[0].title" }, '
                    'status = { json = "responseStatus" } }\n')
    code, out, err = invoke("run-once", str(path), "--db", sqlite_url)
    assert code == 0, err
    listed = "captured:\n  #0 title=About a, status=200\n  #1 title=About b, status=200\n"
    assert listed in out
    code, shown, err = invoke("show", "1", "--db", sqlite_url)
    assert code == 0 and listed in shown, err
