"""The wheel as users get it: it carries the top-level migrations/ and upgrades a database."""

from __future__ import annotations

import subprocess
import sys
import zipfile
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
