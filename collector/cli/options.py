"""Options shared by several commands, and turning option text into job-file values.

Every duration option takes the job file's durations (``250ms``, ``5s``,
``1m``; a bare number is seconds) and every size option its sizes; the values
are checked by the same code as a job file (:mod:`collector.jobfile`), so the
messages are the same, naming the option.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_type_hints
from urllib.parse import parse_qsl

import typer

from collector.errors import ConfigError
from collector.quantities import show
from collector.settings import resolve_database_url

if TYPE_CHECKING:
    from collector.store import Store

def whole(name: str, minimum: int | None = None,
          maximum: int | None = None) -> Callable[[str], int]:
    """A parser for an integer option or argument, with collector's messages (typer's own
    would come from pydantic); the range is checked when given."""
    def parse(text: str | int) -> int:
        if isinstance(text, int):  # a default
            return text
        try:
            value = int(text.strip())
        except ValueError:
            raise ConfigError(f"{name}: {show(text)} is not a whole number") from None
        if (minimum is not None and value < minimum) or (maximum is not None and
                                                         value > maximum):
            raise ConfigError(f"{name}: {value} must be between {minimum} and {maximum}")
        return value

    return parse


_Choice = TypeVar("_Choice", bound=StrEnum)


def one_of(name: str, choices: type[_Choice]) -> Callable[[str], _Choice]:
    """A parser for an option that takes one of ``choices``, with collector's message."""
    def parse(text: str | _Choice) -> _Choice:
        if isinstance(text, choices):  # a default
            return text
        try:
            return choices(str(text).strip().lower())
        except ValueError:
            allowed = ", ".join(c.value for c in choices)
            raise ConfigError(f"{name}: {show(text)} is not one of {allowed}") from None

    return parse


DbOption = Annotated[str | None, typer.Option(
    "--db", metavar="URL",
    help="Database: a SQLite file path, sqlite:///PATH or postgresql://USER@HOST/DB. "
         "Default: $COLLECTOR_DATABASE_URL, else ~/.local/share/collector/collector.db.",
    show_default=False,
)]


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


FormatOption = Annotated[Format, typer.Option(
    "--format", "-f", parser=one_of("--format", Format), metavar="table|json|csv",
    help="table for people, json or csv for programs and spreadsheets.")]

# The batch's options: None means "not given", so a job file's default applies.
UrlOption = Annotated[str | None, typer.Option(
    metavar="URL", help="The http:// or https:// URL every query is sent to.")]
QueryOption = Annotated[list[str] | None, typer.Option(
    "--query", "-q", metavar="QUERY",
    help="One request's fields, form-encoded: 'q=python&v=1.0'. Repeat for each request.")]
FieldOption = Annotated[list[str] | None, typer.Option(
    "--field", metavar="NAME=VALUE",
    help="A field sent with every query (a query's own value wins). Repeatable.")]
MethodOption = Annotated[str | None, typer.Option(
    metavar="METHOD", help="GET (default), HEAD, or POST (fields as a form body).",
    show_default=False)]
PoolSizeOption = Annotated[int | None, typer.Option(
    metavar="N", parser=whole("--pool-size"),
    help="Connections the batch's one pool may hold (urllib3 maxsize; default 1).",
    show_default=False)]
ConcurrencyOption = Annotated[int | None, typer.Option(
    metavar="N", parser=whole("--concurrency"),
    help="Threads sending requests through the one pool (default 1).",
    show_default=False)]
TimeoutOption = Annotated[str | None, typer.Option(
    metavar="DURATION",
    help="Connect and read timeout, each: 250ms, 5s, 1m or seconds (default 10s).",
    show_default=False)]
TotalTimeoutOption = Annotated[str | None, typer.Option(
    "--total-timeout", metavar="DURATION",
    help="Time allowed for a whole request, body included (default: none).",
    show_default=False)]
RetriesOption = Annotated[int | None, typer.Option(
    metavar="N", parser=whole("--retries"),
    help="Retries after a connection or read error (statuses are never retried; "
                      "default 0).", show_default=False)]
HeaderOption = Annotated[list[str] | None, typer.Option(
    "--header", "-H", metavar="'NAME: VALUE'", help="A request header. Repeatable.")]
CaFileOption = Annotated[str | None, typer.Option(
    metavar="PEM", help="CA certificates to trust for https://, instead of the system's.")]
ProxyOption = Annotated[str | None, typer.Option(
    metavar="URL", help="Send through this proxy: http://, https://, socks5:// or socks5h:// "
                        "(a password only as ${VAR}), or 'env' for $https_proxy/$http_proxy "
                        "(default: direct, whatever the environment says).")]
MaxBodyOption = Annotated[str | None, typer.Option(
    metavar="SIZE", help="The largest body to read: bytes, or 512KiB, 10MB (default 10MiB).",
    show_default=False)]


def parse_fields(text: str, option: str) -> dict[str, str]:
    """``q=python&v=1.0`` as a dict; ConfigError naming ``option``."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise ConfigError(f"{option}: {show(text)} is not name=value pairs joined by & "
                          "(like 'q=python&v=1.0')") from None
    return dict(pairs)


def parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"--header: {show(line)} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """The batch's options as given (None: not given, so a job file's default applies);
    declared once, for every command that takes them (:func:`batch_options`)."""

    # Each field's annotation is its option too: batch_options gives commands these.
    url: UrlOption = None
    query: QueryOption = None
    field: FieldOption = None
    method: MethodOption = None
    pool_size: PoolSizeOption = None
    concurrency: ConcurrencyOption = None
    timeout: TimeoutOption = None
    total_timeout: TotalTimeoutOption = None
    retries: RetriesOption = None
    header: HeaderOption = None
    ca_file: CaFileOption = None
    max_body: MaxBodyOption = None
    proxy: ProxyOption = None

    def given(self) -> list[str]:
        """The options given, as they are written: ``--pool-size``."""
        return ["--" + f.name.replace("_", "-") for f in fields(self)
                if getattr(self, f.name) is not None]

    def values(self) -> dict[str, Any]:
        """The options as job-file keys; a key is None when its option was not given."""
        common: dict[str, str] | None = None
        if self.field:
            common = {}
            for item in self.field:
                common.update(parse_fields(item, "--field"))
        timeouts: object = self.timeout
        if self.total_timeout is not None:
            timeouts = {"total": self.total_timeout}
            if self.timeout is not None:
                timeouts = {"connect": self.timeout, "read": self.timeout,
                            "total": self.total_timeout}
        return {
            "url": self.url,
            "queries": [parse_fields(q, "--query") for q in self.query] if self.query else None,
            "fields": common, "method": self.method, "pool_size": self.pool_size,
            "concurrency": self.concurrency, "timeout": timeouts, "retries": self.retries,
            "headers": parse_headers(self.header) if self.header else None,
            "ca_file": self.ca_file, "max_body": self.max_body, "proxy": self.proxy,
        }


_BATCH_OPTIONS: dict[str, Any] = get_type_hints(BatchOptions, include_extras=True)

_Command = TypeVar("_Command", bound=Callable[..., None])


def batch_options(command: _Command) -> _Command:
    """Give ``command`` the batch's options, in place of its ``batch: BatchOptions``
    parameter (as sqlite-utils' ``insert_upsert_options`` does for its commands)."""
    signature = inspect.signature(command, eval_str=True)
    keyword = inspect.Parameter.KEYWORD_ONLY  # click passes every value by name
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        if parameter.name != "batch":
            parameters.append(parameter.replace(kind=keyword))
            continue
        parameters += [inspect.Parameter(name, keyword, default=None, annotation=annotation)
                       for name, annotation in _BATCH_OPTIONS.items()]

    @functools.wraps(command)
    def with_batch(**given: Any) -> None:
        batch = BatchOptions(**{name: given.pop(name) for name in _BATCH_OPTIONS})
        command(batch=batch, **given)

    with_batch.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_batch.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_batch  # type: ignore[return-value]


def open_db(db: str | None, *, ensure_schema: bool = True, create: bool = True) -> Store:
    """The store for ``--db`` (else the environment's or the default database).

    Commands that only read pass ``create=False``: a mistyped path is an error,
    never a new empty database.
    """
    from collector.store import open_store

    return open_store(database_url(db), ensure_schema=ensure_schema, create=create)


def database_url(db: str | None) -> str:
    """``--db`` as a SQLAlchemy URL; ConfigError for ``file:`` and other near-URLs."""
    import re

    url = resolve_database_url(db)
    given = (db or "").strip()
    if given and "://" not in given and re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", given):
        raise ConfigError(f"--db: {show(given)} looks like a URL but is not one: give a file "
                          "path, sqlite:///PATH or postgresql://USER@HOST/DB")
    return url
