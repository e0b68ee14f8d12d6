"""`twinvisor import FILE`: a supervisord.conf or a Procfile -> twinvisor TOML.

supervisord: [program:x] sections (with [include] files followed relative to the including
file and `%(here)s`, `%(ENV_X)s`, `%(program_name)s`, `%(process_num)d` expanded), with
supervisord's own defaults written out where twinvisor's differ (autorestart = unexpected).
[group:x] sections and every other section are listed as not carried over; their programs are
kept. Procfile: each `name: command` line is a program working in the Procfile's directory.

The TOML is written by hand (basic strings with escapes, quoted keys where needed) and every
path in it is absolute, so the file can be moved. What could not be carried over is returned
as a list of plain sentences, one per thing.
"""

from __future__ import annotations

import configparser
import glob
import os
import re
import shlex
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from twinvisor.config.values import name_problem

__all__ = ["ImportErrorText", "ImportResult", "import_file", "to_toml"]

# what a converted key holds, as toml_value writes it
TomlValue: TypeAlias = bool | int | float | str | Sequence["TomlValue"] | Mapping[str, "TomlValue"]


class ImportErrorText(Exception):
    """The file cannot be imported at all (unreadable, not a config of a known kind)."""


@dataclass
class ImportResult:
    toml: str
    programs: list[str]
    dropped: list[str]


@dataclass
class _Program:
    name: str
    keys: dict[str, TomlValue] = field(default_factory=dict)
    comment: str = ""


def import_file(path: str, output: str | None = None) -> ImportResult:
    path = os.path.abspath(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if _is_procfile(path, text):
        programs, dropped = _from_procfile(path, text)
        origin = f"Procfile {path}"
    else:
        programs, dropped = _from_supervisord(path)
        origin = f"supervisord config {path}"
    if not programs:
        raise ImportErrorText(f"{path}: no programs found")
    toml = to_toml(programs, f"imported by `twinvisor import` from {origin}", dropped)
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


def to_toml(programs: list[_Program], header: str, dropped: list[str]) -> str:
    lines = [f"# {header}"]
    if dropped:
        lines.append("# not carried over:")
        lines += [f"#   {line}" for item in dropped for line in item.splitlines()]
    for p in programs:
        lines.append("")
        if p.comment:
            lines += [f"# {c}" for c in p.comment.splitlines()]
        lines.append(f"[program.{toml_key(p.name)}]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in p.keys.items()]
    return "\n".join(lines) + "\n"


# ---- Procfile -----------------------------------------------------------------------------------

_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")
_SHELL_SYNTAX = re.compile(r"[$`|&;<>(){}*?~]|\[\[")


def _is_procfile(path: str, text: str) -> bool:
    if os.path.basename(path).lower().startswith("procfile"):
        return True
    meaningful = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return bool(meaningful) and all(_PROCFILE_LINE.match(ln.strip()) for ln in meaningful)


def _from_procfile(path: str, text: str) -> tuple[list[_Program], list[str]]:
    here = os.path.dirname(path)
    programs: list[_Program] = []
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
        programs.append(_Program(name, keys))
    return programs, dropped


def _procfile_command(command: str) -> list[str]:
    """Procfile commands are shell lines: run them through sh unless they are plain words."""
    if not _SHELL_SYNTAX.search(command):
        try:
            return shlex.split(command)
        except ValueError:
            pass
    return ["/bin/sh", "-c", command]


# ---- supervisord --------------------------------------------------------------------------------

_EXPANSION = re.compile(r"%\(([A-Za-z0-9_]+)\)([-#0 +]*[0-9]*[sd])|%%")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_SIGNALS = {"TERM", "HUP", "INT", "QUIT", "KILL", "USR1", "USR2"}

# keys twinvisor has no equivalent of, and what to say about them
_NOT_CARRIED = {
    "priority": "start order by priority (use depends_on)",
    "numprocs_start": "instance numbering from numprocs_start (twinvisor counts from 0)",
    "umask": "umask",
    "serverurl": "serverurl",
    "stopasgroup": "stopasgroup (twinvisor always signals the whole process group)",
    "killasgroup": "killasgroup (twinvisor always kills the whole process group)",
    "stdout_capture_maxbytes": "stdout_capture_maxbytes (process communication events)",
    "stderr_capture_maxbytes": "stderr_capture_maxbytes (process communication events)",
    "stdout_events_enabled": "stdout_events_enabled (events)",
    "stderr_events_enabled": "stderr_events_enabled (events)",
    "stdout_syslog": "stdout_syslog",
    "stderr_syslog": "stderr_syslog",
}


@dataclass
class _Section:
    name: str
    values: dict[str, str]
    here: str  # directory of the file that defines it
    file: str


def _read_sections(path: str, seen: set[str], dropped: list[str]) -> list[_Section]:
    """The sections of `path` and of the files its [include] names, in order."""
    real = os.path.realpath(path)
    if real in seen:
        return []
    seen.add(real)
    parser = configparser.RawConfigParser(
        comment_prefixes=("#", ";"), inline_comment_prefixes=(";",), strict=False
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f, source=path)
    except configparser.Error as e:
        raise ImportErrorText(f"{path}: not a supervisord config: {e}") from None
    here = os.path.dirname(os.path.abspath(path))
    sections: list[_Section] = []
    for name in parser.sections():
        values = dict(parser.items(name))
        if name == "include":
            sections += _included(values.get("files", ""), here, seen, dropped)
            continue
        sections.append(_Section(name, values, here, path))
    return sections


def _included(files: str, here: str, seen: set[str], dropped: list[str]) -> list[_Section]:
    out: list[_Section] = []
    for pattern in _expand(files, {"here": here}, "[include] files").split():
        full = os.path.join(here, os.path.expanduser(pattern))
        matches = sorted(glob.glob(full))
        if not matches:
            dropped.append(f"[include] {pattern}: no file matches")
        for match in matches:
            out += _read_sections(match, seen, dropped)
    return out


def _expand(value: str, names: dict[str, str], where: str) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        key, spec = m.group(1), m.group(2)
        if key.startswith("ENV_"):
            found: str | None = os.environ.get(key[4:])
        else:
            found = names.get(key)
        if found is None:
            raise ImportErrorText(f"{where}: unknown expansion %({key}){spec} in {value!r}")
        try:
            return ("%" + spec) % (int(found) if spec.endswith("d") else found)
        except ValueError:
            raise ImportErrorText(f"{where}: %({key}){spec}: {found!r} is no number") from None

    return _EXPANSION.sub(one, value)


def _from_supervisord(path: str) -> tuple[list[_Program], list[str]]:
    dropped: list[str] = []
    sections = _read_sections(path, set(), dropped)
    programs: list[_Program] = []
    seen_names: set[str] = set()
    for section in sections:
        kind, _, name = section.name.partition(":")
        if kind == "program" and name:
            program = _program(name, section, dropped)
            if program is None:
                continue
            if program.name in seen_names:
                dropped.append(f"[program:{name}] in {section.file}: defined twice; first kept")
                continue
            seen_names.add(program.name)
            programs.append(program)
        elif kind == "group":
            members = section.values.get("programs", "")
            dropped.append(
                f"[group:{name}] (programs {members}): groups are not carried over; "
                "its programs are kept, each on its own"
            )
        else:
            dropped.append(f"[{section.name}] in {section.file}: not carried over")
    return programs, dropped


def _program(name: str, section: _Section, dropped: list[str]) -> _Program | None:
    values = section.values
    safe = name
    if name_problem(name):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("-.") or "program"
        dropped.append(f"[program:{name}]: renamed to {safe!r} (twinvisor program names)")
    try:
        numprocs = int(values.get("numprocs", "1"))
    except ValueError:
        dropped.append(f"[program:{name}]: numprocs {values['numprocs']!r} is not a number")
        numprocs = 1
    names = {
        "here": section.here,
        "program_name": name,
        "group_name": name,
        "process_num": values.get("numprocs_start", "0"),
        "numprocs": str(numprocs),
        "host_node_name": socket.gethostname(),
    }
    where = f"[program:{name}]"

    def get(key: str) -> str | None:
        raw = values.get(key)
        return None if raw is None else _expand(raw, names, f"{where} {key}")

    command = get("command")
    if not command:
        dropped.append(f"{where}: no command; program skipped")
        return None
    prog = _Program(safe)
    convert = _Converter(where, prog.keys, dropped, section.here)
    directory = get("directory")
    if directory:
        prog.keys["directory"] = os.path.join(section.here, directory)
    try:
        prog.keys["command"] = shlex.split(command)
    except ValueError as e:
        dropped.append(f"{where}: cannot split command ({e}); program skipped")
        return None
    if numprocs != 1:
        prog.keys["numprocs"] = numprocs
        if "%(process_num)" in values.get("command", ""):
            dropped.append(
                f"{where}: %(process_num) in command: every instance runs it with "
                f"{names['process_num']}; tell instances apart by $TWINVISOR_PROGRAM ({safe}:N)"
            )
    process_name = values.get("process_name")
    if process_name and process_name not in (
        "%(program_name)s",
        "%(program_name)s_%(process_num)02d",
    ):
        dropped.append(
            f"{where}: process_name {process_name!r}: instances are named {safe}:0, {safe}:1..."
            if numprocs != 1
            else f"{where}: process_name {process_name!r}: the program is named {safe!r}"
        )
    convert.all(get)
    for key in values:
        if key in _NOT_CARRIED:
            dropped.append(f"{where}: {_NOT_CARRIED[key]}")
        elif key not in _KNOWN:
            dropped.append(f"{where}: {key} is not a supervisord key twinvisor knows")
    return prog


_KNOWN = {
    "command",
    "directory",
    "numprocs",
    "process_name",
    "autostart",
    "autorestart",
    "startsecs",
    "startretries",
    "exitcodes",
    "stopsignal",
    "stopwaitsecs",
    "user",
    "environment",
    "redirect_stderr",
    "stdout_logfile",
    "stdout_logfile_maxbytes",
    "stdout_logfile_backups",
    "stderr_logfile",
    "stderr_logfile_maxbytes",
    "stderr_logfile_backups",
}


@dataclass
class _Converter:
    where: str
    keys: dict[str, TomlValue]
    dropped: list[str]
    here: str

    def all(self, get: Callable[[str], str | None]) -> None:
        self.flag(get, "autostart", "autostart")
        autorestart = (get("autorestart") or "unexpected").lower()  # supervisord's default
        if autorestart in _TRUE:
            self.keys["auto_restart"] = "always"
        elif autorestart in _FALSE:
            self.keys["auto_restart"] = "never"
        elif autorestart == "unexpected":
            self.keys["auto_restart"] = "unexpected"
        else:
            self.bad("autorestart", autorestart)
        self.number(get, "startsecs", "min_uptime", float, default="1")
        self.number(get, "startretries", "max_retry", int, default="3")
        self.number(get, "stopwaitsecs", "stop_timeout", float, default="10")
        self.exit_codes(get("exitcodes"))
        self.stop_signal(get("stopsignal"))
        user = get("user")
        if user:
            self.keys["user"] = user
        environment = get("environment")
        if environment:
            try:
                self.keys["environment"] = parse_supervisor_env(environment)
            except ValueError as e:
                self.dropped.append(f"{self.where}: environment: {e}")
        self.logs(get)

    def bad(self, key: str, value: str) -> None:
        self.dropped.append(f"{self.where}: {key} = {value!r} is not understood")

    def flag(self, get: Callable[[str], str | None], key: str, ours: str) -> None:
        raw = get(key)
        if raw is None:
            return
        if raw.lower() in _TRUE | _FALSE:
            self.keys[ours] = raw.lower() in _TRUE
        else:
            self.bad(key, raw)

    def number(
        self,
        get: Callable[[str], str | None],
        key: str,
        ours: str,
        kind: type[int] | type[float],
        default: str,
    ) -> None:
        raw = get(key) or default
        try:
            value = kind(raw)
        except ValueError:
            self.bad(key, raw)
            return
        if value < 0:
            self.bad(key, raw)
            return
        self.keys[ours] = value

    def exit_codes(self, raw: str | None) -> None:
        if raw is None:
            return
        try:
            codes = [int(c) for c in raw.split(",") if c.strip()]
        except ValueError:
            self.bad("exitcodes", raw)
            return
        self.keys["exit_codes"] = codes

    def stop_signal(self, raw: str | None) -> None:
        if raw is None:
            return
        name = raw.strip().upper().removeprefix("SIG")
        if name in _SIGNALS or name.isdigit():
            self.keys["stop_signal"] = name
        else:
            self.bad("stopsignal", raw)

    def logs(self, get: Callable[[str], str | None]) -> None:
        redirect = (get("redirect_stderr") or "false").lower() in _TRUE
        self.log_file(get("stdout_logfile"), "stdout_file")
        if redirect:
            self.dropped.append(
                f"{self.where}: redirect_stderr = true (stderr goes to its own log in twinvisor)"
            )
        else:
            self.log_file(get("stderr_logfile"), "stderr_file")
        sizes = {get("stdout_logfile_maxbytes"), get("stderr_logfile_maxbytes")} - {None}
        backups = {get("stdout_logfile_backups"), get("stderr_logfile_backups")} - {None}
        size = get("stdout_logfile_maxbytes") or get("stderr_logfile_maxbytes")
        if size is not None:
            self.log_size(size)
        backup = get("stdout_logfile_backups") or get("stderr_logfile_backups")
        if backup is not None:
            try:
                self.keys["log_backups"] = int(backup)
            except ValueError:
                self.bad("stdout_logfile_backups", backup)
        if len(sizes) > 1 or len(backups) > 1:
            self.dropped.append(
                f"{self.where}: different rotation for stdout and stderr: "
                "twinvisor has one log_max_bytes / log_backups; stdout's is used"
            )

    def log_size(self, raw: str) -> None:
        text = raw.strip().upper()
        if text.isdigit():
            value = int(text)
            if value == 0:
                self.dropped.append(f"{self.where}: logfile_maxbytes = 0 (no rotation)")
                return
            self.keys["log_max_bytes"] = value
        elif re.fullmatch(r"[0-9]+(\.[0-9]+)?\s*[KMG]B", text):
            self.keys["log_max_bytes"] = text.replace(" ", "")
        else:
            self.bad("logfile_maxbytes", raw)

    def log_file(self, raw: str | None, ours: str) -> None:
        if raw is None or raw.upper() == "AUTO":
            return  # twinvisor's default: a file in the log directory
        if raw.upper() == "NONE":
            self.keys[ours] = ""
        elif raw.lower() == "syslog":
            self.dropped.append(f"{self.where}: logging to syslog")
        else:
            self.keys[ours] = os.path.join(self.here, os.path.expanduser(raw))


def parse_supervisor_env(text: str) -> dict[str, str]:
    """supervisord's `KEY="value",KEY2=value2` (quotes optional, commas inside quotes kept)."""
    env: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\n,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise ValueError(f"expected KEY=VALUE at {text[i:]!r}")
        key = text[i:eq].strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise ValueError(f"bad variable name {key!r}")
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "'\"":
            quote = text[i]
            end = text.find(quote, i + 1)
            if end < 0:
                raise ValueError(f"unterminated quote in the value of {key}")
            value = text[i + 1 : end]
            i = end + 1
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        env[key] = value
    return env
