"""Alembic environment for collector's schema.

collector itself passes an open connection in ``config.attributes``; run from
a checkout with ``alembic`` (see alembic.ini), the database is the one
collector would use (``COLLECTOR_DATABASE_URL`` or the default SQLite file).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from collector.models import metadata
from collector.settings import resolve_database_url

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite's ALTER is limited
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Daemons starting together on one database migrate one at a time.
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('collector-schema'))"))
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or resolve_database_url(None)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("collector's migrations run online only: use `collector db upgrade`")
run_migrations_online()
