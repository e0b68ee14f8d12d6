"""TOML config -> frozen specs (see specs.py), with includes and errors that name file:line.

`load_config` never stops at the first problem: every table is checked on its own, every key of
a program alone, so one run of `twinvisor check-config` lists everything there is to fix. Types
are checked by msgspec against the `_*Table` structs below (the schema lives in one place);
meaning (signals, users, addresses, sizes) is checked by small functions afterwards. Nothing is
built from a program whose name is unsafe, because names become file names (logs, pid files).
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shlex
import stat
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Annotated, Any, Literal

import msgspec

from twinvisor.config_locate import Locator, toml_error_line
from twinvisor.errors import ConfigError, ConfigProblem
from twinvisor.specs import (
    AfterGiveUp,
    AutoRestart,
    Config,
    DaemonSpec,
    LogSpec,
    ProgramSpec,
    RestartPolicy,
)

__all__ = ["config_to_dict", "format_problems", "load_config"]

_NonNeg = Annotated[float, msgspec.Meta(ge=0)]
_Count = Annotated[int, msgspec.Meta(ge=0)]
_MAX_NAME = 64
_MAX_FILE_BYTES = 1 << 20  # config and env files: a guard against pointing at a huge file
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL


class _DaemonTable(msgspec.Struct, forbid_unknown_fields=True):
    run_dir: str | None = None
    log_dir: str | None = None
    socket: str | None = None


class _IncludeTable(msgspec.Struct, forbid_unknown_fields=True):
    files: str | list[str] = []


class _ProgramTable(msgspec.Struct, forbid_unknown_fields=True):
    command: str | list[str] | None = None
    directory: str | None = None
    environment: dict[str, str | int] = {}
    env_file: str | None = None
    autostart: bool = True
    auto_restart: bool | Literal["always", "unexpected", "never"] = True
    stop_signal: str | int = "TERM"
    stop_timeout: _NonNeg = 10.0
    stop_before_restart: bool = False
    user: str | None = None
    group: str | None = None
    numprocs: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1
    stdout_file: str | None = None
    stderr_file: str | None = None
    listen_addrs: list[str] = []
    max_retry: _Count = 3
    min_uptime: _NonNeg = 1.0
    backoff_initial: _NonNeg = 0.1
    backoff_factor: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    backoff_max: _NonNeg = 30.0
    exit_codes: list[Annotated[int, msgspec.Meta(ge=0, le=255)]] = msgspec.field(
        default_factory=lambda: [0]
    )
    after_give_up: Literal["fatal", "slow_retry"] = "fatal"
    slow_retry_interval: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    log_max_bytes: _Count | str = 10 * 1024 * 1024
    log_backups: _Count = 5
    log_timestamps: bool = False


_TOP_KEYS = ("daemon", "program", "include")
_CHOICES = {
    "auto_restart": "true, false, 'always', 'unexpected', 'never'",
    "after_give_up": "'fatal', 'slow_retry'",
}
_FLOAT_KEYS = tuple(
    k for k in _ProgramTable.__struct_fields__ if isinstance(getattr(_ProgramTable(), k), float)
)

# ---------------------------------------------------------------------------------------------
# problems


@dataclass
class _Source:
    """One parsed config file."""

    path: str  # absolute
    data: dict[str, Any]
    locator: Locator

    def where(self, path: tuple[str, ...]) -> str:
        line = self.locator.line(path)
        return self.path if line is None else f"{self.path}:{line}"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass
class _Problems:
    items: list[ConfigProblem] = field(default_factory=list)

    def at(self, src: _Source, path: tuple[str, ...], message: str, suffix: str = "") -> None:
        key = ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p) for p in path) + suffix
        self.items.append(ConfigProblem(src.path, src.locator.line(path), key, message))

    def raw(self, file: str, line: int | None, key: str, message: str) -> None:
        self.items.append(ConfigProblem(file, line, key, message))


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML, shortened for messages."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value)
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key(key: str, known: tuple[str, ...]) -> str:
    import difflib  # only needed when something is wrong

    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key {key!r}{hint}"


_MSGSPEC_ERROR = re.compile(r"^(?P<body>.*?)(?: - at `\$(?P<at>[^`]*)`)?$", re.S)


def _translate(error: str, key: str, value: Any) -> tuple[str, str]:
    """msgspec's message -> (our message, key path suffix such as "[0]")."""
    match = _MSGSPEC_ERROR.match(error)
    body, at = (match["body"], match["at"] or "") if match else (error, "")
    suffix = at.removeprefix(f".{key}")
    body = body.replace("`object`", "`table`").replace("`", "")
    for index in re.findall(r"\[(\d+)\]", suffix):  # show the element, not the whole list
        value = value[int(index)] if isinstance(value, list) else value
    if body.startswith("Invalid enum value"):
        return f"invalid value {_show(value)}; expected one of {_CHOICES.get(key, '')}", suffix
    if ", got" in body:
        body += f" ({_show(value)})"
    else:  # a constraint such as "Expected int >= 1"
        body += f", got {_show(value)}"
    return body[0].lower() + body[1:], suffix


def _check_table(
    table: dict[str, Any],
    schema: type[msgspec.Struct],
    src: _Source,
    base: tuple[str, ...],
    pr: _Problems,
) -> dict[str, Any]:
    """Report unknown keys and badly typed values one by one; return the valid entries."""
    known = schema.__struct_fields__
    valid: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            pr.at(src, (*base, key), _unknown_key(key, known))
        elif _type_ok(schema, key, value, src, (*base, key), pr):
            valid[key] = value
    return valid


def _type_ok(
    schema: type[msgspec.Struct],
    key: str,
    value: Any,
    src: _Source,
    path: tuple[str, ...],
    pr: _Problems,
) -> bool:
    error = _convert_error(schema, key, value)
    if error is None:
        return True
    message, suffix = _translate(error, key, value)
    if suffix != "[...]" or not isinstance(value, dict):
        pr.at(src, path, message, suffix)
        return False
    # msgspec does not say which entry of a table is wrong: name each one
    for name, item in value.items():
        if (error := _convert_error(schema, key, {name: item})) is not None:
            pr.at(src, (*path, name), _translate(error, key, item)[0])
    return False


def _convert_error(schema: type[msgspec.Struct], key: str, value: Any) -> str | None:
    try:
        # one key at a time so that every bad key is reported, not only the first
        msgspec.convert({key: value}, type=schema)
    except msgspec.ValidationError as e:
        return str(e)
    return None


# ---------------------------------------------------------------------------------------------
# reading files and includes


def _read_regular(path: str) -> bytes:
    """Read a regular file; refuse devices and FIFOs, which could block or never end."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"not a regular file: {path}")
    with open(path, "rb") as f:
        data = f.read(_MAX_FILE_BYTES + 1)
    if len(data) > _MAX_FILE_BYTES:
        raise OSError(f"file larger than {_MAX_FILE_BYTES} bytes: {path}")
    return data


def _read_source(path: str, pr: _Problems) -> _Source | None:
    try:
        text = _read_regular(path).decode("utf-8")
    except (OSError, ValueError) as e:  # ValueError: NUL in path, invalid UTF-8
        pr.raw(path, None, "", f"cannot read config file: {e}")
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        pr.raw(path, toml_error_line(str(e)), "", f"invalid TOML: {e}")
        return None
    return _Source(path, data, Locator(text))


def _include_paths(src: _Source, pr: _Problems) -> list[str]:
    """Files named by [include] files, in order; globs matching nothing are fine."""
    table = src.data.get("include")
    if not isinstance(table, dict):
        return []
    valid = _check_table(table, _IncludeTable, src, ("include",), pr)
    patterns = valid.get("files", [])
    here = os.path.dirname(src.path)
    paths: list[str] = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        full = os.path.join(here, os.path.expanduser(pattern))
        if "\0" in pattern:
            pr.at(src, ("include", "files"), f"path contains a NUL byte: {_show(pattern)}")
        elif not any(c in pattern for c in "*?["):
            paths.append(os.path.normpath(full))  # a missing explicit file is reported on read
        else:
            # the config's own directory may contain glob characters: escape it
            matches = glob.glob(os.path.join(glob.escape(here), os.path.expanduser(pattern)))
            # a glob such as "*.toml" that matches the including file itself is no cycle
            own = os.path.realpath(src.path)
            keep = (m for m in matches if os.path.isfile(m) and os.path.realpath(m) != own)
            paths += sorted(os.path.normpath(m) for m in keep)
    return paths


def _load_sources(main: str, pr: _Problems) -> list[_Source]:
    """The main file and every file it includes, depth first, each file once."""
    out: list[_Source] = []
    root = _read_source(main, pr)
    if root is not None:
        _collect(root, [os.path.realpath(main)], out, {os.path.realpath(main)}, pr)
    return out


def _collect(
    src: _Source, chain: list[str], out: list[_Source], seen: set[str], pr: _Problems
) -> None:
    out.append(src)
    for path in _include_paths(src, pr):
        real = os.path.realpath(path)
        if real in chain:
            cycle = [*chain[chain.index(real) :], real]
            names = " -> ".join(_display(p, out[0].path) for p in cycle)
            pr.at(src, ("include", "files"), f"include cycle: {names}")
            continue
        if real in seen:
            continue  # included twice (diamond): its programs are already there
        seen.add(real)
        child = _read_source(path, pr)
        if child is not None:
            _collect(child, [*chain, real], out, seen, pr)


def _display(path: str, main: str) -> str:
    """A path relative to the main config's directory when it lies below it."""
    base = os.path.dirname(os.path.realpath(main))
    rel = os.path.relpath(path, base)
    return path if rel.startswith("..") else rel


# ---------------------------------------------------------------------------------------------
# checks of meaning


def _name_problem(name: str) -> str | None:
    """Why `name` cannot be a program name, or None. Names become file and instance names."""
    if not name:
        return "program name is empty"
    if len(name) > _MAX_NAME:
        return f"program name is longer than {_MAX_NAME} characters"
    if name in (".", ".."):
        return f"program name {name!r} is not allowed"
    if name.startswith("-"):
        return f"program name {name!r} must not start with '-'"
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_-."))})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"program name {name!r} contains {shown}; use letters, digits, '_', '-' and '.'"
    return None


_HOST = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_PORT = re.compile(r"[0-9]{1,5}")


def _listen_addr_problem(addr: str) -> str | None:
    """Syntax of one listen address: ':PORT', 'HOST:PORT', '[v6]:PORT', 'unix:/abs/path'."""
    if addr.startswith("unix:"):
        path = addr[5:]
        if not path.startswith("/") or "\0" in path:
            return f"{_show(addr)}: a unix socket path must be absolute"
        if len(os.fsencode(path)) > _UNIX_PATH_MAX:
            return f"{_show(addr)}: unix socket path longer than {_UNIX_PATH_MAX} bytes"
        return None
    host, sep, port = addr.rpartition(":")
    expected = "expected ':PORT', 'HOST:PORT', '[v6]:PORT' or 'unix:/abs/path'"
    if not sep:
        return f"{_show(addr)}: {expected}"
    if not _PORT.fullmatch(port) or int(port) > 65535:
        return f"{_show(addr)}: port must be a number from 0 to 65535"
    if host.startswith("[") and host.endswith("]"):
        import ipaddress

        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{_show(addr)}: invalid IPv6 address"
    elif host and not _HOST.fullmatch(host):
        hint = " (IPv6 addresses need brackets: '[::1]:80')" if ":" in host else ""
        return f"{_show(addr)}: invalid host{hint}; {expected}"
    return None


_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMG]?)(?:I?B)?\s*", re.I)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(value: int | str) -> int:
    """10485760, "10MB", "512KB", "1GB", "1.5M" -> bytes (binary units). ValueError if bad."""
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValueError(f"invalid size {_show(value)}; use bytes or a size such as '10MB'")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _signal_name(value: str | int) -> str:
    import signal

    from twinvisor.platform import signal_number  # lazy: platform pulls in ctypes

    return signal.Signals(signal_number(value)).name.removeprefix("SIG")


def _account_problem(key: str, name: str) -> str | None:
    """Whether user / group `name` exists (a name or a numeric id)."""
    import grp
    import pwd

    try:
        if key == "user":
            pwd.getpwuid(int(name)) if name.isdecimal() else pwd.getpwnam(name)
        else:
            grp.getgrgid(int(name)) if name.isdecimal() else grp.getgrnam(name)
    except (KeyError, ValueError, OverflowError):
        return f"{key} {_show(name)} does not exist on this system"
    return None


def _parse_env_file(path: str, key: str, pr: _Problems) -> dict[str, str]:
    """KEY=VALUE lines with # comments; an optional "export " prefix; quotes removed."""
    try:
        text = _read_regular(path).decode("utf-8")
    except (OSError, ValueError) as e:
        pr.raw(path, None, key, f"cannot read env_file: {e}")
        return {}
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or "\0" in value:
            pr.raw(path, number, key, f"expected KEY=VALUE, got {_show(raw)}")
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[name] = value
    return env


# ---------------------------------------------------------------------------------------------
# programs


@dataclass
class _Resolved:
    """Values of one program that need more than a type check, once they passed."""

    command: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    stop_signal: str = "TERM"
    log_max_bytes: int = 0


def _resolve_command(value: str | list[str] | None) -> tuple[tuple[str, ...], str | None]:
    if value is None:
        return (), "missing required key 'command'"
    try:
        argv = tuple(shlex.split(value)) if isinstance(value, str) else tuple(value)
    except ValueError as e:  # unbalanced quotes
        return (), f"cannot split command: {e}"
    if not argv or not argv[0]:
        return (), "command is empty"
    if any("\0" in arg for arg in argv):
        return (), "command contains a NUL byte"
    return argv, None


def _resolve_environment(
    prog: _ProgramTable, src: _Source, base: tuple[str, ...], pr: _Problems
) -> tuple[tuple[str, str], ...]:
    env: dict[str, str] = {}
    if prog.env_file is not None:
        path = _abspath(prog.env_file, src)
        if path is None:
            pr.at(src, (*base, "env_file"), "path contains a NUL byte")
        else:
            env = _parse_env_file(path, ".".join((*base, "env_file")), pr)
    env.update({k: str(v) for k, v in prog.environment.items()})  # the config wins
    for name, value in env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            pr.at(src, (*base, "environment", name), f"invalid environment variable {_show(name)}")
    return tuple(sorted(env.items()))


def _check_meaning(
    prog: _ProgramTable,
    present: set[str],
    written: set[str],
    src: _Source,
    base: tuple[str, ...],
    pr: _Problems,
) -> _Resolved:
    """Checks beyond types, on keys that passed the type check (`present`); defaults pass."""
    out = _Resolved()
    out.command, problem = _resolve_command(prog.command)
    # a command of the wrong type was reported by the type check already
    if problem and ("command" in present or "command" not in written):
        pr.at(src, (*base, "command") if "command" in present else base, problem)
    try:
        out.stop_signal = _signal_name(prog.stop_signal)
    except (ValueError, OverflowError):
        pr.at(src, (*base, "stop_signal"), f"unknown signal {_show(prog.stop_signal)}")
    try:
        out.log_max_bytes = parse_size(prog.log_max_bytes)
    except (ValueError, OverflowError) as e:
        pr.at(src, (*base, "log_max_bytes"), str(e))
    out.environment = _resolve_environment(prog, src, base, pr)
    _check_plain(prog, present, src, base, pr)
    return out


def _check_plain(
    prog: _ProgramTable, present: set[str], src: _Source, base: tuple[str, ...], pr: _Problems
) -> None:
    """Checks of values that are used as they are."""
    for key in _FLOAT_KEYS:
        if key in present and not math.isfinite(getattr(prog, key)):
            pr.at(src, (*base, key), f"must be a finite number, got {_show(getattr(prog, key))}")
    for key in ("user", "group"):
        name = getattr(prog, key)
        if name is not None and (problem := _account_problem(key, name)):
            pr.at(src, (*base, key), problem)
    for i, addr in enumerate(prog.listen_addrs):
        if problem := _listen_addr_problem(addr):
            pr.at(src, (*base, "listen_addrs"), problem, f"[{i}]")
    for key in ("directory", "stdout_file", "stderr_file"):
        if "\0" in (getattr(prog, key) or ""):
            pr.at(src, (*base, key), "path contains a NUL byte")


def _abspath(path: str, src: _Source) -> str | None:
    """`path` made absolute against the directory of the file that names it."""
    if "\0" in path:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(src.path), os.path.expanduser(path)))


def _program_specs(
    name: str, table: Any, src: _Source, daemon: DaemonSpec, pr: _Problems
) -> list[ProgramSpec]:
    base = ("program", name)
    if problem := _name_problem(name):
        pr.at(src, base, problem)
        return []
    if not isinstance(table, dict):
        pr.at(src, base, f"[program.{name}] must be a table, got {_show(table)}")
        return []
    before = len(pr.items)
    valid = _check_table(table, _ProgramTable, src, base, pr)
    prog = msgspec.convert(valid, type=_ProgramTable)  # each value already passed alone
    resolved = _check_meaning(prog, set(valid), set(table), src, base, pr)
    if len(pr.items) > before:
        return []
    return _instances(name, prog, resolved, src, daemon)


def _log(
    value: str | None, default: str, prog: _ProgramTable, resolved: _Resolved, src: _Source
) -> LogSpec:
    # "" means discard (supergo: empty = no output); absent means a file in log_dir
    path = default if value is None else (_abspath(value, src) if value else None)
    return LogSpec(path, resolved.log_max_bytes, prog.log_backups, prog.log_timestamps)


def _restart_policy(prog: _ProgramTable) -> RestartPolicy:
    auto = prog.auto_restart
    if isinstance(auto, bool):  # supergo's auto_restart = true / false
        auto = "always" if auto else "never"
    return RestartPolicy(
        auto_restart=AutoRestart(auto),
        max_retry=prog.max_retry,
        min_uptime=prog.min_uptime,
        backoff_initial=prog.backoff_initial,
        backoff_factor=prog.backoff_factor,
        backoff_max=prog.backoff_max,
        exit_codes=tuple(prog.exit_codes),
        after_give_up=AfterGiveUp(prog.after_give_up),
        slow_retry_interval=prog.slow_retry_interval,
    )


def _instances(
    name: str, prog: _ProgramTable, resolved: _Resolved, src: _Source, daemon: DaemonSpec
) -> list[ProgramSpec]:
    policy = _restart_policy(prog)
    specs = []
    for i in range(prog.numprocs):
        instance = name if prog.numprocs == 1 else f"{name}:{i}"
        log_base = os.path.join(daemon.log_dir, instance)
        specs.append(
            ProgramSpec(
                name=instance,
                program=name,
                command=resolved.command,
                directory=None if prog.directory is None else _abspath(prog.directory, src),
                environment=resolved.environment,
                autostart=prog.autostart,
                stop_signal=resolved.stop_signal,
                stop_timeout=prog.stop_timeout,
                stop_before_restart=prog.stop_before_restart,
                user=prog.user,
                group=prog.group,
                instance=i,
                numprocs=prog.numprocs,
                stdout=_log(prog.stdout_file, log_base + ".stdout.log", prog, resolved, src),
                stderr=_log(prog.stderr_file, log_base + ".stderr.log", prog, resolved, src),
                listen_addrs=tuple(prog.listen_addrs),
                restart=policy,
                source=src.where(("program", name)),
            )
        )
    return specs


# ---------------------------------------------------------------------------------------------
# the whole file


def _daemon_spec(root: _Source, pr: _Problems) -> DaemonSpec:
    table = root.data.get("daemon", {})
    valid = (
        _check_table(table, _DaemonTable, root, ("daemon",), pr) if isinstance(table, dict) else {}
    )
    d = msgspec.convert(valid, type=_DaemonTable)
    env_run_dir = os.environ.get("TWINVISOR_RUN_DIR")  # relative to the cwd, like any env path
    default_run = (
        os.path.abspath(env_run_dir)
        if env_run_dir
        else os.path.join(os.path.dirname(root.path), ".twinvisor")
    )
    run_dir = _daemon_path(root, "run_dir", d.run_dir, default_run, pr)
    log_dir = _daemon_path(root, "log_dir", d.log_dir, os.path.join(run_dir, "log"), pr)
    socket = _daemon_path(root, "socket", d.socket, os.path.join(run_dir, "twinvisor.sock"), pr)
    if len(os.fsencode(socket)) > _UNIX_PATH_MAX:
        pr.at(
            root,
            ("daemon", "socket"),
            f"control socket path {socket!r} is longer than {_UNIX_PATH_MAX} bytes "
            "(AF_UNIX limit); set a shorter [daemon] run_dir or socket",
        )
    return DaemonSpec(run_dir=run_dir, log_dir=log_dir, socket=socket)


def _daemon_path(root: _Source, key: str, value: str | None, default: str, pr: _Problems) -> str:
    path = default if value is None else _abspath(value, root)
    if path is None:
        pr.at(root, ("daemon", key), "path contains a NUL byte")
        return default
    return path


def _check_top(src: _Source, is_main: bool, pr: _Problems) -> None:
    for key, value in src.data.items():
        if key not in _TOP_KEYS:
            pr.at(src, (key,), _unknown_key(key, _TOP_KEYS))
        elif not isinstance(value, dict):
            pr.at(src, (key,), f"{key} must be a table ([{key}]), got {_show(value)}")
        elif key == "daemon" and not is_main:
            pr.at(src, (key,), "[daemon] belongs in the main config file, not an included one")


def load_config(path: str) -> Config:
    """Read, include, validate. Raises ConfigError listing every problem found."""
    main = os.path.abspath(path)
    pr = _Problems()
    sources = _load_sources(main, pr)
    if not sources:
        raise ConfigError(pr.items)
    daemon = _daemon_spec(sources[0], pr)
    first_seen: dict[str, str] = {}
    programs: list[ProgramSpec] = []
    for src in sources:
        _check_top(src, src is sources[0], pr)
        table = src.data.get("program", {})
        for name, body in table.items() if isinstance(table, dict) else ():
            here = src.where(("program", name))
            if name in first_seen:
                msg = f"program {name!r} is defined twice: {first_seen[name]} and {here}"
                pr.at(src, ("program", name), msg)
                continue
            first_seen[name] = here
            programs += _program_specs(name, body, src, daemon, pr)
    if pr.items:
        raise ConfigError(_in_file_order(pr.items))
    return Config(path=main, daemon=daemon, programs=tuple(programs))


def _in_file_order(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """Problems grouped by file (in the order files were first named), then by line."""
    files = list(dict.fromkeys(p.file for p in problems))
    return sorted(problems, key=lambda p: (files.index(p.file), p.line or 0))


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def config_to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (for `twinvisor check-config`)."""
    out: dict[str, Any] = _jsonable(config)
    for program in out["programs"]:
        program["environment"] = dict(program["environment"])  # pairs read better as a table
    return out


def format_problems(err: ConfigError) -> str:
    """One problem a line, "file:line: [key] message", under a count."""
    n = len(err.problems)
    head = f"{n} problem{'s' if n != 1 else ''} in config:"
    return "\n".join([head, *(f"  {p}" for p in err.problems)])
