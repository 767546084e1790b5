"""The job-file keys: one check per key, and a job table checked into a JobSpec.

Job files (:mod:`collector.jobfile`), command-line options and stored
definitions (:mod:`collector.definition`) all go through these checks, so a
value means the same and a mistake reads the same wherever it comes from.
Checks that depend on this machine (``ca_file`` must exist) are made only
with ``local``: a stored definition another host wrote is checked when its
batch runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from collector.errors import KeyProblem, LocalProblem
from collector.quantities import DAY, parse_duration, parse_size, show
from collector.schedule import cron_trigger, is_timezone
from collector.settings import without_password
from collector.spec import METHODS, BatchSpec, JobSpec, Timeouts

NAME_RULE = "a job name is 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit"
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
# ${VAR} from the environment, ${credential:NAME} from systemd's credentials.
REFERENCE = re.compile(r"\$\{(?:(credential):)?([A-Za-z_][A-Za-z0-9_.-]*)\}")


def has_reference(text: str) -> bool:
    return REFERENCE.search(text) is not None


def reference_problem(text: str) -> str | None:
    """Why a ``${`` in ``text`` does not start a reference (unterminated, a credential
    name with a path in it, a bad variable name), or None."""
    start = text.find("${")
    while start != -1:
        found = REFERENCE.match(text, start)
        if found is None:
            end = text.find("}", start)
            written = text[start:end + 1] if end != -1 else text[start:start + 40]
            return (f"{show(written)} is not a reference: write ${{VAR}} or "
                    "${credential:NAME} (a name of letters, digits, '_', '.', '-', no path); "
                    "a literal ${ is %24%7B in a URL")
        start = text.find("${", found.end())
    return None
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def is_job_name(name: str) -> bool:
    return bool(_JOB_NAME.match(name))


# -- one value each ---------------------------------------------------------------------------


def _url(value: object) -> str:
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        raise KeyProblem("url", f"{show(value)} is not a string")
    shown = show(without_password(value))  # a message never echoes a password
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
    if (problem := reference_problem(value)) is not None:
        raise KeyProblem("url", problem)
    if has_reference(parts.netloc):
        raise KeyProblem("url", f"{shown}: a ${{...}} reference may stand in the path or the "
                                "query, not in the host")
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        parse_url(value)  # what urllib3 will send to: a host it can use
    except LocationParseError as exc:
        detail = str(exc).removeprefix("Failed to parse: ")
        raise KeyProblem("url", f"{shown} is not a valid URL ({detail})") from None
    return parts.scheme + value[len(parts.scheme):]  # HTTP:// is http://


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
        if isinstance(item, str) and (problem := reference_problem(item)):
            raise KeyProblem(f"{key}.{name}", problem)
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


# Headers that say how the request is framed or where it goes: collector (urllib3) sets
# them from the URL, the method and the body; another value would contradict the request.
_OWN_HEADERS = frozenset({"content-length", "host", "transfer-encoding"})


def _headers(value: object) -> dict[str, str]:
    headers = _fields("headers", value)
    for name, item in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise KeyProblem("headers", f"{show(name)} is not a valid header name")
        if name.lower() in _OWN_HEADERS:
            raise KeyProblem(f"headers.{name}", "is set by collector from the URL, the method "
                                                "and the body; it cannot be given")
        if (problem := header_value_problem(item)) is not None:
            raise KeyProblem(f"headers.{name}", problem)
    return headers




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


def _file(key: str) -> Callable[[object], str]:
    """A file name (whether it is on this machine is :func:`machine_problems`' check)."""
    def check(value: object) -> str:
        if not isinstance(value, str) or not value:
            raise KeyProblem(key, f"{show(value)} is not a file name")
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
    if isinstance(password, str) and (problem := reference_problem(password)):
        raise KeyProblem("basic_auth.password", problem)
    if not isinstance(password, str) or not has_reference(password):
        raise KeyProblem("basic_auth.password", "must be a reference like ${PASSWORD} or "
                                                "${credential:NAME}: secrets are never written "
                                                "in job files or stored")
    return username, password


PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def _proxy(value: object) -> str:
    """A proxy URL (its password only by reference), or "env"."""
    from urllib.parse import urlsplit

    allowed = ('an http://, https://, socks5:// or socks5h:// URL like "http://proxy:3128", '
               'or "env"')
    if value == "env":
        return "env"
    if not isinstance(value, str):
        raise KeyProblem("proxy", f"{show(value)} is not {allowed}")
    if (problem := reference_problem(value)) is not None:
        raise KeyProblem("proxy", problem)
    shown = show(without_password(value))
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise KeyProblem("proxy", f"{shown} is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in PROXY_SCHEMES or not parts.hostname:
        raise KeyProblem("proxy", f"{shown} is not {allowed}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise KeyProblem("proxy", f"{shown}: a proxy URL is a scheme, a host and a port, "
                                  "nothing after them")
    if has_reference(parts.hostname) or port is None and "${" in parts.netloc.rpartition("@")[2]:
        raise KeyProblem("proxy", f"{shown}: a ${{...}} reference may stand for the user "
                                  "name or password, not the host or port")
    if parts.password is not None and not has_reference(parts.password):
        raise KeyProblem("proxy", "has a password in it: write it as a reference like "
                                  "http://user:${PROXY_PASSWORD}@proxy:3128 or "
                                  "${credential:NAME}: secrets are never written in job files "
                                  "or stored")
    return parts.scheme.lower() + value[len(parts.scheme):]


def _checks(value: object) -> tuple[Any, ...]:
    from collector.checks import parse_checks  # here: its JMESPath only for jobs with checks

    return parse_checks(value)


def _captures(value: object) -> tuple[Any, ...]:
    from collector.captures import parse_captures  # as checks: JMESPath only when used

    return parse_captures(value)


def _keep_bodies(value: object) -> bool | str:
    if isinstance(value, bool):
        return value
    if value == "changed":
        return "changed"
    raise KeyProblem("keep_bodies", f'{show(value)} is not true, false or "changed"')


def _max_kept_body(value: object) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise KeyProblem("max_kept_body", str(exc)) from None


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
        trigger = cron_trigger(value, timezone)
    except ValueError as exc:
        raise KeyProblem("cron", f'{show(value)} is not a crontab line like "*/5 * * * *" '
                                 f"({exc})") from None
    from datetime import UTC, datetime

    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise KeyProblem("cron", f"{show(value)} never fires (no such day, like 30 February)")
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
    "ca_file": _file("ca_file"),
    "client_cert": _file("client_cert"),
    "client_key": _file("client_key"),
    "verify": _flag("verify"),
    "follow_redirects": _flag("follow_redirects"),
    "basic_auth": _basic_auth,
    "redact": _redact,
    "proxy": _proxy,
    "checks": _checks,
    "captures": _captures,
    "keep_bodies": _keep_bodies,
    "max_kept_body": _max_kept_body,
    "conditional": _flag("conditional"),
    "retry_statuses": _retry_statuses,
    "retry_after_max": _duration("retry_after_max", maximum=3600.0),
}
_LOCAL_FILES = ("ca_file", "client_cert", "client_key")
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

    ``local`` also checks what depends on this machine (``ca_file`` exists):
    a job with only such problems is returned with them (see :func:`machine_problems`).
    """
    problems = [KeyProblem(key, f"unknown key (allowed: {', '.join(sorted(JOB_KEYS))})")
                for key in sorted(set(table) - JOB_KEYS)]
    if "url" not in table:
        problems.append(KeyProblem("url", "is required"))
    batch, batch_problems = _check(_BATCH_CHECKS, table)
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
    job = JobSpec(name=name, batch=BatchSpec(**batch), source=source, **schedule)
    return job, machine_problems(job.batch) if local else []


def machine_problems(batch: BatchSpec) -> list[KeyProblem]:
    """What keeps ``batch`` from running on this machine: a ``ca_file``, ``client_cert`` or
    ``client_key`` that is not a readable file here. Each is :class:`LocalProblem`."""
    problems: list[KeyProblem] = []
    for key in _LOCAL_FILES:
        path = getattr(batch, key)
        if path is not None and not os.path.isfile(path):  # False, never an error
            problems.append(LocalProblem(key, f"{show(path)} is not a readable file"))
    return problems
