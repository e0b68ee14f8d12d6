"""A supervisor SIGKILLed after it read a program's output and before it wrote it loses no
line and repeats none (linux/inflight.py: the chunk between the pipe and the log file is kept
where the guard holds it).

The kill lands exactly there, every run: strace stops the supervisor at the entry of its
write(2) to the program's log file and injects SIGKILL, so the read that took the line out of
the pipe has happened and the write never does. The new supervisor must write that line
before anything the program wrote after it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.faults import answering_pid, await_exit, settled
from tests.support.helpers import Daemon, daemon_fixture, wait_until  # noqa: F401
from tests.support.paths import EXAMPLES
from twinvisor.errors import ControlError

WORKER = str(EXAMPLES / "worker.py")

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")


def _lines(path: str, name: str) -> list[int]:
    text = Path(path).read_text(errors="replace")
    # a timestamp, when the log has them, comes first
    return [int(m) for m in re.findall(rf"^(?:\S+ )?{name} line (\d+)$", text, re.MULTILINE)]


def _new_answer(daemon: Daemon, old: int) -> int | None:
    try:
        pid = answering_pid(daemon)
    except ControlError:
        return None
    return pid if pid != old else None


def _kill_at_write(pid: int, path: str, nth: int) -> subprocess.Popen[bytes]:
    """SIGKILL `pid` as it enters its `nth` write(2) to `path` (strace: -P, inject)."""
    inject = f"inject=write:signal=KILL:when={nth}"
    argv = ["strace", "-qq", "-o", os.devnull, "-p", str(pid), "-P", path]
    return subprocess.Popen([*argv, "-e", "trace=write", "-e", inject], stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("timestamps", [False, True])
def test_killed_between_read_and_write_no_line_lost_or_repeated(
    daemon: Daemon, timestamps: bool
) -> None:
    worker = {
        "command": [sys.executable, WORKER, "--interval", "0.02", "--name", "w"],
        "log_timestamps": timestamps,
    }
    daemon.up({"worker": worker})
    log = str(daemon.wait_state("worker", "RUNNING")["stdout_file"])
    wait_until(lambda: len(_lines(log, "w")) >= 3, 10.0, "the worker's first lines")
    old = answering_pid(daemon)
    settled(old)
    strace = _kill_at_write(old, log, 3)
    try:
        await_exit(old, timeout=20.0)
    finally:
        strace.wait(timeout=10)
    new = wait_until(lambda: _new_answer(daemon, old), 20.0, "a new supervisor")
    assert new != old
    seen = len(_lines(log, "w"))
    wait_until(lambda: len(_lines(log, "w")) > seen + 5, 10.0, "more lines after the kill")
    assert daemon.cli("down").rc == 0
    lines = _lines(log, "w")
    assert lines == list(range(1, len(lines) + 1)), "lines lost or repeated"
