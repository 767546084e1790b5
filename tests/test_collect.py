"""The collect step shared by run-once, demo and the daemon, on both databases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.collect import collect, record
from collector.errors import ConfigError, DatabaseUnavailable, DataRejected
from collector.results import PendingBatch, new_batch_key
from collector.spec import BatchSpec
from collector.spool import Spool
from collector.store import open_store
from tests.conftest import database_outage
from tests.server import LocalServer

FIRE = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)


@pytest.fixture
def spec(server: LocalServer) -> BatchSpec:
    return BatchSpec(url=server.url("/search"), queries=({"q": "python"}, {"q": "php"}),
                     fields={"key": "${API_KEY}"}, headers={"X-Token": "Bearer ${TOKEN}"})


ENVIRON = {"API_KEY": "k-123", "TOKEN": "t-456"}


def test_a_batch_is_expanded_run_and_stored(db_url: str, spec: BatchSpec,
                                            server: LocalServer) -> None:
    finished: list[tuple[int, str, str]] = []
    with open_store(db_url) as store:
        outcome = collect("search", spec, store=store, environ=ENVIRON,
                          on_request=lambda r: finished.append((r.position, r.url, r.query)))
        assert outcome.stored
        assert outcome.batch_id is not None and outcome.store_error is None
        stored = store.load_batch(outcome.batch_id)
    # What the progress callback and the store see: the references as written.
    shown = [(0, server.url("/search?q=python&key=${API_KEY}"), "q=python&key=${API_KEY}"),
             (1, server.url("/search?q=php&key=${API_KEY}"), "q=php&key=${API_KEY}")]
    assert sorted(finished) == shown
    assert stored.result is not None
    assert [(r.position, r.url, r.query) for r in stored.result.requests] == shown
    assert stored.status == "ok" and stored.trigger == "manual" and stored.scheduled_for is None
    # The server saw the values; the request went out with them.
    assert [path for _, path, _, _ in server.seen] == ["/search?q=python&key=k-123",
                                                       "/search?q=php&key=k-123"]
    assert {headers["X-Token"] for _, _, _, headers in server.seen} == {"Bearer t-456"}


def test_a_missing_variable_stops_before_anything_runs(db_url: str, spec: BatchSpec,
                                                       server: LocalServer) -> None:
    with open_store(db_url) as store:
        with pytest.raises(ConfigError, match=r'job "search": fields.key: \$\{API_KEY\} is not '
                                              "set in the environment"):
            collect("search", spec, store=store, environ={"TOKEN": "t"})
        assert store.info().row_counts["batches"] == 0
    assert server.seen == []


def test_ran_but_not_stored_when_the_database_is_away(db_url: str, spec: BatchSpec,
                                                      server: LocalServer) -> None:
    with open_store(db_url, busy_timeout=0.2) as store:
        with database_outage(db_url):
            outcome = collect("search", spec, store=store, environ=ENVIRON)
        assert not outcome.stored and outcome.transient
        assert isinstance(outcome.store_error, DatabaseUnavailable)
        assert outcome.result is not None
        assert [r.status for r in outcome.result.requests] == [200, 200]
        assert store.info().row_counts["batches"] == 0
    assert len(server.seen) == 2


def test_record_stores_what_it_can_and_spools_only_for_an_outage(
        db_url: str, spec: BatchSpec, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    result = collect("search", spec, store=None, environ=ENVIRON).result
    pending = [PendingBatch(result=result, job_name="search", trigger=trigger,  # type: ignore[arg-type]
                            worker="h:1", batch_key=new_batch_key())
               for trigger in ("manual", "bogus", "manual")]  # the CHECK refuses "bogus"
    with open_store(db_url, busy_timeout=0.2) as store:
        good, refused, other = record(store, pending, spool=spool)
        assert good.stored and other.stored and not refused.stored
        assert isinstance(refused.store_error, DataRejected) and refused.spooled is None
        assert spool.depth() == 0  # refused data is not an outage: nothing waits
        again = record(store, pending[:1], spool=spool)  # its key is stored already
        assert again[0].store_error is not None and "stored already" in str(again[0].store_error)
        with database_outage(db_url):
            away = record(store, pending[:1] + [replace(pending[0], batch_key=new_batch_key())],
                          spool=spool)
        assert all(o.transient and o.spooled is not None for o in away)
        assert spool.depth() == 2
        assert store.info().row_counts["batches"] == 2


def test_without_a_store_it_only_runs(spec: BatchSpec) -> None:
    outcome = collect("search", spec, store=None, environ=ENVIRON)
    assert outcome.result is not None and not outcome.stored and outcome.store_error is None


def test_secrets_stay_references_in_the_spec(spec: BatchSpec, db_url: str) -> None:
    with open_store(db_url) as store:
        collect("search", spec, store=store, environ=ENVIRON)
    assert spec.fields == {"key": "${API_KEY}"}  # the spec itself is never changed
