"""Many programs at once: every row in `status`, and a stop of them all that still honours
depends_on (dependents first) and stop_timeout (SIGKILL for one that ignores SIGTERM), while
the supervisor signals a whole level together and waits on their exits, not in turns."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.helpers import Daemon, daemon_fixture, wait_until  # noqa: F401

WORKERS = 120


def entering(daemon: Daemon, state: str) -> list[str]:
    """Instance names in the order the daemon log shows them entering `state`."""
    text = Path(daemon.log_dir, "twinvisor.log").read_text()
    marker = f" -> {state}"
    return [line.split(": ")[-2].split()[-1] for line in text.splitlines() if line.endswith(marker)]


def test_many_programs_stop_dependents_first_and_kill_after_stop_timeout(daemon: Daemon) -> None:
    ignore_term = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.pause()"
    stubborn = [sys.executable, "-c", ignore_term]
    workers = {
        f"w{i:03d}": {"command": ["sleep", "infinity"], "min_uptime": 0, "depends_on": ["db"]}
        for i in range(WORKERS)
    }
    daemon.up({"db": {"command": stubborn, "stop_timeout": 0.5, "min_uptime": 0}, **workers})

    def all_running() -> bool:
        return all(r["state"] == "RUNNING" for r in daemon.status().values())

    wait_until(all_running, 30, "every program RUNNING")
    shown = daemon.cli("status")
    assert shown.rc == 0, shown
    rows = [line.split()[0] for line in shown.out.splitlines()[2:]]  # config line, header
    assert rows == ["db", *workers], shown.out

    r = daemon.cli("stop", "all")
    assert r.rc in (0, 1), r
    states = {n: row["state"] for n, row in daemon.status().items()}
    assert set(states.values()) == {"STOPPED"}, states
    stopping = entering(daemon, "STOPPING")
    assert sorted(stopping[:-1]) == sorted(workers) and stopping[-1] == "db", stopping
    log = Path(daemon.log_dir, "twinvisor.log").read_text()
    assert "db: stopping pid" in log and "SIGKILL" in log, log[-2000:]

    # the same order when the daemon goes down with everything running again
    assert daemon.cli("start", "all").rc == 0
    wait_until(all_running, 30, "every program RUNNING again")
    before = len(entering(daemon, "STOPPING"))
    down = daemon.cli("down")
    assert down.rc == 0, down
    again = entering(daemon, "STOPPING")[before:]
    assert sorted(again[:-1]) == sorted(workers) and again[-1] == "db", again
