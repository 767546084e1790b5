"""Job files and command-line options into :class:`~collector.spec.JobSpec`, every mistake listed.

A job file is TOML with one ``[jobs.NAME]`` table per job (README, "Job
files"). Every key is checked strictly; a mistake names the file, the job and
the key (:class:`~collector.errors.JobFileError`). Options go through the same
checks as a job table, and their mistakes name the option instead.

Checks that depend on this machine (``ca_file`` must exist) are made for job
files and options, where the user can fix them at once, and not for stored
definitions, which another host may have written: there the batch finds out
when it runs (:mod:`collector.definition`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.errors import ConfigError, JobFileError
from collector.quantities import parse_duration, parse_size, show
from collector.schedule import cron_trigger, is_timezone
from collector.spec import METHODS, BatchSpec, JobSpec, Timeouts

NAME_RULE = "a job name is 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit"
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
# ${VAR} from the environment, ${credential:NAME} from systemd's credentials.
REFERENCE = re.compile(r"\$\{(?:(credential):)?([A-Za-z_][A-Za-z0-9_.-]*)\}")


def has_reference(text: str) -> bool:
    return REFERENCE.search(text) is not None
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class KeyProblem(Exception):
    """One bad value under ``key``; the caller adds the file and job, or the option."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


def is_job_name(name: str) -> bool:
    return bool(_JOB_NAME.match(name))


# -- one value each ---------------------------------------------------------------------------


def _url(value: object) -> str:
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        raise KeyProblem("url", f"{show(value)} is not a string")
    shown = show(_without_password(value))  # a message never echoes a password
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise KeyProblem("url", f"{shown} has a control character in it (a line break, "
                                "a tab): percent-encode it")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise KeyProblem("url", f"{shown} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KeyProblem("url", f"{shown} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise KeyProblem("url", "has a user name or password in it, which would be stored with "
                                "every request: send credentials in headers (Authorization)")
    if parts.fragment:
        raise KeyProblem("url", f"{shown} has a #fragment, which is never sent")
    if has_reference(parts.netloc):
        raise KeyProblem("url", f"{shown}: a ${{...}} reference may stand in the path or the "
                                "query, not in the host")
    return parts.scheme + value[len(parts.scheme):]  # HTTP:// is http://


def _without_password(url: str) -> str:
    """``scheme://user:***@host...``: the URL as a message may show it."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:)[^/@]*@", r"\1***@", url)


def _whole(key: str, minimum: int, maximum: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise KeyProblem(key, f"{show(value)} is not a whole number")
        if not minimum <= value <= maximum:
            raise KeyProblem(key, f"{value} must be between {minimum} and {maximum}")
        return value

    return check


def _fields(key: str, value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise KeyProblem(key, f"{show(value)} is not a table of names and values")
    result: dict[str, str] = {}
    for name, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        if not isinstance(item, str | int | float):
            raise KeyProblem(f"{key}.{name}", f"{show(item)} is not a string or a number")
        result[str(name)] = str(item)
    return result


def header_value_problem(value: str) -> str | None:
    """Why HTTP cannot carry ``value`` in a header, or None."""
    if "\r" in value or "\n" in value:
        return "a header value cannot contain a line break"
    if any(ord(ch) < 0x20 and ch != "\t" or ord(ch) == 0x7F for ch in value):
        return "a header value cannot contain control characters"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return ("a header value can only hold Latin-1 characters (percent-encode or "
                "base64 anything else)")
    return None


def _headers(value: object) -> dict[str, str]:
    headers = _fields("headers", value)
    for name, item in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise KeyProblem("headers", f"{show(name)} is not a valid header name")
        if (problem := header_value_problem(item)) is not None:
            raise KeyProblem(f"headers.{name}", problem)
    return headers


DAY = 86400.0


def _duration(key: str, maximum: float = DAY) -> Callable[[object], float]:
    def check(value: object) -> float:
        try:
            return parse_duration(value, maximum=maximum)
        except ValueError as exc:
            raise KeyProblem(key, str(exc)) from None

    return check


def _timeout(value: object) -> Timeouts:
    if not isinstance(value, Mapping):
        seconds = _duration("timeout")(value)
        return Timeouts(connect=seconds, read=seconds)
    unknown = sorted(set(value) - {"connect", "read", "total"})
    if unknown:
        raise KeyProblem("timeout", f"unknown key {unknown[0]!r} (allowed: connect, read, total)")
    return Timeouts(**{name: _duration(f"timeout.{name}")(item) for name, item in value.items()})


def _queries(value: object) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list):
        raise KeyProblem("queries", f"{show(value)} is not a list of tables, "
                                    'like [ { q = "python" }, { q = "php" } ]')
    return tuple(_fields(f"queries[{i}]", item) for i, item in enumerate(value))


def _method(value: object) -> str:
    if not isinstance(value, str) or value.upper() not in METHODS:
        raise KeyProblem("method", f"{show(value)} is not one of {', '.join(METHODS)}")
    return value.upper()


def _max_body(value: object) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise KeyProblem("max_body", str(exc)) from None


def _file(key: str, *, local: bool) -> Callable[[object], str]:
    """A file name; with ``local``, a file that exists on this machine."""
    def check(value: object) -> str:
        if not isinstance(value, str) or not value:
            raise KeyProblem(key, f"{show(value)} is not a file name")
        if local and not Path(value).is_file():
            raise KeyProblem(key, f"{show(value)} is not a readable file")
        return value

    return check


def _flag(key: str) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if not isinstance(value, bool):
            raise KeyProblem(key, f"{show(value)} is not true or false")
        return value

    return check


def _basic_auth(value: object) -> tuple[str, str]:
    if not isinstance(value, Mapping) or set(value) != {"username", "password"}:
        raise KeyProblem("basic_auth", f"{show(value)} is not a table "
                                       '{ username = "...", password = "${VAR}" }')
    username, password = value["username"], value["password"]
    if not isinstance(username, str) or ":" in username:
        raise KeyProblem("basic_auth.username", f"{show(username)} is not a user name "
                                                "(a string without ':')")
    if not isinstance(password, str) or not has_reference(password):
        raise KeyProblem("basic_auth.password", "must be a reference like ${PASSWORD} or "
                                                "${credential:NAME}: secrets are never written "
                                                "in job files or stored")
    return username, password


def _retry_statuses(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in value):
        raise KeyProblem("retry_statuses", f"{show(value)} is not a list of HTTP statuses, "
                                           "like [ 502, 503, 504 ]")
    return tuple(sorted(set(value)))


def _redact(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise KeyProblem("redact", f"{show(value)} is not a list of field names, "
                                   'like [ "api_key" ]')
    return tuple(value)


def _timezone(value: object) -> str:
    if not isinstance(value, str) or not is_timezone(value):
        raise KeyProblem("timezone", f"{show(value)} is not a time zone "
                                     "(use UTC or a name like Europe/Berlin)")
    return value


def _enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise KeyProblem("enabled", f"{show(value)} is not true or false")
    return value


def _cron(value: object, timezone: str) -> str:
    if not isinstance(value, str):
        raise KeyProblem("cron", f"{show(value)} is not a crontab line")
    try:
        cron_trigger(value, timezone)
    except ValueError as exc:
        raise KeyProblem("cron", f'{show(value)} is not a crontab line like "*/5 * * * *" '
                                 f"({exc})") from None
    return value


_BATCH_CHECKS: dict[str, Callable[[object], Any]] = {
    "url": _url,
    "method": _method,
    "queries": _queries,
    "fields": lambda v: _fields("fields", v),
    "headers": _headers,
    "pool_size": _whole("pool_size", 1, 1000),
    "concurrency": _whole("concurrency", 1, 1000),
    "timeout": _timeout,
    "retries": _whole("retries", 0, 100),
    "max_body": _max_body,
    "ca_file": _file("ca_file", local=False),
    "client_cert": _file("client_cert", local=False),
    "client_key": _file("client_key", local=False),
    "verify": _flag("verify"),
    "follow_redirects": _flag("follow_redirects"),
    "basic_auth": _basic_auth,
    "redact": _redact,
    "retry_statuses": _retry_statuses,
    "retry_after_max": _duration("retry_after_max", maximum=3600.0),
}
_LOCAL_CHECKS = {**_BATCH_CHECKS, **{key: _file(key, local=True)
                                     for key in ("ca_file", "client_cert", "client_key")}}
_SCHEDULE_CHECKS: dict[str, Callable[[object], Any]] = {
    "every": _duration("every", maximum=366 * DAY),
    "timezone": _timezone,
    "jitter": _duration("jitter"),
    "enabled": _enabled,
    # cron is checked after timezone, which it depends on
}
BATCH_KEYS = frozenset(_BATCH_CHECKS)
JOB_KEYS = BATCH_KEYS | frozenset(_SCHEDULE_CHECKS) | {"cron"}


def _check(checks: Mapping[str, Callable[[object], Any]],
           values: Mapping[str, object]) -> tuple[dict[str, Any], list[KeyProblem]]:
    """Every key checked; the good values, and one problem per bad key."""
    checked: dict[str, Any] = {}
    problems: list[KeyProblem] = []
    for key, value in values.items():
        if key in checks:
            try:
                checked[key] = checks[key](value)
            except KeyProblem as exc:
                problems.append(exc)
    return checked, problems


def job_from_table(name: str, table: Mapping[str, Any], *, source: str,
                   local: bool = True) -> tuple[JobSpec | None, list[KeyProblem]]:
    """A job table (job-file keys) as a JobSpec, or None and every problem found.

    ``local`` also checks what depends on this machine (``ca_file`` exists).
    """
    problems = [KeyProblem(key, f"unknown key (allowed: {', '.join(sorted(JOB_KEYS))})")
                for key in sorted(set(table) - JOB_KEYS)]
    if "url" not in table:
        problems.append(KeyProblem("url", "is required"))
    batch, batch_problems = _check(_LOCAL_CHECKS if local else _BATCH_CHECKS, table)
    schedule, schedule_problems = _check(_SCHEDULE_CHECKS, table)
    problems += batch_problems + schedule_problems
    if "cron" in table:
        if "every" in table:
            problems.append(KeyProblem("cron", "a job has either every or cron, not both"))
        else:
            try:
                schedule["cron"] = _cron(table["cron"], schedule.get("timezone", "UTC"))
            except KeyProblem as exc:
                problems.append(exc)
    if "client_key" in table and "client_cert" not in table:
        problems.append(KeyProblem("client_key", "needs client_cert"))
    if problems:
        return None, problems
    return JobSpec(name=name, batch=BatchSpec(**batch), source=source, **schedule), []


# -- options ----------------------------------------------------------------------------------

_OPTIONS = {"queries": "--query", "fields": "--field", "headers": "--header",
            "timeout.total": "--total-timeout"}


def _option_error(problem: KeyProblem) -> ConfigError:
    key = problem.key
    base, dot, rest = key.partition(".")
    option = _OPTIONS.get(key) or _OPTIONS.get(re.sub(r"[.\[].*", "", key))
    if option is None:
        option = "--" + re.sub(r"[.\[].*", "", key).replace("_", "-")
    if dot and base in ("headers", "fields"):
        option += f" {show(rest)}"  # which header or field
    return ConfigError(f"{option}: {problem.problem}")


def batch_from_options(values: Mapping[str, Any]) -> BatchSpec:
    """Options given as job-file keys (None: not given) as a BatchSpec, checked as a job file.

    Raises ConfigError naming the first bad ``--option``.
    """
    table = {key: value for key, value in values.items() if value is not None}
    unknown = sorted(set(table) - BATCH_KEYS)
    assert not unknown, f"not batch keys: {unknown}"
    job = job_from_options("run-once", table)
    return job.batch


def job_from_options(name: str, values: Mapping[str, Any]) -> JobSpec:
    """A job defined by options (job-file keys; None: not given), source ``cli``."""
    if not is_job_name(name):
        raise ConfigError(f"job name {show(name)}: {NAME_RULE}")
    table = {key: value for key, value in values.items() if value is not None}
    if "url" not in table:
        raise ConfigError("--url is required")
    job, problems = job_from_table(name, table, source="cli")
    if problems:
        raise _option_error(problems[0])
    assert job is not None
    return job


# -- job files --------------------------------------------------------------------------------


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
        if Path(path).exists() and not Path(path).is_file() and not Path(path).is_dir():
            # A FIFO or a device would block or never end: only regular files are read.
            return [], [JobFileError(shown, "is not a regular file")]
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
    except RecursionError:
        return [], [JobFileError(shown, "is nested too deeply to be a job file")]
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
        if not is_job_name(name):
            errors.append(JobFileError(shown, NAME_RULE, job=name))
        elif not isinstance(table, dict):
            errors.append(JobFileError(shown, f"{show(table)} is not a table", job=name))
        else:
            job, problems = job_from_table(name, table, source=source)
            errors += [JobFileError(shown, p.problem, job=name, key=p.key) for p in problems]
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
            found, unreadable = _toml_files(path)
            errors += unreadable
            if not found and not unreadable:
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


def _toml_files(folder: Path) -> tuple[list[Path], list[JobFileError]]:
    """The ``*.toml`` files below ``folder``, and an error per folder that could not be read.

    A folder that cannot be read is a mistake, never "no jobs there": ``jobs
    apply --prune`` would otherwise remove the jobs that came from it.
    """
    import os

    errors: list[JobFileError] = []

    def unreadable(exc: OSError) -> None:
        errors.append(JobFileError(str(exc.filename or folder),
                                   f"cannot be read ({exc.strerror or exc})"))

    found = [Path(top) / name
             for top, _dirs, names in os.walk(folder, onerror=unreadable)
             for name in names if name.endswith(".toml")]
    return sorted(p for p in found if p.is_file()), errors


def select_job(path: str, jobs: list[JobSpec], name: str | None) -> JobSpec:
    """The job called ``name`` in a file, or its only job when ``name`` is None."""
    names = ", ".join(job.name for job in jobs)
    if name is None:
        if len(jobs) == 1:
            return jobs[0]
        raise ConfigError(f"{path} has {len(jobs)} jobs ({names}): choose one with --job")
    for job in jobs:
        if job.name == name:
            return job
    raise ConfigError(f'{path}: no job "{name}" (jobs in this file: {names})')
