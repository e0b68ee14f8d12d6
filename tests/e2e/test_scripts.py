"""The repository's scripts: scripts/setup runs pip only when something it installs from changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT


def _fake_tree(tmp_path: Path) -> Path:
    """A copy of scripts/setup beside a pyproject.toml and a .venv whose python only logs
    what it was asked to do (no real pip: the test is about when pip runs, not pip)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(os.path.join(ROOT, "scripts", "setup"), tmp_path / "scripts" / "setup")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "python"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-m" ]; then echo "$*" >> "{tmp_path}/pip.log"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    return tmp_path


def _setup(tree: Path) -> list[str]:
    log = tree / "pip.log"
    log.unlink(missing_ok=True)
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run([str(tree / "scripts" / "setup")], check=True, env=env, timeout=60)
    return log.read_text().splitlines() if log.exists() else []


def test_setup_skips_pip_when_pyproject_is_unchanged(tmp_path: Path) -> None:
    tree = _fake_tree(tmp_path)
    first = _setup(tree)
    assert any("install --quiet -e" in line for line in first), first
    assert _setup(tree) == []  # nothing changed: no pip at all
    with open(tree / "pyproject.toml", "a") as f:
        f.write('version = "2"\n')
    assert any("install --quiet -e" in line for line in _setup(tree))
    assert _setup(tree) == []


def test_test_and_run_example_go_through_setup() -> None:
    for script in ("test", "run-example"):
        text = Path(ROOT, "scripts", script).read_text()
        assert "scripts/setup" in text, script
