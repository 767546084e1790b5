"""Durations, sizes and points in time, as job files and options write them.

One grammar everywhere: a duration is ``250ms``, ``30s``, ``5m``, ``1h``,
``1d`` or a bare number of seconds; a size is a number of bytes or ``512KiB``,
``10MB``, ``1GiB``. Parsers raise ValueError with a message that says what is
allowed; callers add where the value came from.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta

DAY = 86400.0  # seconds: the bound of every duration a job or an option takes

DURATION_HINT = "use 250ms, 30s, 5m, 1h, 1d or a number of seconds"
SIZE_HINT = "use 65536, 512KiB, 10MB"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
               "gb": 1000**3, "gib": 1024**3}


def show(value: object) -> str:
    """A value for a one-line message: strings quoted, line breaks escaped."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


MAX_DURATION = 100 * 365 * 86400.0  # anything longer is a mistake (and overflows dates)
MAX_SIZE = 2**40


def parse_duration(value: object, *, maximum: float = MAX_DURATION) -> float:
    """Seconds from ``250ms``, ``30s``, ``5m``, ``1h``, ``1d`` or a number (of seconds).

    A number may come as an int, a float or a string (``"5"``, as an option
    gives it); it must be > 0 and at most ``maximum``. Raises ValueError with a
    message that says what is allowed.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration ({DURATION_HINT})")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"{show(value)} is not a duration ({DURATION_HINT})")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{show(value)} must be > 0")
    if seconds > maximum:
        raise ValueError(f"{show(value)} is too long (at most {format_duration(maximum)})")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest of ``1d``, ``5h``, ``5m``, ``30s``, ``250ms`` that is exact."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    milliseconds = seconds * 1000
    if milliseconds == int(milliseconds):
        return f"{int(milliseconds)}ms"
    return f"{seconds:g}s"


def parse_size(value: object) -> int:
    """Bytes from an integer, a string of digits, or ``512KiB``, ``10MB``, ``1GiB``."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
    else:
        raise ValueError(f"{show(value)} is not a size ({SIZE_HINT})")
    if size <= 0:
        raise ValueError(f"{show(value)} must be > 0")
    if size > MAX_SIZE:
        raise ValueError(f"{show(value)} is too large (at most 1024GiB)")
    return size


def parse_since(value: str, now: datetime) -> datetime:
    """A point in time from a duration (that long before ``now``) or an ISO date or time.

    A date or time without an offset is UTC. Raises ValueError.
    """
    if _DURATION.match(value):
        return now - timedelta(seconds=parse_duration(value))

    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{show(value)} is neither a duration nor a date "
                         "(use 24h, 7d, 2026-11-01 or 2026-11-01T12:00)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
