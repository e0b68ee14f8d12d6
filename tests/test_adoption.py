"""Seed 001 inside the daemon: a copy started by hand is adopted (never a second copy), and
per-program pid files are written, removed and rewritten when deleted (seed 000)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
from helpers import (
    Daemon,
    child,
    daemon_fixture,  # noqa: F401
    gone,
    wait_report,
    wait_until,
)

CHILDREN = str(Path(__file__).with_name("children.py"))


def copies(marker: str) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline", "status"])
        if marker in (p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE
    ]


def test_find_cmdline_adopts_a_copy_started_by_hand(daemon: Daemon) -> None:
    report = daemon.path("report")
    command = [sys.executable, CHILDREN, "run", "--report", report, "--role", "by-hand"]
    by_hand = subprocess.Popen(command, env=daemon.env, start_new_session=True)
    try:
        wait_report(report, lambda ev: any(e["event"] == "ready" for e in ev))
        daemon.up({"app": {"command": command, "find": "cmdline"}})
        row = daemon.wait_state("app", "RUNNING")
        assert row["pid"] == by_hand.pid  # adopted, not started again
        assert copies("by-hand") == [by_hand.pid]
        assert "adopted pid" in Path(daemon.log_dir, "twinvisor.log").read_text()
        # it is now ours to stop
        assert daemon.cli("stop", "app").rc == 0
        assert by_hand.wait(timeout=10) is not None
    finally:
        if by_hand.poll() is None:
            by_hand.kill()
            by_hand.wait()


def test_without_find_a_second_copy_is_started(daemon: Daemon) -> None:
    """The control case: the same command without `find` does start its own copy."""
    report = daemon.path("report")
    command = [sys.executable, CHILDREN, "run", "--report", report, "--role", "by-hand"]
    by_hand = subprocess.Popen(command, env=daemon.env, start_new_session=True)
    try:
        daemon.up({"app": {"command": command}})
        assert daemon.wait_state("app", "RUNNING")["pid"] != by_hand.pid
    finally:
        by_hand.kill()
        by_hand.wait()


def test_pidfile_written_removed_and_rewritten(daemon: Daemon) -> None:
    pidfile = daemon.path("app.pid")
    daemon.env["TWINVISOR_PID_REFRESH"] = "0.2"
    daemon.up({"app": {"command": child("run"), "pidfile": pidfile}})
    pid = daemon.wait_state("app", "RUNNING")["pid"]
    wait_until(lambda: Path(pidfile).exists() and Path(pidfile).read_text().strip() == str(pid))
    os.unlink(pidfile)  # seed 000: someone deletes it
    wait_until(lambda: Path(pidfile).exists(), what="pid file rewritten")
    assert Path(pidfile).read_text().strip() == str(pid)
    own = Path(daemon.run_dir, "twinvisor.pid")
    supervisor = int(own.read_text())
    own.unlink()
    wait_until(own.exists, what="supervisor pid file rewritten")
    assert int(own.read_text()) == supervisor
    assert daemon.cli("stop", "app").rc == 0
    assert gone(pid)
    wait_until(lambda: not Path(pidfile).exists(), what="pid file removed on stop")
