"""Where collector keeps its data, and who is running: settings from options and the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def default_database_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/collector/collector.db`` (``~/.local/share`` by default)."""
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "collector" / "collector.db"


def spool_folder(environ: Mapping[str, str] = os.environ) -> Path:
    """``$COLLECTOR_SPOOL_DIR``, else ``spool/`` beside the default database."""
    given = environ.get("COLLECTOR_SPOOL_DIR", "").strip()
    if given:
        return Path(given).expanduser()
    return default_database_path(environ).parent / "spool"


def resolve_database_url(option: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The database to use: ``--db``, else ``COLLECTOR_DATABASE_URL``, else the default file.

    A value without ``://`` is a SQLite file path; ``postgresql://`` means psycopg 3.
    """
    value = (option or environ.get("COLLECTOR_DATABASE_URL") or "").strip()
    if not value:
        return "sqlite:///" + str(default_database_path(environ))
    if "://" not in value:
        return "sqlite:///" + str(Path(value).expanduser().absolute())
    for prefix in ("postgresql://", "postgres://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix):]
    return value


def without_password(url: str) -> str:
    """``scheme://user:***@host/...``: a URL as a message may show it.

    All between the user name's ``:`` and the last ``@`` is hidden, whatever the
    password holds (a URL that put an ``@`` in its path shows a little less of the
    path); safe for any text, a URL or not.
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}"


def worker_id() -> str:
    """``host:pid``, stored with each batch to say who ran it."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"
