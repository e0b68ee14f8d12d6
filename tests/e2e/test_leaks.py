"""Long-running daemons must not leak: many restarts and crashes later, the supervisor and
the guard hold the same fds, no FIFO is left in the run dir, and nothing is a zombie."""

from __future__ import annotations

import os
import signal
from collections import Counter
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


def crash(daemon: Daemon, name: str) -> None:
    pid = daemon.wait_state(name, "RUNNING")["pid"]
    os.kill(pid, signal.SIGKILL)
    daemon.wait_state(name, "RUNNING", where=partial(pid_is_not, pid))


def test_restarts_and_crashes_leak_no_fds(daemon: Daemon) -> None:
    daemon.up({"app": {"command": child("run"), "stop_timeout": 2}})
    daemon.wait_state("app", "RUNNING")
    run = Path(daemon.run_dir)
    supervisor = int((run / "twinvisor.pid").read_text())
    guard = int((run / "guard.pid").read_text())
    # one of each first, so what is opened once and kept (the journal, a lazily made socket) is
    # in the baseline; a leak is what grows with the number of restarts
    assert daemon.cli("restart", "app").rc == 0
    crash(daemon, "app")
    before = (Counter(fd_targets(supervisor)), Counter(fd_targets(guard)))
    for _ in range(20):
        assert daemon.cli("restart", "app").rc == 0
    for _ in range(5):
        crash(daemon, "app")
    pid = daemon.wait_state("app", "RUNNING")["pid"]
    grown: list[tuple[Counter[str], Counter[str]]] = []

    def settled() -> bool:  # the last retired generations' pipes are released asynchronously
        now = (Counter(fd_targets(supervisor)), Counter(fd_targets(guard)))
        grown[:] = [(now[0] - before[0], now[1] - before[1])]
        return not grown[0][0] and not grown[0][1]

    try:
        wait_until(settled, timeout=10, what="fd tables back to their size before the restarts")
    except AssertionError:
        held = grown[0]
        raise AssertionError(f"fds held beyond the baseline (supervisor, guard): {held}") from None
    # output goes through anonymous pipes (children.OutputPipe): nothing is left on disk
    assert not (run / "pipes").exists() or not os.listdir(run / "pipes")
    assert daemon.status()["app"]["pid"] == pid
    for p in (supervisor, guard):
        kids = psutil.Process(p).children()
        assert not [k.pid for k in kids if k.status() == psutil.STATUS_ZOMBIE]
