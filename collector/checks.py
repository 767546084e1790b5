"""What a job says a right answer is: its ``checks``, each a name and one test.

A check is parsed once from its job-file table (:func:`parse_check`, which compiles
its regular expression or JMESPath expression, so a mistake is the job file's, with
the file, the job and the key) and kept as written (:class:`Check`). A batch compiles
its checks once (:class:`Checks`) and applies them to every request that got a
response, in the sending thread, right after its body was read; each gives a
:class:`~collector.results.CheckResult`: passed or not, and what it looked at.

Tests (one per check):

- ``status = [200, 204]`` or ``status = "2xx"``;
- ``header = "Content-Type", matches = "json"`` (a regular expression, searched);
- ``body_matches = "regex"``: the body as read, up to ``max_body``, as text;
- ``json = "EXPRESSION"`` (JMESPath) with one of ``equals``, ``below``, ``above``,
  ``matches``, ``exists = true|false``;
- ``elapsed_below = "500ms"``;
- ``cert_expires_after = "14d"``: the certificate of the connection it went over.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collector.errors import KeyProblem
from collector.quantities import DAY, parse_duration, show
from collector.results import CheckResult, shortened

TESTS = ("status", "header", "body_matches", "json", "elapsed_below", "cert_expires_after")
COMPARISONS = ("equals", "below", "above", "matches", "exists")
BODY_TESTS = frozenset({"body_matches", "json"})
OBSERVED_MAX = 200  # characters of what a check looked at that are kept
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")


@dataclass(frozen=True, kw_only=True)
class Check:
    """One check as the job file wrote it (``table``: its keys, checked), by ``name``."""

    name: str
    test: str  # one of TESTS
    table: Mapping[str, Any]

    @property
    def needs_body(self) -> bool:
        return self.test in BODY_TESTS


def parse_checks(value: object) -> tuple[Check, ...]:
    """The ``checks`` key: a list of tables, names unique; KeyProblem for a mistake."""
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise KeyProblem("checks", f"{show(value)} is not a list of tables like "
                                   '[ { name = "ok", status = "2xx" } ]')
    checks = tuple(parse_check(f"checks[{i}]", table) for i, table in enumerate(value))
    seen: set[str] = set()
    for i, check in enumerate(checks):
        if check.name in seen:
            raise KeyProblem(f"checks[{i}].name", f"{show(check.name)} is the name of an "
                                                  "earlier check: each name once")
        seen.add(check.name)
    return checks


def parse_check(key: str, table: Mapping[str, Any]) -> Check:
    name = table.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise KeyProblem(f"{key}.name", f"{show(name)} is not a check name (1-100 letters, "
                                        "digits, '_', '.' or '-', starting with a letter or "
                                        "digit)")
    tests = [t for t in TESTS if t in table]
    if len(tests) != 1:
        raise KeyProblem(key, f"a check has one test, one of {', '.join(TESTS)} "
                              f"({'none' if not tests else ', '.join(tests)} given)")
    test = tests[0]
    allowed = {"name", test} | ({"matches"} if test == "header" else set()) | (
        set(COMPARISONS) if test == "json" else set())
    for extra in sorted(set(table) - allowed):
        raise KeyProblem(f"{key}.{extra}", f"unknown key for a {test} check (allowed: "
                                           f"{', '.join(sorted(allowed))})")
    _compile(key, test, table)  # every mistake now, not when a batch runs
    return Check(name=name, test=test, table=dict(table))


def regex(key: str, value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise KeyProblem(key, f"{show(value)} is not a regular expression (a string)")
    try:
        return re.compile(value)
    except re.error as exc:
        raise KeyProblem(key, f"{show(value)} is not a regular expression ({exc})") from None


Test = Callable[[int, Mapping[str, str], "Body", float, datetime | None],
                tuple[bool, str | None]]


def _compile(key: str, test: str, table: Mapping[str, Any]) -> Test:
    """The check as a function of (status, headers, body, elapsed ms, certificate expiry)
    to (passed, what it looked at)."""
    value = table[test]
    if test == "status":
        return _status_test(f"{key}.status", value)
    if test == "header":
        if not isinstance(value, str) or not value:
            raise KeyProblem(f"{key}.header", f"{show(value)} is not a header name")
        if "matches" not in table:
            raise KeyProblem(f"{key}.matches", "a header check needs matches = \"REGEX\"")
        pattern = regex(f"{key}.matches", table["matches"])

        def header(status: int, headers: Mapping[str, str], body: Body, elapsed: float,
                   expiry: datetime | None) -> tuple[bool, str | None]:
            found = headers.get(value)
            return found is not None and pattern.search(found) is not None, found
        return header
    if test == "body_matches":
        pattern = regex(f"{key}.body_matches", value)

        def body_matches(status: int, headers: Mapping[str, str], body: Body,
                         elapsed: float, expiry: datetime | None) -> tuple[bool, str | None]:
            found = pattern.search(body.text())
            return found is not None, None if found is None else found.group(0)
        return body_matches
    if test == "json":
        return _json_test(key, value, table)
    if test == "elapsed_below":
        bound = _seconds(f"{key}.elapsed_below", value) * 1000

        def elapsed_below(status: int, headers: Mapping[str, str], body: Body,
                          elapsed: float, expiry: datetime | None) -> tuple[bool, str | None]:
            return elapsed < bound, f"{elapsed:g} ms"
        return elapsed_below
    bound = _seconds(f"{key}.cert_expires_after", value, maximum=3650 * DAY)

    def cert_expires_after(status: int, headers: Mapping[str, str], body: Body,
                           elapsed: float, expiry: datetime | None) -> tuple[bool, str | None]:
        if expiry is None:
            return False, None  # no certificate: plain HTTP, or none could be read
        left = (expiry - datetime.now(UTC)).total_seconds()
        return left > bound, expiry.isoformat()
    return cert_expires_after


def _seconds(key: str, value: object, maximum: float = DAY) -> float:
    try:
        return parse_duration(value, maximum=maximum)
    except ValueError as exc:
        raise KeyProblem(key, str(exc)) from None


def _status_test(key: str, value: object) -> Test:
    if isinstance(value, str) and re.fullmatch(r"[1-5]xx", value):
        klass = int(value[0])

        def in_class(status: int, headers: Mapping[str, str], body: Body, elapsed: float,
                     expiry: datetime | None) -> tuple[bool, str | None]:
            return status // 100 == klass, str(status)
        return in_class
    if (isinstance(value, list) and value and all(
            isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in value)):
        wanted = frozenset(value)

        def in_set(status: int, headers: Mapping[str, str], body: Body, elapsed: float,
                   expiry: datetime | None) -> tuple[bool, str | None]:
            return status in wanted, str(status)
        return in_set
    raise KeyProblem(key, f'{show(value)} is not a list of statuses like [ 200, 204 ] or a '
                          'class like "2xx"')


def jmespath_expression(key: str, value: object) -> Any:
    """``value`` compiled as a JMESPath expression; KeyProblem naming ``key`` if it is not."""
    import jmespath  # here: only for jobs that use one
    from jmespath.exceptions import JMESPathError

    if not isinstance(value, str):
        raise KeyProblem(key, f"{show(value)} is not a JMESPath expression")
    try:
        return jmespath.compile(value)
    except JMESPathError as exc:
        detail = " ".join(str(exc).split())
        raise KeyProblem(key, f"{show(value)} is not a JMESPath expression "
                              f"({detail})") from None


def _json_test(key: str, value: object, table: Mapping[str, Any]) -> Test:
    expression = jmespath_expression(f"{key}.json", value)
    given = [c for c in COMPARISONS if c in table]
    if len(given) != 1:
        raise KeyProblem(key, f"a json check has one of {', '.join(COMPARISONS)} "
                              f"({'none' if not given else ', '.join(given)} given)")
    comparison, expected = given[0], table[given[0]]
    compare: Callable[[Any], bool]
    if comparison == "equals":
        def compare(found: Any) -> bool:
            if isinstance(found, bool) or isinstance(expected, bool):
                return found is expected  # true is not 1, as in JSON
            return bool(found == expected)
    elif comparison in ("below", "above"):
        if not _number(expected):
            raise KeyProblem(f"{key}.{comparison}", f"{show(expected)} is not a number")
        if comparison == "below":
            def compare(found: Any) -> bool:
                return _number(found) and found < expected
        else:
            def compare(found: Any) -> bool:
                return _number(found) and found > expected
    elif comparison == "matches":
        pattern = regex(f"{key}.matches", expected)

        def compare(found: Any) -> bool:
            return isinstance(found, str) and pattern.search(found) is not None
    else:
        if not isinstance(expected, bool):
            raise KeyProblem(f"{key}.exists", f"{show(expected)} is not true or false")

        def compare(found: Any) -> bool:
            return (found is not None) == expected

    def json_value(status: int, headers: Mapping[str, str], body: Body, elapsed: float,
                   expiry: datetime | None) -> tuple[bool, str | None]:
        document = body.json()
        if document is NOT_JSON:
            return False, "(the body is not JSON)"
        found = expression.search(document)
        if found is None:
            return compare(found), None
        if type(found) is int or type(found) is float:  # noqa: E721 - exactly, not bool
            return compare(found), repr(found)
        return compare(found), json.dumps(found, ensure_ascii=False)
    return json_value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


NOT_JSON = object()


_CHARSET = re.compile(r"charset=\"?([\w.:-]+)", re.I)


class Body:
    """A response's body as checks and captures read it: decoded (gzip or deflate, when the
    server said so), as text and as JSON, each made once, when first asked for."""

    __slots__ = ("_data", "_content_type", "_headers", "_text", "_json")

    def __init__(self, data: bytes, content_type: str | None,
                 headers: Mapping[str, str] | None = None) -> None:
        self._data = data
        self._content_type = content_type
        self._headers = headers  # for its Content-Encoding, looked up when read
        self._text: str | None = None
        self._json: Any = None

    def text(self) -> str:
        if self._text is None:
            data = self._data
            if data and self._headers is not None:
                data = _decoded(data, self._headers.get("Content-Encoding"))
            found = _CHARSET.search(self._content_type or "")
            try:
                self._text = data.decode(found.group(1) if found else "utf-8",
                                         errors="replace")
            except LookupError:  # a charset Python does not know
                self._text = data.decode("utf-8", errors="replace")
        return self._text

    def json(self) -> Any:
        if self._json is None:
            try:
                self._json = json.loads(self.text())
            except ValueError:
                self._json = NOT_JSON
        return self._json


def _decoded(data: bytes, encoding: str | None) -> bytes:
    """The body less its Content-Encoding, for gzip and deflate (a job that asks for them
    with Accept-Encoding); any other encoding, or a broken one, is read as it came."""
    if not encoding or not data:
        return data
    import zlib

    name = encoding.strip().lower()
    try:
        if name in ("gzip", "x-gzip"):
            return zlib.decompress(data, 16 + zlib.MAX_WBITS)
        if name == "deflate":
            try:
                return zlib.decompress(data)
            except zlib.error:  # deflate without its zlib header, as some servers send it
                return zlib.decompress(data, -zlib.MAX_WBITS)
    except zlib.error:
        return data
    return data


class Checks:
    """A batch's checks, compiled once; applied to each response by :meth:`apply`."""

    def __init__(self, checks: tuple[Check, ...]) -> None:
        self._tests = [(c.name, _compile("checks", c.test, c.table)) for c in checks]
        self._body_free = [(c.name, test) for c, (_, test) in zip(checks, self._tests,
                                                                   strict=True)
                           if not c.needs_body]
        self.needs_body = any(c.needs_body for c in checks)
        self.needs_expiry = any(c.test == "cert_expires_after" for c in checks)

    def apply(self, *, status: int, headers: Mapping[str, str], body: Body,
              elapsed_ms: float, cert_expiry: datetime | None,
              without_body: bool = False) -> tuple[CheckResult, ...]:
        """Each check's result on one response; ``without_body``: a 304 that confirmed the
        content, whose checks that read the body were made on the 200 it stands for."""
        results = []
        for name, test in self._body_free if without_body else self._tests:
            passed, observed = test(status, headers, body, elapsed_ms, cert_expiry)
            if observed is not None:
                observed = shortened(observed, OBSERVED_MAX)
            results.append(CheckResult(name=name, passed=passed, observed=observed))
        return tuple(results)

