"""Random and mutated job files: a clear error or a job, never a traceback."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.config import _JOB_KEYS, _toml_value, load_job_paths
from collector.errors import JobFileError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "jobs" / "search.toml").read_bytes()

scalars = st.one_of(st.text(max_size=12), st.integers(-10**12, 10**12),
                    st.floats(), st.booleans())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
keys = st.one_of(st.sampled_from(sorted(_JOB_KEYS)), st.text(max_size=8))
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
    found = load_job_paths([path])
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
    lines = [f"{_toml_value(key)} = {_toml_value(value)}" for key, value in document.items()]
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
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
