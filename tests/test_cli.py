"""The CLI, invoked through typer's CliRunner and as the installed console script,
checked through the database and the exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from collector.models import batches, connections, requests
from collector.store import open_store, schema
from collector.store.schema import head_revision, migrations_location
from tests.cli import assert_one_line_error, invoke
from tests.conftest import database_outage
from tests.server import LocalServer

COLLECTOR = Path(sys.executable).parent / "collector"


def stored(url: str) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    with open_store(url) as store, store.engine.connect() as conn:
        batch_rows = [dict(r._mapping) for r in conn.execute(select(batches)
                                                             .order_by(batches.c.id))]
        request_rows = [dict(r._mapping) for r in conn.execute(
            select(requests).order_by(requests.c.batch_id, requests.c.position))]
    return batch_rows, request_rows


def test_run_once_stores_the_batch(db_url: str, server: LocalServer) -> None:
    code, out, err = invoke("run-once", "--url", server.url("/search"),
                            "--query", "q=python&v=1.0", "--query", "q=php&v=1.0",
                            "--db", db_url)
    assert (code, err) == (0, "")
    assert "Number of connections: 1 (TCP connections opened: 1)" in out
    assert "Number of requests: 2" in out
    assert "text/javascript; charset=utf-8" in out
    batch_rows, request_rows = stored(db_url)
    assert len(batch_rows) == 1
    assert batch_rows[0]["job_name"] == "run-once" and batch_rows[0]["trigger"] == "manual"
    assert (batch_rows[0]["num_connections"], batch_rows[0]["num_requests"],
            batch_rows[0]["tcp_connections"]) == (1, 2, 1)
    assert [r["query"] for r in request_rows] == ["q=python&v=1.0", "q=php&v=1.0"]
    assert [r["reused"] for r in request_rows] == [False, True]
    assert f"batch {batch_rows[0]['id']} stored in" in out


def test_run_once_json(sqlite_url: str, server: LocalServer) -> None:
    code, out, _ = invoke("run-once", "--url", server.url("/search"), "-q", "q=python",
                          "-q", "q=php", "--db", sqlite_url, "--json", "--name", "search")
    assert code == 0
    document = json.loads(out)
    batch_rows, request_rows = stored(sqlite_url)
    assert document["batch_id"] == batch_rows[0]["id"]
    assert document["job_name"] == "search" == batch_rows[0]["job_name"]
    for key in ("num_connections", "num_requests", "tcp_connections", "status",
                "requests_succeeded", "requests_failed"):
        assert document[key] == batch_rows[0][key], key
    assert len(document["requests"]) == 2
    for row, item in zip(request_rows, document["requests"], strict=True):
        for key in ("position", "status", "content_type", "body_length", "content_length",
                    "body_sha256", "elapsed_ms", "connect_ms", "ttfb_ms", "reused", "attempts",
                    "error_kind", "error", "query", "url", "method"):
            assert item[key] == row[key], key


def test_no_store_writes_nothing(tmp_path: Path, server: LocalServer) -> None:
    db = tmp_path / "never.db"
    code, out, _ = invoke("run-once", "--url", server.url("/search"), "--db", str(db),
                          "--no-store", "--json")
    assert code == 0 and json.loads(out)["batch_id"] is None
    assert not db.exists()


def test_the_default_database_is_under_xdg_data_home(server: LocalServer) -> None:
    code, _, _ = invoke("run-once", "--url", server.url("/search"))
    assert code == 0
    default = Path(os.environ["XDG_DATA_HOME"]) / "collector" / "collector.db"
    assert len(stored(f"sqlite:///{default}")[0]) == 1


def test_the_database_url_comes_from_the_environment(
        sqlite_url: str, server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_DATABASE_URL", sqlite_url)
    assert invoke("run-once", "--url", server.url("/search"))[0] == 0
    assert len(stored(sqlite_url)[0]) == 1


def test_fail_on_error(sqlite_url: str, server: LocalServer) -> None:
    args = ["run-once", "--url", server.url("/status/404"), "--db", sqlite_url]
    assert invoke(*args)[0] == 0  # statuses are data
    code, _, err = invoke(*args, "--fail-on-error")
    assert code == 3 and "1 of 1 requests failed, got a status >= 400 or failed a check" in err
    assert invoke("run-once", "--url", server.url("/search"), "--db", sqlite_url,
                  "--fail-on-error")[0] == 0
    assert len(stored(sqlite_url)[0]) == 3  # stored whatever the exit code


def test_failed_requests_are_listed(sqlite_url: str, server: LocalServer) -> None:
    code, out, _ = invoke("run-once", "--url", server.url("/search"), "-q", "q=a",
                          "-q", "q=hangup", "--db", sqlite_url)
    assert code == 0
    assert "errors:\n  #1 protocol: " in out
    assert "Batch partial: 1 succeeded, 1 failed" in out


def test_run_once_a_job_file(sqlite_url: str, server: LocalServer, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "jobs.toml"
    path.write_text(f"""
[jobs.other]
url = "{server.url('/status/500')}"

[jobs.search]
url = "{server.url('/search')}"
every = "5m"
fields = {{ v = "1.0" }}
queries = [ {{ q = "python" }}, {{ q = "php" }} ]
headers = {{ Authorization = "Bearer ${{SEARCH_TOKEN}}" }}
""")
    monkeypatch.setenv("SEARCH_TOKEN", "s3cret")
    code, out, err = invoke("run-once", str(path), "--job", "search", "--db", sqlite_url)
    assert (code, err) == (0, "")
    assert [p for _, p, _, _ in server.seen] == ["/search?q=python&v=1.0", "/search?q=php&v=1.0"]
    assert {h["Authorization"] for _, _, _, h in server.seen} == {"Bearer s3cret"}
    batch_rows, request_rows = stored(sqlite_url)
    assert batch_rows[0]["job_name"] == "search" and len(request_rows) == 2

    code, _, err = invoke("run-once", str(path), "--db", sqlite_url)
    assert code == 2
    assert_one_line_error(err, "has 2 jobs (other, search): choose one with --job")

    monkeypatch.delenv("SEARCH_TOKEN")
    code, _, err = invoke("run-once", str(path), "--job", "search", "--db", sqlite_url)
    assert code == 2
    assert_one_line_error(err, f'{path}: job "search": headers.Authorization: '
                               "${SEARCH_TOKEN} is not set")
    assert len(stored(sqlite_url)[0]) == 1


@pytest.mark.parametrize(("args", "fragment"), [
    (["--url", "ftp://example.test/"], '--url: "ftp://example.test/" is not an http'),
    (["--url", "not a url"], "--url: "),
    (["--url", "http://127.0.0.1:1/", "--query", "python"], '--query: "python" is not name=value'),
    (["--url", "http://127.0.0.1:1/", "--field", "v"], '--field: "v" is not name=value'),
    (["--url", "http://127.0.0.1:1/", "--header", "NoColon"], '--header: "NoColon" is not'),
    (["--url", "http://127.0.0.1:1/", "-H", "Bad Name: x"],
     '--header: "Bad Name" is not a valid header name'),
    (["--url", "http://127.0.0.1:1/", "--pool-size", "0"], "--pool-size: 0 must be between"),
    (["--url", "http://127.0.0.1:1/", "--timeout", "0"], '--timeout: "0" must be > 0'),
    (["--url", "http://127.0.0.1:1/", "--timeout", "5x"], '--timeout: "5x" is not a duration'),
    (["--url", "http://127.0.0.1:1/", "--total-timeout", "x"],
     '--total-timeout: "x" is not a duration'),
    (["--url", "http://127.0.0.1:1/", "--max-body", "lots"], '--max-body: "lots" is not a size'),
    (["--url", "http://127.0.0.1:1/", "--name", "a b"], '--name: "a b": a job name is'),
    (["jobs/search.toml", "--timeout", "5s"], "--timeout cannot be combined with a job;"),
    (["jobs/search.toml", "-q", "q=x"], "--query cannot be combined with a job;"),
    (["--url", "http://127.0.0.1:1/", "--method", "PUT"], '--method: "PUT" is not one of'),
    (["--url", "http://127.0.0.1:1/", "--job", "x"], "--job needs a job file"),
    ([], "give a job file, a job's name or --url"),
    (["missing.toml"], "missing.toml: no such job file, and no stored job has that name"),
    (["jobs/missing.toml"], "jobs/missing.toml: no such job file"),
    (["jobs/search.toml", "--url", "http://x/"], "--url cannot be combined with a job;"),
    (["--url", "http://127.0.0.1:1/", "--db", "nonsense://x"], "unknown database type"),
])
def test_usage_errors_exit_2_with_one_line(args: list[str], fragment: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    code, out, err = invoke("run-once", *args)
    assert code == 2, err
    assert_one_line_error(err, fragment)
    assert out == ""


def test_a_bad_job_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[jobs.search]\nurl = "http://x/"\nevery = "5 minutes"\n')
    code, _, err = invoke("run-once", str(path))
    assert code == 2
    assert_one_line_error(err, f'{path}: job "search": every: "5 minutes" is not a duration')


def test_click_usage_errors_exit_2() -> None:
    assert invoke("run-once", "--pool-size", "many")[0] == 2
    assert invoke("no-such-command")[0] == 2


def test_an_unreachable_database_exits_1_before_running(server: LocalServer) -> None:
    code, out, err = invoke("run-once", "--url", server.url("/search"),
                            "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert code == 1
    assert_one_line_error(err, "database postgresql+psycopg://nobody@127.0.0.1:1/none: ")
    assert out == "" and server.seen == []


def test_a_batch_that_cannot_be_stored_is_still_printed(postgres_url: str,
                                                        server: LocalServer) -> None:
    outage = database_outage(postgres_url)
    server.before_answer = outage.__enter__  # the database goes away while the batch runs
    try:
        code, out, err = invoke("run-once", "--url", server.url("/search"), "-q", "q=python",
                                "--db", postgres_url, "--json")
    finally:
        outage.__exit__(None, None, None)
    assert code == 1
    assert_one_line_error(err, "the batch ran (printed above) but was not stored: database ")
    document = json.loads(out)
    assert document["batch_id"] is None and document["requests"][0]["status"] == 200
    with open_store(postgres_url) as store, store.engine.connect() as conn:
        assert conn.execute(select(batches)).all() == []  # all or nothing


def test_demo(sqlite_url: str) -> None:
    code, out, err = invoke("demo", "--db", sqlite_url)
    assert (code, err) == (0, "")
    assert out.count(" 200 ") == 2
    assert "text/javascript; charset=utf-8" in out
    assert "Number of connections: 1 (TCP connections opened: 1)" in out
    assert "Number of requests: 2" in out
    batch_rows, request_rows = stored(sqlite_url)
    assert batch_rows[0]["job_name"] == "demo"
    assert [r["query"] for r in request_rows] == ["q=python&v=1.0", "q=php&v=1.0"]


def test_db_upgrade_and_info(db_url: str) -> None:
    code, out, err = invoke("db", "info", "--db", db_url)
    if db_url.startswith("sqlite"):  # no file yet: info creates none
        assert code == 2 and "no database at" in err
        assert not Path(db_url.removeprefix("sqlite:///")).exists()
    else:  # an empty PostgreSQL database
        assert code == 0 and "revision: none" in out and "empty" in out
    code, out, _ = invoke("db", "upgrade", "--db", db_url)
    assert code == 0 and f"upgraded from revision none to {head_revision()}" in out
    code, out, _ = invoke("db", "upgrade", "--db", db_url)
    assert code == 0 and f"already at revision {head_revision()}" in out
    invoke("demo", "--db", db_url)
    code, out, _ = invoke("db", "info", "--db", db_url)
    assert code == 0
    assert "up to date" in out and "batches:  1" in out and "requests: 2" in out


def test_db_info_on_an_unreachable_database_exits_1() -> None:
    code, _, err = invoke("db", "info", "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert code == 1
    assert_one_line_error(err, "127.0.0.1")


def test_the_installed_console_script(tmp_path: Path, server: LocalServer) -> None:
    assert COLLECTOR.exists(), "install the project: pip install -e '.[test]'"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(COLLECTOR), *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=60)

    demo = run("demo")
    assert demo.returncode == 0, demo.stderr
    assert "Number of requests: 2" in demo.stdout
    assert (tmp_path / "xdg" / "collector" / "collector.db").exists()

    ran = run("run-once", "--url", server.url("/search"), "-q", "q=x", "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["num_requests"] == 1

    bad = run("run-once", "--url", "gopher://x/")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert_one_line_error(bad.stderr, "--url")

    unreachable = run("db", "info", "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr

    version = subprocess.run([sys.executable, "-m", "collector", "--version"],
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("collector ")


NEXT_REVISION = '''
"""a later revision, as a future collector would ship it"""
import sqlalchemy as sa
from alembic import op

revision = "next"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("batches", sa.Column("note", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("batches", "note")
'''


def test_an_older_schema_asks_for_db_upgrade(db_url: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             server: LocalServer) -> None:
    assert invoke("demo", "--db", db_url)[0] == 0  # the database is at this collector's head
    newer = tmp_path / "migrations"
    shutil.copytree(migrations_location(), newer, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    (newer / "versions" / "next_note.py").write_text(NEXT_REVISION.format(head=head))
    monkeypatch.setattr(schema, "migrations_location", lambda: str(newer))  # a newer collector
    monkeypatch.setattr(schema, "HEAD", "next")
    monkeypatch.setattr(schema, "REVISIONS", schema.REVISIONS | {"next"})

    code, out, err = invoke("run-once", "--url", server.url("/search"), "--db", db_url)
    assert code == 1 and out == "" and server.seen == []
    assert_one_line_error(err, f"is at schema revision {head}, this collector needs next: "
                               "run `collector db upgrade`")
    code, out, _ = invoke("db", "info", "--db", db_url)
    assert code == 0 and f"revision: {head} (newest next: needs `collector db upgrade`)" in out

    code, out, _ = invoke("db", "upgrade", "--db", db_url)
    assert code == 0 and f"upgraded from revision {head} to next" in out
    assert invoke("run-once", "--url", server.url("/search"), "--db", db_url)[0] == 0
    assert len(stored(db_url)[0]) == 2  # the data was kept
    with open_store(db_url) as store:
        assert "note" in {c["name"] for c in inspect(store.engine).get_columns("batches")}


@pytest.mark.parametrize("given", ["5", "5s", "5000ms", "0.1m"])
def test_run_once_takes_every_duration_form(sqlite_url: str, server: LocalServer,
                                            given: str) -> None:
    code, out, err = invoke("run-once", "--url", server.url("/search"), "--timeout", given,
                            "--total-timeout", given, "--db", sqlite_url, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["requests"][0]["status"] == 200


def test_run_once_fields_and_max_body(sqlite_url: str, server: LocalServer) -> None:
    code, out, err = invoke("run-once", "--url", server.url("/search"), "-q", "q=python",
                            "-q", "q=php&v=2", "--field", "v=1.0", "--field", "lang=en",
                            "--db", sqlite_url, "--json")
    assert (code, err) == (0, "")
    assert [p for _, p, _, _ in server.seen] == ["/search?q=python&v=1.0&lang=en",
                                                 "/search?q=php&v=2&lang=en"]
    code, out, _ = invoke("run-once", "--url", server.url("/bytes/5000"), "--max-body", "1KiB",
                          "--db", sqlite_url, "--json")
    (request,) = json.loads(out)["requests"]
    assert code == 0 and request["error_kind"] == "too_large" and request["body_length"] == 1025


def test_the_demo_prints_the_examples_figures(sqlite_url: str) -> None:
    code, out, err = invoke("demo", "--db", sqlite_url, "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert [(r["status"], r["content_type"], r["body_length"]) for r in document["requests"]] == [
        (200, "text/javascript; charset=utf-8", 211)] * 2
    assert (document["num_connections"], document["num_requests"]) == (1, 2)
    code, out, _ = invoke("demo", "--db", sqlite_url)
    lines = [line.split() for line in out.splitlines()]
    assert [line[2:6] for line in lines if line[:1] in (["0"], ["1"])] == [
        ["200", "text/javascript;", "charset=utf-8", "211"]] * 2
    assert "Number of connections: 1 " in out and "Number of requests: 2" in out


def test_a_progress_bar_only_on_a_terminal(tmp_path: Path, server: LocalServer) -> None:
    import pty

    args = [str(COLLECTOR), "run-once", "--url", server.url("/delay/0.3"), "-q", "q=a",
            "-q", "q=b", "-q", "q=c", "--no-store"]
    plain = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0 and plain.stderr == ""

    leader, follower = pty.openpty()
    try:
        on_terminal = subprocess.run(args, stdout=subprocess.PIPE, stderr=follower, text=True,
                                     timeout=60, env={**os.environ, "COLUMNS": "80"})
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert on_terminal.returncode == 0
    assert "Number of requests: 3" in on_terminal.stdout
    assert b"requests" in seen and b"/3" in seen


@pytest.mark.parametrize(("args", "fragment"), [
    (["run-once", "--url", "http://127.0.0.1:1/", "-H", "X-A: caf\u2615", "--no-store"],
     '--header "X-A": a header value can only hold Latin-1 characters'),
    (["run-once", "--url", "http://127.0.0.1:1/", "-H", "X-A: a\x07b", "--no-store"],
     '--header "X-A": a header value cannot contain control characters'),
    (["run-once", "--url", "http://x/a\r\nb", "--no-store"], "has a control character in it"),
    (["run-once", "--url", "http://127.0.0.1:1/", "--timeout", "1e308", "--no-store"],
     '--timeout: "1e308" is not a duration'),
    (["run-once", "--url", "http://127.0.0.1:1/", "--timeout", "99999999999d", "--no-store"],
     '--timeout: "99999999999d" is too long (at most 1d)'),
    (["run-once", "--url", "http://127.0.0.1:1/", "--max-body", "99999999999999999",
      "--no-store"], "is too large"),
    (["report", "--since", "99999999999d"], '--since: "99999999999d" is too long'),
    (["prune", "--older-than", "99999999999d"], '--older-than: "99999999999d" is too long'),
    (["report", "--db", "postgresql://u:pw@127.0.0.1:abc/x"], "is not a valid URL"),
])
def test_bad_input_is_one_line_never_a_traceback(args: list[str], fragment: str,
                                                 sqlite_url: str) -> None:
    if "--db" not in args:
        args = [*args, "--db", sqlite_url]
    code, out, err = invoke(*args)
    assert code == 2, err
    assert_one_line_error(err, fragment)
    assert "pw" not in err


@pytest.mark.parametrize(("args", "message"), [
    (["show", str(2**63)], f"BATCH_ID: {2**63} must be between 1 and {2**63 - 1}"),
    (["show", "abc"], 'BATCH_ID: "abc" is not a whole number'),
    (["batches", "--limit", str(2**63)], f"--limit: {2**63} must be between 1 and 1000000"),
    (["run-once", "--url", "http://127.0.0.1:1/", "--pool-size", "x"],
     '--pool-size: "x" is not a whole number'),
    (["run", "--workers", "0"], "--workers: 0 must be between 1 and 1000"),
])
def test_numbers_get_collectors_own_messages(args: list[str], message: str,
                                             sqlite_url: str) -> None:
    code, _, err = invoke(*args, "--db", sqlite_url)
    assert code == 2
    assert_one_line_error(err, message)


def test_server_text_is_stored_and_shown_safely(db_url: str, server: LocalServer) -> None:
    code, out, err = invoke("run-once", "--url", server.url("/evil-type"), "--db", db_url)
    assert (code, err) == (0, "")
    assert "\x1b" not in out and "\x00" not in out
    assert "text/plain\\x00\\x1b[31mred" in out
    _, request_rows = stored(db_url)
    assert request_rows[0]["content_type"] == "text/plain\\x00\\x1b[31mred"
    code, out, _ = invoke("show", "1", "--db", db_url)
    assert code == 0 and "\x1b" not in out and "\\x1b[31mred" in out


@pytest.mark.parametrize("args", [["report"], ["batches"], ["show", "1"], ["jobs", "list"],
                                  ["jobs", "show", "x"], ["jobs", "remove", "x"],
                                  ["prune", "--older-than", "1d"], ["db", "info"],
                                  ["run-once", "stored-job"]])
def test_commands_that_read_never_create_a_database(args: list[str], tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "collector.db"
    code, out, err = invoke(*args, "--db", str(missing))
    assert code == 2 and out == ""
    assert_one_line_error(err, f"no database at {missing}")
    assert not (tmp_path / "typo").exists()


def test_file_urls_and_other_near_urls_are_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("run-once", "--url", "http://127.0.0.1:1/", "--db", "file:/tmp/x.db")
    assert code == 2
    assert_one_line_error(err, '--db: "file:/tmp/x.db" looks like a URL but is not one')
    assert list(tmp_path.iterdir()) == []


def test_another_applications_database_is_left_alone(tmp_path: Path) -> None:
    import sqlite3

    theirs = tmp_path / "theirs.db"
    with sqlite3.connect(theirs) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    before = theirs.read_bytes()
    for command in (["run-once", "--url", "http://127.0.0.1:1/"], ["db", "upgrade"],
                    ["jobs", "add", "j", "--url", "http://127.0.0.1:1/", "--every", "1m"]):
        code, _, err = invoke(*command, "--db", str(theirs))
        assert code == 2, command
        assert_one_line_error(err, "has tables (customers) but no alembic_version; it was not "
                                   "made by collector")
    assert theirs.read_bytes() == before  # no tables added, not switched to WAL
    with sqlite3.connect(theirs) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_read_only_database_can_be_read(tmp_path: Path, server: LocalServer) -> None:
    import sqlite3

    path = tmp_path / "c.db"
    assert invoke("run-once", "--url", server.url("/search"), "--db", str(path))[0] == 0
    with sqlite3.connect(path) as conn:  # a copy someone made read-only: no WAL files
        conn.execute("PRAGMA journal_mode = DELETE")
    uri = f"sqlite:///file:{path}?mode=ro&uri=true"
    code, out, err = invoke("batches", "--db", uri, "--format", "json")
    assert (code, err) == (0, "") and len(json.loads(out)) == 1


def test_run_once_and_jobs_add_take_the_same_batch_options(sqlite_url: str,
                                                           server: LocalServer) -> None:
    from typer.main import get_command

    from collector.cli import app
    from collector.cli.options import BatchOptions

    group = get_command(app)
    commands = {"run-once": group.commands["run-once"],  # type: ignore[attr-defined]
                "jobs add": group.commands["jobs"].commands["add"]}  # type: ignore[attr-defined]
    wanted = {name.replace("_", "-") for name in BatchOptions.__dataclass_fields__}
    declared = {name: {(o.lstrip("-"), p.help) for p in c.params for o in p.opts
                       if o.startswith("--") and o.lstrip("-") in wanted}
                for name, c in commands.items()}
    assert {o for o, _ in declared["run-once"]} == wanted
    assert declared["run-once"] == declared["jobs add"]
    options = ["--url", server.url("/search"), "-q", "q=a", "--field", "v=1", "--method",
               "GET", "--pool-size", "2", "--concurrency", "2", "--timeout", "5s",
               "--total-timeout", "9s", "--retries", "1", "-H", "X-A: b", "--max-body", "1KiB"]
    assert invoke("jobs", "add", "j", "--every", "1m", *options, "--db", sqlite_url)[0] == 0
    code, out, err = invoke("run-once", "j", "--json", "--db", sqlite_url)
    assert code == 0, err
    ran = json.loads(out)
    assert (ran["pool_size"], ran["concurrency"]) == (2, 2)
    assert [r["query"] for r in ran["requests"]] == ["q=a&v=1"]


def test_json_carries_every_column_and_show_says_the_same(db_url: str,
                                                          server: LocalServer) -> None:
    code, out, err = invoke("run-once", "--url", server.url("/search"), "-q", "q=python",
                            "-q", "q=php", "--json", "--db", db_url)
    assert code == 0, err
    ran = json.loads(out)
    assert set(ran) == set(batches.c.keys()) - {"id"} | {"batch_id", "requests", "connections"}
    assert set(ran["requests"][0]) == (set(requests.c.keys()) - {"id", "batch_id",
                                                                  "connection_id"}
                                       | {"connection", "checks", "captures"})
    assert set(ran["connections"][0]) == set(connections.c.keys()) - {"id", "batch_id"}
    assert [r["connection"] for r in ran["requests"]] == [1, 1]  # one kept-alive connection
    assert ran["requests"][0]["http_version"] == "1.1"
    assert ran["worker"] and ran["batch_key"] and ran["scheduled_for"] is None
    assert (ran["status_2xx"], ran["no_response"], ran["bodies"]) == (2, 0, 2)
    code, out, err = invoke("show", str(ran["batch_id"]), "--format", "json", "--db", db_url)
    assert code == 0, err
    assert json.loads(out) == ran

    code, out, err = invoke("run-once", "--url", server.url("/search"), "--no-store", "--json")
    assert code == 0, err
    unstored = json.loads(out)
    assert set(unstored) == set(ran) and unstored["batch_id"] is None


def test_version_and_shell_completion() -> None:
    from collector import __version__

    for flag in ("-V", "--version"):
        assert invoke(flag)[:2] == (0, f"collector {__version__}\n")
    collector = str(Path(sys.executable).parent / "collector")
    # The script --show-completion prints, by its shell's name: --show-completion finds
    # the shell among its parent processes, and a test run detached from one has none.
    shown = subprocess.run([collector], env={**os.environ, "_COLLECTOR_COMPLETE": "source_bash"},
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "_COLLECTOR_COMPLETE" in shown.stdout and "complete " in shown.stdout
    env = {**os.environ, "_COLLECTOR_COMPLETE": "complete_bash",
           "COMP_WORDS": "collector run-once --pool", "COMP_CWORD": "2"}
    done = subprocess.run([collector], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["--pool-size"], done.stderr


def test_jobs_show_prints_the_source_as_stored(sqlite_url: str, tmp_path: Path,
                                               server: LocalServer) -> None:
    job_file = tmp_path / "search.toml"
    job_file.write_text(f'[jobs.search]\nurl = "{server.url("/search")}"\nevery = "1m"\n')
    assert invoke("jobs", "apply", str(job_file), "--db", sqlite_url)[0] == 0
    code, out, _ = invoke("jobs", "show", "search", "--db", sqlite_url)
    assert code == 0 and out.startswith(f"# source: {job_file.absolute()}; created ")
