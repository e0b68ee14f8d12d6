"""Behaviours that had no test of their own: SIGHUP = update, GET /config."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.helpers import Daemon, child, daemon_fixture, wait_until  # noqa: F401


def test_sighup_to_the_supervisor_applies_the_config(daemon: Daemon) -> None:
    daemon.up({"a": {"command": child("run")}})
    a = daemon.wait_state("a", "RUNNING")["pid"]
    daemon.write_config({"a": {"command": child("run")}, "b": {"command": child("run")}})
    os.kill(int(Path(daemon.run_dir, "twinvisor.pid").read_text()), signal.SIGHUP)
    # the reload reads the file in a child process (supervisor/configload.py): b appears
    # once it has answered
    wait_until(lambda: "b" in daemon.status(), what="b added by the reload")
    daemon.wait_state("b", "RUNNING")
    assert daemon.status()["a"]["pid"] == a  # unchanged programs untouched


def test_config_route_returns_the_running_config(daemon: Daemon) -> None:
    daemon.up({"a": {"command": child("run"), "numprocs": 2}})
    code, body = daemon.api("GET", "/config")
    assert code == 200
    assert [p["name"] for p in body["programs"]] == ["a:0", "a:1"]
    assert body["daemon"]["run_dir"] == daemon.run_dir
