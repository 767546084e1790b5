"""Secrets by reference only: planted in every place a job can hold one, found nowhere else.

The values are sent (the server sees them) and never stored, printed or logged:
the database files (SQLite with its -wal), a PostgreSQL dump, every command's
output and a daemon's log are searched for them.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from collector.errors import CollectorError
from collector.models import requests
from collector.store import open_store
from tests.cli import assert_one_line_error, invoke
from tests.daemons import DaemonProcess, stored_batches, wait_until
from tests.server import LocalServer

SECRETS = {
    "PATH_SECRET": "pathsecret4711",
    "HEADER_SECRET": "headersecret4712",
    "FIELD_SECRET": "fieldsecret4713",
    "QUERY_SECRET": "querysecret4714",
}
CREDENTIAL = "credsecret4715"
# Written in the job file as it is, and listed under redact: the job (the jobs table,
# jobs show) holds it, the results never do.
LITERAL = "literalsecret4716"
EVERY = [*SECRETS.values(), CREDENTIAL]


def job_file(tmp_path: Path, server: LocalServer) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(f"""
[jobs.secret]
url = "{server.url('/search')}/${{PATH_SECRET}}"
every = "1s"
headers = {{ X-Token = "Bearer ${{HEADER_SECRET}}" }}
fields = {{ key = "${{FIELD_SECRET}}", plain = "{LITERAL}" }}
queries = [ {{ q = "${{QUERY_SECRET}}" }}, {{ q = "open" }} ]
basic_auth = {{ username = "me", password = "${{credential:pw}}" }}
redact = [ "plain" ]
""")
    return path


def found_in(data: bytes | str, *, literal: bool = False) -> list[str]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    planted = [*EVERY, LITERAL] if literal else EVERY
    return [s for s in planted if s in text or base64.b64encode(f"me:{s}".encode()).decode()
            in text]


def test_planted_secrets_are_sent_and_found_nowhere_else(
        db_url: str, server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "pw").write_text(CREDENTIAL + "\n")
    environment = {**SECRETS, "CREDENTIALS_DIRECTORY": str(credentials)}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    jobs = job_file(tmp_path, server)

    job_outputs = [invoke("jobs", "apply", str(jobs), "--db", db_url),
                   invoke("jobs", "list", "--format", "json", "--db", db_url),
                   invoke("jobs", "show", "secret", "--db", db_url)]
    outputs = [invoke("run-once", "secret", "--db", db_url),
               invoke("run-once", "secret", "--db", db_url, "--json"),
               invoke("run-once", str(jobs), "--db", db_url, "--json")]
    for args in (["batches", "--format", "json"], ["show", "1"], ["show", "2", "-f", "json"],
                 ["show", "3", "-f", "csv"], ["report", "-f", "json"], ["db", "info"]):
        outputs.append(invoke(*args, "--db", db_url))
    assert all(code == 0 for code, _, _ in [*job_outputs, *outputs]), outputs
    daemon = DaemonProcess(db_url, "--log-level", "debug", env=environment).started()
    daemon.wait_for(lambda line: "batch" in line)
    assert daemon.stop() == 0

    # The values went out: in the path, the query, the headers, basic auth.
    paths = [path for _, path, _, _ in server.seen]
    assert any(SECRETS["PATH_SECRET"] in p and SECRETS["QUERY_SECRET"] in p for p in paths)
    assert all(SECRETS["FIELD_SECRET"] in p and LITERAL in p for p in paths)
    headers = [h for _, _, _, h in server.seen]
    assert all(h["X-Token"] == f"Bearer {SECRETS['HEADER_SECRET']}" for h in headers)
    assert all(base64.b64decode(h["Authorization"].split()[1]).decode() == f"me:{CREDENTIAL}"
               for h in headers)

    # ... and are nowhere else.
    for _, out, err in job_outputs:
        assert found_in(out + err) == [], out + err
    for _, out, err in outputs:
        assert found_in(out + err, literal=True) == [], out + err
    assert found_in("".join(daemon.raw), literal=True) == []
    assert "${PATH_SECRET}" in outputs[1][1] and "plain=REDACTED" in outputs[1][1]
    with open_store(db_url) as store, store.connect() as conn:
        stored = " ".join(f"{r.url} {r.query}" for r in conn.execute(select(requests)))
    assert "${QUERY_SECRET}" in stored and found_in(stored, literal=True) == []

    # A batch that waits in the spool holds no value either.
    from collector.collect import collect
    from collector.jobfile import load_job_file
    from collector.spool import Spool
    from tests.conftest import database_outage

    (job,) = load_job_file(jobs)
    spool = Spool(tmp_path / "spool")
    with open_store(db_url, busy_timeout=0.2) as store, database_outage(db_url):
        outcome = collect(job.name, job.batch, store=store, spool=spool)
    assert outcome.spooled is not None
    assert found_in(outcome.spooled.read_bytes(), literal=True) == []
    if db_url.startswith("sqlite"):
        database = Path(make_url(db_url).database or "")
        for suffix in ("", "-wal", "-shm"):
            part = database.with_name(database.name + suffix)
            if part.exists():
                assert found_in(part.read_bytes()) == [], part
    else:
        pg_dump = shutil.which("pg_dump")
        assert pg_dump is not None, "pg_dump comes with PostgreSQL's client"
        url = make_url(db_url).set(drivername="postgresql")
        dump = subprocess.run([pg_dump, url.render_as_string(hide_password=False)],
                              capture_output=True, timeout=60, check=True).stdout
        assert b"REDACTED" in dump and found_in(dump) == []


def test_a_password_in_a_url_is_never_echoed() -> None:
    code, _, err = invoke("run-once", "--url", "http://me:hunter2@example.test:99999/",
                          "--no-store")
    assert code == 2 and "hunter2" not in err
    assert_one_line_error(err, "me:***@example.test:99999")


@pytest.mark.parametrize("password", ["S3cr@tPw", "p@ss:w/rd?x#y", "@@", "plain"])
def test_a_database_password_is_masked_whatever_it_holds(password: str) -> None:
    for command in (["db", "info"], ["jobs", "list"], ["run-once", "--url", "http://127.0.0.1:1/"]):
        code, _, err = invoke(*command, "--db", f"postgresql://postgres:{password}@127.0.0.1:1/x")
        assert code == 1, err  # refused: the URL was taken as meant
        assert_one_line_error(err, "postgresql+psycopg://postgres:***@127.0.0.1:1/x: ")
        assert password not in err


def test_jobs_show_masks_redacted_literals(sqlite_url: str, tmp_path: Path,
                                          server: LocalServer) -> None:
    jobs = job_file(tmp_path, server)
    assert invoke("jobs", "apply", str(jobs), "--db", sqlite_url)[0] == 0
    code, out, _ = invoke("jobs", "show", "secret", "--db", sqlite_url)
    assert code == 0 and LITERAL not in out
    assert 'plain = "REDACTED"' in out and '"${FIELD_SECRET}"' in out


def test_basic_auth_takes_a_reference_only(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text('[jobs.a]\nurl = "http://x/"\n'
                    'basic_auth = { username = "me", password = "plain-text" }\n')
    code, _, err = invoke("jobs", "validate", str(path))
    assert code == 2
    assert "basic_auth.password: must be a reference like ${PASSWORD}" in err
    assert "plain-text" not in err


def test_a_missing_credential_is_a_one_line_error(tmp_path: Path, server: LocalServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(f'[jobs.a]\nurl = "{server.url("/search")}"\n'
                    'basic_auth = { username = "me", password = "${credential:pw}" }\n')
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "none"))
    code, _, err = invoke("run-once", str(path), "--no-store")
    assert code == 2
    assert_one_line_error(err, 'job "a": basic_auth.password: ${credential:pw} cannot be read')
    assert server.seen == []


def test_a_secret_in_an_error_message_is_scrubbed(server: LocalServer) -> None:
    from collector.collect import collect
    from collector.spec import BatchSpec

    # The connection is refused; urllib3's message would name the target, and the
    # path carries the secret: the stored error never does.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        spec = BatchSpec(url=f"http://127.0.0.1:{port}/a/${{TOKEN}}", retries=1)
        outcome = collect("j", spec, store=None, environ={"TOKEN": "tok-SECRET-9"})
    assert outcome.result is not None
    (request,) = outcome.result.requests
    assert request.error_kind == "connect_refused"
    texts = [request.error or "", request.url, *(a.error for a in request.failed_attempts)]
    assert not any("tok-SECRET-9" in t for t in texts)
    assert request.url.endswith("/a/${TOKEN}")


# Values with characters that a URL percent-encodes: a library that logs the URL it
# sent shows them encoded, and the filter must know them in that form too.
ODD = {"ODD_PATH": "odd path/4721", "ODD_QUERY": "odd&query=4722 +x"}


def _forms(value: str) -> list[str]:
    from urllib.parse import quote, quote_plus

    return [value, quote(value, safe=""), quote(value), quote_plus(value)]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_in_the_daemons_log_through_retries_redirects_and_resets(
        sqlite_url: str, server: LocalServer, tmp_path: Path, log_format: str) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "pw").write_text(CREDENTIAL + "\n")
    with socket.socket() as probe:  # bound, not listening: refused
        probe.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{probe.getsockname()[1]}"
        base = server.url("")
        common = (f'headers = {{ X-Token = "Bearer ${{HEADER_SECRET}}" }}\n'
                  f'fields = {{ key = "${{FIELD_SECRET}}", plain = "{LITERAL}" }}\n'
                  'basic_auth = { username = "me", password = "${credential:pw}" }\n'
                  'redact = [ "plain" ]\nevery = "1s"\nretries = 2\n')
        jobs = tmp_path / "jobs.toml"
        jobs.write_text(
            # refused, retried: urllib3 warns with the URL it sent, once per retry
            f'[jobs.refused]\nurl = "{refused}/p/${{PATH_SECRET}}/${{ODD_PATH}}"\n'
            f'queries = [ {{ q = "${{QUERY_SECRET}}", o = "${{ODD_QUERY}}" }} ]\n{common}'
            # the server hangs up on the first attempt: reset, retried
            f'[jobs.reset]\nurl = "{base}/flaky/${{PATH_SECRET}}"\n'
            f'queries = [ {{ q = "${{QUERY_SECRET}}" }} ]\n{common}'
            # a hang-up every time, retried to the end
            f'[jobs.hangup]\nurl = "{base}/hangup/${{PATH_SECRET}}"\n'
            f'queries = [ {{ q = "${{ODD_QUERY}}" }} ]\n{common}'
            # redirects followed through the pool
            f'[jobs.hops]\nurl = "{base}/hops/2?t=${{QUERY_SECRET}}"\nfollow_redirects = true\n'
            f'{common}')
        environment = {**SECRETS, **ODD, "CREDENTIALS_DIRECTORY": str(credentials)}
        daemon = DaemonProcess(sqlite_url, "--jobs", str(jobs), "--log-level", "debug",
                               env=environment, log_format=log_format)
        names = {"refused", "reset", "hangup", "hops"}

        def every_job_stored() -> bool:
            try:
                return {b["job_name"] for b in stored_batches(sqlite_url)} >= names
            except CollectorError:  # not created yet
                return False

        try:
            wait_until(every_job_stored, timeout=30, message="no batch of every job")
        finally:
            assert daemon.stop() == 0
    log = "".join(daemon.raw)
    assert "Retrying" in log  # urllib3's own warnings are there, their values hidden
    planted = [*EVERY, LITERAL, *(f for v in ODD.values() for f in _forms(v))]
    assert [s for s in planted if s in log] == []
    assert found_in(log, literal=True) == []
    with open_store(sqlite_url) as store, store.connect() as conn:
        rows = conn.execute(select(requests.c.url, requests.c.query, requests.c.error,
                                   requests.c.failed_attempts)).all()
    stored = " ".join(str(value) for row in rows for value in row)
    assert "connection to 127.0.0.1" in stored and "REDACTED" in stored
    assert [s for s in planted if s in stored] == []


def test_the_filter_rewrites_any_record_whoever_wrote_it() -> None:
    import logging

    from collector.redaction import RedactingFilter, Redactor

    redactor = Redactor()
    redactor.add(["s3cret value/1"])
    shown = logging.LogRecord("urllib3.connectionpool", logging.WARNING, "x", 1,
                              "Retrying after %r: %s", ("boom", "/p/s3cret%20value%2F1?q=1"),
                              None)
    shown.__dict__["detail"] = {"url": "/p/s3cret+value%2F1"}  # as extra= sets it
    assert RedactingFilter(redactor).filter(shown)
    assert shown.getMessage() == "Retrying after 'boom': /p/REDACTED?q=1"
    assert shown.__dict__["detail"] == {"url": "/p/REDACTED"}
    broken = logging.LogRecord("x", logging.WARNING, "x", 1, "%s %s", ("s3cret value/1",), None)
    assert RedactingFilter(redactor).filter(broken)  # a library's mismatched arguments
    assert "s3cret" not in broken.getMessage() and "REDACTED" in broken.getMessage()
    try:
        raise ValueError("token s3cret value/1 refused")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, "x", 1, "failed", None, sys.exc_info())
    RedactingFilter(redactor).filter(failed)
    assert failed.exc_info is None and "REDACTED refused" in (failed.exc_text or "")
    assert "s3cret" not in logging.Formatter().format(failed)
