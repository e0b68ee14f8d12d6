"""Issue 10, bad input: malformed config files and requests get a clear error (file:line:key,
JSON 4xx), never a traceback; a broken config never makes a running daemon uncontrollable;
the daemon's own logs are as private as the programs'."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import (
    Daemon,
    child,
    daemon_fixture,  # noqa: F401
    gone,
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


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NOBODY, sys.executable, "-m", "twinvisor", "--socket", daemon.socket, *args],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd="/",
    )


def test_cli_prints_the_error_of_a_403(daemon: Daemon) -> None:
    """Issue 10 item 10: a refused CLI printed nothing (rc 1) or a KeyError traceback."""
    daemon.up({"app": {"command": child("run")}})
    daemon.wait_state("app", "RUNNING")
    # let uid 65534 reach the socket: the server itself must refuse it, and say so
    for path in (daemon.root, daemon.run_dir):
        os.chmod(path, 0o711)
    os.chmod(daemon.socket, 0o666)
    for verb in ("status", "down"):
        r = as_nobody(daemon, verb)
        assert r.returncode == 1, r
        assert "uid 65534 is not allowed" in r.stderr, r
        assert "Traceback" not in r.stderr, r
    assert daemon.status()["app"]["state"] == "RUNNING"  # the refused `down` did nothing


@pytest.mark.parametrize(
    "breakage",
    [
        b"[program.app\ncommand = 'x'\n",  # TOML syntax error
        b"autorestrat = 1\n",  # unknown key
        b"[program.deep]\ncommand = 'x'\nenvironment = { A = "
        + b"[" * 20000
        + b"]" * 20000
        + b" }\n",
        b"\x00\xff\xfe binary \x80\n",  # not UTF-8
    ],
    ids=["syntax", "unknown-key", "deep", "binary"],
)
def test_status_and_down_work_while_the_config_is_broken(daemon: Daemon, breakage: bytes) -> None:
    """Issue 10 item 12: status and down exited 2 on an invalid config unless --socket."""
    daemon.up({"app": {"command": child("run")}})
    pid = daemon.wait_state("app", "RUNNING")["pid"]
    with open(daemon.config, "ab") as f:
        f.write(b"\n" + breakage)
    r = daemon.cli("status")
    assert r.rc == 0 and "app" in r.out and "RUNNING" in r.out, r
    r = daemon.cli("down")
    assert r.rc == 0, r
    assert gone(pid)
