"""Faults in the run dir beyond the state file (issue 10, items 2, 4 and 5): a listening socket
held by a surviving program, hostile files where ours should be, the output FIFOs removed."""

from __future__ import annotations

import re
import shutil
import socket
import sys
from functools import partial
from pathlib import Path

from tests.support.faults import Subreaper, kill_both, program_processes
from tests.support.helpers import (
    Daemon,
    daemon_fixture,  # noqa: F401
    free_port,
    http_get,
    wait_until,
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


def _numbered(path: str) -> list[int]:
    text = Path(path).read_text(errors="replace")
    return [int(m) for m in re.findall(r"^w line (\d+)$", text, re.MULTILINE)]


def _more_lines(path: str, than: int) -> bool:
    return len(_numbered(path)) > than


def test_pipes_removed_while_both_twins_are_down_output_is_still_logged(daemon: Daemon) -> None:
    """The program holds its ends of the output FIFOs: a new supervisor reads them again
    through /proc/PID/fd when their paths are gone (issue 10, item 5), and says so."""
    daemon.write_config(
        {"worker": {"command": [sys.executable, WORKER, "--interval", "0.01", "--name", "w"]}}
    )
    with Subreaper(daemon, *daemon.cli_argv(), "up", "--quiet") as catcher:
        assert catcher.rc() == 0
        pid = daemon.wait_state("worker", "RUNNING")["pid"]
        out = daemon.status()["worker"]["stdout_file"]
        for _ in range(2):  # the second time, the paths are still gone
            wait_until(lambda: len(_numbered(out)) > 20, what="lines logged")
            kill_both(daemon)
            shutil.rmtree(Path(daemon.run_dir, "pipes"), ignore_errors=True)
            assert daemon.cli("up").rc == 0
            assert daemon.status()["worker"]["pid"] == pid
            wait_until(partial(_more_lines, out, len(_numbered(out)) + 20), what="lines after up")
        log = Path(daemon.log_dir, "twinvisor.log").read_text()
        assert "output FIFO" in log and "was removed" in log
        assert daemon.cli("down").rc == 0
    lines = _numbered(out)
    assert lines == list(range(1, len(lines) + 1)), "lines lost or repeated"
