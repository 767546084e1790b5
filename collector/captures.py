"""What values a job keeps from each response: its ``captures``, a table of name to one
expression, stored as rows of the ``captures`` table.

- ``{ json = "EXPRESSION" }``: a JMESPath expression on the body as JSON;
- ``{ regex = "(GROUP)" }``: the first group of the first match in the body as text;
- ``{ header = "Name" }``: a response header (repeated ones joined by ", ").

A capture that finds nothing gives no row. A value is kept as text (a JSON string as
itself, any other JSON value as JSON), shortened to :data:`VALUE_MAX` characters with the
cut marked, and as a number too when it is one (a JSON number, or text that is a
decimal number), so SQL can chart it. Parsed once from the job file
(:func:`parse_captures`: a mistake names the file, the job and the key) and compiled
once a batch (:class:`Captures`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collector.checks import NAME, NOT_JSON, Body, jmespath_expression, regex
from collector.errors import KeyProblem
from collector.quantities import show
from collector.results import CaptureResult, shortened

KINDS = ("json", "regex", "header")
VALUE_MAX = 1000  # characters of a captured value that are kept
_DECIMAL = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*\Z")


@dataclass(frozen=True, kw_only=True)
class Capture:
    """One capture as the job file wrote it: its name, its kind and its expression."""

    name: str
    kind: str  # one of KINDS
    expression: str

    @property
    def needs_body(self) -> bool:
        return self.kind != "header"


def parse_captures(value: object) -> tuple[Capture, ...]:
    """The ``captures`` key: a table of name to { json | regex | header = "..." }."""
    if not isinstance(value, Mapping) or not value:
        raise KeyProblem("captures", f'{show(value)} is not a table like '
                                     '{ price = { json = "data.price" } }')
    found = []
    for name, table in value.items():
        key = f"captures.{name}"
        if not NAME.match(name):
            raise KeyProblem(key, f"{show(name)} is not a capture name (1-100 letters, "
                                  "digits, '_', '.' or '-', starting with a letter or digit)")
        if not isinstance(table, Mapping) or len(table) != 1 or next(iter(table)) not in KINDS:
            raise KeyProblem(key, f"{show(table)} is not one of {{ json = \"EXPRESSION\" }}, "
                                  '{ regex = "(GROUP)" }, { header = "Name" }')
        ((kind, expression),) = table.items()
        capture = Capture(name=name, kind=kind, expression=expression)
        _compile(f"{key}.{kind}", capture)  # every mistake now, not when a batch runs
        found.append(capture)
    return tuple(found)


Find = Callable[[Mapping[str, str], Body], Any]  # None: nothing found


def _compile(key: str, capture: Capture) -> Find:
    expression = capture.expression
    if capture.kind == "header":
        if not isinstance(expression, str) or not expression:
            raise KeyProblem(key, f"{show(expression)} is not a header name")

        def header(headers: Mapping[str, str], body: Body) -> Any:
            return headers.get(expression)
        return header
    if capture.kind == "regex":
        pattern = regex(key, expression)
        if pattern.groups < 1:
            raise KeyProblem(key, f"{show(expression)} has no group: write the part to keep "
                                  'in parentheses, like "price: (\\\\d+)"')

        def first_group(headers: Mapping[str, str], body: Body) -> Any:
            found = pattern.search(body.text())
            return None if found is None else found.group(1)
        return first_group
    compiled = jmespath_expression(key, expression)

    def json_value(headers: Mapping[str, str], body: Body) -> Any:
        document = body.json()
        return None if document is NOT_JSON else compiled.search(document)
    return json_value


class Captures:
    """A batch's captures, compiled once; applied to each response by :meth:`apply`."""

    def __init__(self, captures: tuple[Capture, ...]) -> None:
        self._finds = [(c.name, c.needs_body, _compile("captures", c)) for c in captures]
        self.needs_body = any(c.needs_body for c in captures)

    def apply(self, headers: Mapping[str, str], body: Body, *,
              without_body: bool = False) -> tuple[CaptureResult, ...]:
        """The values found in one response, in the job's order; ``without_body``: a 304
        that confirmed the content (the body's values are the 200's it stands for)."""
        results = []
        for name, needs_body, find in self._finds:
            if without_body and needs_body:
                continue
            found = find(headers, body)
            if found is None:
                continue
            results.append(_result(name, found))
        return tuple(results)


def _result(name: str, found: Any) -> CaptureResult:
    number: float | None = None
    if isinstance(found, str):
        text = found
        if _DECIMAL.match(found):
            number = float(found)
    elif isinstance(found, bool):
        text = "true" if found else "false"
    elif isinstance(found, int | float):
        text, number = json.dumps(found), float(found)
    else:
        text = json.dumps(found, ensure_ascii=False)
    if number is not None and not math.isfinite(number):
        number = None  # 1e999: not a number any database holds
    return CaptureResult(name=name, value=shortened(text, VALUE_MAX), number=number)
