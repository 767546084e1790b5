"""``collector db``: the database's schema and contents."""

from __future__ import annotations

import typer

from collector.cli.options import DbOption
from collector.config import resolve_database_url

app = typer.Typer(help="Inspect and upgrade the database.", no_args_is_help=True)


@app.command()
def upgrade(db: DbOption = None) -> None:
    """Bring the database's schema to this collector's newest revision."""
    from collector.store import open_store

    with open_store(resolve_database_url(db), ensure_schema=False) as store:
        before, after = store.upgrade()
        if before == after:
            typer.echo(f"{store.url}: already at revision {after}")
        else:
            typer.echo(f"{store.url}: upgraded from revision {before or 'none'} to {after}")


@app.command()
def info(db: DbOption = None) -> None:
    """Show which database is used, its schema revision and its row counts."""
    from collector.store import open_store

    with open_store(resolve_database_url(db), ensure_schema=False) as store:
        about = store.info()
    typer.echo(f"database: {about.url}")
    typer.echo(f"dialect:  {about.dialect}")
    typer.echo(f"revision: {about.revision or 'none'} (newest {about.head}: {about.state})")
    for table, count in about.row_counts.items():
        typer.echo(f"{table + ':':<9} {count}")
