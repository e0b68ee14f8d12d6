"""`[hooks.NAME]`: commands run on events (supervisord's eventlisteners, e.g. crash mail).

[hooks.crashmail]
command = ["/usr/local/bin/mail-oncall"]     # no shell unless you write one
on = ["unexpected_exit", "fatal"]           # event kinds (see HOOK_EVENTS)
programs = ["web"]                          # default: every program
timeout = 30                                # then the hook is killed (SIGKILL)
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from twinvisor.config.locate import Problems, Source
from twinvisor.config.specs import HOOK_EVENTS, HookSpec
from twinvisor.config.values import check_table, name_problem, split_command, unknown_key
from twinvisor.config.values import show as _show


class _HookTable(msgspec.Struct, forbid_unknown_fields=True):
    command: str | list[str] | None = None
    on: list[str] = msgspec.field(default_factory=lambda: ["unexpected_exit", "fatal"])
    programs: list[str] = []
    timeout: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 30.0


def hook_specs(src: Source, pr: Problems) -> list[HookSpec]:
    table = src.data.get("hooks", {})
    if not isinstance(table, dict):
        return []  # reported by the top-level check
    out = []
    for name, body in table.items():
        base = ("hooks", name)
        problem = name_problem(name)
        if problem:
            pr.at(src, base, problem)
            continue
        if not isinstance(body, dict):
            pr.at(src, base, f"a hook is a table ([hooks.{name}]), got {_show(body)}")
            continue
        spec = _hook(name, body, src, base, pr)
        if spec is not None:
            out.append(spec)
    return out


def _hook(
    name: str, body: dict[str, Any], src: Source, base: tuple[str, ...], pr: Problems
) -> HookSpec | None:
    valid = check_table(body, _HookTable, src, base, pr)
    if len(valid) != len(body):
        return None
    hook = msgspec.convert(valid, _HookTable)
    if hook.command is None:
        pr.at(src, base, "missing required key 'command'")
        return None
    try:
        command = split_command(hook.command)
    except ValueError as e:
        pr.at(src, (*base, "command"), str(e))
        return None
    for i, kind in enumerate(hook.on):
        if kind not in HOOK_EVENTS:
            pr.at(src, (*base, "on"), unknown_key(kind, HOOK_EVENTS), f"[{i}]")
            return None
    return HookSpec(name, command, tuple(hook.on), tuple(hook.programs), hook.timeout)
