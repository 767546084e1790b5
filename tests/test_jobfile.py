"""Job files, options, definitions and settings parsed into specs, and the messages for mistakes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.definition import (
    job_definition,
    job_from_definition,
    job_to_toml,
)
from collector.errors import ConfigError, JobFileError
from collector.jobfile import (
    batch_from_options,
    load_job_file,
    read_job_paths,
    select_job,
)
from collector.quantities import format_duration, parse_duration, parse_size
from collector.references import prepare
from collector.schedule import cron_trigger
from collector.settings import resolve_database_url
from collector.spec import BatchSpec, JobSpec, Timeouts

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "jobs.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_example_job_file() -> None:
    (job,) = load_job_file(ROOT / "jobs" / "search.toml")
    assert job.name == "search"
    assert job.every == 300 and job.cron is None
    assert job.batch.queries == ({"q": "python"}, {"q": "php"})
    assert job.batch.fields == {"v": "1.0"}
    assert job.batch.pool_size == 1 and job.batch.retries == 2
    assert job.batch.timeout == Timeouts(connect=10, read=10)


def test_every_key(tmp_path: Path) -> None:
    ca = write(tmp_path, "not really a certificate", "ca.pem")
    path = write(tmp_path, f"""
[jobs.full]
url = "https://example.test/search?x=1"
method = "post"
cron = "*/5 * * * mon-fri"
timezone = "Europe/Berlin"
jitter = "10s"
pool_size = 4
concurrency = 2
fields = {{ v = "1.0", n = 3, on = true }}
queries = [ {{ q = "python" }}, {{ q = "php", page = 2 }} ]
headers = {{ Authorization = "Bearer ${{TOKEN}}", "X-Thing" = "a" }}
timeout = {{ connect = "2s", read = "500ms", total = "1m" }}
retries = 3
max_body = "2MiB"
ca_file = "{ca}"
enabled = false

[jobs.second]
url = "http://127.0.0.1:1/"
""")
    full, second = load_job_file(path)
    assert full.source == str(path)
    assert (full.cron, full.every, full.timezone, full.jitter, full.enabled) == (
        "*/5 * * * mon-fri", None, "Europe/Berlin", 10, False)
    assert full.batch == BatchSpec(
        url="https://example.test/search?x=1", method="POST",
        queries=({"q": "python"}, {"q": "php", "page": "2"}),
        fields={"v": "1.0", "n": "3", "on": "true"},
        headers={"Authorization": "Bearer ${TOKEN}", "X-Thing": "a"},
        pool_size=4, concurrency=2, timeout=Timeouts(connect=2, read=0.5, total=60),
        retries=3, max_body=2 * 1024 * 1024, ca_file=str(ca),
    )
    assert second.batch == BatchSpec(url="http://127.0.0.1:1/")
    assert second.enabled and second.every is None and second.cron is None


@pytest.mark.parametrize(("body", "message"), [
    ('url = "http://x/"\nevery = "5 minutes"',
     'job "j": every: "5 minutes" is not a duration (use 250ms, 30s, 5m, 1h, 1d'),
    ('url = "http://x/"\ntimeout = "-1s"', 'job "j": timeout: "-1s" is not a duration'),
    ('url = "http://x/"\ntimeout = 0', 'job "j": timeout: 0 must be > 0'),
    ('url = "http://x/"\ntimeout = { connect = "1s", wait = "2s" }',
     "job \"j\": timeout: unknown key 'wait' (allowed: connect, read, total)"),
    ('url = "http://x/"\ntimeout = { read = "soon" }', 'job "j": timeout.read: "soon" is not'),
    ('url = "ftp://x/"', 'job "j": url: "ftp://x/" is not an http:// or https:// URL'),
    ('url = "http://x:99999/"', 'job "j": url: "http://x:99999/" is not a valid URL'),
    ('url = "http://x/#top"', 'job "j": url: "http://x/#top" has a #fragment'),
    ('url = "http://me:pw@x/"', 'job "j": url: has a user name or password in it'),
    ('every = "5m"', 'job "j": url: is required'),
    ('url = "http://x/"\nurl_ = "typo"', 'job "j": url_: unknown key (allowed: '),
    ('url = "http://x/"\nmethod = "PUT"', 'job "j": method: "PUT" is not one of GET, HEAD, POST'),
    ('url = "http://x/"\npool_size = 0', 'job "j": pool_size: 0 must be between 1 and 1000'),
    ('url = "http://x/"\npool_size = "2"', 'job "j": pool_size: "2" is not a whole number'),
    ('url = "http://x/"\nconcurrency = 2.5', 'job "j": concurrency: 2.5 is not a whole number'),
    ('url = "http://x/"\nretries = -1', 'job "j": retries: -1 must be between 0 and 100'),
    ('url = "http://x/"\nmax_body = "lots"', 'job "j": max_body: "lots" is not a size'),
    ('url = "http://x/"\nqueries = { q = "a" }', 'job "j": queries: '),
    ('url = "http://x/"\nqueries = [ { q = [1] } ]', 'job "j": queries[0].q: [1] is not a string'),
    ('url = "http://x/"\nfields = "v=1"', 'job "j": fields: "v=1" is not a table'),
    ('url = "http://x/"\nheaders = { "Bad Name" = "x" }',
     'job "j": headers: "Bad Name" is not a valid header name'),
    ('url = "http://x/"\nheaders = { A = "x\\ny" }', 'job "j": headers.A: a header value cannot'),
    ('url = "http://x/"\ncron = "every day"', 'job "j": cron: "every day" is not a crontab line'),
    ('url = "http://x/"\ncron = "* * * * *"\nevery = "5m"',
     'job "j": cron: a job has either every or cron, not both'),
    ('url = "http://x/"\ntimezone = "Mars/Olympus"', 'job "j": timezone: "Mars/Olympus" is not'),
    ('url = "http://x/"\njitter = "x"', 'job "j": jitter: "x" is not a duration'),
    ('url = "http://x/"\nenabled = "yes"', 'job "j": enabled: "yes" is not true or false'),
    ('url = "http://x/"\nca_file = "/no/such/ca.pem"',
     'job "j": ca_file: "/no/such/ca.pem" is not a readable file'),
])
def test_each_mistake_names_file_job_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, "[jobs.j]\n" + body + "\n")
    with pytest.raises(JobFileError, match=re.escape(message)) as caught:
        load_job_file(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert caught.value.path == str(path) and caught.value.job == "j"
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("text", "message"), [
    ("[jobs.a\nurl=1", "is not valid TOML"),
    ("", "has no jobs"),
    ("[job.a]\nurl = 'http://x/'", "unknown top-level key 'job'"),
    ("[jobs]\na = 1", 'job "a": 1 is not a table'),
    ("[jobs.'bad name']\nurl = 'http://x/'", 'job "bad name": a job name is 1-100'),
])
def test_file_level_mistakes(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(JobFileError, match=message):
        load_job_file(path)


def test_a_missing_or_binary_file(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="no such file"):
        load_job_file(tmp_path / "none.toml")
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(JobFileError, match="is not valid TOML"):
        load_job_file(binary)


def test_select_job(tmp_path: Path) -> None:
    path = write(tmp_path, "[jobs.a]\nurl='http://x/'\n[jobs.b]\nurl='http://y/'\n")
    jobs = load_job_file(path)
    assert select_job(str(path), jobs, "b").batch.url == "http://y/"
    with pytest.raises(ConfigError, match=r"has 2 jobs \(a, b\): choose one with --job"):
        select_job(str(path), jobs, None)
    with pytest.raises(ConfigError, match=r'no job "c" \(jobs in this file: a, b\)'):
        select_job(str(path), jobs, "c")


def test_environment_is_read_only_when_a_batch_runs() -> None:
    spec = BatchSpec(url="http://x/${PATH_PART}", headers={"Authorization": "Bearer ${TOKEN}"},
                     fields={"key": "${KEY}-${KEY}", "plain": "$KEY"},
                     queries=({"q": "${KEY}"},))
    environ = {"TOKEN": "t0k", "KEY": "k", "PATH_PART": "p"}
    prepared = prepare(spec, environ, where="jobs.toml: job \"j\"")
    ready = prepared.ready
    assert ready.url == "http://x/p" and ready.queries == ({"q": "k"},)
    assert ready.headers == {"Authorization": "Bearer t0k"}
    assert ready.fields == {"key": "k-k", "plain": "$KEY"}
    assert prepared.shown == spec  # what is stored and shown keeps ${VAR}
    with pytest.raises(ConfigError, match=r'job "j": headers.Authorization: \$\{TOKEN\} is not '
                                          "set in the environment"):
        prepare(spec, {"KEY": "k", "PATH_PART": "p"}, where='jobs.toml: job "j"')
    with pytest.raises(ConfigError, match="line break"):
        prepare(spec, {**environ, "TOKEN": "a\r\nX-Evil: 1"}, where="j")


def test_options_name_the_option() -> None:
    with pytest.raises(ConfigError, match=r"^--url: \"nope\" is not an http"):
        batch_from_options({"url": "nope"})
    with pytest.raises(ConfigError, match=r"^--pool-size: 0 must be between"):
        batch_from_options({"url": "http://x/", "pool_size": 0})
    with pytest.raises(ConfigError, match=r"^--timeout: \"-1\" is not a duration"):
        batch_from_options({"url": "http://x/", "timeout": "-1"})
    with pytest.raises(ConfigError, match=r"^--total-timeout: \"x\" is not a duration"):
        batch_from_options({"url": "http://x/", "timeout": {"total": "x"}})
    with pytest.raises(ConfigError, match=r"^--query: "):
        batch_from_options({"url": "http://x/", "queries": [{"q": ["a"]}]})
    with pytest.raises(ConfigError, match=r"^--header: \"Bad Name\" is not a valid header"):
        batch_from_options({"url": "http://x/", "headers": {"Bad Name": "x"}})
    with pytest.raises(ConfigError, match=r"^--field \"v\": \['x'\] is not a string"):
        batch_from_options({"url": "http://x/", "fields": {"v": ["x"]}})
    with pytest.raises(ConfigError, match=r"^--max-body: \"lots\" is not a size"):
        batch_from_options({"url": "http://x/", "max_body": "lots"})
    for given in ("2.5", "2.5s", "2500ms", 2.5):
        spec = batch_from_options({"url": "http://x/", "timeout": given})
        assert spec.timeout == Timeouts(connect=2.5, read=2.5)
    assert batch_from_options({"url": "http://x/", "max_body": "2KiB"}).max_body == 2048


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h", 3600), ("250ms", 0.25), ("1d", 86400), ("1.5s", 1.5),
    (10, 10), (0.5, 0.5), ("5", 5), (" 1.5 ", 1.5),
])
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "m", "", "1w", True, None, [], float("nan"), 0])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="is not a duration|must be > 0"):
        parse_duration(bad)


def test_sizes() -> None:
    assert [parse_size(v) for v in (100, "1KB", "1KiB", "10MB", "1GiB")] == [
        100, 1000, 1024, 10_000_000, 1024**3]
    for bad in ("1TB", "x", 0, -5, True):
        with pytest.raises(ValueError, match="is not a size|must be > 0"):
            parse_size(bad)


def test_database_url_precedence(tmp_path: Path) -> None:
    env = {"COLLECTOR_DATABASE_URL": "sqlite:////from/env.db", "XDG_DATA_HOME": str(tmp_path)}
    assert resolve_database_url("postgresql://u@h/db", env) == "postgresql+psycopg://u@h/db"
    assert resolve_database_url(None, env) == "sqlite:////from/env.db"
    assert resolve_database_url(None, {"XDG_DATA_HOME": str(tmp_path)}) == (
        f"sqlite:///{tmp_path}/collector/collector.db")
    assert resolve_database_url("rel/c.db", {}) == f"sqlite:///{Path.cwd()}/rel/c.db"
    assert resolve_database_url("postgres://u@h/db", {}) == "postgresql+psycopg://u@h/db"


def test_every_mistake_is_listed_not_just_the_first(tmp_path: Path) -> None:
    write(tmp_path, """
[jobs.a]
url = "ftp://x/"
every = "soon"
pool_size = 0
colour = "red"

[jobs.b]
url = "http://x/"
""", "one.toml")
    write(tmp_path, "[jobs.c]\nurl = 'http://y/'\n[jobs.b]\nurl = 'http://z/'\n", "two.toml")
    write(tmp_path, "not toml at all", "three.toml")
    found = read_job_paths([tmp_path, tmp_path / "missing.toml"])
    # tomllib's own wording differs between Python versions
    messages = [re.sub(r"is not valid TOML \(.*\)$", "is not valid TOML (...)", str(e))
                for e in found.errors]
    one, two, three = (str(tmp_path / n) for n in ("one.toml", "two.toml", "three.toml"))
    assert messages == [
        f'{one}: job "a": colour: unknown key (allowed: basic_auth, ca_file, captures, '
        "checks, client_cert, client_key, concurrency, conditional, cron, enabled, every, "
        "fields, follow_redirects, headers, jitter, keep_bodies, max_body, max_kept_body, "
        "method, pool_size, proxy, queries, redact, retries, retry_after_max, retry_statuses, "
        "timeout, timezone, url, verify)",
        f'{one}: job "a": url: "ftp://x/" is not an http:// or https:// URL with a host',
        f'{one}: job "a": pool_size: 0 must be between 1 and 1000',
        f'{one}: job "a": every: "soon" is not a duration (use 250ms, 30s, 5m, 1h, 1d or a '
        "number of seconds)",
        f"{three}: is not valid TOML (...)",
        f'{two}: job "b": is also defined in {one}',
        f"{tmp_path / 'missing.toml'}: no such file",
    ]
    assert [job.name for job in found.jobs] == ["b", "c"]
    assert found.jobs[0].source == one


def test_a_folder_without_job_files(tmp_path: Path) -> None:
    assert [str(e) for e in read_job_paths([tmp_path]).errors] == [
        f"{tmp_path}: has no *.toml job files"]


@pytest.mark.parametrize("seconds", [0.25, 1, 30, 90, 300, 3600, 5400, 86400, 1.5])
def test_format_duration_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_definitions_and_toml_read_back_the_same_job(tmp_path: Path) -> None:
    path = write(tmp_path, """
[jobs."odd.name"]
url = "https://example.test/s?x=1"
method = "POST"
cron = "0 9 * * mon-fri"
timezone = "Europe/Berlin"
jitter = "1500ms"
queries = [ { q = "a \\"quoted\\" one" }, { "two words" = "x" } ]
fields = { v = "1.0" }
headers = { Authorization = "Bearer ${TOKEN}" }
timeout = { connect = "2s", read = "90s", total = "2m" }
max_body = 2048
enabled = false
""")
    (job,) = load_job_file(path)
    definition = job_definition(job)
    assert definition["headers"] == {"Authorization": "Bearer ${TOKEN}"}
    assert definition["timeout"] == {"connect": "2s", "read": "90s", "total": "2m"}
    assert job_from_definition(job.name, definition, source=job.source) == job
    again = write(tmp_path, job_to_toml(job), "again.toml")
    (reread,) = load_job_file(again)
    assert reread == JobSpec(**{**job.__dict__, "source": str(again)})


def test_defaults_are_explicit_in_a_definition() -> None:
    job = JobSpec(name="j", batch=BatchSpec(url="http://x/"), every=60)
    assert job_definition(job) == {
        "url": "http://x/", "method": "GET", "queries": [], "fields": {}, "headers": {},
        "pool_size": 1, "concurrency": 1, "timeout": {"connect": "10s", "read": "10s"},
        "retries": 0, "max_body": 10 * 1024 * 1024, "every": "1m", "timezone": "UTC",
        "enabled": True,
    }


@pytest.mark.parametrize(("weekday", "expected"), [
    ("1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
    ("mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
    ("0", ["Sun"]),
    ("7", ["Sun"]),
    ("*/2", ["Sun", "Tue", "Thu", "Sat"]),
    ("1/3", ["Mon", "Thu"]),
    ("5-7", ["Fri", "Sat", "Sun"]),
    ("0-6", ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]),
    ("0,3,sat", ["Sun", "Wed", "Sat"]),
    ("*", ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
])
def test_cron_day_of_week_means_what_it_means_to_cron(weekday: str,
                                                      expected: list[str]) -> None:
    trigger = cron_trigger(f"0 9 * * {weekday}", "UTC")
    fire = datetime(2026, 11, 29, tzinfo=UTC)  # a Sunday, midnight
    days = []
    for _ in range(7):
        fire = trigger.get_next_fire_time(None, fire)
        days.append(fire.strftime("%a"))
        fire += timedelta(hours=1)
    assert set(days) == set(expected)


@pytest.mark.parametrize(("line", "message"), [
    ("* * *", "a crontab line has 5 fields, not 3"),
    ("0 9 * * 8", "not within 0-7"),
    ("0 9 * * 5-1", "not within 0-7"),
    ("0 9 * * 1-fri", "not both in one range"),
    ("0 9 * * */0", "is not a positive number"),
    ("61 * * * *", "higher than the maximum value"),  # APScheduler's words
])
def test_bad_cron_lines(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cron_trigger(line, "UTC")


def test_a_fifo_and_deep_nesting_are_errors_not_hangs(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    found = read_job_paths([fifo])
    assert [str(e) for e in found.errors] == [f"{fifo}: is not a regular file"]
    deep = write(tmp_path, "[jobs.a]\nurl = 'http://x/'\nq = " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(JobFileError, match="is nested too deeply to be a job file"):
        load_job_file(deep)


def test_the_scheme_is_lower_case_as_stored() -> None:
    assert batch_from_options({"url": "HTTPS://Example.test/A"}).url == "https://Example.test/A"
