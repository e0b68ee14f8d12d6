"""External log rotation (logrotate without copytruncate): move the file away, send SIGUSR2,
and the daemon writes to a fresh file at the configured path; nothing is lost."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tests.support.helpers import Daemon, daemon_fixture, wait_until  # noqa: F401
from tests.support.paths import SRC


def test_sigusr2_reopens_log_files(daemon: Daemon) -> None:
    gate = daemon.path("gate")
    os.mkfifo(gate)
    # a program that prints one numbered line for each line the test writes to its fifo
    code = (
        "import sys\n"
        f"with open({gate!r}) as g:\n"
        "    for n, _ in enumerate(g):\n"
        "        print(f'line {n}', flush=True)\n"
    )
    log = daemon.path("app.log")
    daemon.up({"app": {"command": [sys.executable, "-c", code], "stdout_file": log}})
    daemon.wait_state("app", "RUNNING")
    with open(gate, "w") as g:
        g.write("x\n")
        g.flush()
        wait_until(lambda: Path(log).exists() and "line 0" in Path(log).read_text())
        os.rename(log, log + ".1")  # what logrotate does
        supervisor = int(Path(daemon.run_dir, "twinvisor.pid").read_text())
        os.kill(supervisor, signal.SIGUSR2)
        wait_until(
            lambda: "log files reopened" in Path(daemon.log_dir, "twinvisor.log").read_text()
        )
        g.write("x\n")
        g.flush()
        wait_until(lambda: Path(log).exists() and "line 1" in Path(log).read_text())
    assert Path(log + ".1").read_text() == "line 0\n"
    assert Path(log).read_text() == "line 1\n"


def test_status_shows_notify_reloading_and_mainpid(daemon: Daemon) -> None:
    code = (
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(SRC)!r})\n"
        "from twinvisor import sd\n"
        "sd.notify(f'READY=1\\nMAINPID={os.getpid()}\\nRELOADING=1')\n"
        "time.sleep(1000)\n"
    )
    daemon.up({"app": {"command": [sys.executable, "-c", code], "ready": "notify"}})
    row = daemon.wait_state("app", "RUNNING", where=lambda r: r["reloading"])
    assert row["main_pid"] == row["pid"]
