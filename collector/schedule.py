"""When jobs run: ``every`` and ``cron`` as APScheduler triggers, and how a schedule reads.

Crontab day-of-week numbers mean what they mean to cron(5): 0 and 7 are
Sunday. APScheduler 3 reads 0 as Monday, so numbers are turned into day names
before the trigger is built.
"""

from __future__ import annotations

import re
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
