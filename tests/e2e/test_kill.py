"""`twinvisor kill`: kill a program's process and report the pid it comes back with."""

from __future__ import annotations

import json

from tests.support.helpers import Daemon, child, daemon_fixture  # noqa: F401


def test_kill_brings_a_new_pid(daemon: Daemon) -> None:
    daemon.up({"sl": {"command": child("run"), "numprocs": 2}})
    old = {n: daemon.wait_state(n, "RUNNING")["pid"] for n in ("sl:0", "sl:1")}
    r = daemon.cli("kill", "sl", "--timeout", "20")
    assert r.rc == 0, (r, daemon.log_tail())
    status = daemon.status()
    for name, pid in old.items():
        new = status[name]["pid"]
        assert status[name]["state"] == "RUNNING" and new != pid
        assert f"{name}: killed pid {pid} -> restarted as pid {new}" in r.out
    r = daemon.cli("kill", "sl:0", "--json")
    assert r.rc == 0, (r, daemon.log_tail())
    report = json.loads(r.out)["sl:0"]
    assert report["killed"] and report["new_pid"] not in (None, report["old_pid"])


def test_kill_of_a_program_that_does_not_come_back(daemon: Daemon) -> None:
    daemon.up({"once": {"command": child("run"), "auto_restart": "never"}})
    pid = daemon.wait_state("once", "RUNNING")["pid"]
    r = daemon.cli("kill", "once", "--timeout", "5")
    assert r.rc == 1, r
    assert f"killed pid {pid}; not running again" in r.out
    assert daemon.cli("kill", "nosuch").rc == 2
