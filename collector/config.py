"""Job files and settings, parsed once into frozen values.

A job file is TOML with one ``[jobs.NAME]`` table per job (see README, "Job
files"). :func:`load_job_file` validates every key strictly and raises
:class:`~collector.errors.JobFileError` naming the file, the job and the key.
The same checks serve command-line options through :func:`make_batch`.

``${VAR}`` in ``headers`` and ``fields`` is kept as written in a
:class:`BatchSpec`; :func:`expand_environment` fills it in just before a batch
runs, so secrets never reach the database.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from collector.errors import ConfigError, JobFileError

METHODS = ("GET", "HEAD", "POST")
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BODY = 10 * 1024 * 1024
DURATION_HINT = "use 30s, 5m, 1h"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
               "gb": 1000**3, "gib": 1024**3}
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Seconds allowed to connect, between reads, and for the whole request.

    ``connect`` and ``read`` map onto urllib3's ``Timeout``; ``total``, when
    set, also bounds reading the body.
    """

    connect: float = DEFAULT_TIMEOUT
    read: float = DEFAULT_TIMEOUT
    total: float | None = None


@dataclass(frozen=True, kw_only=True)
class BatchSpec:
    """What one batch sends: every query of ``queries`` to ``url`` through one pool.

    Each request carries the query's fields followed by the common ``fields``
    (a query's own value wins). No queries means one request to the bare URL.
    """

    url: str
    method: str = "GET"
    queries: tuple[dict[str, str], ...] = ()
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    pool_size: int = 1
    concurrency: int = 1
    timeout: Timeouts = Timeouts()
    retries: int = 0
    max_body: int = DEFAULT_MAX_BODY
    ca_file: str | None = None


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """A named batch and when to run it; ``source`` is the file it came from."""

    name: str
    batch: BatchSpec
    every: float | None = None
    cron: str | None = None
    timezone: str = "UTC"
    jitter: float | None = None
    enabled: bool = True
    source: str = "cli"


class _Invalid(Exception):
    """One bad value; the caller adds the file and job, or the option name."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


# -- values ---------------------------------------------------------------------------------


def parse_duration(value: object) -> float:
    """Seconds from ``30s``, ``5m``, ``1h``, ``250ms``, ``1d`` or a number of seconds.

    Raises ValueError with a message that says what is allowed.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration ({DURATION_HINT})")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(f"{_show(value)} is not a duration ({DURATION_HINT})")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{_show(value)} must be > 0")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from an integer or ``512KiB``, ``10MB``, ``1GiB``."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
    else:
        raise ValueError(f"{_show(value)} is not a size (use 65536, 512KiB, 10MB)")
    if size <= 0:
        raise ValueError(f"{_show(value)} must be > 0")
    return size


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _url(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid("url", f"{_show(value)} is not a string")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise _Invalid("url", f"{_show(value)} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid("url", f"{_show(value)} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise _Invalid("url", "has a user name or password in it, which would be stored with "
                              "every request: send credentials in headers (Authorization)")
    if parts.fragment:
        raise _Invalid("url", f"{_show(value)} has a #fragment, which is never sent")
    return value


def _int(key: str, value: object, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(key, f"{_show(value)} is not a whole number")
    if not minimum <= value <= maximum:
        raise _Invalid(key, f"{value} must be between {minimum} and {maximum}")
    return value


def _fields(key: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _Invalid(key, f"{_show(value)} is not a table of names and values")
    result: dict[str, str] = {}
    for name, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        if not isinstance(item, str | int | float):
            raise _Invalid(f"{key}.{name}", f"{_show(item)} is not a string or a number")
        result[str(name)] = str(item)
    return result


def _headers(value: object) -> dict[str, str]:
    headers = _fields("headers", value)
    for name, item in headers.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise _Invalid("headers", f"{_show(name)} is not a valid header name")
        if "\r" in item or "\n" in item:
            raise _Invalid(f"headers.{name}", "a header value cannot contain a line break")
    return headers


def _timeout(value: object) -> Timeouts:
    if isinstance(value, Mapping):
        unknown = set(value) - {"connect", "read", "total"}
        if unknown:
            raise _Invalid("timeout", f"unknown key {sorted(unknown)[0]!r} "
                                      "(allowed: connect, read, total)")
        parsed: dict[str, float] = {}
        for name, item in value.items():
            try:
                parsed[name] = parse_duration(item)
            except ValueError as exc:
                raise _Invalid(f"timeout.{name}", str(exc)) from None
        return Timeouts(**parsed)
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _Invalid("timeout", str(exc)) from None
    return Timeouts(connect=seconds, read=seconds)


def _queries(value: object) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list):
        raise _Invalid("queries", f"{_show(value)} is not a list of tables, "
                                  'like [ { q = "python" }, { q = "php" } ]')
    return tuple(_fields(f"queries[{i}]", item) for i, item in enumerate(value))


def make_batch(**values: Any) -> BatchSpec:
    """Validate raw values (from a job file or options) into a :class:`BatchSpec`.

    Keys are the job file's: ``url``, ``method``, ``queries``, ``fields``,
    ``headers``, ``pool_size``, ``concurrency``, ``timeout``, ``retries``,
    ``max_body``, ``ca_file``. Raises ``_Invalid`` naming the key.
    """
    checked: dict[str, Any] = {"url": _url(values.pop("url", None))}
    for key, item in values.items():
        if key == "method":
            if not isinstance(item, str) or item.upper() not in METHODS:
                raise _Invalid(key, f"{_show(item)} is not one of {', '.join(METHODS)}")
            checked[key] = item.upper()
        elif key == "queries":
            checked[key] = _queries(item)
        elif key == "fields":
            checked[key] = _fields(key, item)
        elif key == "headers":
            checked[key] = _headers(item)
        elif key == "pool_size":
            checked[key] = _int(key, item, minimum=1, maximum=1000)
        elif key == "concurrency":
            checked[key] = _int(key, item, minimum=1, maximum=1000)
        elif key == "retries":
            checked[key] = _int(key, item, minimum=0, maximum=100)
        elif key == "timeout":
            checked[key] = _timeout(item)
        elif key == "max_body":
            try:
                checked[key] = parse_size(item)
            except ValueError as exc:
                raise _Invalid(key, str(exc)) from None
        elif key == "ca_file":
            if not isinstance(item, str) or not Path(item).is_file():
                raise _Invalid(key, f"{_show(item)} is not a readable file")
            checked[key] = item
        else:  # pragma: no cover - callers only pass known keys
            raise _Invalid(key, "unknown key")
    return BatchSpec(**checked)


def batch_from_options(**values: Any) -> BatchSpec:
    """Like :func:`make_batch`, raising ConfigError that names the ``--option``."""
    try:
        return make_batch(**{k: v for k, v in values.items() if v is not None})
    except _Invalid as exc:
        option = "--" + exc.key.split(".")[0].split("[")[0].replace("_", "-")
        if exc.key == "queries" or exc.key.startswith("queries["):
            option = "--query"
        raise ConfigError(f"{option}: {exc.problem}") from None


# -- job files ------------------------------------------------------------------------------

_BATCH_KEYS = frozenset({"url", "method", "queries", "fields", "headers", "pool_size",
                         "concurrency", "timeout", "retries", "max_body", "ca_file"})
_JOB_KEYS = _BATCH_KEYS | {"every", "cron", "timezone", "jitter", "enabled"}


def load_job_file(path: str | Path) -> list[JobSpec]:
    """Parse and validate every job of one TOML job file, in file order."""
    shown = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise JobFileError(shown, "no such file") from None
    except OSError as exc:
        raise JobFileError(shown, f"cannot be read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise JobFileError(shown, f"is not valid TOML ({exc})") from None
    unknown = set(data) - {"jobs"}
    if unknown:
        raise JobFileError(shown, f"unknown top-level key {sorted(unknown)[0]!r} "
                                  "(jobs go in [jobs.NAME] tables)")
    jobs = data.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        raise JobFileError(shown, "has no jobs (add a [jobs.NAME] table)")
    return [_job(shown, name, table) for name, table in jobs.items()]


def _job(path: str, name: str, table: object) -> JobSpec:
    if not _JOB_NAME.match(name):
        raise JobFileError(path, "name must be 1-100 letters, digits, '_', '.' or '-'",
                           job=name)
    if not isinstance(table, dict):
        raise JobFileError(path, f"{_show(table)} is not a table", job=name)
    unknown = sorted(set(table) - _JOB_KEYS)
    if unknown:
        raise JobFileError(path, f"unknown key (allowed: {', '.join(sorted(_JOB_KEYS))})",
                           job=name, key=unknown[0])
    if "url" not in table:
        raise JobFileError(path, "is required", job=name, key="url")
    try:
        batch = make_batch(**{k: v for k, v in table.items() if k in _BATCH_KEYS})
        schedule = _schedule(table)
    except _Invalid as exc:
        raise JobFileError(path, exc.problem, job=name, key=exc.key) from None
    return JobSpec(name=name, batch=batch, source=path, **schedule)


def _schedule(table: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if "every" in table and "cron" in table:
        raise _Invalid("cron", "a job has either every or cron, not both")
    if "every" in table:
        try:
            result["every"] = parse_duration(table["every"])
        except ValueError as exc:
            raise _Invalid("every", str(exc)) from None
    timezone = table.get("timezone", "UTC")
    if not isinstance(timezone, str) or not _is_timezone(timezone):
        raise _Invalid("timezone", f"{_show(timezone)} is not a time zone "
                                   "(use UTC or a name like Europe/Berlin)")
    result["timezone"] = timezone
    if "cron" in table:
        result["cron"] = _cron(table["cron"], timezone)
    if "jitter" in table:
        try:
            result["jitter"] = parse_duration(table["jitter"])
        except ValueError as exc:
            raise _Invalid("jitter", str(exc)) from None
    if "enabled" in table:
        if not isinstance(table["enabled"], bool):
            raise _Invalid("enabled", f"{_show(table['enabled'])} is not true or false")
        result["enabled"] = table["enabled"]
    return result


def _is_timezone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _cron(value: object, timezone: str) -> str:
    from apscheduler.triggers.cron import CronTrigger

    if not isinstance(value, str):
        raise _Invalid("cron", f"{_show(value)} is not a crontab line")
    try:
        CronTrigger.from_crontab(value, timezone=timezone)
    except ValueError as exc:
        raise _Invalid("cron", f"{_show(value)} is not a crontab line like "
                               f'"*/5 * * * *" ({exc})') from None
    return value


def select_job(path: str, jobs: list[JobSpec], name: str | None) -> JobSpec:
    """The job called ``name`` in a file, or its only job when ``name`` is None."""
    if name is None:
        if len(jobs) == 1:
            return jobs[0]
        names = ", ".join(job.name for job in jobs)
        raise ConfigError(f"{path} has {len(jobs)} jobs ({names}): choose one with --job")
    for job in jobs:
        if job.name == name:
            return job
    names = ", ".join(job.name for job in jobs)
    raise ConfigError(f'{path}: no job "{name}" (jobs in this file: {names})')


# -- the environment ------------------------------------------------------------------------


def expand_environment(batch: BatchSpec, environ: Mapping[str, str], *,
                       where: str) -> BatchSpec:
    """Fill ``${VAR}`` in headers and fields from ``environ``, just before a run.

    ``where`` names the job for the message when a variable is not set.
    """

    def expand(key: str, text: str) -> str:
        def lookup(match: re.Match[str]) -> str:
            try:
                return environ[match.group(1)]
            except KeyError:
                raise ConfigError(f"{where}: {key}: ${{{match.group(1)}}} is not set "
                                  "in the environment") from None

        return _ENV_VAR.sub(lookup, text)

    headers = {k: expand(f"headers.{k}", v) for k, v in batch.headers.items()}
    fields = {k: expand(f"fields.{k}", v) for k, v in batch.fields.items()}
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ConfigError(f"{where}: headers.{name}: the value from the environment "
                              "contains a line break")
    return dataclasses.replace(batch, headers=headers, fields=fields)


# -- settings -------------------------------------------------------------------------------


def default_database_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/collector/collector.db`` (``~/.local/share`` by default)."""
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "collector" / "collector.db"


def resolve_database_url(option: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The database to use: ``--db``, else ``COLLECTOR_DATABASE_URL``, else the default file.

    A value without ``://`` is a SQLite file path; ``postgresql://`` means psycopg 3.
    """
    value = option or environ.get("COLLECTOR_DATABASE_URL") or ""
    if not value.strip():
        return "sqlite:///" + str(default_database_path(environ))
    value = value.strip()
    if "://" not in value:
        return "sqlite:///" + str(Path(value).expanduser().absolute())
    for prefix in ("postgresql://", "postgres://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix):]
    return value
