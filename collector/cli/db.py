"""``collector db``: the database's schema and contents."""

from __future__ import annotations

import typer

from collector.cli.options import DbOption, open_db

app = typer.Typer(help="Inspect and upgrade the database.", no_args_is_help=True)


@app.command()
def upgrade(db: DbOption = None) -> None:
    """Bring the database's schema to this collector's newest revision."""
    with open_db(db, ensure_schema=False) as store:
        before, after = store.upgrade()
        if before == after:
            typer.echo(f"{store.url}: already at revision {after}")
        else:
            typer.echo(f"{store.url}: upgraded from revision {before or 'none'} to {after}")


@app.command()
def info(db: DbOption = None) -> None:
    """Show which database is used, its schema revision and its row counts."""
    with open_db(db, ensure_schema=False, create=False) as store:
        about = store.info()
    typer.echo(f"database: {about.url}")
    typer.echo(f"dialect:  {about.dialect}")
    typer.echo(f"revision: {about.revision or 'none'} (newest {about.head}: {about.state})")
    for table, count in about.row_counts.items():
        typer.echo(f"{table + ':':<9} {count}")
