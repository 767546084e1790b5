"""Random and mutated job files: a clear error or a job, never a traceback; TOML round trips."""

from __future__ import annotations

import random
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.definition import job_definition, job_from_definition, job_to_toml
from collector.errors import JobFileError
from collector.jobfile import load_job_file, read_job_paths
from collector.jobkeys import JOB_KEYS
from collector.spec import BatchSpec, JobSpec, Timeouts

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "jobs" / "search.toml").read_bytes()

scalars = st.one_of(st.text(max_size=12), st.integers(-10**12, 10**12),
                    st.floats(), st.booleans())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
keys = st.one_of(st.sampled_from(sorted(JOB_KEYS)), st.text(max_size=8))
# Mostly plausible values for the real keys, sometimes anything at all.
plausible = {
    "url": st.sampled_from(["http://127.0.0.1:1/", "https://x.test/a?b=c", "ftp://x", ""]),
    "every": st.sampled_from(["5m", "0s", "-1s", "1w", 30, 0, -3]),
    "cron": st.sampled_from(["*/5 * * * *", "* * *", "61 * * * *", "0 9 * * mon-fri"]),
    "timeout": st.sampled_from(["10s", {"connect": "1s"}, {"read": 0}, {"total": "x"}]),
    "queries": st.lists(st.dictionaries(st.text(max_size=4), scalars, max_size=2), max_size=3),
    "fields": st.dictionaries(st.text(max_size=4), scalars, max_size=2),
    "headers": st.dictionaries(st.sampled_from(["X-A", "Bad Name", ""]), scalars, max_size=2),
    "pool_size": st.integers(-2, 2000),
    "method": st.sampled_from(["GET", "post", "PUT", 1]),
    "max_body": st.sampled_from([1, "1KiB", "1TB", 0]),
}
tables = st.builds(
    lambda good, anything: {**good, **anything},
    st.fixed_dictionaries({"url": plausible["url"]}, optional={
        k: v for k, v in plausible.items() if k != "url"}),
    st.dictionaries(keys, values, max_size=3) | st.just({}),
)
documents = st.one_of(
    st.dictionaries(st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True) | st.text(max_size=9),
                    tables, max_size=3).map(lambda jobs: {"jobs": jobs}),
    st.dictionaries(st.text(max_size=6), values, max_size=3),
)


def check(path: Path) -> int:
    """Checks what came back; returns how many valid jobs it found."""
    found = read_job_paths([path])
    for error in found.errors:
        assert isinstance(error, JobFileError)
        assert str(error).startswith(str(path))
        assert "\n" not in str(error).rstrip()
    for job in found.jobs:
        assert job.batch.url.startswith(("http://", "https://"))
    return len(found.jobs)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents)
def test_random_job_files_never_raise(tmp_path: Path, document: dict[str, object]) -> None:
    path = tmp_path / "random.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8", errors="surrogatepass")
    check(path)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 8))
def test_mutated_example_files_never_raise(tmp_path: Path, seed: int, edits: int) -> None:
    rng = random.Random(seed)
    data = bytearray(EXAMPLE)
    for _ in range(edits):
        at = rng.randrange(len(data))
        action = rng.choice(["delete", "insert", "replace"])
        if action == "delete":
            del data[at:at + rng.randint(1, 5)]
        elif action == "insert":
            data[at:at] = rng.choice([b"=", b"[", b"]", b'"', b"\n", b"{", b"}", b",", b"0",
                                      b"-", b"\xff", b"x", b"5 minutes", b"jobs."])
        else:
            data[at] = rng.randrange(256)
    path = tmp_path / "mutated.toml"
    path.write_bytes(bytes(data))
    check(path)


# Any Unicode a TOML file can hold: no surrogates (not UTF-8), nothing else left out.
unicode = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
unicode_fields = st.dictionaries(unicode, unicode, max_size=3)
# What an HTTP header can carry: Latin-1 without control characters.
header_values = st.text(st.characters(max_codepoint=255, exclude_categories=["Cc", "Cs"]),
                        max_size=12)
durations = st.sampled_from([0.25, 1.0, 1.5, 30.0, 90.0, 3600.0, 86400.0])
jobs = st.builds(
    lambda name, batch, schedule, enabled: JobSpec(name=name, batch=batch, enabled=enabled,
                                                    source="cli", **schedule),
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    batch=st.builds(
        BatchSpec,
        url=st.sampled_from(["http://127.0.0.1:8080/search", "https://example.test/a?b=c"]),
        method=st.sampled_from(["GET", "HEAD", "POST"]),
        queries=st.lists(unicode_fields, max_size=3).map(tuple),
        fields=unicode_fields,
        headers=st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True),
                                header_values, max_size=2),
        pool_size=st.integers(1, 1000), concurrency=st.integers(1, 1000),
        timeout=st.builds(Timeouts, connect=durations, read=durations,
                          total=st.none() | durations),
        retries=st.integers(0, 100), max_body=st.integers(1, 2**40),
        ca_file=st.none() | unicode.filter(bool),
    ),
    schedule=st.one_of(
        st.just({}),
        st.builds(lambda every, jitter: {"every": every, "jitter": jitter}, durations,
                  st.none() | durations),
        st.builds(lambda cron, tz: {"cron": cron, "timezone": tz},
                  st.sampled_from(["*/5 * * * *", "0 9 * * 1-5", "30 2 1 * sun"]),
                  st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])),
    ),
    enabled=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(job=jobs)
def test_stored_definitions_read_back(job: JobSpec) -> None:
    assert job_from_definition(job.name, job_definition(job), source=job.source) == job


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job=jobs)
def test_toml_written_reads_back_as_the_same_job(tmp_path: Path, job: JobSpec) -> None:
    # ca_file must exist to load from a file; it is checked on this machine there.
    if job.batch.ca_file is not None:
        (tmp_path / "ca.pem").write_text("x")
        job = JobSpec(**{**job.__dict__, "batch": BatchSpec(**{
            **job.batch.__dict__, "ca_file": str(tmp_path / "ca.pem")})})
    path = tmp_path / "written.toml"
    path.write_text(job_to_toml(job), encoding="utf-8")
    (reread,) = load_job_file(path)
    assert reread == JobSpec(**{**job.__dict__, "source": str(path)})
