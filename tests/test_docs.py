"""The README and the help texts stay true."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.main import get_command
from typer.testing import CliRunner

from collector.cli import app
from collector.jobfile import load_job_file
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.store import open_store
from tests.dataset import batch, fill, request
from tests.server import LocalServer

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


def readme_queries(dialect: str) -> dict[str, str]:
    """The README's SQL by its first-line title, the other dialect's versions left out."""
    other = "(PostgreSQL)" if dialect == "sqlite" else "(SQLite)"
    queries = {}
    for block in fenced("sql"):
        title = block.splitlines()[0].removeprefix("-- ")
        if not title.endswith(other):
            queries[title.removesuffix(" (SQLite)").removesuffix(" (PostgreSQL)")] = block
    return queries


def test_the_readme_sql_runs(db_url: str, server: LocalServer) -> None:
    with open_store(db_url) as store:
        fill(store)  # the hand-made data set, weeks old
        # a page that changed within the week: the data set's changes are weeks old
        now = datetime.now(UTC)
        for minutes, sha in ((20, "w1"), (10, "w2"), (5, "w2")):
            at = now - timedelta(minutes=minutes)
            store.save_batch(batch(at, 1, request(0, 200, 5, sha=sha, at=at,
                                                  query="q=news")), job_name="news")
        recent = run_batch(BatchSpec(url=server.url("/delay/0.05"), queries=({}, {})))
        store.save_batch(recent, job_name="recent")
        dialect = store.engine.dialect.name
        queries = readme_queries(dialect)
        with store.connect() as conn:
            results = {title: conn.execute(text(sql)).mappings().all()
                       for title, sql in queries.items()}
    assert set(results) == {"success rate per job per day", "connection re-use per job",
                            "connection re-use per batch", "slowest requests this week",
                            "when a page's content changed"}

    success = {(r["job_name"], r["requests"]): float(r["success_pct"])
               for r in results["success rate per job per day"]}
    # job a: 7 requests on one day, 4 of them answered below 400 (200 200 200 301)
    assert success == {("a", 7): round(400 / 7, 1), ("b", 1): 0.0, ("recent", 2): 100.0,
                       ("news", 3): 100.0}

    reuse = {r["job_name"]: r for r in results["connection re-use per job"]}
    assert float(reuse["a"]["requests_per_connection"]) == 1.75
    assert reuse["b"]["requests_per_connection"] is None  # no connection was opened
    assert (reuse["recent"]["requests"], reuse["recent"]["tcp_connections"]) == (2, 1)

    per_batch = results["connection re-use per batch"]
    assert (per_batch[0]["job_name"], per_batch[0]["reused_requests"]) == ("recent", 1)

    slowest = results["slowest requests this week"]
    # the data set is older than a week; the news answers took 5 ms
    assert [r["job_name"] for r in slowest] == ["recent", "recent", "news", "news", "news"]
    assert slowest[0]["elapsed_ms"] >= slowest[1]["elapsed_ms"] >= 50

    changes = [(r["job_name"], r["query"], r["previous_sha256"], r["body_sha256"])
               for r in results["when a page's content changed"]]
    assert changes == [("news", "q=news", "w1", "w2")]
