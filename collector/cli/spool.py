"""``collector spool``: batches that ran while the database was away."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from collector.cli.options import DbOption, database_url
from collector.errors import DatabaseUnavailable

app = typer.Typer(help="Batches kept on disk while the database was away.",
                  no_args_is_help=True)

_ANY = "any database (spooled by an older collector)"


@app.command()
def status() -> None:
    """How many batches wait in the spool, since when, where, and for which database."""
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
    for database, count in spool.destinations().items():
        typer.echo(f"for {database or _ANY}: {count}")
    if refused:
        typer.echo(f"rejected: {refused} (in {rejected}; the database refused them)")


@app.command()
def flush(db: DbOption = None) -> None:
    """Store the spooled batches now, each in the database it was collected for, oldest
    first (a running daemon stores its own by itself). With --db, only that database's."""
    from collector.spool import default_spool
    from collector.store import open_store
    from collector.store.engine import shown_database_url

    spool = default_spool()
    given = database_url(db)
    shown = shown_database_url(given)
    waiting = spool.destinations()
    # The given (or default) database first, with its password; then, without --db, each
    # other database a batch names, by the URL it was spooled under.
    targets = [shown] if shown in waiting or None in waiting else []
    if db is None:
        targets += sorted(d for d in waiting if d is not None and d != shown)
    if not targets:
        typer.echo(f"{shown if db is not None else 'the spool'}: nothing waiting")
    away: DatabaseUnavailable | None = None
    for target in targets:
        if target != shown and ":***@" in target:
            typer.echo(f"{target}: {waiting[target]} batches left: its password is not kept "
                       "in the spool; store them with --db and the full URL")
            continue
        try:
            with open_store(given if target == shown else target) as store:
                done = spool.replay(store, legacy=target == shown)
        except DatabaseUnavailable as exc:
            typer.echo(f"{target}: {waiting.get(target, 0)} batches left: {exc.reason}")
            away = exc
            continue
        typer.echo(f"{target}: stored {done.stored}, already stored {done.duplicates}, "
                   f"rejected {done.rejected}, left {done.left}")
        if done.left:
            away = DatabaseUnavailable(store.url, f"stopped answering: {done.left} batches are "
                                                  "still in the spool")
    others = sum(n for d, n in waiting.items() if d is not None and d not in targets)
    if others:
        typer.echo(f"{others} batches wait for other databases (collector spool status "
                   "lists them)")
    if away is not None:
        raise away
