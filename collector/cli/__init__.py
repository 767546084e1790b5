"""The ``collector`` command: thin typer commands over the library.

Exit codes are mapped here, in one place, from the error tree
(:mod:`collector.errors`, each error's ``exit_code``): 0 done; 1 could not run
or store (:class:`~collector.errors.StoreError`); 2 usage or configuration
error, or a name that is not there (click's usage errors,
:class:`~collector.errors.ConfigError`, :class:`~collector.errors.NotFound`);
3 ``run-once --fail-on-error`` saw a failed request, a status >= 400 or a failed check
(:class:`~collector.errors.RequestsFailed`); 128 + N a signal N stopped the
batch, whose requests are kept (:class:`~collector.errors.Interrupted`).
"""

from __future__ import annotations

import gc
from typing import Any

import typer
from typer.core import TyperGroup

from collector import __version__
from collector.errors import CollectorError, Interrupted


class _Group(TyperGroup):
    """Turns every CollectorError into one line on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:  # typer's Context class is not public
        try:
            return super().invoke(ctx)
        except CollectorError as exc:
            if isinstance(exc, Interrupted) and exc.not_stored is not None:
                _say(exc.not_stored)
            _say(exc)
            raise typer.Exit(exc.exit_code) from None


def _say(exc: CollectorError) -> None:
    label = f"{exc.label}: " if exc.label else ""
    typer.echo(f"collector: {label}{exc}", err=True)


app = typer.Typer(
    cls=_Group,
    name="collector",
    help="Scheduled HTTP data collection: every batch through one re-used connection pool, "
         "every request stored in SQL.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"collector {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Scheduled HTTP data collection with persisted results."""
    from collector.cli.stderr import warnings_to_stderr

    warnings_to_stderr()


def _register() -> None:
    from collector.cli import db, jobs, report, run, run_once, spool

    app.command("run")(run.run)
    app.command("run-once")(run_once.run_once)
    app.command("demo")(run_once.demo)
    app.add_typer(jobs.app, name="jobs")
    app.command("report")(report.report)
    app.command("batches")(report.batches)
    app.command("show")(report.show)
    app.command("body")(report.body)
    app.command("prune")(report.prune)
    app.add_typer(db.app, name="db")
    app.add_typer(spool.app, name="spool")


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="collector")
    finally:
        # At exit the interpreter's last collections walk every object still alive;
        # frozen ones are skipped. `collector jobs list` measured about 0.1 s quicker.
        gc.freeze()
