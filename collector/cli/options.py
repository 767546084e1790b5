"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

DbOption = Annotated[str | None, typer.Option(
    "--db", metavar="URL",
    help="Database: a SQLite file path, sqlite:///PATH or postgresql://USER@HOST/DB. "
         "Default: $COLLECTOR_DATABASE_URL, else ~/.local/share/collector/collector.db.",
    show_default=False,
)]
