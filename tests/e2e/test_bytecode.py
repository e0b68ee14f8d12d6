"""The supervisor runs on optimized bytecode (-OO) when `up` could prepare it (issue 16:
0.7 MiB of docstrings), and says so when it could not (twin/bytecode.py).

The real command on the real install this suite runs from: `up` writes the .opt-2.pyc files
beside the sources, the guard starts the supervisor with -OO, and the supervisor's own
/proc/PID/cmdline shows it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import Daemon, child, daemon_fixture  # noqa: F401
from twinvisor.twin import bytecode


def _supervisor_argv(daemon: Daemon) -> list[str]:
    pid = int(Path(daemon.run_dir, "twinvisor.pid").read_text())
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _own_sentinel() -> Path:
    """One of our modules whose optimized bytecode stands for the rest (a sentinel)."""
    return Path(bytecode.package_root(), bytecode.OWN_SENTINELS[-1])


def test_up_runs_the_supervisor_with_OO(daemon: Daemon) -> None:
    daemon.up({"a": {"command": child("run")}})
    assert daemon.status()["a"]["state"] == "RUNNING"
    assert "-OO" in _supervisor_argv(daemon)
    assert "plain bytecode" not in daemon.log_tail(200)


def test_up_writes_missing_bytecode_first(daemon: Daemon) -> None:
    """The bytecode of one of our modules gone (a fresh install: pip writes only the plain
    .pyc): `up` writes it again before it starts the twins."""
    cached = Path(bytecode.cached_path(str(_own_sentinel())))
    cached.unlink(missing_ok=True)
    daemon.up({"a": {"command": child("run")}})
    assert cached.is_file()
    assert bytecode.is_fresh(str(_own_sentinel()))
    assert "-OO" in _supervisor_argv(daemon)


def test_turned_off_the_supervisor_runs_plain_and_says_why(daemon: Daemon) -> None:
    daemon.env[bytecode.OPTIMIZE_ENV] = "0"
    daemon.up({"a": {"command": child("run")}})
    assert daemon.status()["a"]["state"] == "RUNNING"
    assert "-OO" not in _supervisor_argv(daemon)
    assert "running on plain bytecode, not -OO: TWINVISOR_OPTIMIZE=0" in daemon.log_tail(200)


@pytest.fixture(name="read_only_pycache")
def read_only_pycache_fixture() -> Iterator[Path]:
    """The sentinel's __pycache__ without its optimized bytecode, mounted read-only (root
    cannot write there either): an install `up` cannot prepare."""
    cached = Path(bytecode.cached_path(str(_own_sentinel())))
    cached.unlink(missing_ok=True)
    folder = str(cached.parent)
    subprocess.run(["mount", "--bind", folder, folder], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True)
        yield cached
    finally:
        subprocess.run(["umount", "-l", folder], check=True)


def test_a_read_only_install_runs_plain_and_says_why(
    daemon: Daemon, read_only_pycache: Path
) -> None:
    daemon.up({"a": {"command": child("run")}})
    assert daemon.status()["a"]["state"] == "RUNNING"  # works, plain
    assert not read_only_pycache.exists()
    assert "-OO" not in _supervisor_argv(daemon)
    log = daemon.log_tail(200)
    assert "running on plain bytecode, not -OO: no fresh optimized bytecode beside" in log, log
    assert str(_own_sentinel()) in log


def test_an_image_build_step_writes_it_too() -> None:
    """`python -OO -m twinvisor.service.warm` (README, containers): the same warm, by hand."""
    cached = Path(bytecode.cached_path(str(_own_sentinel())))
    cached.unlink(missing_ok=True)
    p = subprocess.run(
        [sys.executable, "-OO", "-m", "twinvisor.service.warm"], capture_output=True, timeout=120
    )
    assert p.returncode == 0, p
    assert bytecode.is_fresh(str(_own_sentinel()))
