#!/usr/bin/python
"""Ansible module: programs of a twinvisor daemon started / stopped / restarted, and the
config applied, by running the host's `twinvisor --json` (its JSON is the contract: what
`status`, `reread`, `update`, `start`, `stop` and `restart` print with --json)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: twinvisor
short_description: Manage the programs of a twinvisor daemon
description:
  - Ensures programs of a running twinvisor daemon are started, stopped or restarted, and
    that the config on disk is the one applied (C(twinvisor update)).
  - Runs the C(twinvisor) command on the managed host and reads its C(--json) output.
  - Idempotent; supports check mode (C(reread) shows what C(update) would change).
version_added: "0.1.0"
options:
  name:
    description:
      - Programs, as twinvisor names them (C(web), C(web:*), C(web:0), C(all)).
      - Required with O(state).
    type: list
    elements: str
  state:
    description:
      - V(started) and V(stopped) act only on the instances not already so.
      - V(restarted) always restarts (zero-downtime for programs with listening sockets).
    type: str
    choices: [started, stopped, restarted]
  update:
    description:
      - Apply the config first when it differs from the running one (adds, removes and
        restarts only what changed). A config with errors fails the task and changes nothing.
    type: bool
    default: false
  config:
    description: The config file (C(twinvisor -c)); default the host's usual lookup.
    type: path
  socket:
    description: The control socket (C(twinvisor --socket)); default from the config.
    type: path
  executable:
    description: The twinvisor command; default C(twinvisor) on the PATH.
    type: path
  timeout:
    description: Seconds twinvisor waits for an outcome (C(--timeout)).
    type: float
    default: 60
author:
  - twinvisor
"""

EXAMPLES = r"""
- name: The config on disk is running
  twinvisor.fleet.twinvisor:
    config: /etc/twinvisor/shop.toml
    update: true

- name: Web and its workers run
  twinvisor.fleet.twinvisor:
    name: [web, "worker:*"]
    state: started
    config: /etc/twinvisor/shop.toml

- name: Deploy, then a zero-downtime restart
  twinvisor.fleet.twinvisor:
    name: web
    state: restarted
    executable: /opt/twinvisor/bin/twinvisor
"""

RETURN = r"""
changes:
  description: What the config update added, removed and changed (with O(update)).
  returned: when update is true
  type: dict
  sample: {"added": ["extra"], "removed": [], "changed": ["web"]}
acted_on:
  description: The instances the state change was applied to (or would be, in check mode).
  returned: when state is given
  type: list
  elements: str
  sample: ["web"]
programs:
  description: The programs' rows of C(twinvisor --json status) after the task.
  returned: when state is given
  type: list
  elements: dict
"""

# Ansible's layout: the documentation strings first, then the imports
import json  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

DONE = {  # the states in which an instance already is what `state` asks for
    "started": frozenset({"RUNNING"}),
    "stopped": frozenset({"STOPPED", "EXITED", "FATAL"}),
}
VERB = {"started": "start", "stopped": "stop", "restarted": "restart"}


class Twinvisor:
    """The host's `twinvisor` CLI, called with --json and the task's -c/--socket/--timeout."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        p = module.params
        exe = p["executable"] or module.get_bin_path("twinvisor", required=True)
        self.base = [exe, "--json", "--timeout", str(p["timeout"])]
        if p["config"]:
            self.base += ["-c", p["config"]]
        if p["socket"]:
            self.base += ["--socket", p["socket"]]

    def run(self, *args: str, ok: tuple[int, ...] = (0,), soft: bool = False) -> Any:
        """The parsed JSON answer; the task fails with twinvisor's own message otherwise
        (`soft`: None instead, for a question whose answer may not exist yet)."""
        cmd = [*self.base, *args]
        rc, out, err = self.module.run_command(cmd)
        why = err.strip().removeprefix("twinvisor: ") or out.strip()
        if rc == 3:
            self.module.fail_json(msg=f"no twinvisor daemon is running: {why}", rc=rc, cmd=cmd)
        try:
            answer = json.loads(out) if rc in ok else None
        except ValueError:  # e.g. status of an unknown name: exit 1, the reason on stderr
            answer = None
        if answer is None and not soft:
            self.module.fail_json(msg=why or f"twinvisor exited {rc}", rc=rc, cmd=cmd)
        return answer


def apply_config(tv: Twinvisor, result: dict[str, Any]) -> None:
    """reread says what update would do: nothing to do is no change, and check mode stops
    there."""
    changes = tv.run("reread")["changes"]
    result["changes"] = changes
    if not any(changes.get(k) for k in ("added", "removed", "changed")):
        return
    result["changed"] = True
    if not tv.module.check_mode:
        result["changes"] = tv.run("update")["changes"]


def programs(status: Any) -> Any:
    """The rows of `status --json`: a list, or an object's "programs" (either shape works)."""
    return status.get("programs") if isinstance(status, dict) else status


def ensure_state(tv: Twinvisor, names: list[str], state: str, result: dict[str, Any]) -> None:
    # status exits 1 when something is FATAL/BACKOFF: its JSON is the answer all the same.
    # In check mode an update not applied may be what would add the programs named here.
    soft = tv.module.check_mode and result["changed"]
    rows = programs(tv.run("status", *names, ok=(0, 1), soft=soft))
    if rows is None:
        result.update(changed=True, acted_on=names)
        return
    todo = [r["name"] for r in rows if state == "restarted" or r["state"] not in DONE[state]]
    result["acted_on"] = todo
    result["programs"] = rows
    if not todo:
        return
    result["changed"] = True
    if tv.module.check_mode:
        return
    answer = tv.run(VERB[state], *todo, ok=(0, 1))
    result["programs"] = programs(tv.run("status", *names, ok=(0, 1)))
    if not answer.get("ok"):
        failed = {n: o for n, o in answer.get("results", {}).items() if o != "ok"}
        tv.module.fail_json(
            msg=f"twinvisor {VERB[state]} failed for {', '.join(failed) or 'some programs'}",
            results=answer.get("results"),
            **result,
        )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "list", "elements": "str"},
            "state": {"type": "str", "choices": ["started", "stopped", "restarted"]},
            "update": {"type": "bool", "default": False},
            "config": {"type": "path"},
            "socket": {"type": "path"},
            "executable": {"type": "path"},
            "timeout": {"type": "float", "default": 60.0},
        },
        required_by={"state": "name"},
        supports_check_mode=True,
    )
    if not module.params["state"] and not module.params["update"]:
        module.fail_json(msg="nothing to do: give state, or update: true")
    # this runs on the managed host: act on its daemon, never forward to yet another host
    os.environ.pop("TWINVISOR_HOST", None)
    tv = Twinvisor(module)
    result: dict[str, Any] = {"changed": False}
    if module.params["update"]:
        apply_config(tv, result)
    state = module.params["state"]
    if state:
        ensure_state(tv, module.params["name"], state, result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
