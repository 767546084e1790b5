"""The wheel as users get it: it carries the top-level migrations/ and py.typed, upgrades a
database, and every package collector imports is one it declares."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

from collector.store.schema import head_revision

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import sys
from pathlib import Path
import collector
from collector.store import open_store
from collector.store.schema import migrations_location
assert Path(collector.__file__).is_relative_to(sys.argv[1]), collector.__file__
assert Path(migrations_location()).is_relative_to(sys.argv[1]), migrations_location()
with open_store(sys.argv[2], ensure_schema=False) as store:
    print(store.upgrade())
"""


def test_the_wheel_upgrades_a_database_from_its_own_migrations(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(dist), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("collector-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    versions = sorted(p.name for p in (ROOT / "migrations" / "versions").glob("*.py"))
    assert {f"collector/migrations/versions/{name}" for name in versions} <= names
    assert "collector/migrations/env.py" in names
    assert "collector/py.typed" in names  # type checkers read collector's annotations
    assert not any(name.startswith("migrations/") for name in names)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-c", CHECK, str(site),
                           f"sqlite:///{elsewhere / 'new.db'}"],
                          cwd=elsewhere, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str((None, head_revision()))


def _imported_packages() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "collector").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.partition(".")[0])
    return found - set(sys.stdlib_module_names) - {"collector", "__future__"}


def _name(requirement: str) -> str:
    import re

    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_package_collector_imports_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    declared |= {_name(r) for r in project["optional-dependencies"]["postgres"]}
    distributions = packages_distributions()
    imported = _imported_packages()
    assert "rich" in imported and "urllib3" in imported  # the walk sees lazy imports too
    undeclared = {package: distributions.get(package) for package in imported
                  if not {_name(d) for d in distributions.get(package, [package])} & declared}
    assert undeclared == {}
