"""Latency histograms: percentiles within the documented error, merging, batch summaries."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update

from collector.histogram import (
    RELATIVE_ERROR,
    bucket,
    merge,
    percentiles,
    summarize,
)
from collector.models import batches, rollups
from collector.report import Filters, job_summaries
from collector.store import open_store
from tests.dataset import T0, fill

FRACTIONS = (0.01, 0.5, 0.9, 0.95, 0.99, 1.0)
times = st.floats(min_value=0.001, max_value=3_600_000, allow_nan=False)


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def histogram_of(values: list[float]) -> dict[str, int]:
    found = summarize((200, 0, v, False) for v in values)["elapsed_histogram"]
    assert found is not None
    return dict(found)


@given(st.lists(times, min_size=1, max_size=300))
def test_percentiles_are_within_the_documented_error(values: list[float]) -> None:
    counts = merge([histogram_of(values)])
    estimates = percentiles(counts, FRACTIONS, maximum=max(values))
    for fraction, estimate in zip(FRACTIONS, estimates, strict=True):
        exact = nearest_rank(values, fraction)
        assert estimate == pytest.approx(exact, rel=RELATIVE_ERROR * 1.000001)


@given(st.lists(st.lists(times, min_size=1, max_size=50), min_size=1, max_size=10))
def test_histograms_of_batches_add_up_to_the_histogram_of_all(parts: list[list[float]]) -> None:
    whole = [v for part in parts for v in part]
    assert merge(histogram_of(part) for part in parts) == merge([histogram_of(whole)])


def test_buckets_double_every_eight() -> None:
    assert bucket(1.0) == 0 and bucket(2.0) == 8 and bucket(1024.0) == 80
    assert bucket(1.01) == 1 and bucket(0.0) == bucket(1e-9) == -80
    assert RELATIVE_ERROR == pytest.approx(0.0443, abs=1e-4)
    assert percentiles({}, (0.5,)) == [None]


def test_a_batch_summary_by_hand() -> None:
    summary = summarize([(200, 100, 10.0, False), (204, 0, 30.0, True), (301, 0, 20.0, True),
                         (404, 50, 40.0, True), (503, None, 50.0, True),
                         (None, None, 1000.0, True), (None, 7, 5.0, False), (99, 1, 60.0, True)])
    assert {k: summary[k] for k in ("status_2xx", "status_3xx", "status_4xx", "status_5xx",
                                    "no_response", "body_bytes", "bodies",
                                    "reused_requests")} == {
        "status_2xx": 2, "status_3xx": 1, "status_4xx": 1, "status_5xx": 1, "no_response": 2,
        "body_bytes": 158, "bodies": 6, "reused_requests": 6}
    # responses' times 10 20 30 40 50 60: the nearest-rank median is the 3rd
    assert (summary["elapsed_p50_ms"], summary["elapsed_max_ms"]) == (30.0, 60.0)
    assert sum(summary["elapsed_histogram"].values()) == 6
    assert summarize([(None, None, 5.0, False)])["elapsed_histogram"] is None


def test_upgrading_fills_in_the_summaries_of_stored_batches(db_url: str) -> None:
    with open_store(db_url) as store:
        fill(store)
        before = job_summaries(store, Filters())
        with store.connect() as conn:
            stored = conn.execute(select(batches).order_by(batches.c.id)).all()
        store.downgrade("0008")
        store.upgrade()
        with store.connect() as conn:
            assert conn.execute(select(batches).order_by(batches.c.id)).all() == stored
        assert job_summaries(store, Filters()) == before
        assert stored[0].status_2xx == 2 and stored[0].elapsed_histogram is not None


def test_a_report_reads_the_rollups_not_the_batches(db_url: str) -> None:
    # Proof that the figures come from the rollups: change them, the report follows; a
    # report from inside an hour reads that hour's batches.
    with open_store(db_url) as store:
        fill(store)
        with store.connect(write=True) as conn:
            conn.execute(update(rollups).where(rollups.c.job_name == "a")
                         .values(status_4xx=rollups.c.status_4xx + 10))
        (a,) = job_summaries(store, Filters(job="a", since=None))
        assert a.status_4xx == 1 + 10  # one 404, and 10 more in the day's row
        (a,) = job_summaries(store, Filters(job="a", since=T0 + timedelta(hours=1)))
        assert a.status_4xx == 0 + 2 * 10  # the hours from 10:00 to midnight: two rows
        (a,) = job_summaries(store, Filters(job="a", since=T0 + timedelta(minutes=59)))
        assert a.status_4xx == 0 + 2 * 10  # and the batches from 09:59 to 10:00: none
        (a,) = job_summaries(store, Filters(job="a", since=T0 - timedelta(hours=9)))
        assert a.status_4xx == 1 + 10  # from midnight: the day's row
        (a,) = job_summaries(store, Filters(job="a", since=T0 - timedelta(seconds=1)))
        assert a.status_4xx == 1 + 3 * 10  # 08:59:59: the three hours of the day
        (late,) = job_summaries(store, Filters(job="a", since=T0 + timedelta(hours=2)))
        assert late.batches == 1

