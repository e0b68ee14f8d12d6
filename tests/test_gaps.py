"""Behaviours that had no test of their own: SIGHUP = update, GET /config, and the sd helper
picking passed sockets by name (through the real fd placement and LISTEN_PID trampoline)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from helpers import Daemon, child, daemon_fixture  # noqa: F401

from twinvisor.linux import children, sockets

SRC = str(Path(__file__).resolve().parent.parent / "src")


def test_sighup_to_the_supervisor_applies_the_config(daemon: Daemon) -> None:
    daemon.up({"a": {"command": child("run")}})
    a = daemon.wait_state("a", "RUNNING")["pid"]
    daemon.write_config({"a": {"command": child("run")}, "b": {"command": child("run")}})
    os.kill(int(Path(daemon.run_dir, "twinvisor.pid").read_text()), signal.SIGHUP)
    daemon.wait_state("b", "RUNNING")
    assert daemon.status()["a"]["pid"] == a  # unchanged programs untouched


def test_config_route_returns_the_running_config(daemon: Daemon) -> None:
    daemon.up({"a": {"command": child("run"), "numprocs": 2}})
    code, body = daemon.api("GET", "/config")
    assert code == 200
    assert [p["name"] for p in body["programs"]] == ["a:0", "a:1"]
    assert body["daemon"]["run_dir"] == daemon.run_dir


def test_listen_sockets_by_name_through_the_trampoline() -> None:
    web = socket.create_server(("127.0.0.1", 0))
    admin = socket.create_server(("127.0.0.1", 0))
    admin_port = admin.getsockname()[1]
    code = (
        "import json, os; from twinvisor import sd\n"
        "fds = sorted(map(int, os.listdir('/proc/self/fd')))\n"
        "admin = [s.getsockname()[1] for s in sd.listen_sockets('admin')]\n"
        "print(json.dumps({'fds': fds, 'admin': admin}))"
    )
    env = dict(os.environ, PYTHONPATH=SRC, **sockets.listen_env(["web", "admin"]))
    try:
        out = subprocess.run(
            [*children.trampoline(None, listen_pid=True), sys.executable, "-c", code],
            env=env,
            preexec_fn=sockets.place_fds([web.fileno(), admin.fileno()]),
            close_fds=False,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    finally:
        web.close()
        admin.close()
    seen = json.loads(out.stdout)
    assert seen["admin"] == [admin_port]  # the second passed socket, picked by its name
    assert seen["fds"][:5] == [0, 1, 2, 3, 4]  # (the next one is listdir's own)
