"""With `cgroup = true`, where cgroup v2 can be used, each program generation lives in a leaf
of its own, so what it started is found even after it escaped both the process group
(setsid) and the process tree (its parent exited: a classic double fork). Elsewhere the
process group and the descendants seen at stop time are what is killed (test_supervisor.py)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.support.helpers import Daemon, daemon_fixture, gone, wait_until  # noqa: F401
from twinvisor.linux import kernel


def _usable() -> bool:
    probe = kernel.cgroup2_base("probe")
    if probe is None:
        return False
    kernel.cgroup_remove(probe)
    return True


pytestmark = pytest.mark.skipif(not _usable(), reason="no writable cgroup v2 hierarchy here")

# the program: double-forks a daemon that writes its pid to a file, then serves forever
DOUBLE_FORK = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(1000)
    os._exit(0)
time.sleep(1000)
"""


def escapee(path: str, program: int) -> int:
    wait_until(lambda: os.path.exists(path), what="the double-forked daemon's pid")
    pid = int(Path(path).read_text())
    assert os.getsid(pid) != os.getsid(program)  # left the program's session and group
    assert pid not in kernel.descendants(os.getpid())  # and its process tree
    return pid


def test_stop_kills_a_double_forked_escapee(daemon: Daemon) -> None:
    report = daemon.path("escapee")
    daemon.up({"app": {"command": [sys.executable, "-c", DOUBLE_FORK, report], "cgroup": True}})
    row = daemon.wait_state("app", "RUNNING")
    leaf = kernel.process_cgroup2(row["pid"])
    assert leaf is not None and "/twinvisor-" in leaf, leaf
    pid = escapee(report, row["pid"])
    assert kernel.process_cgroup2(pid) == leaf  # one leaf holds them both
    assert daemon.cli("stop", "app").rc == 0
    wait_until(lambda: gone(pid), what="the escapee killed with its program")


def test_escapee_of_a_crashed_program_is_killed_and_leaf_removed(daemon: Daemon) -> None:
    report = daemon.path("escapee")
    daemon.up(
        {
            "app": {
                "command": [sys.executable, "-c", DOUBLE_FORK, report],
                "auto_restart": False,
                "cgroup": True,
            }
        }
    )
    row = daemon.wait_state("app", "RUNNING")
    mount_leaf = kernel.process_cgroup2(row["pid"])
    assert mount_leaf is not None and "/twinvisor-" in mount_leaf, mount_leaf
    pid = escapee(report, row["pid"])
    assert kernel.process_cgroup2(pid) == mount_leaf
    os.kill(row["pid"], signal.SIGKILL)  # the program dies on its own, not through `stop`
    daemon.wait_state("app", "EXITED")
    wait_until(lambda: gone(pid), what="what the dead program left behind killed")
    mount = kernel.cgroup2_mount()
    assert mount is not None and mount_leaf is not None
    leaf = mount + mount_leaf
    wait_until(lambda: not os.path.exists(leaf), what="the empty leaf removed")
