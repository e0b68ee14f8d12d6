"""Issue 10, bad input: malformed config files and requests get a clear error (file:line:key,
JSON 4xx), never a traceback; a broken config never makes a running daemon uncontrollable;
the daemon's own logs are as private as the programs'."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.support.helpers import (
    Daemon,
    child,
    daemon_fixture,  # noqa: F401
)


def test_daemon_logs_have_the_program_logs_mode(daemon: Daemon) -> None:
    """twinvisor.log and twinvisor.out were 0644 while program logs are 0640."""
    old = os.umask(0o022)  # the usual umask, under which the daemon's files came out 0644
    try:
        daemon.up({"app": {"command": child("flood", 3)}})
    finally:
        os.umask(old)
    daemon.wait_state("app", "RUNNING")
    logs = Path(daemon.log_dir)
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in logs.iterdir()
        if p.name in ("twinvisor.log", "twinvisor.out") or p.name.startswith("app.")
    }
    assert {"twinvisor.log", "twinvisor.out"} <= modes.keys()
    assert any(n.startswith("app.") for n in modes), modes
    assert set(modes.values()) == {0o640}, modes
