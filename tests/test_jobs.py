"""collector jobs ...: job files applied to the jobs table, checked through SQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from collector.jobfile import load_job_file
from collector.models import batches, jobs
from collector.store import open_store
from tests.cli import assert_one_line_error, invoke
from tests.server import LocalServer

SEARCH = """
[jobs.search]
url = "{url}"
every = "5m"
fields = {{ v = "1.0" }}
queries = [ {{ q = "python" }}, {{ q = "php" }} ]
headers = {{ Authorization = "Bearer ${{SEARCH_TOKEN}}" }}

[jobs.nightly]
url = "http://127.0.0.1:1/nightly"
cron = "0 3 * * mon-fri"
timezone = "Europe/Berlin"
enabled = false
"""


def job_rows(url: str) -> dict[str, dict[str, object]]:
    with open_store(url) as store, store.connect() as conn:
        return {r.name: dict(r._mapping) for r in conn.execute(select(jobs))}


@pytest.fixture
def job_dir(tmp_path: Path, server: LocalServer) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "search.toml").write_text(SEARCH.format(url=server.url("/search")))
    return folder


def test_validate_needs_no_database(job_dir: Path) -> None:
    code, out, err = invoke("jobs", "validate", str(job_dir))
    assert (code, out.strip(), err) == (0, "2 jobs in 1 file: all valid", "")
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "collector").exists()


def test_validate_lists_every_mistake(job_dir: Path) -> None:
    (job_dir / "bad.toml").write_text('[jobs.x]\nurl = "ftp://x"\nevery = "5 minutes"\n'
                                      '[jobs.search]\nurl = "http://x/"\n')
    (job_dir / "worse.toml").write_text("[jobs")
    code, out, err = invoke("jobs", "validate", str(job_dir))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert all(line.startswith("collector: error: ") for line in lines)
    assert len(lines) == 5
    assert f'{job_dir / "bad.toml"}: job "x": url: "ftp://x" is not' in lines[0]
    assert f'{job_dir / "bad.toml"}: job "x": every: "5 minutes" is not a duration' in lines[1]
    # files are read in name order: bad.toml defined "search" first
    assert (f'{job_dir / "search.toml"}: job "search": is also defined in '
            f'{job_dir / "bad.toml"}') in lines[2]
    assert f"{job_dir / 'worse.toml'}: is not valid TOML" in lines[3]
    assert lines[4] == "collector: error: 4 mistakes in job files"


def test_apply_creates_updates_and_prunes(job_dir: Path, db_url: str) -> None:
    code, out, _ = invoke("jobs", "apply", str(job_dir), "--dry-run", "--db", db_url)
    assert code == 0 and "would create  search" in out and "dry run: nothing was changed" in out
    assert job_rows(db_url) == {}

    code, out, _ = invoke("jobs", "apply", str(job_dir), "--db", db_url)
    assert code == 0 and out.strip().endswith("2 created")
    rows = job_rows(db_url)
    search, nightly = rows["search"], rows["nightly"]
    assert search["source"] == str(job_dir / "search.toml")
    assert search["schedule"] == "every 5m" and search["enabled"] is True
    definition = search["definition"]
    assert isinstance(definition, dict)
    assert definition["headers"] == {"Authorization": "Bearer ${SEARCH_TOKEN}"}
    assert definition["queries"] == [{"q": "python"}, {"q": "php"}]
    assert nightly["schedule"] == "cron 0 3 * * mon-fri (Europe/Berlin)"
    assert nightly["enabled"] is False

    code, out, _ = invoke("jobs", "apply", str(job_dir), "--db", db_url)
    assert code == 0 and out.strip().endswith("2 unchanged")
    assert job_rows(db_url)["search"]["updated_at"] == search["updated_at"]

    text = (job_dir / "search.toml").read_text()
    (job_dir / "search.toml").write_text(text.replace('every = "5m"', 'every = "10m"')
                                             .replace("[jobs.nightly]", "[jobs.nightly2]"))
    assert invoke("jobs", "add", "manual", "--url", "http://x.test/", "--every", "1h",
                  "--db", db_url)[0] == 0
    code, out, _ = invoke("jobs", "apply", str(job_dir), "--db", db_url)
    assert "updated       search" in out and ": every" in out
    assert "created       nightly2" in out
    assert set(job_rows(db_url)) == {"search", "nightly", "nightly2", "manual"}

    code, out, _ = invoke("jobs", "apply", str(job_dir), "--prune", "--db", db_url)
    assert "removed       nightly" in out and "no longer in its job file" in out
    rows = job_rows(db_url)
    assert set(rows) == {"search", "nightly2", "manual"}  # a cli job is never pruned
    assert rows["search"]["schedule"] == "every 10m"


def test_apply_with_mistakes_changes_nothing(job_dir: Path, db_url: str) -> None:
    (job_dir / "bad.toml").write_text('[jobs.x]\nurl = "http://x/"\ntimeout = -1\n')
    code, _, err = invoke("jobs", "apply", str(job_dir), "--db", db_url)
    assert code == 2 and 'job "x": timeout: -1 must be > 0' in err
    assert job_rows(db_url) == {}


def test_list_show_and_the_toml_reads_back(job_dir: Path, db_url: str, tmp_path: Path) -> None:
    invoke("jobs", "apply", str(job_dir), "--db", db_url)
    code, out, _ = invoke("jobs", "list", "--format", "json", "--db", db_url)
    listed = json.loads(out)
    assert [(j["name"], j["enabled"], j["queries"]) for j in listed] == [
        ("nightly", False, 1), ("search", True, 2)]
    code, out, _ = invoke("jobs", "list", "--db", db_url)
    assert code == 0 and "every 5m" in out and "jobs/search.toml" in out

    code, out, _ = invoke("jobs", "show", "search", "--db", db_url)
    assert code == 0 and out.startswith("# source: ")
    copy = tmp_path / "copy.toml"
    copy.write_text(out)
    (shown,) = load_job_file(copy)
    (original, _) = load_job_file(job_dir / "search.toml")
    assert shown.batch == original.batch and shown.every == original.every


def test_add_enable_disable_remove(db_url: str, server: LocalServer) -> None:
    code, out, _ = invoke("jobs", "add", "probe", "--url", server.url("/search"),
                          "-q", "q=a", "--field", "v=1.0", "--cron", "*/10 * * * *",
                          "--timeout", "2s", "--header", "X-Key: k", "--db", db_url)
    assert (code, out.strip()) == (0, "added probe")
    row = job_rows(db_url)["probe"]
    assert (row["source"], row["schedule"], row["enabled"]) == ("cli", "cron */10 * * * *", True)
    definition = row["definition"]
    assert isinstance(definition, dict)
    assert definition["fields"] == {"v": "1.0"} and definition["headers"] == {"X-Key": "k"}
    assert definition["timeout"] == {"connect": "2s", "read": "2s"}

    code, _, err = invoke("jobs", "add", "probe", "--url", "http://y.test/", "--every", "1m",
                          "--db", db_url)
    assert code == 2 and 'a job named "probe" exists already (from cli)' in err

    assert invoke("jobs", "disable", "probe", "--db", db_url)[1].strip() == "disabled probe"
    assert job_rows(db_url)["probe"]["enabled"] is False
    assert "already disabled" in invoke("jobs", "disable", "probe", "--db", db_url)[1]
    assert invoke("jobs", "enable", "probe", "--db", db_url)[1].strip() == "enabled probe"
    assert job_rows(db_url)["probe"]["enabled"] is True

    assert invoke("run-once", "probe", "--db", db_url)[0] == 0
    assert server.seen[0][1] == "/search?q=a&v=1.0" and server.seen[0][3]["X-Key"] == "k"
    code, out, _ = invoke("jobs", "remove", "probe", "--db", db_url)
    assert code == 0 and "its batches are kept" in out
    assert job_rows(db_url) == {}
    with open_store(db_url) as store, store.connect() as conn:
        assert conn.execute(select(batches.c.job_name)).scalars().all() == ["probe"]


@pytest.mark.parametrize(("args", "message"), [
    (["add", "x", "--url", "http://x/"], "give the schedule with --every or --cron"),
    (["add", "x", "--url", "http://x/", "--every", "1m", "--cron", "* * * * *"],
     "give the schedule with --every or --cron"),
    (["add", "x", "--every", "1m"], "--url is required"),
    (["add", "x", "--url", "http://x/", "--every", "soon"], '--every: "soon" is not a duration'),
    (["add", "x", "--url", "http://x/", "--cron", "bad"], '--cron: "bad" is not a crontab'),
    (["add", "bad name", "--url", "http://x/", "--every", "1m"], "a job name is 1-100"),
    (["enable", "nope"], 'no job named "nope"'),
    (["remove", "serch"], 'no job named "serch" (did you mean search?)'),
    (["show", "nope"], 'no job named "nope"'),
])
def test_job_usage_errors(job_dir: Path, sqlite_url: str, args: list[str], message: str) -> None:
    invoke("jobs", "apply", str(job_dir), "--db", sqlite_url)
    code, out, err = invoke("jobs", *args, "--db", sqlite_url)
    assert code == 2, err
    assert_one_line_error(err, message)


def test_run_once_a_stored_job_reads_the_environment_then(job_dir: Path, db_url: str,
                                                          server: LocalServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    invoke("jobs", "apply", str(job_dir), "--db", db_url)
    code, _, err = invoke("run-once", "search", "--db", db_url)
    assert code == 2 and 'job "search": headers.Authorization: ${SEARCH_TOKEN} is not set' in err
    monkeypatch.setenv("SEARCH_TOKEN", "t0ken")
    code, out, _ = invoke("run-once", "search", "--db", db_url, "--json")
    assert code == 0 and json.loads(out)["job_name"] == "search"
    assert [h["Authorization"] for _, _, _, h in server.seen] == ["Bearer t0ken"] * 2
    definition = job_rows(db_url)["search"]["definition"]
    assert isinstance(definition, dict) and "t0ken" not in json.dumps(definition)
    code, _, err = invoke("run-once", "nope", "--db", db_url)
    assert code == 2 and 'no job named "nope"' in err


def test_a_deleted_ca_file_breaks_only_its_own_batch(tmp_path: Path, db_url: str,
                                                     server: LocalServer) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not needed until the batch runs")
    (tmp_path / "jobs.toml").write_text(f"""
[jobs.secure]
url = "https://127.0.0.1:1/x"
every = "1m"
ca_file = "{ca}"

[jobs.plain]
url = "{server.url('/search')}"
every = "1m"
""")
    assert invoke("jobs", "apply", str(tmp_path / "jobs.toml"), "--db", db_url)[0] == 0
    ca.unlink()

    code, out, err = invoke("jobs", "list", "--db", db_url, "--format", "json")
    assert (code, err) == (0, "")
    assert [job["name"] for job in json.loads(out)] == ["plain", "secure"]
    assert invoke("run-once", "plain", "--db", db_url)[0] == 0
    code, out, err = invoke("jobs", "show", "secure", "--db", db_url)
    assert code == 0 and f'ca_file = "{ca}"' in out

    # The job whose file is gone runs, and its batch records why nothing was sent.
    code, out, err = invoke("run-once", "secure", "--db", db_url, "--json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["status"] == "failed" and document["batch_id"] is not None
    (request,) = document["requests"]
    assert request["error_kind"] == "tls"
    assert f"ca_file '{ca}' is not a readable file on this machine" in request["error"]


def test_a_malformed_stored_job_is_reported_and_skipped(job_dir: Path, db_url: str) -> None:
    assert invoke("jobs", "apply", str(job_dir), "--db", db_url)[0] == 0
    with open_store(db_url) as store, store.connect(write=True) as conn:
        conn.execute(jobs.update().where(jobs.c.name == "nightly").values(
            definition={"url": "gopher://old/", "every": "5m"}))

    code, out, err = invoke("jobs", "list", "--db", db_url, "--format", "json")
    assert code == 0
    assert [job["name"] for job in json.loads(out)] == ["search"]
    assert_one_line_error(err.replace("warning", "error"),
                          'stored job "nightly": url: "gopher://old/" is not an http:// or '
                          "https:// URL with a host (fix it with collector jobs apply or "
                          "remove it)")
    code, _, err = invoke("run-once", "nightly", "--db", db_url)
    assert code == 2 and 'stored job "nightly": url:' in err

    # Its file is the source of truth: applying it again repairs the row.
    code, out, _ = invoke("jobs", "apply", str(job_dir), "--db", db_url)
    assert code == 0 and "updated       nightly" in out and "replaces an invalid definition" in out
    assert invoke("jobs", "list", "--db", db_url)[2] == ""


def test_a_stored_job_named_like_a_file_runs_by_name(db_url: str, server: LocalServer,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no file of that name here
    assert invoke("jobs", "add", "daily.toml", "--url", server.url("/search"), "--every", "1d",
                  "--db", db_url)[0] == 0
    code, out, err = invoke("run-once", "daily.toml", "--db", db_url, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["job_name"] == "daily.toml" and len(server.seen) == 1


def test_adding_one_name_twice_at_once_says_it_exists(db_url: str) -> None:
    collector = Path(sys.executable).parent / "collector"
    invoke("db", "upgrade", "--db", db_url)  # the race is on the job, not the schema
    processes = [subprocess.Popen([str(collector), "jobs", "add", "twin", "--url",
                                   "http://x.test/", "--every", "1m", "--db", db_url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    results = [(p.wait(timeout=60), p.communicate()[1]) for p in processes]
    assert sorted(code for code, _ in results) == [0, 2, 2, 2], results
    for code, err in results:
        if code:
            assert_one_line_error(err, 'a job named "twin" exists already (from cli)')
    assert list(job_rows(db_url)) == ["twin"]


@pytest.mark.parametrize("given", ["5", "5s", "5000ms"])
def test_jobs_add_takes_every_duration_form(sqlite_url: str, given: str) -> None:
    code, _, err = invoke("jobs", "add", "probe", "--url", "http://x.test/", "--every", given,
                          "--timeout", given, "--total-timeout", given, "--jitter", given,
                          "--max-body", "1KiB", "--db", sqlite_url)
    assert (code, err) == (0, "")
    definition = job_rows(sqlite_url)["probe"]["definition"]
    assert isinstance(definition, dict)
    assert definition["every"] == definition["jitter"] == "5s"
    assert definition["timeout"] == {"connect": "5s", "read": "5s", "total": "5s"}
    assert definition["max_body"] == 1024


def test_a_folder_that_cannot_be_read_is_an_error_and_prunes_nothing(
        job_dir: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, for whom every folder is readable: the one thing made up
    # here is the operating system's "permission denied" for one sub-folder.
    team = job_dir / "team"
    team.mkdir()
    (team / "team.toml").write_text('[jobs.team]\nurl = "http://127.0.0.1:1/"\nevery = "1h"\n')
    assert invoke("jobs", "apply", str(job_dir), "--db", sqlite_url)[0] == 0
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:
        if Path(str(path)) == team:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "scandir", scandir)
    code, out, err = invoke("jobs", "validate", str(job_dir))
    assert code == 2 and "all valid" not in out
    assert f"{team}: cannot be read (Permission denied)" in err
    code, _, err = invoke("jobs", "apply", str(job_dir), "--prune", "--db", sqlite_url)
    assert code == 2 and "cannot be read" in err
    monkeypatch.undo()
    assert "team" in job_rows(sqlite_url)  # not pruned
