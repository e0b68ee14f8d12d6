"""supervisord.conf -> twinvisor programs and groups (for `twinvisor import`, see importers.py).

[include] files are followed relative to the including file. supervisord's expansions become
twinvisor's, so the result keeps behaving as supervisord did instead of being frozen at import
time: `%(ENV_X)s` -> `${X}` (read when the config is loaded), `%(process_num)02d` ->
`{instance:02}`, `%(program_name)s` -> `{program}`, `%(group_name)s` -> `{group}`,
`%(numprocs)d` -> `{numprocs}` in the keys that are per instance (command, directory,
environment, log files), and their values elsewhere; `%(here)s` is the file's directory.
Literal `${` and placeholders in the source are escaped. What has no equivalent is returned as
sentences; sections that mean nothing here say so.
"""

from __future__ import annotations

import configparser
import glob
import os
import re
import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twinvisor.cli.import_model import ImportErrorText, Program, parse_supervisor_env
from twinvisor.config.expand import PLACEHOLDERS
from twinvisor.config.values import name_problem

__all__ = ["from_supervisord"]

_EXPANSION = re.compile(r"%\(([A-Za-z0-9_]+)\)([-#0 +]*[0-9]*[sd])|%%")
_WHOLE_ENV = re.compile(r"%\(ENV_([A-Za-z_][A-Za-z0-9_]*)\)[sd]")
_LITERAL_PLACEHOLDER = re.compile(r"\{(?:" + "|".join(PLACEHOLDERS) + r")(?::[^{}]*)?\}")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_SIGNALS = {"TERM", "HUP", "INT", "QUIT", "KILL", "USR1", "USR2"}
# supervisord's `stdout_logfile` values for "the supervisor's own output" (kept as written)
_CONSOLE = {"/dev/stdout", "/dev/stderr", "/dev/fd/1", "/dev/fd/2"}
_CONSOLE |= {"/proc/self/fd/1", "/proc/self/fd/2"}
# the supervisord keys that become per-instance twinvisor keys (placeholders work there)
_PER_INSTANCE = {"command", "directory", "environment", "stdout_logfile", "stderr_logfile"}

# keys twinvisor has no equivalent of, and what to say about them
_NOT_CARRIED = {
    "serverurl": "serverurl: no meaning here (programs reach twinvisor by its control socket)",
    "stdout_capture_maxbytes": "stdout_capture_maxbytes (process communication events)",
    "stderr_capture_maxbytes": "stderr_capture_maxbytes (process communication events)",
    "stdout_events_enabled": "stdout_events_enabled (events)",
    "stderr_events_enabled": "stderr_events_enabled (events)",
    "stdout_syslog": "stdout_syslog",
    "stderr_syslog": "stderr_syslog",
}
_NO_MEANING = {
    "unix_http_server": "the control socket is [daemon] socket",
    "inet_http_server": "the control API is on a unix socket ([daemon] socket)",
    "supervisorctl": "the `twinvisor` command finds the daemon by its config",
    "rpcinterface": "twinvisor's API is HTTP/JSON on the control socket",
    "ctlplugin": "the `twinvisor` command finds the daemon by its config",
}
_DAEMON_ONLY = (
    "nodaemon, logfile, pidfile, loglevel, user, identifier and friends are supervisord's own "
    "settings: twinvisor's are [daemon] run_dir / log_dir and `up --foreground`"
)


@dataclass
class _Section:
    name: str
    values: dict[str, str]
    here: str  # directory of the file that defines it
    file: str


@dataclass
class _Context:
    """What the %()-expansions of one section stand for."""

    here: str
    program: str = ""
    group: str = ""
    numprocs: int = 1
    start: int = 0


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
    # the files are read now: their names are expanded now, environment included
    for pattern in _evaluate(files, _Context(here), "[include] files").split():
        full = os.path.join(here, os.path.expanduser(pattern))
        matches = sorted(glob.glob(full))
        if not matches:
            dropped.append(f"[include] {pattern}: no file matches")
        for match in matches:
            out += _read_sections(match, seen, dropped)
    return out


# ---- expansions ----------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Literal text that twinvisor would otherwise expand: `${` and placeholders."""
    text = text.replace("${", "$${")
    return _LITERAL_PLACEHOLDER.sub(lambda m: "{" + m.group(0) + "}", text)


def _translate(value: str, ctx: _Context, where: str, per_instance: bool) -> str:
    """supervisord's expansions -> twinvisor's (see the module docstring)."""
    out: list[str] = []
    pos = 0
    for m in _EXPANSION.finditer(value):
        out.append(_escape(value[pos : m.start()]))
        out.append(_one(m, ctx, where, per_instance))
        pos = m.end()
    out.append(_escape(value[pos:]))
    return "".join(out)


def _one(m: re.Match[str], ctx: _Context, where: str, per_instance: bool) -> str:
    if m.group(0) == "%%":
        return "%"
    key, spec = m.group(1), m.group(2)
    if key.startswith("ENV_"):
        return "${" + key[4:] + "}"
    if key == "process_num" and per_instance:
        width = spec[:-1].lstrip("-#+ ")
        return "{instance:" + width + "}" if width else "{instance}"
    if per_instance and key in ("program_name", "group_name", "numprocs"):
        return {"program_name": "{program}", "group_name": "{group}"}.get(key, "{numprocs}")
    names = {
        "here": ctx.here,
        "program_name": ctx.program,
        "group_name": ctx.group,
        "numprocs": str(ctx.numprocs),
        "process_num": str(ctx.start),
        "host_node_name": socket.gethostname(),
    }
    return _formatted(key, spec, names.get(key), where, m.group(0))


def _formatted(key: str, spec: str, found: str | None, where: str, text: str) -> str:
    if found is None:
        raise ImportErrorText(f"{where}: unknown expansion {text}")
    try:
        return ("%" + spec) % (int(found) if spec.endswith("d") else found)
    except ValueError:
        raise ImportErrorText(f"{where}: {text}: {found!r} is no number") from None


def _evaluate(value: str, ctx: _Context, where: str) -> str:
    """Every expansion replaced by its value now (the environment included)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        if m.group(1).startswith("ENV_"):
            found = os.environ.get(m.group(1)[4:])
            return _formatted(m.group(1), m.group(2), found, where, m.group(0))
        return _one(m, ctx, where, per_instance=False)

    return _EXPANSION.sub(one, value)


# ---- the file ----------------------------------------------------------------------------------


@dataclass
class Imported:
    programs: list[Program] = field(default_factory=list)
    groups: list[tuple[str, list[str]]] = field(default_factory=list)
    hooks: list[Program] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def from_supervisord(path: str) -> Imported:
    result = Imported()
    sections = _read_sections(path, set(), result.dropped)
    group_of, priority_of = _groups(sections, result)
    defaults = _daemon_defaults(sections, result.dropped)
    seen: set[str] = set()
    for section in sections:
        kind, _, name = section.name.partition(":")
        if kind == "program" and name:
            group = group_of.get(name, name)
            program = _program(name, section, group, result.dropped)
            if program is None:
                continue
            if program.name in seen:
                result.dropped.append(f"[program:{name}] in {section.file}: defined twice")
                continue
            seen.add(program.name)
            _apply_defaults(program, defaults, priority_of.get(name))
            result.programs.append(program)
        elif kind == "eventlistener" and name:
            hook = _hook(name, section, result.dropped)
            if hook is not None:
                result.hooks.append(hook)
                result.dropped.append(_section_note(kind, section))
        elif kind not in ("group", "supervisord"):
            result.dropped.append(_section_note(kind, section))
    return result


def _section_note(kind: str, section: _Section) -> str:
    if kind in _NO_MEANING:
        return f"[{section.name}]: no meaning here ({_NO_MEANING[kind]})"
    if kind == "eventlistener":
        return (
            f"[{section.name}]: now [hooks.{_safe_name(section.name.partition(':')[2])}], run once "
            "per event with the event as JSON on stdin; a listener written for supervisord's "
            "eventlistener protocol (READY/RESULT, such as superlance's crashmail) needs a "
            "wrapper that reads that JSON"
        )
    if kind == "fcgi-program":
        return f"[{section.name}]: FastCGI programs (socket on stdin) are not carried over"
    return f"[{section.name}] in {section.file}: not carried over"


# supervisord event types -> twinvisor hook events (config/specs.py HOOK_EVENTS)
_EVENTS = {
    "EVENT": "*",
    "PROCESS_STATE": "state",
    "PROCESS_STATE_EXITED": "exit",
    "PROCESS_STATE_FATAL": "fatal",
    "PROCESS_STATE_RUNNING": "state",
    "PROCESS_STATE_STARTING": "state",
    "PROCESS_STATE_BACKOFF": "state",
    "PROCESS_STATE_STOPPING": "state",
    "PROCESS_STATE_STOPPED": "state",
    "PROCESS_STATE_UNKNOWN": "state",
    "SUPERVISOR_STATE_CHANGE": "takeover",
    "SUPERVISOR_STATE_CHANGE_RUNNING": "takeover",
}


def _hook(name: str, section: _Section, dropped: list[str]) -> Program | None:
    """[eventlistener:x] -> [hooks.x]: the same command, on the events that exist here."""
    where = f"[eventlistener:{name}]"
    ctx = _Context(section.here, name, name)
    command = _translate(section.values.get("command", ""), ctx, where, False)
    try:
        argv = shlex.split(command)
    except ValueError as e:
        dropped.append(f"{where}: cannot split command ({e}); not carried over")
        return None
    if not argv:
        dropped.append(f"{where}: no command; not carried over")
        return None
    on: list[str] = []
    for kind in section.values.get("events", "").replace(",", " ").split():
        ours = _EVENTS.get(kind.strip())
        if ours is None:
            dropped.append(f"{where}: event {kind} has no twinvisor equivalent")
        elif ours not in on:
            on.append(ours)
    hook = Program(_safe_name(name), {"command": argv})
    if on:
        hook.keys["on"] = on
    return hook


def _groups(sections: list[_Section], result: Imported) -> tuple[dict[str, str], dict[str, int]]:
    """[group:x] -> twinvisor groups; (program -> group, program -> the group's priority)."""
    programs = {s.name.partition(":")[2] for s in sections if s.name.startswith("program:")}
    group_of: dict[str, str] = {}
    priority_of: dict[str, int] = {}
    for section in sections:
        kind, _, name = section.name.partition(":")
        if kind != "group" or not name:
            continue
        ours = name if name not in programs and not name_problem(name) else _group_name(name)
        if ours != name:
            result.dropped.append(f"[group:{name}]: renamed to {ours!r} (a program has its name)")
        members = []
        for member in (m.strip() for m in section.values.get("programs", "").split(",")):
            if member and member in group_of:
                result.dropped.append(
                    f"[group:{name}]: {member} is already in group {group_of[member]!r}; "
                    "a program belongs to one group here"
                )
            elif member:
                group_of[member] = ours
                members.append(_safe_name(member))
                if section.values.get("priority", "").strip().isdigit():
                    priority_of[member] = int(section.values["priority"])
        result.groups.append((ours, members))
    return group_of, priority_of


def _group_name(name: str) -> str:
    return _safe_name(name) + "-group"


def _safe_name(name: str) -> str:
    if not name_problem(name):
        return name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("-.") or "program"


def _daemon_defaults(sections: list[_Section], dropped: list[str]) -> dict[str, Any]:
    """[supervisord] environment and umask, which every program inherits there."""
    out: dict[str, Any] = {}
    for section in (s for s in sections if s.name == "supervisord"):
        values = dict(section.values)
        ctx = _Context(section.here)
        if "environment" in values:
            text = _translate(values.pop("environment"), ctx, "[supervisord]", False)
            try:
                out["environment"] = parse_supervisor_env(text)
            except ValueError as e:
                dropped.append(f"[supervisord] environment: {e}")
        if "umask" in values:
            out["umask"] = values.pop("umask").strip()
        if "childlogdir" in values:
            dropped.append(
                "[supervisord] childlogdir: program logs go to [daemon] log_dir (set it there)"
            )
            values.pop("childlogdir")
        if values:
            dropped.append(f"[supervisord] {', '.join(sorted(values))}: {_DAEMON_ONLY}")
    return out


def _apply_defaults(program: Program, defaults: dict[str, Any], priority: int | None) -> None:
    keys = program.keys
    if "environment" in defaults:
        own = keys.get("environment", {})
        assert isinstance(own, dict)  # parse_supervisor_env's table
        keys["environment"] = {**defaults["environment"], **own}
    if "umask" in defaults and "umask" not in keys:
        keys["umask"] = defaults["umask"]
    if priority is not None and "priority" not in keys:
        keys["priority"] = priority


# ---- one program -------------------------------------------------------------------------------


def _program(name: str, section: _Section, group: str, dropped: list[str]) -> Program | None:
    values = section.values
    safe = _safe_name(name)
    where = f"[program:{name}]"
    if safe != name:
        dropped.append(f"{where}: renamed to {safe!r} (twinvisor program names)")
    numprocs = _import_int(values, "numprocs", 1, where, dropped)
    start = _import_int(values, "numprocs_start", 0, where, dropped)
    ctx = _Context(section.here, name, group, numprocs, start)

    def get(key: str) -> str | None:
        raw = values.get(key)
        return None if raw is None else _translate(raw, ctx, f"{where} {key}", key in _PER_INSTANCE)

    command = get("command")
    if not command:
        dropped.append(f"{where}: no command; program skipped")
        return None
    prog = Program(safe)
    try:
        prog.keys["command"] = shlex.split(command)
    except ValueError as e:
        dropped.append(f"{where}: cannot split command ({e}); program skipped")
        return None
    directory = get("directory")
    if directory:
        prog.keys["directory"] = _path(section.here, directory)
    _instances(prog, values, numprocs, ctx, where)
    _Converter(where, prog.keys, dropped, section.here, values).all(get)
    for key in values:
        if key in _NOT_CARRIED:
            dropped.append(f"{where}: {_NOT_CARRIED[key]}")
        elif key in ("stopasgroup", "killasgroup") and values[key].lower() in _FALSE:
            dropped.append(f"{where}: {key} = false (twinvisor signals the whole process group)")
        elif key not in _KNOWN:
            dropped.append(f"{where}: {key} is not a supervisord key twinvisor knows")
    return prog


def _path(here: str, value: str) -> str:
    """Relative to the supervisord file; one starting with ${VAR} is left to be resolved
    when the variable is (it is usually absolute: `%(ENV_APP_DIR)s`)."""
    if value.startswith("${"):
        return value
    return os.path.join(here, os.path.expanduser(value))


def _import_int(
    values: dict[str, str], key: str, default: int, where: str, dropped: list[str]
) -> int:
    raw = values.get(key)
    if raw is None:
        return default
    try:
        return int(_evaluate(raw, _Context(""), where))
    except (ValueError, ImportErrorText):
        dropped.append(f"{where}: {key} {raw!r} is not a number")
        return default


def _instances(
    prog: Program, values: dict[str, str], numprocs: int, ctx: _Context, where: str
) -> None:
    """numprocs, numprocs_start and process_name (-> instance_name)."""
    for key, default in (("numprocs", 1), ("numprocs_start", 0)):
        raw = values.get(key)
        if raw is None:
            continue
        whole = _WHOLE_ENV.fullmatch(raw.strip())
        # "${N}" stays read at load time; the number it has now decided the names
        value: Any = (
            "${" + whole.group(1) + "}" if whole else (numprocs if key == "numprocs" else ctx.start)
        )
        if value != default:
            prog.keys[key] = value
    pattern = values.get("process_name")
    if pattern and pattern.strip() != "%(program_name)s":
        prog.keys["instance_name"] = _translate(pattern.strip(), ctx, f"{where} process_name", True)


_KNOWN = {
    "command",
    "directory",
    "numprocs",
    "numprocs_start",
    "process_name",
    "priority",
    "umask",
    "autostart",
    "autorestart",
    "startsecs",
    "startretries",
    "exitcodes",
    "stopsignal",
    "stopwaitsecs",
    "stopasgroup",
    "killasgroup",
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
    keys: dict[str, Any]
    dropped: list[str]
    here: str
    raw: dict[str, str]  # as written, to keep a whole %(ENV_X)s as "${X}"

    def all(self, get: Callable[[str], str | None]) -> None:
        self.flag(get, "autostart", "autostart")
        self.autorestart(get("autorestart"))
        # supervisord stops a program before starting it again: a program that binds its own
        # port would fail to start beside its previous generation
        self.keys["stop_before_restart"] = True
        self.number(get, "startsecs", "min_uptime", float, default="1")
        self.number(get, "startretries", "max_retry", int, default="3")
        self.number(get, "stopwaitsecs", "stop_timeout", float, default="10")
        self.number(get, "priority", "priority", int, default="999", keep_default=False)
        self.exit_codes(get("exitcodes"))
        self.stop_signal(get("stopsignal"))
        user = get("user")
        if user:
            self.keys["user"] = user
        umask = get("umask")
        if umask:
            self.keys["umask"] = umask.strip()
        environment = get("environment")
        if environment:
            try:
                self.keys["environment"] = parse_supervisor_env(environment)
            except ValueError as e:
                self.dropped.append(f"{self.where}: environment: {e}")
        self.logs(get)

    def bad(self, key: str, value: str) -> None:
        self.dropped.append(f"{self.where}: {key} = {value!r} is not understood")

    def env_ref(self, key: str) -> str | None:
        """ "${X}" when the value is one %(ENV_X)s: a number or flag read at load time."""
        whole = _WHOLE_ENV.fullmatch(self.raw.get(key, "").strip())
        return "${" + whole.group(1) + "}" if whole else None

    def autorestart(self, raw: str | None) -> None:
        value = (raw or "unexpected").lower()  # supervisord's default
        if value in _TRUE:
            self.keys["auto_restart"] = "always"
        elif value in _FALSE:
            self.keys["auto_restart"] = "never"
        elif value == "unexpected":
            self.keys["auto_restart"] = "unexpected"
        else:
            self.bad("autorestart", value)

    def flag(self, get: Callable[[str], str | None], key: str, ours: str) -> None:
        raw = get(key)
        if raw is None:
            return
        if ref := self.env_ref(key):
            self.keys[ours] = ref
        elif raw.lower() in _TRUE | _FALSE:
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
        keep_default: bool = True,
    ) -> None:
        if ref := self.env_ref(key):
            self.keys[ours] = ref
            return
        given = get(key)
        if given is None and not keep_default:
            return
        raw = given or default
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
            self.keys["redirect_stderr"] = True  # supervisord ignores stderr_logfile then
        else:
            self.log_file(get("stderr_logfile"), "stderr_file")
        self.rotation(get)

    def rotation(self, get: Callable[[str], str | None]) -> None:
        files = [self.keys.get(k) for k in ("stdout_file", "stderr_file")]
        if all(f in _CONSOLE or f == "" for f in files if f is not None) and any(files):
            return  # no file to rotate: supervisord's maxbytes = 0 idiom
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
            self.keys["log_max_bytes"] = int(text)  # 0: never rotated, as in supervisord
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
        elif raw in _CONSOLE:
            self.keys[ours] = raw  # the daemon's own stdout/stderr, as in supervisord
        else:
            self.keys[ours] = _path(self.here, raw)
