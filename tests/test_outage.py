"""A PostgreSQL that stops answering never hangs collector: through a proxy the test freezes."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from collector.errors import DatabaseUnavailable
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.store import open_store
from tests.proxy import Proxy
from tests.server import LocalServer


def wait_for_abandoned_calls() -> None:
    deadline = time.monotonic() + 30
    while any(t.name.startswith("collector-db-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a database call never ended"
        time.sleep(0.1)
    gc.collect()


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[tuple[Proxy, str]]:
    """A proxy in front of the test's PostgreSQL database, and the URL through it."""
    url = make_url(postgres_url)
    running = Proxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield running, url.set(host="127.0.0.1", port=running.port).render_as_string(
            hide_password=False)
    finally:
        running.close()


def test_a_save_on_a_frozen_database_ends_unavailable(proxy: tuple[Proxy, str],
                                                      server: LocalServer) -> None:
    running, url = proxy
    result = run_batch(BatchSpec(url=server.url("/search"), queries=({"q": "a"},)))
    with open_store(url, operation_timeout=2) as store:
        assert store.save_batch(result, job_name="before") is not None
        running.freeze()
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match=r"no answer within 2s \(record\)"):
            store.save_batch(result, job_name="frozen")
        assert time.monotonic() - started < 4
        running.thaw()
        # The abandoned call goes on once the database answers; let it end here.
        wait_for_abandoned_calls()


def test_opening_a_frozen_database_ends_unavailable(proxy: tuple[Proxy, str]) -> None:
    running, url = proxy
    running.freeze()
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="database "):
        open_store(url, operation_timeout=2)
    assert time.monotonic() - started < 6
    running.thaw()
    wait_for_abandoned_calls()


def test_a_cut_database_is_unavailable_then_back(proxy: tuple[Proxy, str],
                                                 server: LocalServer) -> None:
    running, url = proxy
    result = run_batch(BatchSpec(url=server.url("/search"), queries=({"q": "a"},)))
    with open_store(url, operation_timeout=5) as store:
        running.cut()
        with pytest.raises(DatabaseUnavailable, match="database "):
            store.save_batch(result, job_name="cut")
        running.restore()
        assert store.save_batch(result, job_name="back") is not None
