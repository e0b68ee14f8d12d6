"""Fault injection for end-to-end tests: kill both twins, damage the run dir, and an orphan
catcher (a subreaper standing in for `systemd --user`, a desktop session or a container's
init) so that programs left behind are reparented to a process that is not PID 1.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.support.helpers import Daemon, wait_until
from twinvisor.control.client import ControlClient
from twinvisor.errors import ControlError
from twinvisor.twin.guard import MIN_UPTIME

# the subreaper: runs its argv, then reaps whatever is reparented to it until SIGTERM
_SUBREAPER = """
import ctypes, os, signal, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
rc = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL).returncode
with open(sys.argv[1] + ".tmp", "w") as f:  # then renamed: rc() never reads it half written
    f.write(str(rc))
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    try:
        os.wait()
    except ChildProcessError:
        signal.pause()
"""


class Subreaper:
    """`with Subreaper(daemon, *argv):` runs argv (say `twinvisor up`) under a subreaper that
    stays until the block ends: the guard it starts, and what the guard leaves, end up its
    children. `rc()` waits for argv's exit status."""

    def __init__(self, daemon: Daemon, *argv: str) -> None:
        self.rc_path = daemon.path(f"subreaper-rc.{os.getpid()}.{id(self)}")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SUBREAPER, self.rc_path, *argv],
            env=daemon.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def rc(self, timeout: float = 60.0) -> int:
        from tests.support.helpers import wait_until

        wait_until(lambda: Path(self.rc_path).exists(), timeout, "the command under the subreaper")
        return int(Path(self.rc_path).read_text() or "-1")

    def __enter__(self) -> Subreaper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def read_pid(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def twin_pids(daemon: Daemon) -> tuple[int | None, int | None]:
    run = daemon.run_dir
    return read_pid(f"{run}/guard.pid"), read_pid(f"{run}/twinvisor.pid")


def await_exit(pid: int, timeout: float = 10.0) -> None:
    """Block until `pid` (not necessarily our child) has exited: its pidfd turns readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"pid {pid} still alive after {timeout}s"
    finally:
        os.close(fd)


def kill_both(daemon: Daemon) -> None:
    """SIGKILL the guard and the supervisor. Both are frozen first: killed one after the
    other, the survivor would notice the first death and start a replacement."""
    pids = [p for p in twin_pids(daemon) if p is not None]
    assert pids, "no twin to kill"
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            os.kill(pid, sig)
    for pid in pids:
        await_exit(pid)


def program_processes(daemon: Daemon) -> dict[str, list[int]]:
    """Live processes started as programs of this daemon, by instance name (psutil scan of
    the environment: what a program and its descendants inherit)."""
    found: dict[str, list[int]] = {}
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("TWINVISOR_RUN_DIR") == daemon.run_dir and "TWINVISOR_PROGRAM" in env:
            found.setdefault(env["TWINVISOR_PROGRAM"], []).append(proc.pid)
    return found


def parent_of(pid: int) -> int:
    return int(psutil.Process(pid).ppid())


_first_seen: dict[int, float] = {}  # supervisor pid -> time.monotonic() it first answered


def answering_pid(daemon: Daemon, timeout: float = 10.0) -> int:
    """The pid of the supervisor that answers on the control socket."""
    code, body = ControlClient(daemon.socket, timeout=timeout).call("GET", "/version")
    assert code == 200, body
    return int(body["pid"])


def settled(pid: int) -> None:
    """Wait (bounded) until the supervisor `pid` has run long enough to count as healthy for
    its guard (guard.MIN_UPTIME): one killed sooner counts as one more
    failure in a row, and the guard backs off (0.1 s, 0.2 s, 0.4 s ...) and, after max_retry,
    gives up, as for a crash loop. Measured from when it first answered (psutil's
    create_time is off by up to a second here)."""
    since = _first_seen.setdefault(pid, time.monotonic())
    wait_until(
        lambda: time.monotonic() - since > MIN_UPTIME + 0.1,
        timeout=MIN_UPTIME + 5,
        what="the supervisor past its min_uptime",
    )


def kill_supervisor(daemon: Daemon) -> tuple[int, int, float]:
    """SIGKILL the supervisor; (old pid, new pid, seconds until `status` answered again)."""
    old = answering_pid(daemon)
    settled(old)
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    await_exit(old)

    def new_answer() -> int | None:
        try:
            code, _ = daemon.api("GET", "/status")
            pid = answering_pid(daemon)
        except ControlError:
            return None
        return pid if code == 200 and pid != old else None

    new = wait_until(new_answer, timeout=30, what="a new supervisor answering")
    took = time.monotonic() - t0
    _first_seen[new] = time.monotonic()
    return old, new, took
