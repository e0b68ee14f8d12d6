"""A config file with errors on disk (edited, not applied) when a twin dies: the new
supervisor, or the new guard, runs on the last applied config and says that the file has
errors, instead of exiting and leaving the programs unsupervised (issue 10, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.faults import await_exit, kill_both, program_processes, twin_pids
from tests.support.helpers import (
    Daemon,
    child,
    daemon_fixture,  # noqa: F401
    wait_until,
)

BROKEN = {
    "typo": "\nautorestrat = 1\n",  # an unknown key in the last table
    "syntax": "\n[program.b\n",  # not TOML at all: even the [daemon] table cannot be read
}


def _kill(pid: int | None) -> None:
    import os
    import signal

    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await_exit(pid)


def _answering(daemon: Daemon, old: int | None) -> int:
    def new_pid() -> int | None:
        try:
            code, body = daemon.api("GET", "/version")
        except Exception:
            return None
        return int(body["pid"]) if code == 200 and body["pid"] != old else None

    return wait_until(new_pid, timeout=30, what="a new supervisor answering")


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_twin_dies_while_the_config_on_disk_has_errors(daemon: Daemon, broken: str) -> None:
    daemon.up({"a": {"command": child("run")}, "b": {"command": child("run")}})
    pids = {n: daemon.wait_state(n, "RUNNING")["pid"] for n in ("a", "b")}
    good = Path(daemon.config).read_text()
    Path(daemon.config).write_text(good + BROKEN[broken])
    guard, supervisor = twin_pids(daemon)
    _kill(supervisor)  # the guard brings up a new one: it must not exit 2
    supervisor = _answering(daemon, supervisor)
    code, body = daemon.api("GET", "/status")
    assert code == 200 and body["daemon"]["config_problems"], body
    assert {r["name"]: r["pid"] for r in body["programs"]} == pids
    _kill(guard)  # the supervisor starts a new guard: it must not exit 2 either
    new_guard = wait_until(
        lambda: (g := twin_pids(daemon)[0]) not in (None, guard) and g, what="a new guard"
    )
    _kill(supervisor)  # ... and that guard revives the supervisor
    _answering(daemon, supervisor)
    assert twin_pids(daemon)[0] == new_guard
    assert {n: daemon.status()[n]["pid"] for n in pids} == pids
    assert program_processes(daemon) == {n: [p] for n, p in pids.items()}
    log = Path(daemon.log_dir, "twinvisor.log").read_text()
    assert "has errors" in log and "last applied config" in log
    assert "Traceback" not in log
    Path(daemon.config).write_text(good)
    assert daemon.cli("down").rc == 0


def test_up_after_both_died_with_errors_on_disk_reports_them(daemon: Daemon) -> None:
    """An operator (or the timer) running `up` is told about the errors (exit 2)."""
    daemon.up({"a": {"command": child("run")}})
    pid = daemon.wait_state("a", "RUNNING")["pid"]
    good = Path(daemon.config).read_text()
    Path(daemon.config).write_text(good + BROKEN["typo"])
    kill_both(daemon)
    r = daemon.cli("up")
    assert r.rc == 2 and "autorestrat" in r.err, r
    Path(daemon.config).write_text(good)
    assert daemon.cli("up").rc == 0
    assert daemon.status()["a"]["pid"] == pid
