"""The schema's revision, and bringing a database to it with Alembic.

The migration scripts live in the top-level ``migrations/`` folder of a
checkout; a wheel carries them as ``collector/migrations`` (pyproject.toml,
``force-include``), so ``collector db upgrade`` works from an installed
package. Checking a database's revision is one plain query against
:data:`HEAD`, known without Alembic or the scripts (a test keeps it equal to
the scripts' head): Alembic is imported only to migrate.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic keeps the running migration's context in module globals: one at a time per process.
MIGRATING = threading.Lock()

# The newest revision, and every revision, as the migration scripts say: a test checks
# that these match migrations/versions, so a new revision cannot be forgotten here.
HEAD = "0018"
REVISIONS = frozenset({"0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008",
                        "0009", "0010", "0011", "0012",
                        "0013", "0014", "0015", "0016", "0017", "0018"})
# From this revision a SQLite file gives the pages prune frees back (incremental auto-vacuum,
# set by `collector db upgrade` right after the revision: Store.upgrade).
INCREMENTAL_VACUUM = "0014"
# From this revision PostgreSQL keeps the per-request tables in daily partitions.
PARTITIONS = "0016"


def migrations_location() -> str:
    """The folder holding ``env.py`` and ``versions/``: inside the package, else the checkout's."""
    package = Path(__file__).resolve().parent.parent
    for folder in (package / "migrations", package.parent / "migrations"):
        if (folder / "env.py").is_file():
            return str(folder)
    raise RuntimeError(f"collector's migrations are missing from {package}: reinstall collector")


def alembic_config() -> Config:
    """Alembic's configuration for collector's migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", migrations_location())
    return config


def head_revision() -> str:
    """The newest revision this collector knows."""
    return HEAD


def known_revisions() -> frozenset[str]:
    """Every revision this collector knows."""
    return REVISIONS


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at, or None when it has none (one plain query)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    revision: str | None = conn.execute(text("SELECT version_num FROM alembic_version")
                                        ).scalar()
    return revision


def table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def run_upgrade(conn: Connection, target: str = "head") -> None:
    """Run the migrations up to ``target`` on ``conn``, inside its transaction."""
    _run(conn, target, up=True)


def run_downgrade(conn: Connection, target: str) -> None:
    """Run the migrations down to ``target`` on ``conn``, inside its transaction."""
    _run(conn, target, up=False)


def _run(conn: Connection, target: str, *, up: bool) -> None:
    from alembic import command

    with MIGRATING:
        config = alembic_config()
        config.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(config, target)
