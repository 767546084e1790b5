"""The error tree: every error drawn in its docstring, its exit code and transience as
attributes, and every error intact after pickling (attributes and message)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from collector import errors
from collector.errors import (
    BatchNotStored,
    CollectorError,
    ConfigError,
    DatabaseUnavailable,
    DataRejected,
    ForeignDatabase,
    Interrupted,
    InvalidDefinition,
    JobExists,
    JobFileError,
    JobFilesInvalid,
    KeyProblem,
    LocalProblem,
    NoDatabase,
    NotFound,
    RequestsFailed,
    SchemaMismatch,
    SpoolFull,
    StoreError,
    UnknownBatch,
    UnknownBody,
    UnknownJob,
)

URL = "postgresql://collector:***@db/collector"

EXAMPLES: list[CollectorError] = [
    CollectorError("something"),
    ConfigError("--db: 'file:x' looks like a URL but is not one"),
    JobFileError("jobs/search.toml", "-1s must be > 0", job="search", key="timeout"),
    JobFilesInvalid([JobFileError("a.toml", "no such file"),
                     JobFileError("b.toml", "has no jobs", local=True)]),
    KeyProblem("timeout", "-1s must be > 0"),
    LocalProblem("ca_file", "'/x.pem' is not a readable file"),
    JobExists("search", "/etc/collector/jobs/search.toml"),
    ForeignDatabase(URL, ["accounts", "orders"]),
    NotFound("nothing here"),
    NoDatabase(f"database {URL} has no collector data yet"),
    UnknownJob("serach", ["search", "status"]),
    UnknownBatch(42),
    UnknownBody("0" * 64),
    StoreError("the database could not be used"),
    DatabaseUnavailable(URL, "connection refused"),
    DataRejected(URL, "value too long"),
    InvalidDefinition("search", "the definition is not a table of job-file keys"),
    SpoolFull(Path("/var/lib/collector/spool"), OSError(28, "No space left on device")),
    BatchNotStored(DatabaseUnavailable(URL, "connection refused"),
                   spooled=Path("/var/lib/collector/spool/1-a.json")),
    SchemaMismatch(URL, "0009", "0010", "run `collector db upgrade`"),
    RequestsFailed(2, 10),
    Interrupted(15, BatchNotStored(DatabaseUnavailable(URL, "timed out"))),
]


def _tree(root: type[CollectorError]) -> set[type[CollectorError]]:
    found = {root}
    for sub in root.__subclasses__():
        found |= _tree(sub)
    return found


def test_every_error_is_an_example_here_and_in_the_tree_s_docstring() -> None:
    classes = {c for c in _tree(CollectorError) if c.__module__ == "collector.errors"}
    assert {type(e) for e in EXAMPLES} == classes
    doc = errors.__doc__ or ""
    assert [c.__name__ for c in classes if f" {c.__name__} " not in doc] == []


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_an_error_survives_pickling(error: CollectorError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert (copy.exit_code, copy.transient) == (error.exit_code, error.transient)
    assert {k: repr(v) for k, v in vars(copy).items()} == \
        {k: repr(v) for k, v in vars(error).items()}


def test_exit_codes_and_transience_come_from_the_tree() -> None:
    codes = {type(e).__name__: e.exit_code for e in EXAMPLES}
    assert codes["ConfigError"] == codes["JobFileError"] == codes["KeyProblem"] == 2
    assert codes["UnknownJob"] == codes["UnknownBatch"] == codes["NoDatabase"] == 2
    assert codes["StoreError"] == codes["DatabaseUnavailable"] == codes["BatchNotStored"] == 1
    assert codes["RequestsFailed"] == 3
    assert Interrupted(2).exit_code == 130 and Interrupted(15).exit_code == 143
    assert [type(e).__name__ for e in EXAMPLES if e.transient] == ["DatabaseUnavailable"]


def test_lookups_are_not_usage_errors() -> None:
    for lookup in (UnknownJob("x", []), UnknownBatch(1), NoDatabase("none")):
        assert isinstance(lookup, NotFound) and not isinstance(lookup, ConfigError)
