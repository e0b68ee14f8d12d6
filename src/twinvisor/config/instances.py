"""The instances of one program: their numbers, their names, and their own values.

A program with `numprocs = N` is N instances numbered from `numprocs_start`; each is named by
`instance_name` (default `{program}:{instance}`, or `{program}` alone when N = 1) and gets its
own `command`, `environment`, `directory`, log paths, `listen_addrs`, `pidfile`, `ready` and
`health` by the placeholders of expand.py. Works on the type-checked table (plain values), so
the loader checks the meaning of what each instance will really run.
"""

from __future__ import annotations

from typing import Any

from twinvisor.config.expand import Instance, expand_instance, has_placeholder, placeholders_in

__all__ = ["TEMPLATED_KEYS", "expand_table", "instance_list", "is_templated"]

# the keys whose strings may hold placeholders (everything else is the same for every instance)
TEMPLATED_KEYS = (
    "command",
    "directory",
    "environment",
    "env_file",
    "stdout_file",
    "stderr_file",
    "listen_addrs",
    "pidfile",
    "ready",
    "health",
)
MAX_INSTANCE_NAME = 128


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def is_templated(table: dict[str, Any]) -> bool:
    """Whether any instance-specific key uses a placeholder."""
    return any(has_placeholder(s) for k in TEMPLATED_KEYS for s in _strings(table.get(k)))


def _expand(value: Any, inst: Instance) -> Any:
    if isinstance(value, str):
        return expand_instance(value, inst)
    if isinstance(value, list):
        return [_expand(v, inst) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, inst) for k, v in value.items()}
    return value


def expand_table(
    table: dict[str, Any], inst: Instance
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The table as instance `inst` sees it, and the (key, problem) of bad placeholders."""
    out = dict(table)
    problems: list[tuple[str, str]] = []
    for key in TEMPLATED_KEYS:
        if key in table:
            try:
                out[key] = _expand(table[key], inst)
            except ValueError as e:
                problems.append((key, str(e)))
    return out, problems


def instance_name_problem(name: str) -> str | None:
    if not name:
        return "instance_name gives an empty name"
    if len(name) > MAX_INSTANCE_NAME:
        return f"instance name {name!r} is longer than {MAX_INSTANCE_NAME} characters"
    if name == "all" or name[0] in "-.":
        return f"instance name {name!r} is not allowed (reserved, or starts with '-' or '.')"
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_-.:"))})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"instance name {name!r} contains {shown}; use letters, digits, '_', '-', '.', ':'"
    return None


def instance_list(
    program: str, numprocs: int, start: int, pattern: str | None, group: str
) -> tuple[list[Instance], str | None]:
    """The instances of a program, or the problem of its instance_name."""
    if pattern is None:
        pattern = "{program}" if numprocs == 1 else "{program}:{instance}"
    used = placeholders_in(pattern)
    if "name" in used:
        return [], "instance_name cannot use {name} (it is the name being made)"
    if numprocs > 1 and "instance" not in used:
        return [], (
            f"instance_name {pattern!r} has no {{instance}}: every one of the {numprocs} "
            "instances would get the same name"
        )
    out: list[Instance] = []
    for number in range(start, start + numprocs):
        bare = Instance(number, "", program, group, numprocs)
        try:
            name = expand_instance(pattern, bare)
        except ValueError as e:
            return [], str(e)
        if problem := instance_name_problem(name):
            return [], problem
        out.append(Instance(number, name, program, group, numprocs))
    return out, None
