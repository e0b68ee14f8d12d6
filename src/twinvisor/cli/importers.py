"""`twinvisor import FILE`: a supervisord.conf or a Procfile -> twinvisor TOML.

supervisord: see supervisord.py ([program:x], [group:x], [include], [supervisord]'s
environment and umask; supervisord's own defaults written out where twinvisor's differ).
Procfile: each `name: command` line is a program working in the Procfile's directory.

The TOML is written by hand (basic strings with escapes, quoted keys where needed) and every
path in it is absolute, so the file can be moved. What could not be carried over is returned
as a list of plain sentences, one per thing.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

from twinvisor.cli.import_model import (  # re-exported: the names importers always had
    ImportErrorText,
    Program,
    TomlValue,
    parse_supervisor_env,
)

__all__ = [
    "ImportErrorText",
    "ImportResult",
    "Program",
    "TomlValue",
    "import_file",
    "parse_supervisor_env",
    "to_toml",
]


@dataclass
class ImportResult:
    toml: str
    programs: list[str]
    dropped: list[str]


def import_file(path: str, output: str | None = None) -> ImportResult:
    path = os.path.abspath(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    groups: list[tuple[str, list[str]]] = []
    hooks: list[Program] = []
    if _is_procfile(path, text):
        programs, dropped = _from_procfile(path, text)
        origin = f"Procfile {path}"
    else:
        from twinvisor.cli.supervisord import from_supervisord

        found = from_supervisord(path)
        programs, dropped, groups, hooks = found.programs, found.dropped, found.groups, found.hooks
        origin = f"supervisord config {path}"
    if not programs:
        raise ImportErrorText(f"{path}: no programs found")
    header = f"imported by `twinvisor import` from {origin}"
    toml = to_toml(programs, header, dropped, groups, hooks)
    return ImportResult(toml, [p.name for p in programs], dropped)


# ---- TOML ---------------------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_TOML_ESCAPES["\r"] = "\\r"


def toml_string(value: str) -> str:
    out = []
    for c in value:
        if c in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if _BARE.fullmatch(key) else toml_string(key)


def toml_value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(
    programs: list[Program],
    header: str,
    dropped: list[str],
    groups: list[tuple[str, list[str]]] | None = None,
    hooks: list[Program] | None = None,
) -> str:
    lines = [f"# {header}"]
    if dropped:
        lines.append("# not carried over:")
        lines += [f"#   {line}" for item in dropped for line in item.splitlines()]
    for name, members in groups or []:
        lines += ["", f"[group.{toml_key(name)}]", f"programs = {toml_value(members)}"]
    for p in programs:
        lines.append("")
        if p.comment:
            lines += [f"# {c}" for c in p.comment.splitlines()]
        lines.append(f"[program.{toml_key(p.name)}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in p.keys.items()]
    for h in hooks or []:
        lines += ["", f"[hooks.{toml_key(h.name)}]"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in h.keys.items()]
    return "\n".join(lines) + "\n"


# ---- Procfile -----------------------------------------------------------------------------------

_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")
_SHELL_SYNTAX = re.compile(r"[$`|&;<>(){}*?~]|\[\[")


def _is_procfile(path: str, text: str) -> bool:
    if os.path.basename(path).lower().startswith("procfile"):
        return True
    meaningful = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return bool(meaningful) and all(_PROCFILE_LINE.match(ln.strip()) for ln in meaningful)


def _from_procfile(path: str, text: str) -> tuple[list[Program], list[str]]:
    here = os.path.dirname(path)
    programs: list[Program] = []
    dropped: list[str] = []
    env_file = os.path.join(here, ".env")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PROCFILE_LINE.match(line)
        if not match:
            dropped.append(f"{path}:{number}: not a 'name: command' line: {line}")
            continue
        name, command = match.group(1), match.group(2).strip()
        keys: dict[str, TomlValue] = {"directory": here, "command": _procfile_command(command)}
        if os.path.isfile(env_file):
            keys["env_file"] = env_file
        if "PORT" in command:
            # foreman and honcho give each process type a PORT: 5000, 5100, ...
            port = 5000 + 100 * len(programs)
            keys["environment"] = {"PORT": str(port)}
            dropped.append(f"{name}: $PORT is set to {port} as foreman does; check it")
        keys["auto_restart"] = True
        programs.append(Program(name, keys))
    return programs, dropped


def _procfile_command(command: str) -> list[str]:
    """Procfile commands are shell lines: run them through sh unless they are plain words."""
    if not _SHELL_SYNTAX.search(command):
        try:
            return shlex.split(command)
        except ValueError:
            pass
    return ["/bin/sh", "-c", command]


# ---- supervisord (the rest is in supervisord.py) ------------------------------------------
