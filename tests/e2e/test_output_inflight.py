"""No line of a program's output is lost between its pipe and its log file, whatever happens
to the supervisor:

- killed after it read a chunk and before it wrote it (linux/inflight.py: the chunk is kept
  in a memfd the guard holds). The kill lands exactly there, every run: strace stops the
  supervisor at the entry of its write(2) to the program's log file and injects SIGKILL, so
  the read that took the line out of the pipe has happened and the write never does. The new
  supervisor must write that line before anything the program wrote after it;
- killed while the program, whose pipe the guard holds, writes its last line and ends: the
  new supervisor finds the program gone and still writes what waits in its pipe.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.faults import answering_pid, await_exit, read_pid, settled
from tests.support.helpers import Daemon, daemon_fixture, wait_until  # noqa: F401
from tests.support.paths import EXAMPLES
from twinvisor.errors import ControlError

WORKER = str(EXAMPLES / "worker.py")


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


# a program that says its last words on SIGUSR1 and ends (its sleep goes with it)
LAST_WORDS = 'trap "kill \\$!; echo last words; exit 3" USR1; echo started; sleep infinity & wait'


def test_last_words_written_while_no_supervisor_read_them_reach_the_log(daemon: Daemon) -> None:
    """The supervisor is killed while its guard is stopped (it cannot start another yet); the
    program writes a line and ends; the guard, resumed, starts a new supervisor and hands it
    the program's pipe: the program is gone, and its last line must still reach the log."""
    daemon.up({"p": {"command": ["sh", "-c", LAST_WORDS]}})
    log = str(daemon.wait_state("p", "RUNNING")["stdout_file"])
    wait_until(lambda: Path(log).exists() and "started" in Path(log).read_text(), 10.0, "started")
    program = daemon.pid("p")
    guard = read_pid(os.path.join(daemon.run_dir, "guard.pid"))
    assert guard is not None
    supervisor = answering_pid(daemon)
    settled(supervisor)
    os.kill(guard, signal.SIGSTOP)
    try:
        os.kill(supervisor, signal.SIGKILL)
        await_exit(supervisor)
        os.kill(program, signal.SIGUSR1)
        await_exit(program)  # ended (a zombie of the stopped guard): its words wait in the pipe
    finally:
        os.kill(guard, signal.SIGCONT)
    wait_until(lambda: _new_answer(daemon, supervisor), 20.0, "a new supervisor")
    wait_until(lambda: "last words" in Path(log).read_text(), 10.0, "the last words in the log")
    assert Path(log).read_text().count("last words") == 1
