"""When jobs run: ``every`` and ``cron`` as fire times, and how a schedule reads.

Crontab day-of-week numbers mean what they mean to cron(5): 0 and 7 are
Sunday. APScheduler 3 reads 0 as Monday, so numbers are turned into day names
before the trigger is built.

Every daemon computes the same fire times (:class:`Fires`): ``every`` is
anchored to the Unix epoch, so a 5-minute job fires at :00, :05, ... on every
host; ``cron`` follows its time zone; ``jitter`` moves all of a job's fires by
one offset derived from its name, never by a random amount. A fire's key is
(job, fire time), which is what a daemon claims.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from collector.quantities import format_duration

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

    from collector.spec import JobSpec

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def is_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows (``UTC``, ``Europe/Berlin``)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def cron_trigger(line: str, timezone: str) -> CronTrigger:
    """APScheduler's trigger for a crontab line, with cron(5)'s day-of-week numbers.

    ``0 9 * * 1-5`` means Monday to Friday, as it does to cron. Raises ValueError.
    """
    from apscheduler.triggers.cron import CronTrigger

    fields = line.split()
    if len(fields) != 5:
        raise ValueError(f"a crontab line has 5 fields, not {len(fields)}")
    minute, hour, day, month, weekday = fields
    weekday = ",".join(_weekday_names(part) for part in weekday.split(","))
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=weekday,
                       timezone=timezone)


def _weekday_names(part: str) -> str:
    """One comma-separated part of a crontab day-of-week field, numbers as names."""
    span, _, step_text = part.partition("/")
    if span != "*" and not any(ch.isdigit() for ch in span):
        return part  # mon, mon-fri: the same to cron and APScheduler
    step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
    if step_text and step is None:
        raise ValueError(f"day-of-week step {step_text!r} is not a positive number")
    if span == "*":
        first, last = 0, 6
    elif span.isdigit():
        first = last = int(span)
        if step is not None:
            last = 6  # cron: "1/2" is "1-6/2"
    elif re.fullmatch(r"\d+-\d+", span):
        first, last = (int(n) for n in span.split("-"))
    else:
        raise ValueError(f"day-of-week {part!r}: use numbers (0 or 7 is Sunday) or names "
                         "(mon-fri), not both in one range")
    if not (0 <= first <= 7 and 0 <= last <= 7 and first <= last):
        raise ValueError(f"day-of-week {part!r} is not within 0-7 (0 and 7 are Sunday)")
    days = range(first, last + 1, step or 1)
    return ",".join(dict.fromkeys(_WEEKDAYS[d % 7] for d in days))


def describe_schedule(job: JobSpec) -> str | None:
    """``every 5m`` or ``cron 0 9 * * mon-fri`` (with the time zone when not UTC)."""
    if job.every is not None:
        return f"every {format_duration(job.every)}"
    if job.cron is None:
        return None
    text = f"cron {job.cron}"
    return text if job.timezone == "UTC" else f"{text} ({job.timezone})"


# -- fires: the same times on every daemon ------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_GRACE = timedelta(hours=1)


def spread_offset(name: str, jitter: float | None) -> timedelta:
    """How far a job's fires are moved, the same on every daemon: [0, jitter), from its name.

    Many jobs on one schedule would all fire at :00; a job with ``jitter``
    fires at a fixed offset within it instead, derived from a hash of its name
    (as Prometheus spreads scrapes), so every daemon computes the same times
    and a fire keeps one key. Milliseconds, so the key survives storage.
    """
    if not jitter:
        return timedelta(0)
    fraction = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64
    return timedelta(milliseconds=int(fraction * jitter * 1000))


class Fires:
    """A job's fire times: ``every`` anchored to the Unix epoch, or ``cron`` in its time zone.

    Both moved by the job's :func:`spread_offset`. ``next_after`` follows
    APScheduler's trigger contract; ``latest`` is the fire a run at a given
    moment belongs to: its key.
    """

    def __init__(self, job: JobSpec) -> None:
        self.offset = spread_offset(job.name, job.jitter)
        self.every = timedelta(seconds=job.every) if job.every is not None else None
        self._cron = cron_trigger(job.cron, job.timezone) if job.cron is not None else None
        if self.every is None and self._cron is None:
            raise ValueError(f'job "{job.name}" has no schedule (every or cron)')

    def next_after(self, previous: datetime | None, now: datetime) -> datetime | None:
        """The first fire after ``previous``, or, without one, the first at or after ``now``."""
        if self.every is not None:
            origin = EPOCH + self.offset
            if previous is not None:
                return origin + ((previous - origin) // self.every + 1) * self.every
            steps = -((origin - now) // self.every)  # ceiling
            return origin + steps * self.every
        assert self._cron is not None
        fire = self._cron.get_next_fire_time(
            None if previous is None else previous - self.offset, now - self.offset)
        return None if fire is None else fire.astimezone(UTC) + self.offset

    def latest(self, at: datetime) -> datetime | None:
        """The last fire at or before ``at`` (None if there was none in five years)."""
        if self.every is not None:
            origin = EPOCH + self.offset
            return origin + ((at - origin) // self.every) * self.every
        for window in (timedelta(hours=1), timedelta(days=1), timedelta(days=32),
                       timedelta(days=367), timedelta(days=5 * 366)):
            fire = self.next_after(None, at - window)
            if fire is None or fire > at:
                continue
            while (following := self.next_after(fire, at)) is not None and following <= at:
                fire = following
            return fire
        return None

    def grace(self, at: datetime) -> timedelta:
        """How late the fire ``at`` belongs to may still run (see :meth:`grace_of`)."""
        latest = self.latest(at)
        return MAX_GRACE if latest is None else self.grace_of(latest)

    def grace_of(self, fire: datetime) -> timedelta:
        """How late ``fire`` may still start: until the next one, at most an hour."""
        following = self.next_after(fire, fire)
        return MAX_GRACE if following is None else min(following - fire, MAX_GRACE)
