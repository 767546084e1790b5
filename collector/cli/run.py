"""``collector run-once`` and ``collector demo``: run a batch now, store it, show it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl

import typer

from collector.cli.options import DbOption
from collector.cli.render import batch_table
from collector.config import (
    DEFAULT_TIMEOUT,
    BatchSpec,
    batch_from_options,
    expand_environment,
    load_job_file,
    resolve_database_url,
    select_job,
)
from collector.errors import CollectorError, ConfigError, StoreError
from collector.results import BatchResult

EXIT_REQUEST_FAILED = 3

JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print one JSON object instead of a table.")]
_File = Annotated[str | None, typer.Argument(
    metavar="[FILE.toml]", show_default=False,
    help="A job file to run a job from (instead of --url).")]
_Job = Annotated[str | None, typer.Option(
    metavar="NAME", help="The job to run when FILE.toml holds more than one.")]
_Url = Annotated[str | None, typer.Option(
    metavar="URL", help="The http:// or https:// URL every query is sent to.")]
_Query = Annotated[list[str] | None, typer.Option(
    "--query", "-q", metavar="QUERY",
    help="One request's fields, form-encoded: 'q=python&v=1.0'. Repeat for each request.")]
_Method = Annotated[str, typer.Option(
    metavar="METHOD", help="GET, HEAD or POST (fields as a form body).")]
_PoolSize = Annotated[int, typer.Option(
    metavar="N", help="Connections the batch's one pool may hold (urllib3 maxsize).")]
_Concurrency = Annotated[int, typer.Option(
    metavar="N", help="Threads sending requests through the one pool.")]
_Timeout = Annotated[float, typer.Option(
    metavar="SECONDS", help="Connect and read timeout, each.")]
_Retries = Annotated[int, typer.Option(
    metavar="N", help="Retries after a connection or read error (statuses are never retried).")]
_Header = Annotated[list[str] | None, typer.Option(
    "--header", "-H", metavar="'NAME: VALUE'", help="A request header. Repeatable.")]
_CaFile = Annotated[str | None, typer.Option(
    metavar="PEM", help="CA certificates to trust for https://, instead of the system's.")]
_Name = Annotated[str, typer.Option(
    metavar="NAME", help="The job name a --url batch is stored under.")]
_NoStore = Annotated[bool, typer.Option(
    "--no-store", help="Run and print, but do not write to the database.")]
_FailOnError = Annotated[bool, typer.Option(
    "--fail-on-error", help="Exit 3 when a request got no response or a status >= 400.")]


def run_once(
    target: _File = None,
    job: _Job = None,
    url: _Url = None,
    query: _Query = None,
    method: _Method = "GET",
    pool_size: _PoolSize = 1,
    concurrency: _Concurrency = 1,
    timeout: _Timeout = DEFAULT_TIMEOUT,
    retries: _Retries = 0,
    header: _Header = None,
    ca_file: _CaFile = None,
    name: _Name = "run-once",
    db: DbOption = None,
    as_json: JsonOption = False,
    no_store: _NoStore = False,
    fail_on_error: _FailOnError = False,
) -> None:
    """Run one batch now through one connection pool, store it and print it.

    Either a job file (FILE.toml [--job NAME]) or --url with --query options:

    \b
      collector run-once jobs/search.toml
      collector run-once --url http://127.0.0.1:8080/search \\
          -q 'q=python&v=1.0' -q 'q=php&v=1.0'
    """
    if target is not None:
        given = [option for option, value in (
            ("--url", url), ("--query", query), ("--header", header), ("--ca-file", ca_file),
        ) if value]
        if given:
            raise ConfigError(f"{given[0]} cannot be combined with a job file; "
                              "put it in the file instead")
        name, spec = _job_from_file(target, job)
    elif url is None:
        raise ConfigError("give a job file or --url (see collector run-once --help)")
    else:
        if job is not None:
            raise ConfigError("--job needs a job file")
        spec = batch_from_options(
            url=url, method=method, queries=[_parse_query(q) for q in query or []],
            headers=_parse_headers(header or []), pool_size=pool_size, concurrency=concurrency,
            timeout=timeout, retries=retries, ca_file=ca_file,
        )
    _run_and_report(spec, job_name=name, db=db, no_store=no_store, as_json=as_json,
                    fail_on_error=fail_on_error)


def demo(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Run the example's batch against a local stand-in server (works offline).

    Starts a server on 127.0.0.1 that answers like the example's search
    endpoint, sends q=python and q=php (with v=1.0) through one pool of size 1,
    stores the batch and prints it: two 200s, one connection, two requests.
    """
    from collector.demo import demo_batch, serve_demo

    with serve_demo() as url:
        _run_and_report(demo_batch(url), job_name="demo", db=db, no_store=False,
                        as_json=as_json, fail_on_error=False)


def _job_from_file(target: str, job: str | None) -> tuple[str, BatchSpec]:
    if not Path(target).is_file():
        raise ConfigError(f"{target}: no such job file")
    jobs = load_job_file(target)
    chosen = select_job(target, jobs, job)
    where = f'{target}: job "{chosen.name}"'
    return chosen.name, expand_environment(chosen.batch, os.environ, where=where)


def _parse_query(text: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise ConfigError(f"--query: {text!r} is not name=value pairs joined by & "
                          "(like 'q=python&v=1.0')") from None
    return dict(pairs)


def _parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"--header: {line!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def _run_and_report(spec: BatchSpec, *, job_name: str, db: str | None, no_store: bool,
                    as_json: bool, fail_on_error: bool) -> None:
    from collector.runner import run_batch
    from collector.store import open_store

    store = None if no_store else open_store(resolve_database_url(db))  # fail before running
    try:
        result = run_batch(spec)
        batch_id: int | None = None
        store_error: StoreError | None = None
        if store is not None:
            try:
                batch_id = store.save_batch(result, job_name=job_name)
            except StoreError as exc:
                store_error = exc
        _print(result, job_name=job_name, batch_id=batch_id, as_json=as_json,
               where=None if store is None else store.url)
    finally:
        if store is not None:
            store.close()
    if store_error is not None:
        raise _NotStored(store_error)
    if fail_on_error and (bad := _bad_requests(result)):
        typer.echo(f"collector: {bad} of {len(result.requests)} requests failed or got a "
                   "status >= 400", err=True)
        raise typer.Exit(EXIT_REQUEST_FAILED)


class _NotStored(CollectorError):
    def __init__(self, cause: StoreError) -> None:
        super().__init__(f"the batch ran (printed above) but was not stored: {cause}")


def _bad_requests(result: BatchResult) -> int:
    return sum(r.failed or (r.status or 0) >= 400 for r in result.requests)


def _print(result: BatchResult, *, job_name: str, batch_id: int | None, as_json: bool,
           where: str | None) -> None:
    if as_json:
        document = {"batch_id": batch_id, "job_name": job_name, "trigger": "manual",
                    **result.to_dict()}
        typer.echo(json.dumps(document, indent=2))
    else:
        typer.echo(batch_table(result, job_name=job_name, batch_id=batch_id, where=where))
