"""The Ansible module run the way Ansible runs it on a host (a JSON args file, JSON out),
without a playbook: the failures and the check mode of each state, quickly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.helpers import Daemon, child, daemon_fixture  # noqa: F401
from tests.support.paths import ROOT

COLLECTION = ROOT / "ansible/collections/ansible_collections/twinvisor/fleet"
MODULE = COLLECTION / "plugins/modules/twinvisor.py"
TWINVISOR = str(Path(sys.executable).with_name("twinvisor"))


def module(daemon: Daemon, check: bool = False, **params: Any) -> dict[str, Any]:
    args = {"config": daemon.config, "executable": TWINVISOR, "timeout": 10, **params}
    if check:
        args["_ansible_check_mode"] = True
    path = daemon.path("args.json")
    Path(path).write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    p = subprocess.run(
        [sys.executable, str(MODULE), path],
        env={**daemon.env, "TWINVISOR_HOST": "ssh://elsewhere"},  # must be ignored on the host
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    result: dict[str, Any] = json.loads(p.stdout)
    assert (p.returncode != 0) == bool(result.get("failed")), (p, result)
    return result


def test_no_daemon_fails_with_the_reason(daemon: Daemon) -> None:
    daemon.write_config({"web": {"command": child("run")}})
    r = module(daemon, name=["web"], state="started")
    assert r["failed"] and "no twinvisor daemon is running" in r["msg"]
    assert "no twinvisor daemon is answering" in r["msg"]


def test_bad_parameters_fail_before_anything_runs(daemon: Daemon) -> None:
    daemon.write_config({"web": {"command": child("run")}})
    assert "name" in module(daemon, state="started")["msg"]
    assert "state" in module(daemon, name=["web"], state="sideways")["msg"]
    assert "nothing to do" in module(daemon, name=["web"])["msg"]


def test_states_and_check_mode(daemon: Daemon) -> None:
    daemon.up({"web": {"command": child("run")}, "w": {"command": child("run"), "numprocs": 2}})
    pid = daemon.wait_state("web", "RUNNING")["pid"]
    for name in ("w:0", "w:1"):
        daemon.wait_state(name, "RUNNING")

    r = module(daemon, name=["web"], state="started")
    assert (r["changed"], r["acted_on"]) == (False, [])
    r = module(daemon, check=True, name=["web"], state="restarted")
    assert (r["changed"], r["acted_on"]) == (True, ["web"])
    assert daemon.status()["web"]["pid"] == pid  # check mode did nothing
    r = module(daemon, name=["web"], state="restarted")
    assert r["changed"] and daemon.status()["web"]["pid"] != pid

    daemon.cli("stop", "w:1")
    r = module(daemon, check=True, name=["w:*"], state="stopped")
    assert (r["changed"], r["acted_on"]) == (True, ["w:0"])
    assert daemon.status()["w:0"]["state"] == "RUNNING"
    r = module(daemon, name=["w:*"], state="stopped")
    assert (r["changed"], r["acted_on"]) == (True, ["w:0"])
    assert [row["state"] for row in r["programs"]] == ["STOPPED", "STOPPED"]
    assert module(daemon, name=["w:*"], state="stopped")["changed"] is False

    r = module(daemon, name=["nope"], state="started")
    assert r["failed"] and "nope" in r["msg"]


def test_a_start_that_fails_fails_the_task(daemon: Daemon) -> None:
    bad = {"command": ["false"], "autostart": False, "max_retry": 1, "min_uptime": 5}
    daemon.up({"bad": bad})  # a run shorter than min_uptime fails, even on a slow machine
    r = module(daemon, name=["bad"], state="started")
    assert r["failed"] and "twinvisor start failed for bad" in r["msg"]
    assert r["results"] == {"bad": "failed"}


def test_update_check_mode_then_applied_with_config_errors_refused(daemon: Daemon) -> None:
    programs: dict[str, dict[str, object]] = {"web": {"command": child("run")}}
    daemon.up(programs)
    daemon.wait_state("web", "RUNNING")
    daemon.write_config({**programs, "extra": {"command": child("run")}})

    r = module(daemon, check=True, update=True, name=["extra"], state="started")
    assert r["changed"] and r["changes"]["added"] == ["extra"]
    assert "extra" not in daemon.status()
    r = module(daemon, update=True, name=["extra"], state="started")
    assert r["changed"] and daemon.status()["extra"]["state"] == "RUNNING"
    assert module(daemon, update=True)["changed"] is False

    daemon.write_raw(Path(daemon.config).read_text() + "\n[program.x]\ncomand = 1\n")
    r = module(daemon, update=True)
    assert r["failed"] and "did you mean 'command'?" in r["msg"]
