"""The Ansible module (ansible/collections: twinvisor.fleet.twinvisor) in a real playbook run
by ansible-core, against a managed host reached through the test's sshd: check mode changes
nothing, the first run changes, the second does not."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import Daemon, child, daemon_fixture  # noqa: F401
from tests.support.paths import ROOT
from tests.support.sshd import Sshd, sshd_fixture  # noqa: F401

COLLECTIONS = ROOT / "ansible" / "collections"
PLAYBOOK = """\
- hosts: managed
  gather_facts: false
  module_defaults:
    twinvisor.fleet.twinvisor:
      config: "{config}"
      executable: "{executable}"
  tasks:
    - name: the config on disk is running, and web runs
      twinvisor.fleet.twinvisor:
        update: true
        name: web
        state: started
    - name: idle is stopped
      twinvisor.fleet.twinvisor:
        name: idle
        state: stopped
"""


def playbook(daemon: Daemon, sshd: Sshd, *extra: str) -> dict[str, int]:
    """Run the playbook; the recap's counters for the host (ok, changed, failed, …)."""
    tmp = daemon.path("ansible")
    Path(tmp).mkdir(exist_ok=True)
    Path(tmp, "inventory").write_text(
        f"managed ansible_host=127.0.0.1 ansible_port={sshd.port} ansible_user={sshd.user}"
        f" ansible_python_interpreter={sys.executable}\n"
    )
    executable = Path(sys.executable).with_name("twinvisor")
    Path(tmp, "play.yml").write_text(PLAYBOOK.format(config=daemon.config, executable=executable))
    env = {
        **daemon.env,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_HOME": tmp,
        "ANSIBLE_LOCAL_TEMP": f"{tmp}/local",
        "ANSIBLE_REMOTE_TEMP": f"{tmp}/remote",
        "ANSIBLE_PIPELINING": "1",
        # the test's ssh client config; no ControlPersist master outliving the run
        "ANSIBLE_SSH_ARGS": f"-F {sshd.root}/ssh_config -o ControlMaster=no",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
    }
    p = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", f"{tmp}/inventory",
         f"{tmp}/play.yml", *extra],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    recap = re.search(r"^managed\s*:\s*(.*)$", p.stdout, re.M)
    assert p.returncode == 0 and recap, (p.returncode, p.stdout, p.stderr)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))}


@pytest.mark.timeout(240)  # three ansible-playbook runs: ansible-core starts slowly
def test_playbook_twice_changed_then_not(daemon: Daemon, sshd: Sshd) -> None:
    programs: dict[str, dict[str, object]] = {
        "web": {"command": child("run"), "autostart": False},
        "idle": {"command": child("run")},
    }
    daemon.up(programs)
    idle = daemon.wait_state("idle", "RUNNING")["pid"]
    daemon.write_config({**programs, "extra": {"command": child("run")}})  # not applied yet

    dry = playbook(daemon, sshd, "--check")
    assert (dry["changed"], dry["failed"]) == (2, 0), dry
    st = daemon.status()
    assert "extra" not in st and st["web"]["state"] == "STOPPED" and st["idle"]["pid"] == idle

    first = playbook(daemon, sshd)
    assert (first["changed"], first["failed"]) == (2, 0), first
    st = daemon.status()
    assert st["extra"]["state"] in ("STARTING", "RUNNING")
    assert st["web"]["state"] == "RUNNING"
    assert st["idle"]["state"] == "STOPPED"

    daemon.wait_state("extra", "RUNNING")
    again = playbook(daemon, sshd)
    assert (again["changed"], again["failed"], again["ok"]) == (0, 0, 2), again
    assert daemon.status()["web"]["pid"] == st["web"]["pid"]
