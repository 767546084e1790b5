"""The README and the help texts stay true."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.main import get_command
from typer.testing import CliRunner

from collector.cli import app
from collector.config import load_job_file
from collector.store import open_store

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def fenced(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


def commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += commands(sub, (*path, name))
    return found


@pytest.mark.parametrize(("path", "command"), commands(get_command(app)),
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_help(path: tuple[str, ...], command: Any) -> None:
    assert (command.help or "").strip(), f"collector {' '.join(path)} has no help text"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage: collector" in result.stdout
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts} has no help"


def test_quick_start_is_two_commands_and_ci_runs_the_test_command() -> None:
    quick_start = README.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", quick_start, flags=re.S)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2
    assert lines[0].endswith("collector demo")
    assert lines[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_readme_job_file_is_valid(tmp_path: Path) -> None:
    (block,) = fenced("toml")
    path = tmp_path / "readme.toml"
    path.write_text(block)
    (job,) = load_job_file(path)
    assert job.name == "search" and job.batch.headers == {
        "Authorization": "Bearer ${SEARCH_TOKEN}"}
    shipped = load_job_file(ROOT / "jobs" / "search.toml")[0]
    assert job.batch.queries == shipped.batch.queries and job.every == shipped.every


def test_the_readme_sql_runs(db_url: str) -> None:
    for args in (["demo"], ["run-once", "--url", "http://127.0.0.1:1/", "-q", "q=x"]):
        assert CliRunner().invoke(app, [*args, "--db", db_url]).exit_code == 0
    queries = fenced("sql")
    assert len(queries) >= 2
    with open_store(db_url) as store, store.engine.connect() as conn:
        reuse = conn.execute(text(queries[0])).mappings().all()
        per_query = conn.execute(text(queries[1])).mappings().all()
    assert [(r["num_requests"], r["reused_requests"]) for r in reuse] == [(1, 0), (2, 1)]
    by_query = {r["query"]: r for r in per_query}
    assert by_query["q=python&v=1.0"]["ok_2xx"] == 1
    assert by_query["q=x"]["no_response"] == 1 and by_query["q=x"]["ok_2xx"] == 0
