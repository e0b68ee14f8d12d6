"""Seed 001 inside the daemon: a copy started by hand is adopted (never a second copy), and
per-program pid files are written, removed and rewritten when deleted (seed 000)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import psutil
import pytest

from tests.support.helpers import (
    Daemon,
    child,
    daemon_fixture,  # noqa: F401
    gone,
    wait_report,
    wait_until,
)
from tests.support.paths import CHILDREN


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


@pytest.mark.parametrize("mode", ["cmdline", "cwd", "exe"])
def test_each_find_mode_adopts_through_the_daemon(daemon: Daemon, mode: str) -> None:
    """A copy of a real binary started by hand in its directory: every mode finds it, and
    the daemon takes it over instead of starting a second copy."""
    appdir = Path(daemon.path("app"))
    appdir.mkdir()
    binary = appdir / "myapp"
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", binary)
    by_hand = subprocess.Popen(
        ["./myapp", "1000"], cwd=appdir, env=daemon.env, start_new_session=True
    )
    try:
        wait_until(lambda: psutil.Process(by_hand.pid).exe() == str(binary), what="exec")
        daemon.up({"app": {"command": ["./myapp", "1000"], "directory": str(appdir), "find": mode}})
        assert daemon.wait_state("app", "RUNNING")["pid"] == by_hand.pid
        running = [p for p in psutil.process_iter(["exe"]) if p.info["exe"] == str(binary)]
        assert [p.pid for p in running] == [by_hand.pid]  # never a second copy
        assert daemon.cli("stop", "app").rc == 0
        assert by_hand.wait(timeout=10) is not None
    finally:
        if by_hand.poll() is None:
            by_hand.kill()
            by_hand.wait()


def test_timer_command_revives_a_killed_pair_and_adopts(daemon: Daemon) -> None:
    """The third line of defence: both twins gone (OOM killer); the timer's `up` brings them
    back and the running program is adopted, not started again."""
    daemon.up({"app": {"command": child("run")}})
    pid = daemon.wait_state("app", "RUNNING")["pid"]
    run = Path(daemon.run_dir)
    twins = [int((run / f).read_text()) for f in ("guard.pid", "twinvisor.pid")]
    for p in twins:  # freeze both first, or the survivor revives its partner at once
        os.kill(p, signal.SIGSTOP)
    for p in twins:
        os.kill(p, signal.SIGKILL)
    for p in twins:
        wait_until(partial(gone, p), what=f"pid {p} gone")
    r = daemon.cli("up", "--quiet")  # what the crontab line / systemd timer runs
    assert r.rc == 0, r
    row = daemon.wait_state("app", "RUNNING")
    assert row["pid"] == pid and row["restarts"] == 0
