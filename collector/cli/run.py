"""``collector run-once`` and ``collector demo``: run a batch now, store it, show it."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from collector.cli.options import (
    CaFileOption,
    ConcurrencyOption,
    DbOption,
    HeaderOption,
    MethodOption,
    PoolSizeOption,
    QueryOption,
    RetriesOption,
    TimeoutOption,
    UrlOption,
    open_db,
    parse_headers,
    parse_query,
)
from collector.cli.render import batch_table
from collector.config import (
    DEFAULT_TIMEOUT,
    BatchSpec,
    batch_from_options,
    expand_environment,
    load_job_file,
    select_job,
)
from collector.errors import BatchNotStored, ConfigError, StoreError
from collector.results import BatchResult

if TYPE_CHECKING:
    from collector.store import Store

EXIT_REQUEST_FAILED = 3

JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print one JSON object instead of a table.")]
_Target = Annotated[str | None, typer.Argument(
    metavar="[FILE.toml | JOB]", show_default=False,
    help="A job file, or the name of a stored job (instead of --url).")]
_Job = Annotated[str | None, typer.Option(
    metavar="NAME", help="The job to run when FILE.toml holds more than one.")]
_Name = Annotated[str, typer.Option(
    metavar="NAME", help="The job name a --url batch is stored under.")]
_NoStore = Annotated[bool, typer.Option(
    "--no-store", help="Run and print, but do not write to the database.")]
_FailOnError = Annotated[bool, typer.Option(
    "--fail-on-error", help="Exit 3 when a request got no response or a status >= 400.")]


def run_once(
    target: _Target = None,
    job: _Job = None,
    url: UrlOption = None,
    query: QueryOption = None,
    method: MethodOption = "GET",
    pool_size: PoolSizeOption = 1,
    concurrency: ConcurrencyOption = 1,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    retries: RetriesOption = 0,
    header: HeaderOption = None,
    ca_file: CaFileOption = None,
    name: _Name = "run-once",
    db: DbOption = None,
    as_json: JsonOption = False,
    no_store: _NoStore = False,
    fail_on_error: _FailOnError = False,
) -> None:
    """Run one batch now through one connection pool, store it and print it.

    A job file (FILE.toml [--job NAME]), a stored job's name, or --url with
    --query options:

    \b
      collector run-once jobs/search.toml
      collector run-once search
      collector run-once --url http://127.0.0.1:8080/search \\
          -q 'q=python&v=1.0' -q 'q=php&v=1.0'
    """
    report = functools.partial(_run_and_report, as_json=as_json, fail_on_error=fail_on_error)
    is_file = target is not None and (Path(target).is_file() or target.endswith(".toml"))
    if target is not None:
        given = [option for option, value in (
            ("--url", url), ("--query", query), ("--header", header), ("--ca-file", ca_file),
        ) if value]
        if given:
            raise ConfigError(f"{given[0]} cannot be combined with a job; "
                              "put it in the job's definition instead")
    if job is not None and not is_file:
        raise ConfigError("--job needs a job file")
    if target is not None and not is_file:
        with open_db(db) as store:  # a stored job: the database is needed either way
            stored = store.job(target).job
            spec = expand_environment(stored.batch, os.environ, where=f'job "{stored.name}"')
            report(spec, job_name=stored.name, store=None if no_store else store)
        return
    if target is not None:
        name, spec = _job_from_file(target, job)
    elif url is None:
        raise ConfigError("give a job file, a job's name or --url (see collector run-once --help)")
    else:
        spec = batch_from_options(
            url=url, method=method, queries=[parse_query(q) for q in query or []],
            headers=parse_headers(header or []), pool_size=pool_size, concurrency=concurrency,
            timeout=timeout, retries=retries, ca_file=ca_file,
        )
    if no_store:
        report(spec, job_name=name, store=None)
    else:
        with open_db(db) as store:  # before running: a database error loses nothing
            report(spec, job_name=name, store=store)


def demo(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Run the example's batch against a local stand-in server (works offline).

    Starts a server on 127.0.0.1 that answers like the example's search
    endpoint, sends q=python and q=php (with v=1.0) through one pool of size 1,
    stores the batch and prints it: two 200s, one connection, two requests.
    """
    from collector.demo import demo_batch, serve_demo

    with open_db(db) as store, serve_demo() as url:
        _run_and_report(demo_batch(url), job_name="demo", store=store, as_json=as_json,
                        fail_on_error=False)


def _job_from_file(target: str, job: str | None) -> tuple[str, BatchSpec]:
    if not Path(target).is_file():
        raise ConfigError(f"{target}: no such job file")
    jobs = load_job_file(target)
    chosen = select_job(target, jobs, job)
    where = f'{target}: job "{chosen.name}"'
    return chosen.name, expand_environment(chosen.batch, os.environ, where=where)


def _run_and_report(spec: BatchSpec, *, job_name: str, store: Store | None, as_json: bool,
                    fail_on_error: bool) -> None:
    """Run the batch, store it (unless ``store`` is None), print it, then raise what failed."""
    from collector.runner import run_batch

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
    if store_error is not None:
        raise BatchNotStored(store_error)
    if fail_on_error and (bad := _bad_requests(result)):
        typer.echo(f"collector: {bad} of {len(result.requests)} requests failed or got a "
                   "status >= 400", err=True)
        raise typer.Exit(EXIT_REQUEST_FAILED)


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
