"""The systemd unit: valid, hardened, and saying what the README says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
UNIT = (ROOT / "systemd" / "collector.service").read_text()
ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with ExecStart's binary where this test run has one."""
    if ANALYZE is None:
        if IN_CI:
            pytest.fail("systemd-analyze is missing: .ci/run installs the systemd package")
        pytest.skip("systemd-analyze is not installed")
    collector = Path(sys.executable).parent / "collector"
    path = tmp_path / "collector.service"
    path.write_text(UNIT.replace("/usr/local/bin/collector", str(collector)))
    return path


def test_the_unit_verifies_cleanly(unit: Path) -> None:
    assert ANALYZE is not None
    done = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    # verify exits 0 on unknown keys: what it prints is the verdict.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_unit_is_hardened(unit: Path) -> None:
    assert ANALYZE is not None
    done = subprocess.run([ANALYZE, "security", "--offline=yes", str(unit)],
                          capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for collector\.service: ([0-9.]+)", done.stdout)
    assert match is not None, done.stdout + done.stderr
    assert float(match.group(1)) <= 2.0


def test_the_unit_says_what_the_readme_says() -> None:
    settings = dict(re.findall(r"^(\w+)=(.*)$", UNIT, flags=re.M))
    assert settings["Type"] == "notify" and settings["Restart"] == "on-failure"
    assert settings["DynamicUser"] == "yes" and settings["StateDirectory"] == "collector"
    assert settings["EnvironmentFile"] == "-/etc/collector/collector.env"
    assert settings["ExecStartPre"].endswith("collector db upgrade")
    assert settings["ExecStart"].endswith("collector run --jobs /etc/collector/jobs")
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "WatchdogSec" in settings
    example = (ROOT / "systemd" / "collector.env.example").read_text()
    assert "COLLECTOR_DATABASE_URL=" in example
