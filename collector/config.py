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
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from collector.errors import ConfigError, JobFileError

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

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
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")


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


def parse_since(value: str, now: datetime) -> datetime:
    """A point in time from ``24h``/``7d`` (that long before ``now``) or an ISO date or time.

    A date or time without an offset is UTC. Raises ConfigError naming ``--since``.
    """
    try:
        return now - timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"--since: {_show(value)} is neither a duration nor a date "
                          "(use 24h, 7d, 2026-11-01 or 2026-11-01T12:00)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


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
    """A value for a one-line message: strings quoted, line breaks escaped."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


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


def _method(value: object) -> str:
    if not isinstance(value, str) or value.upper() not in METHODS:
        raise _Invalid("method", f"{_show(value)} is not one of {', '.join(METHODS)}")
    return value.upper()


def _duration(key: str) -> Callable[[object], float]:
    def check(value: object) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise _Invalid(key, str(exc)) from None

    return check


def _max_body(value: object) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise _Invalid("max_body", str(exc)) from None


def _ca_file(value: object) -> str:
    if not isinstance(value, str) or not Path(value).is_file():
        raise _Invalid("ca_file", f"{_show(value)} is not a readable file")
    return value


def _timezone(value: object) -> str:
    if not isinstance(value, str) or not _is_timezone(value):
        raise _Invalid("timezone", f"{_show(value)} is not a time zone "
                                   "(use UTC or a name like Europe/Berlin)")
    return value


def _enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("enabled", f"{_show(value)} is not true or false")
    return value


_BATCH_CHECKS: dict[str, Callable[[object], Any]] = {
    "url": _url,
    "method": _method,
    "queries": _queries,
    "fields": lambda v: _fields("fields", v),
    "headers": _headers,
    "pool_size": lambda v: _int("pool_size", v, minimum=1, maximum=1000),
    "concurrency": lambda v: _int("concurrency", v, minimum=1, maximum=1000),
    "timeout": _timeout,
    "retries": lambda v: _int("retries", v, minimum=0, maximum=100),
    "max_body": _max_body,
    "ca_file": _ca_file,
}
_SCHEDULE_CHECKS: dict[str, Callable[[object], Any]] = {
    "every": _duration("every"),
    "timezone": _timezone,
    "jitter": _duration("jitter"),
    "enabled": _enabled,
    # cron is checked after timezone, which it depends on
}
_JOB_KEYS = frozenset(_BATCH_CHECKS) | frozenset(_SCHEDULE_CHECKS) | {"cron"}


def _check(checks: Mapping[str, Callable[[object], Any]],
           values: Mapping[str, object]) -> tuple[dict[str, Any], list[_Invalid]]:
    """Every key checked; the good values, and one error per bad key."""
    checked: dict[str, Any] = {}
    errors: list[_Invalid] = []
    for key, value in values.items():
        if key in checks:
            try:
                checked[key] = checks[key](value)
            except _Invalid as exc:
                errors.append(exc)
    return checked, errors


def make_batch(**values: Any) -> BatchSpec:
    """Validate raw values (from a job file or options) into a :class:`BatchSpec`.

    Keys are the job file's: ``url``, ``method``, ``queries``, ``fields``,
    ``headers``, ``pool_size``, ``concurrency``, ``timeout``, ``retries``,
    ``max_body``, ``ca_file``. Raises ``_Invalid`` naming the first bad key.
    """
    values.setdefault("url", None)
    checked, errors = _check(_BATCH_CHECKS, values)
    if errors:
        raise errors[0]
    return BatchSpec(**checked)


def _option_error(exc: _Invalid) -> ConfigError:
    if exc.key == "queries" or exc.key.startswith("queries["):
        option = "--query"
    else:
        option = "--" + exc.key.split(".")[0].replace("_", "-")
    return ConfigError(f"{option}: {exc.problem}")


def batch_from_options(**values: Any) -> BatchSpec:
    """Like :func:`make_batch`, raising ConfigError that names the ``--option``."""
    try:
        return make_batch(**{k: v for k, v in values.items() if v is not None})
    except _Invalid as exc:
        raise _option_error(exc) from None


def job_from_options(name: str, **values: Any) -> JobSpec:
    """A job defined on the command line (``collector jobs add``); source ``cli``."""
    if not _JOB_NAME.match(name):
        raise ConfigError(f"job name {name!r}: {_NAME_RULE}")
    table = {k: v for k, v in values.items() if v is not None}
    job, errors = _job_from_table(name, table, source="cli")
    if errors:
        raise _option_error(errors[0])
    assert job is not None
    return job


# -- job files ------------------------------------------------------------------------------

_NAME_RULE = "a job name is 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit"


@dataclass(frozen=True)
class JobSet:
    """Jobs read from files and folders, and every mistake found on the way."""

    jobs: list[JobSpec]
    errors: list[JobFileError]
    files: list[Path]


def load_job_file(path: str | Path) -> list[JobSpec]:
    """Parse and validate every job of one TOML job file; raises its first mistake."""
    jobs, errors = read_job_file(path)
    if errors:
        raise errors[0]
    return jobs


def read_job_file(path: str | Path) -> tuple[list[JobSpec], list[JobFileError]]:
    """The valid jobs of one file, in file order, and one error per mistake.

    A job's ``source`` is the file's absolute path; messages name the path as given.
    """
    shown = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return [], [JobFileError(shown, "no such file")]
    except IsADirectoryError:
        return [], [JobFileError(shown, "is a folder, not a job file")]
    except OSError as exc:
        return [], [JobFileError(shown, f"cannot be read ({exc.strerror})")]
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return [], [JobFileError(shown, f"is not valid TOML ({exc})")]
    errors: list[JobFileError] = []
    unknown = sorted(set(data) - {"jobs"})
    if unknown:
        errors.append(JobFileError(shown, f"unknown top-level key {unknown[0]!r} "
                                          "(jobs go in [jobs.NAME] tables)"))
    tables = data.get("jobs")
    if not isinstance(tables, dict) or not tables:
        errors.append(JobFileError(shown, "has no jobs (add a [jobs.NAME] table)"))
        return [], errors
    source = str(Path(path).absolute())
    jobs: list[JobSpec] = []
    for name, table in tables.items():
        if not _JOB_NAME.match(name):
            errors.append(JobFileError(shown, _NAME_RULE, job=name))
        elif not isinstance(table, dict):
            errors.append(JobFileError(shown, f"{_show(table)} is not a table", job=name))
        else:
            job, problems = _job_from_table(name, table, source=source)
            errors += [JobFileError(shown, e.problem, job=name, key=e.key) for e in problems]
            if job is not None:
                jobs.append(job)
    return jobs, errors


def load_job_paths(paths: Sequence[str | Path]) -> JobSet:
    """Every job in the given files and folders (``*.toml``, searched recursively).

    Collects every mistake instead of stopping at the first, including a job
    name defined twice.
    """
    files: list[Path] = []
    errors: list[JobFileError] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.toml") if p.is_file())
            if not found:
                errors.append(JobFileError(str(path), "has no *.toml job files"))
            files += found
        else:
            files.append(path)
    jobs: list[JobSpec] = []
    seen: dict[str, Path] = {}
    for file in dict.fromkeys(files):  # each file once, in order
        found_jobs, found_errors = read_job_file(file)
        errors += found_errors
        for job in found_jobs:
            if job.name in seen:
                errors.append(JobFileError(str(file), f"is also defined in {seen[job.name]}",
                                           job=job.name))
                continue
            seen[job.name] = file
            jobs.append(job)
    return JobSet(jobs=jobs, errors=errors, files=list(dict.fromkeys(files)))


def _job_from_table(name: str, table: Mapping[str, Any],
                    *, source: str) -> tuple[JobSpec | None, list[_Invalid]]:
    errors = [_Invalid(key, f"unknown key (allowed: {', '.join(sorted(_JOB_KEYS))})")
              for key in sorted(set(table) - _JOB_KEYS)]
    if "url" not in table:
        errors.append(_Invalid("url", "is required"))
    batch, batch_errors = _check(_BATCH_CHECKS, table)
    schedule, schedule_errors = _check(_SCHEDULE_CHECKS, table)
    errors += batch_errors + schedule_errors
    if "cron" in table:
        if "every" in table:
            errors.append(_Invalid("cron", "a job has either every or cron, not both"))
        else:
            try:
                schedule["cron"] = _cron(table["cron"], schedule.get("timezone", "UTC"))
            except _Invalid as exc:
                errors.append(exc)
    if errors:
        return None, errors
    return JobSpec(name=name, batch=BatchSpec(**batch), source=source, **schedule), []


# -- stored definitions ---------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """The shortest of ``1d``, ``5h``, ``5m``, ``30s``, ``250ms`` that is exact."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    milliseconds = seconds * 1000
    if milliseconds == int(milliseconds):
        return f"{int(milliseconds)}ms"
    return f"{seconds:g}s"


def describe_schedule(job: JobSpec) -> str | None:
    """``every 5m`` or ``cron 0 9 * * mon-fri`` (with the time zone when not UTC)."""
    if job.every is not None:
        text = f"every {format_duration(job.every)}"
    elif job.cron is not None:
        text = f"cron {job.cron}"
    else:
        return None
    if job.timezone != "UTC" and job.cron is not None:
        text += f" ({job.timezone})"
    return text


def job_definition(job: JobSpec) -> dict[str, Any]:
    """The job as job-file keys with every default filled in: what the ``jobs`` table keeps.

    ``${VAR}`` stays as written. :func:`job_from_definition` reads it back.
    """
    batch = job.batch
    timeout = {"connect": format_duration(batch.timeout.connect),
               "read": format_duration(batch.timeout.read)}
    if batch.timeout.total is not None:
        timeout["total"] = format_duration(batch.timeout.total)
    definition: dict[str, Any] = {
        "url": batch.url, "method": batch.method, "queries": [dict(q) for q in batch.queries],
        "fields": dict(batch.fields), "headers": dict(batch.headers),
        "pool_size": batch.pool_size, "concurrency": batch.concurrency, "timeout": timeout,
        "retries": batch.retries, "max_body": batch.max_body,
    }
    if batch.ca_file is not None:
        definition["ca_file"] = batch.ca_file
    if job.every is not None:
        definition["every"] = format_duration(job.every)
    if job.cron is not None:
        definition["cron"] = job.cron
    definition["timezone"] = job.timezone
    if job.jitter is not None:
        definition["jitter"] = format_duration(job.jitter)
    definition["enabled"] = job.enabled
    return definition


def job_from_definition(name: str, definition: Mapping[str, Any], *, source: str) -> JobSpec:
    """The job a stored definition describes, checked again as a job file would be."""
    job, errors = _job_from_table(name, definition, source=source)
    if errors:
        raise ConfigError(f'stored job "{name}": {errors[0]} (fix it with collector jobs apply '
                          "or remove it)")
    assert job is not None
    return job


def job_to_toml(job: JobSpec) -> str:
    """The job as a ``[jobs.NAME]`` table that :func:`load_job_file` reads back."""
    lines = [f"[jobs.{_toml_key(job.name)}]"]
    for key, value in job_definition(job).items():
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list):
        return "[ " + ", ".join(_toml_value(v) for v in value) + " ]" if value else "[]"
    raise TypeError(f"no TOML for {value!r}")


def _is_timezone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _cron(value: object, timezone: str) -> str:
    if not isinstance(value, str):
        raise _Invalid("cron", f"{_show(value)} is not a crontab line")
    try:
        cron_trigger(value, timezone)
    except ValueError as exc:
        raise _Invalid("cron", f"{_show(value)} is not a crontab line like "
                               f'"*/5 * * * *" ({exc})') from None
    return value


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(line: str, timezone: str) -> CronTrigger:
    """APScheduler's trigger for a crontab line, with cron(5)'s day-of-week numbers.

    APScheduler 3 reads day-of-week 0 as Monday; in a crontab 0 (and 7) is
    Sunday. Numbers in that field are turned into day names first, so
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
