"""Long-running daemons must not leak: many restarts and crashes later, the supervisor and
the guard hold the same fds, no FIFO is left in the run dir, and nothing is a zombie."""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from tests.support.helpers import Daemon, child, daemon_fixture, wait_until  # noqa: F401


def fd_targets(pid: int) -> list[str]:
    out = []
    for entry in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue
        # the kind only: pipe:[123] and pipe:[456], or the FIFOs app.out.<pid> of two
        # generations, are the same resource held again
        if ":[" in target:
            target = target.split(":[")[0]
        elif "/pipes/" in target:
            target = target.rsplit(".", 1)[0]
        out.append(target)
    return sorted(out)


def pid_is_not(old: int, row: dict[str, Any]) -> bool:
    return bool(row["pid"] != old)


def test_restarts_and_crashes_leak_no_fds(daemon: Daemon) -> None:
    daemon.up({"app": {"command": child("run"), "stop_timeout": 2}})
    daemon.wait_state("app", "RUNNING")
    run = Path(daemon.run_dir)
    supervisor = int((run / "twinvisor.pid").read_text())
    guard = int((run / "guard.pid").read_text())
    before = (fd_targets(supervisor), fd_targets(guard))
    for _ in range(20):
        assert daemon.cli("restart", "app").rc == 0
    for _ in range(5):
        pid = daemon.wait_state("app", "RUNNING")["pid"]
        os.kill(pid, signal.SIGKILL)
        daemon.wait_state("app", "RUNNING", where=partial(pid_is_not, pid))
    pid = daemon.wait_state("app", "RUNNING")["pid"]

    def settled() -> bool:  # the last retired generations' pipes are released asynchronously
        return (fd_targets(supervisor), fd_targets(guard)) == before

    wait_until(settled, timeout=10, what="fd tables back to their size before the restarts")
    fifos = sorted(os.listdir(run / "pipes"))
    assert fifos == [f"app.err.{pid}", f"app.out.{pid}"]  # only the live generation's
    for p in (supervisor, guard):
        kids = psutil.Process(p).children()
        assert not [k.pid for k in kids if k.status() == psutil.STATUS_ZOMBIE]
