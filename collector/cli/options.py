"""Options shared by several commands."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated
from urllib.parse import parse_qsl

import typer

from collector.config import resolve_database_url
from collector.errors import ConfigError

if TYPE_CHECKING:
    from collector.store import Store

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
    "--format", "-f", help="table for people, json or csv for programs and spreadsheets.")]


UrlOption = Annotated[str | None, typer.Option(
    metavar="URL", help="The http:// or https:// URL every query is sent to.")]
QueryOption = Annotated[list[str] | None, typer.Option(
    "--query", "-q", metavar="QUERY",
    help="One request's fields, form-encoded: 'q=python&v=1.0'. Repeat for each request.")]
MethodOption = Annotated[str, typer.Option(
    metavar="METHOD", help="GET, HEAD or POST (fields as a form body).")]
PoolSizeOption = Annotated[int, typer.Option(
    metavar="N", help="Connections the batch's one pool may hold (urllib3 maxsize).")]
ConcurrencyOption = Annotated[int, typer.Option(
    metavar="N", help="Threads sending requests through the one pool.")]
TimeoutOption = Annotated[float, typer.Option(
    metavar="SECONDS", help="Connect and read timeout, each.")]
RetriesOption = Annotated[int, typer.Option(
    metavar="N", help="Retries after a connection or read error (statuses are never retried).")]
HeaderOption = Annotated[list[str] | None, typer.Option(
    "--header", "-H", metavar="'NAME: VALUE'", help="A request header. Repeatable.")]
CaFileOption = Annotated[str | None, typer.Option(
    metavar="PEM", help="CA certificates to trust for https://, instead of the system's.")]


def parse_query(text: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise ConfigError(f"--query: {text!r} is not name=value pairs joined by & "
                          "(like 'q=python&v=1.0')") from None
    return dict(pairs)


def parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"--header: {line!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def open_db(db: str | None, *, ensure_schema: bool = True) -> Store:
    """The store for ``--db`` (else the environment's or the default database)."""
    from collector.store import open_store

    return open_store(resolve_database_url(db), ensure_schema=ensure_schema)
