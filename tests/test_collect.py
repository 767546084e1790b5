"""The collect step shared by run-once, demo and the daemon, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from collector.collect import collect
from collector.errors import ConfigError, DatabaseUnavailable
from collector.spec import BatchSpec
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
    finished: list[int] = []
    with open_store(db_url) as store:
        outcome = collect("search", spec, store=store, environ=ENVIRON,
                          on_request=lambda r: finished.append(r.position))
        assert outcome.stored and not outcome.claimed_elsewhere
        assert outcome.batch_id is not None and outcome.store_error is None
        stored = store.load_batch(outcome.batch_id)
    assert sorted(finished) == [0, 1]
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


def test_a_scheduled_fire_is_claimed_then_run_once(db_url: str, spec: BatchSpec,
                                                   server: LocalServer) -> None:
    with open_store(db_url) as one, open_store(db_url) as two:
        won = collect("search", spec, store=one, trigger="schedule", scheduled_for=FIRE,
                      environ=ENVIRON)
        lost = collect("search", spec, store=two, trigger="schedule", scheduled_for=FIRE,
                       environ=ENVIRON)
        assert won.stored and won.batch_id is not None
        assert lost.claimed_elsewhere and not lost.stored and lost.store_error is None
        stored = one.load_batch(won.batch_id)
        assert (stored.status, stored.trigger, stored.scheduled_for) == ("ok", "schedule", FIRE)
        assert one.info().row_counts == {"jobs": 0, "batches": 1, "requests": 2, "workers": 0}
    assert len(server.seen) == 2  # the losing worker sent nothing


def test_without_a_store_it_only_runs(spec: BatchSpec) -> None:
    outcome = collect("search", spec, store=None, environ=ENVIRON)
    assert outcome.result is not None and not outcome.stored and outcome.store_error is None


def test_secrets_stay_references_in_the_spec(spec: BatchSpec, db_url: str) -> None:
    with open_store(db_url) as store:
        collect("search", spec, store=store, environ=ENVIRON)
    assert spec.fields == {"key": "${API_KEY}"}  # the spec itself is never changed
