"""Faults in the run dir beyond the state file (issue 10, items 2, 4 and 5): a listening socket
held by a surviving program, hostile files where ours should be, the output FIFOs removed."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from tests.support.faults import Subreaper, kill_both, program_processes
from tests.support.helpers import (
    Daemon,
    daemon_fixture,  # noqa: F401
    free_port,
    http_get,
)
from tests.support.paths import EXAMPLES

WEBSERVER = str(EXAMPLES / "webserver.py")
WORKER = str(EXAMPLES / "worker.py")


def test_state_lost_a_listen_addrs_program_is_adopted_and_its_socket_taken_back(
    daemon: Daemon,
) -> None:
    port = free_port()
    web = {
        "command": [sys.executable, WEBSERVER],
        "listen_addrs": [f"127.0.0.1:{port}"],
        "ready": "notify",
        "ready_timeout": 10,
    }
    daemon.write_config({"web": web})
    with Subreaper(daemon, *daemon.cli_argv(), "up", "--quiet") as catcher:
        assert catcher.rc() == 0
        pid = daemon.wait_state("web", "RUNNING")["pid"]
        kill_both(daemon)
        Path(daemon.run_dir, "state.json").unlink()
        r = daemon.cli("up")
        assert r.rc == 0, r  # was: "listen_addrs ... is in use by another process"
        assert daemon.status()["web"]["pid"] == pid
        assert program_processes(daemon) == {"web": [pid]}
        assert http_get(port, "/pid") == (200, str(pid).encode())
        assert "took listening socket" in Path(daemon.log_dir, "twinvisor.log").read_text()
        assert daemon.cli("down").rc == 0
    with socket.socket() as s:  # released with the program: nobody listens there any more
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
