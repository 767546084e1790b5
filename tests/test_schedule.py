"""Fire times: the same on every daemon, anchored, spread by name, cron in its time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.schedule import EPOCH, Fires, spread_offset
from collector.spec import BatchSpec, JobSpec


def job(name: str = "j", **schedule: object) -> JobSpec:
    return JobSpec(name=name, batch=BatchSpec(url="http://x/"), **schedule)  # type: ignore[arg-type]


def test_every_is_anchored_to_the_epoch() -> None:
    fires = Fires(job(every=300))
    at = datetime(2026, 11, 27, 9, 17, 12, 345, tzinfo=UTC)
    assert fires.latest(at) == datetime(2026, 11, 27, 9, 15, tzinfo=UTC)
    assert fires.next_after(None, at) == datetime(2026, 11, 27, 9, 20, tzinfo=UTC)
    assert fires.next_after(fires.latest(at), at) == datetime(2026, 11, 27, 9, 20, tzinfo=UTC)
    assert fires.grace(at) == timedelta(minutes=5)
    on_the_dot = datetime(2026, 11, 27, 9, 20, tzinfo=UTC)
    assert fires.latest(on_the_dot) == fires.next_after(None, on_the_dot) == on_the_dot


def test_jitter_is_one_offset_from_the_name() -> None:
    offsets = {name: spread_offset(name, 60) for name in ("a", "b", "c", "search", "probe")}
    assert all(timedelta(0) <= o < timedelta(seconds=60) for o in offsets.values())
    assert len(set(offsets.values())) == len(offsets)  # spread, not piled up
    assert spread_offset("a", 60) == offsets["a"]  # the same on every daemon, every time
    assert spread_offset("a", None) == timedelta(0)
    fires = Fires(job("a", every=300, jitter=60))
    at = datetime(2026, 11, 27, 9, 17, 12, tzinfo=UTC)
    assert fires.latest(at) == datetime(2026, 11, 27, 9, 15, tzinfo=UTC) + offsets["a"]


def test_cron_follows_its_time_zone_and_cron_weekdays() -> None:
    fires = Fires(job(cron="0 9 * * 1-5", timezone="Europe/Berlin"))
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert fires.latest(saturday) == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # Fri 9:00 CET
    assert fires.next_after(None, saturday) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert fires.grace(saturday) == timedelta(hours=1)  # at most an hour late
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert fires.latest(summer) == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)  # 9:00 CEST


def test_a_job_without_a_schedule_has_no_fires() -> None:
    with pytest.raises(ValueError, match="has no schedule"):
        Fires(job())


moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.just(UTC))
schedules = st.one_of(
    st.builds(lambda every, jitter: {"every": every, "jitter": jitter},
              st.sampled_from([0.5, 1, 7, 60, 300, 3600, 86400]), st.none() | st.just(30.0)),
    st.builds(lambda cron, tz: {"cron": cron, "timezone": tz},
              st.sampled_from(["*/5 * * * *", "0 9 * * 1-5", "30 2 1 * *", "0 0 29 2 *"]),
              st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])),
)


@settings(max_examples=200, deadline=None)
@given(at=moments, schedule=schedules, name=st.text(min_size=1, max_size=8))
def test_latest_and_next_agree(at: datetime, schedule: dict[str, object], name: str) -> None:
    fires = Fires(job(name, **schedule))
    latest = fires.latest(at)
    upcoming = fires.next_after(None, at)
    assert upcoming is not None and upcoming >= at
    if latest is None:  # 29 February: none within five years is possible, not here
        return
    assert latest <= at
    following = fires.next_after(latest, at)
    assert following is not None and following > at and following == upcoming or (
        upcoming == at == latest)
    assert fires.latest(latest) == latest  # a fire is its own key
    if fires.every is not None:
        assert (latest - EPOCH - fires.offset) % fires.every == timedelta(0)
