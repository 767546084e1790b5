"""Driving the CLI in-process, as the tests of every command group do."""

from __future__ import annotations

from typer.testing import CliRunner

from collector.cli import app


def invoke(*args: str) -> tuple[int, str, str]:
    """Run ``collector ARGS...``; the exit code, stdout and stderr."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    """stderr is one ``collector: error: ...`` line holding every fragment."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("collector: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
