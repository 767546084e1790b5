"""``collector spool``: batches that ran while the database was away."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from collector.cli.options import DbOption, open_db
from collector.errors import DatabaseUnavailable

app = typer.Typer(help="Batches kept on disk while the database was away.",
                  no_args_is_help=True)


@app.command()
def status() -> None:
    """How many batches wait in the spool, since when, and where."""
    from collector.spool import default_spool

    spool = default_spool()
    paths = spool.paths()
    rejected = spool.folder / "rejected"
    refused = len(list(rejected.glob("*.json"))) if rejected.is_dir() else 0
    typer.echo(f"spool: {spool.folder}")
    typer.echo(f"waiting: {len(paths)}")
    if paths:
        oldest = datetime.fromtimestamp(int(paths[0].name.split("-")[0]) / 1e9, UTC)
        typer.echo(f"oldest: {oldest:%Y-%m-%d %H:%M:%S} UTC")
    if refused:
        typer.echo(f"rejected: {refused} (in {rejected}; the database refused them)")


@app.command()
def flush(db: DbOption = None) -> None:
    """Store the spooled batches now, oldest first (a running daemon does it by itself)."""
    from collector.spool import default_spool

    spool = default_spool()
    with open_db(db) as store:
        done = spool.replay(store)
    typer.echo(f"stored {done.stored}, already stored {done.duplicates}, "
               f"rejected {done.rejected}, left {done.left}")
    if done.left:
        raise DatabaseUnavailable(store.url, f"stopped answering: {done.left} batches are "
                                             "still in the spool")
