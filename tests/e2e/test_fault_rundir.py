"""Faults in the run dir beyond the state file (issue 10, items 2, 4 and 5): a listening socket
held by a surviving program, hostile files where ours should be, the output FIFOs removed."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
from functools import partial
from pathlib import Path

from tests.support.faults import Subreaper, kill_both, program_processes
from tests.support.helpers import (
    Daemon,
    child,
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
    """The program holds its ends of its output pipes (read-write): a new supervisor reads
    them again through /proc/PID/fd after both twins died (issue 10, item 5). They have no
    path (OutputPipe): removing run/pipes takes nothing away, and nothing is lost."""
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
        pipes = Path(daemon.run_dir, "pipes")
        assert not pipes.exists() or not list(pipes.iterdir())  # the pipes have no path
        assert daemon.cli("down").rc == 0
    lines = _numbered(out)
    assert lines == list(range(1, len(lines) + 1)), "lines lost or repeated"


def _make_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def test_hostile_run_dir_entries_are_moved_aside_and_up_goes_on(daemon: Daemon) -> None:
    """Both twins down, then wrong kinds of file at the paths the daemon uses: a regular file
    at the control socket, a FIFO at the state file (it would block a reader), directories
    at the stop marker and the guard socket, a file at pipes/. `up` adopts the programs
    anyway, and what was in the way is kept aside (issue 10, item 4)."""
    daemon.up({"a": {"command": child("run")}})
    pid = daemon.wait_state("a", "RUNNING")["pid"]
    kill_both(daemon)
    run = Path(daemon.run_dir)
    Path(daemon.socket).unlink()
    Path(daemon.socket).write_text("not a socket")
    _make_fifo(run / "state.json")
    (run / "stop").mkdir()
    if (run / "guard.sock").exists():
        (run / "guard.sock").unlink()
    (run / "guard.sock").mkdir()
    shutil.rmtree(run / "pipes", ignore_errors=True)
    (run / "pipes").write_text("not a directory")
    r = daemon.cli("up", timeout=40)
    assert r.rc == 0, r
    assert daemon.status()["a"]["pid"] == pid
    aside = sorted(p.name.split(".bad-")[0] for p in run.iterdir() if ".bad-" in p.name)
    assert aside == ["guard.sock", "pipes", "state.json", "stop", "twinvisor.sock"], aside
    log = Path(daemon.log_dir, "twinvisor.log").read_text()
    assert "Traceback" not in log
    assert daemon.cli("down").rc == 0


def test_a_supervisor_that_cannot_start_is_reported_by_up_not_retried(daemon: Daemon) -> None:
    """A control socket path outside the run dir taken by someone's regular file (not ours to
    move): `up` says why and returns, and the guard does not restart the supervisor forever."""
    taken = daemon.path("ctl.sock")
    Path(taken).write_text("someone else's file")
    daemon.write_config({"a": {"command": child("run")}}, f"socket = {json.dumps(taken)}")
    r = daemon.cli("up", timeout=40)  # was: never returned (the guard restarted it forever)
    assert r.rc != 0 and "not a socket" in r.err, r
    wait_until(lambda: not program_processes(daemon) and not _twins_alive(daemon), timeout=20)
    assert Path(taken).read_text() == "someone else's file"


def _twins_alive(daemon: Daemon) -> bool:
    import psutil

    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if daemon.config in cmd and proc.info["status"] != psutil.STATUS_ZOMBIE:
            return True
    return False
