"""The README and the help texts stay true."""

from __future__ import annotations

import re
import ssl
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from sqlalchemy import text
from typer.main import get_command
from typer.testing import CliRunner

from collector.cli import app
from collector.jobfile import load_job_file
from collector.results import CaptureResult
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.store import open_store
from tests.dataset import batch, fill, request
from tests.server import LocalServer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# Every page a user reads: the README, docs/, CONTRIBUTING.md.
PAGES = {path.relative_to(ROOT): path.read_text()
         for path in [ROOT / "README.md", ROOT / "CONTRIBUTING.md",
                      *sorted((ROOT / "docs").glob("*.md"))]}


def fenced(language: str, text: str = README) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def fenced_everywhere(language: str) -> list[tuple[Path, str]]:
    return [(page, block) for page, text in PAGES.items() for block in fenced(language, text)]


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
    block = fenced("toml")[0]  # the first: the example's batch
    path = tmp_path / "readme.toml"
    path.write_text(block)
    (job,) = load_job_file(path)
    assert job.name == "search" and job.batch.headers == {
        "Authorization": "Bearer ${SEARCH_TOKEN}"}
    shipped = load_job_file(ROOT / "jobs" / "search.toml")[0]
    assert job.batch.queries == shipped.batch.queries and job.every == shipped.every


def readme_queries(dialect: str) -> dict[str, str]:
    """The SQL of the README and docs/ by its first-line title, the other dialect's versions
    left out; a query shown on two pages is the same on both."""
    other = "(PostgreSQL)" if dialect == "sqlite" else "(SQLite)"
    queries: dict[str, str] = {}
    for _, block in fenced_everywhere("sql"):
        title = block.splitlines()[0].removeprefix("-- ")
        if not title.endswith(other):
            title = title.removesuffix(" (SQLite)").removesuffix(" (PostgreSQL)")
            assert queries.setdefault(title, block) == block, title
    return queries


def test_the_readme_sql_runs(db_url: str, server: LocalServer, https_server: LocalServer,
                             ca: trustme.CA, ca_file: str) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", not_after=expires).configure_cert(context)
    with LocalServer(tls=context) as expiring:
        soon = run_batch(BatchSpec(url=expiring.url("/search"), ca_file=ca_file))
    # https_server's certificate has centuries to go
    later = run_batch(BatchSpec(url=https_server.url("/search"), ca_file=ca_file))
    with open_store(db_url) as store:
        store.save_batch(soon, job_name="expiring")
        store.save_batch(later, job_name="lasting")
        fill(store)  # the hand-made data set, weeks old
        # a page that changed within the week: the data set's changes are weeks old
        now = datetime.now(UTC)
        for minutes, sha in ((20, "w1"), (10, "w2"), (5, "w2")):
            at = now - timedelta(minutes=minutes)
            store.save_batch(batch(at, 1, request(0, 200, 5, sha=sha, at=at,
                                                  query="q=news")), job_name="news")
        for minutes, price in ((30, 12.5), (25, 13.0)):  # a captured price, twice
            at = now - timedelta(minutes=minutes)
            priced = replace(request(0, 200, 4, sha=f"p{price}", at=at, query="id=17"), captures=(
                CaptureResult(name="price", value=str(price), number=price),
                CaptureResult(name="title", value="Widget", number=None)))
            store.save_batch(batch(at, 1, priced), job_name="prices")
        recent = run_batch(BatchSpec(url=server.url("/delay/0.05"), queries=({}, {})))
        store.save_batch(recent, job_name="recent")
        dialect = store.engine.dialect.name
        queries = readme_queries(dialect)
        with store.connect() as conn:
            results = {title: conn.execute(text(sql)).mappings().all()
                       for title, sql in queries.items()}
    assert set(results) == {"success rate per job per day", "connection re-use per job",
                            "connection re-use per batch", "slowest requests this week",
                            "when a page's content changed", "a captured value over time",
                            "when a job's content changed",
                            "certificates that expire within 14 days, per job"}

    certificates = [(r["job_name"], r["cert_subject"], r["expires"])
                    for r in results["certificates that expire within 14 days, per job"]]
    expiry = soon.connections[0].chain_not_after
    assert expiry == expires
    assert [(job, subject) for job, subject, _ in certificates] == [
        ("expiring", soon.connections[0].cert_subject)]
    # SQLite gives the stored text, PostgreSQL a timestamptz
    assert str(certificates[0][2]).startswith(expires.strftime("%Y-%m-%d %H:%M:%S"))

    success = {(r["job_name"], r["requests"]): float(r["success_pct"])
               for r in results["success rate per job per day"]}
    # job a: 7 requests on one day, 4 of them answered below 400 (200 200 200 301)
    assert success == {("a", 7): round(400 / 7, 1), ("b", 1): 0.0, ("recent", 2): 100.0,
                       ("news", 3): 100.0, ("expiring", 1): 100.0, ("lasting", 1): 100.0,
                       ("prices", 2): 100.0}

    reuse = {r["job_name"]: r for r in results["connection re-use per job"]}
    assert float(reuse["a"]["requests_per_connection"]) == 1.75
    assert reuse["b"]["requests_per_connection"] is None  # no connection was opened
    assert (reuse["recent"]["requests"], reuse["recent"]["tcp_connections"]) == (2, 1)

    per_batch = results["connection re-use per batch"]
    assert (per_batch[0]["job_name"], per_batch[0]["reused_requests"]) == ("recent", 1)

    slowest = results["slowest requests this week"]
    # the data set is older than a week; the news answers took 5 ms
    assert [r["job_name"] for r in slowest][:2] == ["recent", "recent"]
    assert sorted(r["job_name"] for r in slowest[2:]) == [
        "expiring", "lasting", "news", "news", "news", "prices", "prices"]
    assert slowest[0]["elapsed_ms"] >= slowest[1]["elapsed_ms"] >= 50

    changes = [(r["job_name"], r["query"], r["previous_sha256"], r["content_sha256"])
               for r in results["when a page's content changed"]]
    assert changes == [("news", "q=news", "w1", "w2"), ("prices", "id=17", "p12.5", "p13.0")]
    assert [(r["query"], r["previous_sha256"], r["content_sha256"])
            for r in results["when a job's content changed"]] == [("id=17", "p12.5", "p13.0")]

    prices = [(r["query"], r["number"], r["value"])
              for r in results["a captured value over time"]]
    assert prices == [("id=17", 12.5, "12.5"), ("id=17", 13.0, "13.0")]


def test_every_job_file_in_the_docs_is_valid(tmp_path: Path) -> None:
    blocks = [(page, block) for page, block in fenced_everywhere("toml")
              if block.startswith("[jobs.")]
    assert len(blocks) >= 2  # the README's and docs/jobs.md's
    for number, (page, block) in enumerate(blocks):
        path = tmp_path / f"{number}.toml"
        path.write_text(block)
        assert load_job_file(path), page


def _command_lines() -> list[tuple[Path, str]]:
    found = []
    for page, block in fenced_everywhere("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("collector "):
                found.append((page, line))
    return found


@pytest.mark.parametrize(("page", "line"), _command_lines(),
                         ids=[line for _, line in _command_lines()])
def test_every_command_line_in_the_docs_parses(page: Path, line: str) -> None:
    import shlex

    words = shlex.split(line, comments=True)[1:]
    for end in (">", ">>", "|", "&&", ";"):  # the shell's, not collector's
        if end in words:
            words = words[:words.index(end)]
    command: Any = get_command(app)
    path = ["collector"]
    while words and words[0] in getattr(command, "commands", {}):
        path.append(words[0])
        command = command.commands[words.pop(0)]
    assert not hasattr(command, "commands"), f"{page}: {line}: no such command"
    # Parses every option and argument as the command would (values through collector's
    # own parsers), and runs nothing.
    command.make_context(" ".join(path), words)


def test_every_link_between_the_pages_leads_somewhere() -> None:
    def anchors(text: str) -> set[str]:
        return {re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
                for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)}

    broken, checked = [], 0
    for page, content in PAGES.items():
        for target in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", content):
            file, anchor = target
            if file.startswith(("http://", "https://")):
                continue
            checked += 1
            path = (ROOT / page).parent / file if file else ROOT / page
            if not path.exists():
                broken.append(f"{page}: {file}")
            elif anchor and anchor not in anchors(path.read_text()):
                broken.append(f"{page}: {file}#{anchor}")
    assert broken == [] and checked >= 20


def test_the_readme_fits_one_sitting() -> None:
    assert len(README.splitlines()) <= 250
    linked = set(re.findall(r"\]\((docs/[a-z]+\.md)\)", README))
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} <= linked
