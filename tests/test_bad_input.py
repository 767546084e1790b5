"""A battery of bad input: every one gets one clear line, the right exit code, no
traceback, no hang and no side effect (no database, folder or file appears).

Job files with mistakes go through every command that reads job files; each
command's options get values it must refuse; database URLs and paths that cannot
work go to the commands that open a database. Only 127.0.0.1:1 (refused) is ever
named as a target, and no case gets as far as sending a request.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collector.cli import app

URL = "http://127.0.0.1:1/"

# Job tables (after [jobs.j]) that are wrong, each for its own reason.
BAD_JOBS = [
    "",  # no url
    'url = 5',
    'url = "ftp://127.0.0.1:1/"',
    'url = "http://"',
    'url = "http://a b/"',
    'url = "http://127.0.0.1:99999/"',
    'url = "http://me:pw@127.0.0.1:1/"',
    'url = "http://127.0.0.1:1/#frag"',
    'url = "http://127.0.0.1:1/\\n"',
    'url = "http://${HOST}/"',
    'url = "http://127.0.0.1:1/${S"',
    'url = "http://127.0.0.1:1/?k=${credential:../x}"',
    'url = "http://127.0.0.1:1/?k=${credential:a/b}"',
    'url = "http://127.0.0.1:1/?k=${1abc}"',
    f'url = "{URL}"\nmethod = "DELETE"',
    f'url = "{URL}"\nmethod = 1',
    f'url = "{URL}"\nqueries = "q=1"',
    f'url = "{URL}"\nqueries = [ 1 ]',
    f'url = "{URL}"\nqueries = [ {{ q = [ 1 ] }} ]',
    f'url = "{URL}"\nqueries = [ {{ q = "${{X" }} ]',
    f'url = "{URL}"\nfields = 3',
    f'url = "{URL}"\nfields = {{ a = {{ b = 1 }} }}',
    f'url = "{URL}"\nfields = {{ a = "x${{" }}',
    f'url = "{URL}"\nheaders = {{ "Bad Name" = "x" }}',
    f'url = "{URL}"\nheaders = {{ X = "a\\nb" }}',
    f'url = "{URL}"\nheaders = {{ X = "\u20ac" }}',
    f'url = "{URL}"\nheaders = {{ Content-Length = "5" }}',
    f'url = "{URL}"\nheaders = {{ host = "x" }}',
    f'url = "{URL}"\nheaders = {{ Transfer-Encoding = "chunked" }}',
    f'url = "{URL}"\nheaders = {{ X = "${{credential:}}" }}',
    f'url = "{URL}"\npool_size = 0',
    f'url = "{URL}"\npool_size = 1001',
    f'url = "{URL}"\npool_size = "2"',
    f'url = "{URL}"\npool_size = true',
    f'url = "{URL}"\nconcurrency = -1',
    f'url = "{URL}"\nretries = 101',
    f'url = "{URL}"\nretries = 1.5',
    f'url = "{URL}"\ntimeout = "-1s"',
    f'url = "{URL}"\ntimeout = "0"',
    f'url = "{URL}"\ntimeout = "5 minutes"',
    f'url = "{URL}"\ntimeout = "2d"',
    f'url = "{URL}"\ntimeout = {{ connect = "1s", bogus = "1s" }}',
    f'url = "{URL}"\ntimeout = {{ total = "nan" }}',
    f'url = "{URL}"\ntimeout = true',
    f'url = "{URL}"\nmax_body = "10 parsecs"',
    f'url = "{URL}"\nmax_body = -1',
    f'url = "{URL}"\nmax_body = "2TiB"',
    f'url = "{URL}"\nca_file = ""',
    f'url = "{URL}"\nca_file = 3',
    f'url = "{URL}"\nclient_key = "k.pem"',
    f'url = "{URL}"\nverify = "no"',
    f'url = "{URL}"\nfollow_redirects = 1',
    f'url = "{URL}"\nbasic_auth = "me:pw"',
    f'url = "{URL}"\nbasic_auth = {{ username = "me", password = "plain" }}',
    f'url = "{URL}"\nbasic_auth = {{ username = "m:e", password = "${{P}}" }}',
    f'url = "{URL}"\nbasic_auth = {{ username = "me", password = "${{P" }}',
    f'url = "{URL}"\nredact = "key"',
    f'url = "{URL}"\nredact = [ "" ]',
    f'url = "{URL}"\nretry_statuses = [ 99 ]',
    f'url = "{URL}"\nretry_statuses = 503',
    f'url = "{URL}"\nretry_after_max = "2h"',
    f'url = "{URL}"\nevery = "5 minutes"',
    f'url = "{URL}"\nevery = 0',
    f'url = "{URL}"\nevery = "400d"',
    f'url = "{URL}"\ncron = "* * *"',
    f'url = "{URL}"\ncron = "61 * * * *"',
    f'url = "{URL}"\ncron = "0 0 30 2 *"',
    f'url = "{URL}"\ncron = "0 0 31 4 *"',
    f'url = "{URL}"\ncron = "* * * * 8"',
    f'url = "{URL}"\ncron = 5',
    f'url = "{URL}"\nevery = "1m"\ncron = "* * * * *"',
    f'url = "{URL}"\ncron = "* * * * *"\ntimezone = "Mars/Olympus"',
    f'url = "{URL}"\njitter = "-1s"',
    f'url = "{URL}"\nenabled = "yes"',
    f'url = "{URL}"\nbogus = 1',
    f'url = "{URL}"\nURL = "{URL}"',
]

# Whole files that are not job files at all.
BAD_FILES = [
    "not toml at all [",
    "[jobs]",
    "jobs = 1",
    "[other]\nx = 1",
    f'[jobs."bad name!"]\nurl = "{URL}"',
    f'[jobs.j]\nurl = "{URL}"\n[jobs.j.queries]\nq = 1',
    '[jobs.j]\nurl = "\\ud800"',
    "\x00\x01\x02",
]

DATABASES = [
    "sqlite:///:memory:", "sqlite://", "sqlite:///file:x?mode=memory&uri=true",
    "postgresql://postgres@127.0.0.1:5432/test?bogus=1", "mysql://u@127.0.0.1/x",
    "nosuchdb://x", "postgresql://u:p@127.0.0.1:notaport/x", "file:/tmp/x.db",
    "sqlite:///" + "x" * 5000, "/" + "y" * 5000,
]

OPTIONS = [
    # run-once
    ["run-once"], ["run-once", "--url", "ftp://127.0.0.1:1/"], ["run-once", "--url", "x"],
    ["run-once", "--url", "http://a b/"], ["run-once", "--url", URL, "--timeout", "0"],
    ["run-once", "--url", URL, "--timeout", "soon"], ["run-once", "--url", URL, "--timeout", "9d"],
    ["run-once", "--url", URL, "--total-timeout", "-1"],
    ["run-once", "--url", URL, "--max-body", "lots"], ["run-once", "--url", URL, "--method", "PUT"],
    ["run-once", "--url", URL, "-q", "a=1&&"], ["run-once", "--url", URL, "--field", "noequals&"],
    ["run-once", "--url", URL, "-H", "no colon"], ["run-once", "--url", URL, "-H", ": empty"],
    ["run-once", "--url", URL, "-H", "Host: x"], ["run-once", "--url", URL, "--pool-size", "0"],
    ["run-once", "--url", URL, "--pool-size", "one"], ["run-once", "--url", URL, "--retries", "-1"],
    ["run-once", "--url", URL, "--concurrency", "1e3"], ["run-once", "--url", URL, "--name", "a b"],
    ["run-once", "--url", URL, "--ca-file", "/nowhere.pem"],
    ["run-once", "--url", URL, "--ca-file", "c" * 300],
    ["run-once", "--url", URL + "${UNSET_VARIABLE_XYZ}"],
    ["run-once", "jobs.toml", "--url", URL], ["run-once", "--job", "x"],
    ["run-once", "no-such-job"], ["run-once", "missing.toml"], ["run-once", "dir/missing.toml"],
    ["run-once", "--bogus"],
    # jobs
    ["jobs", "add", "j", "--url", URL], ["jobs", "add", "j", "--every", "1m"],
    ["jobs", "add", "j", "--url", URL, "--every", "1m", "--cron", "* * * * *"],
    ["jobs", "add", "a b", "--url", URL, "--every", "1m"],
    ["jobs", "add", "j", "--url", URL, "--every", "never"],
    ["jobs", "add", "j", "--url", URL, "--cron", "0 0 30 2 *"],
    ["jobs", "add", "j", "--url", URL, "--cron", "* * * * *", "--timezone", "Nowhere"],
    ["jobs", "add", "j", "--url", URL, "--every", "1m", "--jitter", "-5s"],
    ["jobs", "add", "j", "--url", URL, "--every", "1m", "--retries", "x"],
    ["jobs", "show", "nope"], ["jobs", "enable", "nope"], ["jobs", "disable", "nope"],
    ["jobs", "remove", "nope"], ["jobs", "list", "--format", "xml"],
    ["jobs", "validate"], ["jobs", "validate", "missing.toml"], ["jobs", "apply", "missing.toml"],
    ["jobs", "apply", "--dry-run", "missing.toml"], ["jobs", "validate", "empty-dir"],
    # reports
    ["report", "--since", "yesterday"], ["report", "--since", "-1d"], ["report", "-f", "xml"],
    ["report", "--job", "nope"], ["batches", "--limit", "0"], ["batches", "--limit", "many"],
    ["batches", "--since", "2026-13-45"], ["show"], ["show", "abc"], ["show", "-1"],
    ["show", str(2**64)], ["prune"], ["prune", "--older-than", "old"],
    ["prune", "--older-than", "0"],
    # the daemon: every option checked before anything starts
    ["run", "--workers", "0"], ["run", "--workers", "many"], ["run", "--shutdown-timeout", "2d"],
    ["run", "--heartbeat-timeout", "never"], ["run", "--db-timeout", "0"],
    ["run", "--metrics-port", "70000"], ["run", "--metrics-port", "http"],
    ["run", "--log-level", "loud"], ["run", "--log-format", "xml"],
    ["run", "--jobs", "missing.toml"],
    # the rest
    ["spool", "flush", "--bogus"], ["db", "info"], ["db", "upgrade", "extra"], ["bogus"],
]


def _cases() -> list[tuple[str, list[str]]]:
    cases: list[tuple[str, list[str]]] = []
    for i, body in enumerate(BAD_JOBS):
        text = f"[jobs.j]\n{body}\n"
        for command in (["jobs", "validate"], ["jobs", "apply"], ["run-once"]):
            cases.append((text, [*command, f"bad{i}.toml"]))
        if i % 3 == 0:  # with a good job beside it: the mistake is still found
            cases.append((f'[jobs.ok]\nurl = "{URL}"\n{text}', ["jobs", "apply", f"bad{i}.toml"]))
    for i, text in enumerate(BAD_FILES):
        for command in (["jobs", "validate"], ["jobs", "apply"], ["run-once"], ["run", "--jobs"]):
            cases.append((text, [*command, f"bad{i}.toml"]))
    for database in DATABASES:
        for command in (["db", "info"], ["db", "upgrade"], ["jobs", "list"], ["batches"],
                        ["run-once", "--url", URL], ["run"]):
            cases.append(("", [*command, "--db", database]))
    cases += [("", args) for args in OPTIONS]
    return cases


CASES = _cases()


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """``collector run`` sets up the process's log before it opens the database; run in
    this process, its handler (on a stream CliRunner closes) must not outlive the case."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_battery_is_large() -> None:
    assert len(CASES) >= 300


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("text", "args"), CASES, ids=[" ".join(a)[:60] for _, a in CASES])
def test_bad_input_is_one_line_and_changes_nothing(text: str, args: list[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty-dir").mkdir()
    for arg in args:
        if arg.endswith(".toml") and arg.startswith("bad"):
            (tmp_path / arg).write_bytes(text.encode("utf-8", "surrogatepass"))
    before = _tree(tmp_path)
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, SystemExit), result.exception  # never a traceback
    assert result.exit_code in (1, 2), (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines, result.stdout
    if lines[-1].startswith("collector: error: ") or len(lines) == 1:
        # collector's own: one line each (several for several mistakes in job files)
        assert all(line.startswith(("collector: error: ", "collector: warning: "))
                   for line in lines), result.stderr
        assert all(len(line) < 1200 for line in lines)
    else:  # click's usage errors: its usage line, then "Error: ..."
        assert lines[-1].startswith("Error: ") and result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert _tree(tmp_path) == before  # no database, folder or file appeared
    assert not os.path.exists(tmp_path / "xdg")


def test_metrics_that_cannot_be_served_stop_the_daemon_before_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for args, message in (
                (["--metrics-port", port], f"--metrics-port {port} on 127.0.0.1: cannot listen "
                                           "there (Address already in use)"),
                (["--metrics-port", "0", "--metrics-address", "bogus.invalid"],
                 '--metrics-address "bogus.invalid": not an address of this host')):
            result = CliRunner().invoke(app, ["run", *args])
            assert result.exit_code == 2, result.stderr
            assert result.stderr.startswith(f"collector: error: {message}")
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert _tree(tmp_path) == set()  # no database, no spool


@pytest.mark.parametrize("content", [b"just some text\n", b"SQLite format 3\x00" + b"\x00" * 200])
def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(content)
    for command in (["db", "info"], ["db", "upgrade"], ["jobs", "list"],
                    ["run-once", "--url", URL]):
        result = CliRunner().invoke(app, [*command, "--db", str(path)])
        assert result.exit_code == 2, result.stderr
        assert result.stderr.startswith(f"collector: error: database sqlite:///{path}: ")
        assert "is it the right file?" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == content


def test_another_jobs_missing_file_never_blocks_a_job(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.store import open_store

    monkeypatch.chdir(tmp_path)
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[jobs.a]\nurl = "{URL}"\n'
                    '[jobs.b]\nurl = "https://127.0.0.1:1/"\nca_file = "/nowhere/ca.pem"\n')
    db = f"sqlite:///{tmp_path / 'c.db'}"
    result = CliRunner().invoke(app, ["run-once", str(jobs), "--job", "a", "--db", db])
    assert result.exit_code == 0, result.stderr  # a ran (refused: a row, not an error)
    result = CliRunner().invoke(app, ["run-once", str(jobs), "--job", "b", "--db", db])
    assert result.exit_code == 2
    assert 'job "b": ca_file: "/nowhere/ca.pem" is not a readable file' in result.stderr
    result = CliRunner().invoke(app, ["jobs", "apply", str(jobs), "--db", db])
    assert result.exit_code == 0, result.stderr
    assert "collector: warning:" in result.stderr and "/nowhere/ca.pem" in result.stderr
    with open_store(db) as store:
        assert sorted(s.name for s in store.jobs().jobs) == ["a", "b"]
    result = CliRunner().invoke(app, ["jobs", "validate", str(jobs)])
    assert result.exit_code == 2  # on this machine, b cannot run: validate says so


def test_request_errors_name_no_internal_class() -> None:
    from collector.runner import run_batch
    from collector.spec import BatchSpec

    result = run_batch(BatchSpec(url=URL, retries=1))
    (request,) = result.requests
    texts = [request.error or "", *(a.error for a in request.failed_attempts)]
    assert request.error == "connection to 127.0.0.1:1 refused"
    assert not any("Connection(" in t or "Pool(" in t or "Error:" in t for t in texts)
