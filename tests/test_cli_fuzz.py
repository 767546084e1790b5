"""Random option values on every command: a one-line error or a result, never a traceback.

Only 127.0.0.1:1 (refused) is ever requested: no test reaches another host.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from collector.cli import app

values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["0", "-1", "1e308", "99999999999d", "nan", "inf", "5s", "1KiB",
                     str(2**63), "file:/x", "postgresql://u@h:abc/x", "\x00", "a\r\nb",
                     "caf\u2615", "${X}", "=", "&&", "q=a&q=b"]),
)
commands = st.sampled_from([
    ["run-once", "--url", "http://127.0.0.1:1/", "--no-store", "--timeout"],
    ["run-once", "--url", "http://127.0.0.1:1/", "--no-store", "--total-timeout"],
    ["run-once", "--url", "http://127.0.0.1:1/", "--no-store", "--max-body"],
    ["run-once", "--url", "http://127.0.0.1:1/", "--no-store", "-q"],
    ["run-once", "--url", "http://127.0.0.1:1/", "--no-store", "--field"],
    ["run-once", "--url", "http://127.0.0.1:1/", "--no-store", "-H"],
    ["run-once", "--url", "http://127.0.0.1:1/", "--no-store", "--method"],
    ["run-once", "--url", "http://127.0.0.1:1/", "--no-store", "--pool-size"],
    ["run-once", "--no-store", "--url"],
    ["report", "--since"],
    ["batches", "--limit"],
    ["prune", "--older-than"],
    ["show"],
    ["jobs", "show"],
    ["jobs", "add", "x", "--url", "http://127.0.0.1:1/", "--every"],
    ["jobs", "add", "x", "--url", "http://127.0.0.1:1/", "--every", "1m", "--cron"],
    ["jobs", "add", "x", "--url", "http://127.0.0.1:1/", "--every", "1m", "--timezone"],
    ["run", "--shutdown-timeout"],
    ["run", "--workers"],
    ["db", "info", "--db"],
])


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=commands, value=values)
def test_random_option_values_never_give_a_traceback(tmp_path: Path, command: list[str],
                                                     value: str) -> None:
    args = [*command, value]
    if "--db" not in args and command[0] != "run":
        args += ["--db", str(tmp_path / "fuzz.db")]
    if command[0] == "run" and value.strip().isdigit() and command[1] == "--workers":
        return  # a valid daemon would start and run until stopped
    if command[:2] == ["run", "--shutdown-timeout"]:
        args += ["--workers", "0"]  # stop at the first usage error, never start
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args, result.exception)
    assert result.exit_code in (0, 1, 2, 3), (args, result.output)
    if result.exit_code:
        assert "Traceback" not in result.output
