"""Start-up pays only for what a command uses: the modules a command imports.

Speed itself is measured in benchmarks/ (start-up suite); these tests keep the
imports that cost most out of the commands that do not need them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy.schema import CreateIndex

from collector.models import running_index
from collector.store import open_store

# The command runs as the console script does; at exit it prints every module loaded.
_RUN = ("import atexit, sys\n"
        "atexit.register(lambda: print(' '.join(sorted(sys.modules)), file=sys.stderr))\n"
        "from collector.cli import main\n"
        "sys.argv = ['collector', *sys.argv[1:]]\n"
        "main()\n")


def _modules(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", _RUN, *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stderr.strip().splitlines()[-1].split(" "))


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("startup") / "small.db"
    with open_store(f"sqlite:///{path}"):
        pass
    return str(path)


def test_help_imports_neither_sqlalchemy_nor_urllib3() -> None:
    modules = _modules("--help")
    assert "typer" in modules  # the walk sees what was imported
    assert not {m for m in modules if m.split(".")[0] in ("sqlalchemy", "urllib3", "logging")}


@pytest.mark.parametrize("command", [("jobs", "list"), ("report",), ("batches",)])
def test_reading_a_sqlite_database_loads_no_postgresql_code(small_db: str,
                                                            command: tuple[str, ...]) -> None:
    modules = _modules(*command, "--db", small_db)
    assert "sqlalchemy.dialects.sqlite" in modules
    assert not {m for m in modules if "postgresql" in m or m.startswith("psycopg")}
    assert not {m for m in modules if m.startswith(("alembic", "collector.runner", "rich"))}


def test_the_running_index_is_partial_on_both_databases(db_url: str) -> None:
    # PostgreSQL's clause is added when its engine is made (collector.models.for_postgresql).
    with open_store(db_url) as store:
        ddl = str(CreateIndex(running_index).compile(dialect=store.engine.dialect))
    assert ddl.endswith("WHERE status = 'running'"), ddl


def test_a_database_on_postgresql_has_the_partial_index(postgres_url: str) -> None:
    with open_store(postgres_url) as store, store.engine.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_batches_running'").scalar()
    assert found is not None and found.endswith("WHERE ((status)::text = 'running'::text)")

