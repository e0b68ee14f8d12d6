"""The layer contract (pyproject [tool.importlinter]) really guards the layering: lint-imports,
run on a copy of the package, passes the tree as it is and fails, naming the contract, once a
module imports upward or the pure core imports the OS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.paths import ROOT, SRC

PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
_CONFIG = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
CONTRACTS = [c["name"] for c in _CONFIG]
LAYERS = next(c["name"] for c in _CONFIG if c["type"] == "layers")
PURE_CORE = next(c["name"] for c in _CONFIG if c.get("source_modules") == ["twinvisor.core"])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of src/twinvisor under tmp_path/src, to break on purpose."""
    shutil.copytree(
        SRC / "twinvisor",
        tmp_path / "src" / "twinvisor",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path / "src"


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """The project's contracts, checked against `tree` (first on the path, before the install)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo", str(PYPROJECT)],
        cwd=tree.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def append(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(f"\n{line}\n")


def test_the_tree_as_it_is_keeps_every_contract(tree: Path) -> None:
    r = lint(tree)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in r.stdout


def test_an_upward_import_breaks_the_layers(tree: Path) -> None:
    append(tree / "twinvisor" / "config" / "load.py", "import twinvisor.supervisor.runtime")
    r = lint(tree)
    assert r.returncode != 0
    assert f"{LAYERS} BROKEN" in r.stdout and f"{PURE_CORE} KEPT" in r.stdout
    assert "twinvisor.config.load -> twinvisor.supervisor.runtime" in r.stdout


def test_the_core_importing_the_os_breaks_the_pure_core(tree: Path) -> None:
    append(tree / "twinvisor" / "core" / "machine.py", "import os")
    r = lint(tree)
    assert r.returncode != 0
    assert f"{PURE_CORE} BROKEN" in r.stdout and f"{LAYERS} KEPT" in r.stdout
    assert "twinvisor.core.machine -> os" in r.stdout
