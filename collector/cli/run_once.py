"""``collector run-once`` and ``collector demo``: run a batch now, store it, show it.

The commands parse options, choose what to run and render the outcome; the
collect step (:mod:`collector.collect`) does the work.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from collector.cli.options import BatchOptions, DbOption, batch_options, open_db
from collector.errors import (
    BatchNotStored,
    ConfigError,
    Interrupted,
    NoDatabase,
    RequestsFailed,
    UnknownJob,
)
from collector.quantities import show

if TYPE_CHECKING:
    from collector.collect import Outcome
    from collector.runner import OnRequest
    from collector.spec import BatchSpec
    from collector.store import Store

PROGRESS_AFTER = 0.5  # seconds: a batch quicker than this shows no progress bar

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
    "--fail-on-error", help="Exit 3 when a request got no response, a status >= 400 or "
                            "failed one of the job's checks.")]


@batch_options
def run_once(
    target: _Target = None,
    job: _Job = None,
    *,
    batch: BatchOptions,
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
          -q q=python -q q=php --field v=1.0 --timeout 5s
    """
    render = _OutcomePrinter(as_json=as_json, fail_on_error=fail_on_error)
    if target is None:
        if job is not None:
            raise ConfigError("--job needs a job file")
        if batch.url is None:
            raise ConfigError("give a job file, a job's name or --url "
                              "(see collector run-once --help)")
        given = {key: value for key, value in batch.values().items() if value is not None}
        _run_options(given, name=name, db=db, no_store=no_store, render=render)
        return
    if batch.given():
        raise ConfigError(f"{batch.given()[0]} cannot be combined with a job; "
                          "put it in the job's definition instead")
    if _is_job_file(target):
        _run_file(target, job, db=db, no_store=no_store, render=render)
    elif job is not None:
        raise ConfigError("--job needs a job file")
    else:
        _run_stored(target, db=db, no_store=no_store, render=render)


def _is_job_file(target: str) -> bool:
    """A target is a job file when it is a file, or cannot be a job's name (it has a /)."""
    from collector.jobkeys import is_job_name

    return Path(target).is_file() or not is_job_name(target)


def _run_options(values: dict[str, object], *, name: str, db: str | None, no_store: bool,
                 render: _OutcomePrinter) -> None:
    from collector.jobfile import batch_from_options
    from collector.jobkeys import NAME_RULE, is_job_name

    spec = batch_from_options(values)
    if not is_job_name(name):
        raise ConfigError(f"--name: {show(name)}: {NAME_RULE}")
    _collect(name, spec, db=db, no_store=no_store, render=render, where=f"--url batch {name!r}")


def _run_file(target: str, job: str | None, *, db: str | None, no_store: bool,
              render: _OutcomePrinter) -> None:
    from collector.jobfile import load_one_job

    if not Path(target).is_file():
        raise ConfigError(f"{target}: no such job file")
    chosen = load_one_job(target, job)
    _collect(chosen.name, chosen.batch, db=db, no_store=no_store, render=render,
             where=f'{target}: job "{chosen.name}"')


def _run_stored(name: str, *, db: str | None, no_store: bool, render: _OutcomePrinter) -> None:

    try:
        store = open_db(db, create=False)  # a stored job: nothing to run without a database
    except NoDatabase:
        if name.endswith(".toml"):
            raise ConfigError(f"{name}: no such job file, and no stored job has that name")\
                from None
        raise
    with store:
        try:
            stored = store.job(name).job
        except UnknownJob:
            if name.endswith(".toml"):
                raise ConfigError(f"{name}: no such job file, and no stored job has that name")\
                    from None
            raise
        _run(stored.name, stored.batch, store=None if no_store else store, render=render,
             where=f'job "{stored.name}"')


def _collect(name: str, spec: BatchSpec, *, db: str | None, no_store: bool, render: _OutcomePrinter,
             where: str) -> None:
    from collector.references import prepare

    if no_store:
        _run(name, spec, store=None, render=render, where=where)
        return
    prepare(spec, os.environ, where=where)  # a missing variable: before the database
    with open_db(db) as store:  # before running: a database error loses nothing
        _run(name, spec, store=store, render=render, where=where)


def _run(name: str, spec: BatchSpec, *, store: Store | None, render: _OutcomePrinter,
         where: str) -> None:
    """The collect step with a progress bar, and SIGINT/SIGTERM ending the batch early.

    A signal stops sending; what was collected is stored (or spooled) as
    ``interrupted``, shown, and the exit code is 128 + the signal's number.
    """
    from collector.collect import collect
    from collector.spool import default_spool

    with _progress(len(spec.queries)) as on_request, _interruptible() as (stop, caught):
        outcome = collect(name, spec, store=store, where=where, on_request=on_request,
                          stop=stop, spool=None if store is None else default_spool())
    render(outcome, where=None if store is None else store.url, signal_number=caught[0]
           if caught else None)


@contextmanager
def _interruptible() -> Iterator[tuple[threading.Event, list[int]]]:
    """SIGINT and SIGTERM set an event (and are remembered) instead of ending the process."""
    import signal

    stop = threading.Event()
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stop, caught
        return

    def handler(number: int, _frame: object) -> None:
        caught.append(number)
        stop.set()

    previous = {number: signal.signal(number, handler)
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop, caught
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


def demo(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Run the example's batch against a local stand-in server (works offline).

    Starts a server on 127.0.0.1 that answers as the example's search endpoint
    did, sends q=python and q=php (with v=1.0) through one pool of size 1,
    stores the batch and prints it: two 200s of 211 bytes, one connection, two
    requests.
    """
    from collector.collect import collect
    from collector.demo import demo_batch, serve_demo
    from collector.spool import default_spool

    with open_db(db) as store, serve_demo() as url:
        outcome = collect("demo", demo_batch(url), store=store, spool=default_spool())
    _OutcomePrinter(as_json=as_json, fail_on_error=False)(outcome, where=store.url)


class _OutcomePrinter:
    """Prints an outcome (a table or JSON), then raises for what went wrong."""

    def __init__(self, *, as_json: bool, fail_on_error: bool) -> None:
        self.as_json = as_json
        self.fail_on_error = fail_on_error

    def __call__(self, outcome: Outcome, *, where: str | None,
                 signal_number: int | None = None) -> None:
        from collector.cli.render import batch_document, batch_table, colour_wanted

        result = outcome.result
        if self.as_json:
            typer.echo(batch_document(outcome.batch_id, outcome.batch.columns(), result))
        else:
            typer.echo(batch_table(result, job_name=outcome.job_name,
                                   batch_id=outcome.batch_id, where=where,
                                   colour=colour_wanted(sys.stdout)))
        not_stored = (None if outcome.store_error is None
                      else BatchNotStored(outcome.store_error, outcome.spooled,
                                          outcome.spool_error))
        if signal_number is not None:
            raise Interrupted(signal_number, not_stored)
        if not_stored is not None:
            raise not_stored
        bad = sum(r.failed or (r.status or 0) >= 400 or any(not c.passed for c in r.checks)
                  for r in result.requests)
        if self.fail_on_error and bad:
            raise RequestsFailed(bad, len(result.requests))


@contextmanager
def _progress(queries: int) -> Iterator[OnRequest | None]:
    """A progress bar on stderr for a batch that takes more than a moment, on a terminal only.

    Yields the callback for each finished request, or None when stderr is not a terminal.
    """
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task("requests", total=max(queries, 1))
    lock = threading.Lock()
    state = {"started": False, "done": False}

    def start() -> None:
        with lock:
            if not state["done"]:
                bar.start()
                state["started"] = True

    timer = threading.Timer(PROGRESS_AFTER, start)
    timer.daemon = True
    timer.start()
    try:
        yield lambda _result: bar.advance(task)
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["started"]:
                bar.stop()
