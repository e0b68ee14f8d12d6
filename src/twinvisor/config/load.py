"""TOML config -> frozen specs (see specs.py), with includes and errors that name file:line.

`load_config` never stops at the first problem: every table is checked on its own, every key of
a program alone, so one run of `twinvisor check-config` lists everything there is to fix. Types
are checked by msgspec against the `_*Table` structs below (the schema lives in one place);
meaning (signals, users, addresses, sizes, readiness, dependencies) is checked afterwards by the
small functions of config_values.py; what needs every program at once (depends_on) is checked
last. Nothing is built from a program whose name is unsafe, because names become file names.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import msgspec

from twinvisor.config.expand import Instance, expand_env, is_whole_reference
from twinvisor.config.hooks import hook_specs
from twinvisor.config.http import http_spec
from twinvisor.config.instances import expand_table, instance_list, is_templated
from twinvisor.config.locate import (
    MAX_NESTING,
    Locator,
    Problems,
    Source,
    TooLarge,
    byte_line,
    nesting_line,
    read_regular,
    toml_error_line,
)
from twinvisor.config.paths import daemon_spec
from twinvisor.config.signals import signal_name, signal_number
from twinvisor.config.specs import (
    AfterGiveUp,
    AutoRestart,
    Config,
    DaemonSpec,
    DependCondition,
    Dependency,
    ExitAction,
    FatalAction,
    GroupSpec,
    HealthSpec,
    LogSpec,
    ProgramSpec,
    ProgramType,
    ReadySpec,
    RestartPolicy,
    group_of,
)
from twinvisor.config.values import (
    UNIX_PATH_MAX,
    account_problem,
    check_table,
    dependency_cycles,
    find_problem,
    health_probe,
    listen_addr_problem,
    name_problem,
    parse_dependency,
    parse_env_text,
    parse_ready,
    parse_size,
    parse_socket_mode,
    parse_umask,
    socket_owner_problems,
    split_command,
    unknown_key,
    unknown_program,
)
from twinvisor.config.values import show as _show
from twinvisor.errors import ConfigError, ConfigProblem

__all__ = ["format_problems", "load_config", "parse_size"]

MAX_SECONDS = 30 * 86400.0  # any delay or timeout: past a month it is a typo (1e20 was taken)
PATH_MAX = 4096  # Linux: a longer path cannot be opened anyway

_NonNeg = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
_Positive = Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
_Path = Annotated[str, msgspec.Meta(max_length=PATH_MAX)]


class _DaemonTable(msgspec.Struct, forbid_unknown_fields=True):
    run_dir: _Path | None = None
    log_dir: _Path | None = None
    socket: _Path | None = None
    http: dict[str, Any] | None = None  # checked by config/http.py
    console: bool | Literal["json"] = False  # the programs' default for `console`


class _IncludeTable(msgspec.Struct, forbid_unknown_fields=True):
    files: str | list[str] = []


class _ProgramTable(msgspec.Struct, forbid_unknown_fields=True):
    command: str | list[str] | None = None
    directory: _Path | None = None
    environment: dict[str, str | int] = {}
    env_file: _Path | None = None
    autostart: bool = True
    auto_restart: bool | Literal["always", "unexpected", "never"] = True
    stop_signal: str | int = "TERM"
    stop_timeout: _NonNeg = 10.0
    stop_before_restart: bool = False
    user: str | None = None
    group: str | None = None
    numprocs: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1
    numprocs_start: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    instance_name: str | None = None  # default "{program}:{instance}", or "{program}" alone
    stdout_file: _Path | None = None
    stderr_file: _Path | None = None
    redirect_stderr: bool = False
    umask: int | str | None = None
    priority: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 999
    listen_addrs: list[str] = []
    max_retry: _Count = 3
    min_uptime: _NonNeg = 1.0
    backoff_initial: _NonNeg = 0.1
    backoff_factor: Annotated[float, msgspec.Meta(ge=1, le=1000)] = 2.0
    backoff_max: _NonNeg = 30.0
    exit_codes: list[Annotated[int, msgspec.Meta(ge=0, le=255)]] = msgspec.field(
        default_factory=lambda: [0]
    )
    after_give_up: Literal["fatal", "slow_retry"] = "fatal"
    slow_retry_interval: _Positive = 60.0
    flap_exits: _Count = 5
    flap_window: _Positive = 60.0
    log_max_bytes: _Count | str = 10 * 1024 * 1024
    log_backups: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 5
    log_timestamps: bool = False
    ready: str = "spawn"
    ready_timeout: _Positive = 30.0
    watchdog_sec: _NonNeg = 0.0
    health: dict[str, Any] = {}  # checked against _HealthTable on its own, key by key
    depends_on: list[str] = []
    restart_batch: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1
    cgroup: bool = False
    socket_mode: int | str = 0o660
    socket_owner: str | None = None
    find: str | None = None
    pidfile: _Path | None = None
    type: Literal["service", "oneshot"] = "service"
    on_exit: Literal["restart", "shutdown", "ignore"] | None = None
    on_fatal: Literal["ignore", "shutdown"] | None = None
    essential: bool = False  # on_exit (services) and on_fatal default to "shutdown"
    gates_ready: bool = True
    console: bool | Literal["json"] | None = None  # None: [daemon] console


# stdout_file / stderr_file values that mean the daemon's own stdout/stderr
CONSOLE_FILES = {"console": None, "/dev/stdout": "stdout", "/dev/stderr": "stderr"}
CONSOLE_FILES |= {"/dev/fd/1": "stdout", "/dev/fd/2": "stderr"}  # the same, spelled otherwise
CONSOLE_FILES |= {"/proc/self/fd/1": "stdout", "/proc/self/fd/2": "stderr"}


class _GroupTable(msgspec.Struct, forbid_unknown_fields=True):
    programs: list[str] = []


class _HealthTable(msgspec.Struct, forbid_unknown_fields=True):
    http: str | None = None
    tcp: str | None = None
    command: str | list[str] | None = None
    interval: _Positive = 10.0
    timeout: _Positive = 5.0
    failures: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 3


_TOP_KEYS = ("daemon", "program", "group", "include", "hooks")
_PROBES = ("http", "tcp", "command")
_PROBES_SHOWN = "'http', 'tcp' or 'command'"


def _float_keys(schema: type[msgspec.Struct]) -> tuple[str, ...]:
    default = schema()
    return tuple(k for k in schema.__struct_fields__ if isinstance(getattr(default, k), float))


_FLOAT_KEYS = _float_keys(_ProgramTable)
_HEALTH_FLOAT_KEYS = _float_keys(_HealthTable)

# ---------------------------------------------------------------------------------------------
# reading files and includes


def _read_source(path: str, pr: Problems, included_by: Source | None = None) -> Source | None:
    """One file, parsed; None (and the problem said) when it cannot be. A file that cannot
    be read at all is reported at the line that includes it."""
    try:
        raw = read_regular(path)
    except (OSError, ValueError) as e:  # ValueError: NUL in path
        if included_by is not None:
            pr.at(included_by, ("include", "files"), f"cannot read included file: {e}")
        else:
            pr.raw(path, e.line if isinstance(e, TooLarge) else None, "", f"cannot read: {e}")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = byte_line(raw, e.start)
        key = Locator(raw.decode("utf-8", "replace")).key_at(line)
        pr.raw(path, line, ".".join(key), f"not valid UTF-8 (byte {e.start})")
        return None
    return _parse_source(path, text, pr)


def _parse_source(path: str, text: str, pr: Problems) -> Source | None:
    locator = Locator(text)
    deep = nesting_line(text)
    if deep is not None:
        src = Source(path, {}, locator)
        message = f"arrays or inline tables nested more than {MAX_NESTING} deep"
        pr.at(src, locator.key_at(deep), message)
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        pr.raw(path, toml_error_line(str(e)), "", f"invalid TOML: {e}")
        return None
    except RecursionError:  # nesting_line should have caught it; never a traceback
        pr.raw(path, None, "", "the file nests too deep to be parsed")
        return None
    src = Source(path, data, locator)
    _expand_environment(src, src.data, (), pr)
    return src


def _expand_environment(
    src: Source, table: dict[str, Any], base: tuple[str, ...], pr: Problems
) -> None:
    """Every string value's ${VAR} replaced, in place, at load time (keys stay as written)."""
    for key, value in table.items():
        path = (*base, key)
        if isinstance(value, dict):
            _expand_environment(src, value, path, pr)
        elif isinstance(value, str):
            table[key] = _expanded(src, value, path, "", pr)
        elif isinstance(value, list):
            table[key] = [
                _expanded(src, v, path, f"[{i}]", pr) if isinstance(v, str) else v
                for i, v in enumerate(value)
            ]


def _expanded(src: Source, value: str, path: tuple[str, ...], suffix: str, pr: Problems) -> str:
    out, problem = expand_env(value, os.environ)
    if problem is not None:
        pr.at(src, path, problem, suffix)
        src.unexpanded.add(path)
    elif not suffix and out != value and is_whole_reference(value):
        src.whole_refs.add(path)
    return out


def _include_paths(src: Source, pr: Problems) -> list[str]:
    """Files named by [include] files, in order; globs matching nothing are fine."""
    table = src.data.get("include")
    if not isinstance(table, dict):
        return []
    valid = check_table(table, _IncludeTable, src, ("include",), pr)
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
            import glob  # here: only a config with a wildcard include needs it

            # the config's own directory may contain glob characters: escape it
            matches = glob.glob(os.path.join(glob.escape(here), os.path.expanduser(pattern)))
            # a glob such as "*.toml" that matches the including file itself is no cycle
            own = os.path.realpath(src.path)
            keep = (m for m in matches if os.path.isfile(m) and os.path.realpath(m) != own)
            paths += sorted(os.path.normpath(m) for m in keep)
    return paths


def _load_sources(main: str, pr: Problems) -> list[Source]:
    """The main file and every file it includes, depth first, each file once."""
    out: list[Source] = []
    root = _read_source(main, pr)
    if root is not None:
        _collect(root, [os.path.realpath(main)], out, {os.path.realpath(main)}, pr)
    return out


def _collect(
    src: Source, chain: list[str], out: list[Source], seen: set[str], pr: Problems
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
        child = _read_source(path, pr, included_by=src)
        if child is not None:
            _collect(child, [*chain, real], out, seen, pr)


def _display(path: str, main: str) -> str:
    """A path relative to the main config's directory when it lies below it."""
    base = os.path.dirname(os.path.realpath(main))
    rel = os.path.relpath(path, base)
    return path if rel.startswith("..") else rel


# ---------------------------------------------------------------------------------------------
# programs (single values are checked by config_values.py)


def _parse_env_file(path: str, src: Source, where: tuple[str, ...], pr: Problems) -> dict[str, str]:
    """An env file's variables; a file that cannot be read is reported at the env_file key."""
    key = ".".join(where)
    try:
        raw = read_regular(path)
    except (OSError, ValueError) as e:
        pr.at(src, where, f"cannot read env_file: {e}")
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        pr.raw(path, byte_line(raw, e.start), key, f"not valid UTF-8 (byte {e.start})")
        return {}
    env, bad = parse_env_text(text)
    for number, message in bad:
        pr.raw(path, number, key, message)
    return env


@dataclass
class _Resolved:
    """Values of one program that need more than a type check, once they passed."""

    command: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    stop_signal: str = "TERM"
    log_max_bytes: int = 0
    ready: ReadySpec = field(default_factory=ReadySpec)
    health: HealthSpec | None = None
    depends_on: list[tuple[int, Dependency]] = field(default_factory=list)  # (index, dep)
    socket_mode: int = 0o660
    console: str = ""  # "", "text" or "json": the program's console key, or [daemon]'s
    umask: int | None = None


def _resolve_command(value: str | list[str] | None) -> tuple[tuple[str, ...], str | None]:
    if value is None:
        return (), "missing required key 'command'"
    try:
        return split_command(value), None
    except ValueError as e:
        return (), str(e)


def _resolve_environment(
    prog: _ProgramTable, src: Source, base: tuple[str, ...], pr: Problems
) -> tuple[tuple[str, str], ...]:
    env: dict[str, str] = {}
    if prog.env_file is not None:
        path = _abspath(prog.env_file, src)
        if path is None:
            pr.at(src, (*base, "env_file"), "path contains a NUL byte")
        else:
            env = _parse_env_file(path, src, (*base, "env_file"), pr)
    env.update({k: str(v) for k, v in prog.environment.items()})  # the config wins
    for name, value in env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            pr.at(src, (*base, "environment", name), f"invalid environment variable {_show(name)}")
    return tuple(sorted(env.items()))


def _check_meaning(
    prog: _ProgramTable,
    present: set[str],
    written: set[str],
    src: Source,
    base: tuple[str, ...],
    pr: Problems,
) -> _Resolved:
    """Checks beyond types, on keys that passed the type check (`present`); defaults pass."""
    out = _Resolved()
    out.command, problem = _resolve_command(prog.command)
    # a command of the wrong type was reported by the type check already
    if problem and ("command" in present or "command" not in written):
        pr.at(src, (*base, "command") if "command" in present else base, problem)
    try:
        out.stop_signal = signal_name(prog.stop_signal)
    except (ValueError, OverflowError):
        pr.at(src, (*base, "stop_signal"), f"unknown signal {_show(prog.stop_signal)}")
    try:
        out.log_max_bytes = parse_size(prog.log_max_bytes)
    except (ValueError, OverflowError) as e:
        pr.at(src, (*base, "log_max_bytes"), str(e))
    out.environment = _resolve_environment(prog, src, base, pr)
    _check_plain(prog, present, src, base, pr)
    out.ready = _resolve_ready(prog, src, base, pr)
    if "health" in present:
        out.health = _resolve_health(prog, src, base, pr)
    out.depends_on = _resolve_depends_on(prog, src, base, pr)
    try:
        out.socket_mode = parse_socket_mode(prog.socket_mode)
    except ValueError as e:
        pr.at(src, (*base, "socket_mode"), str(e))
    if prog.umask is not None:
        try:
            out.umask = parse_umask(prog.umask)
        except ValueError as e:
            pr.at(src, (*base, "umask"), str(e))
    if prog.redirect_stderr and prog.stderr_file is not None:
        pr.at(
            src,
            (*base, "stderr_file"),
            "stderr_file has no effect with redirect_stderr = true (stderr goes to the "
            "stdout log); remove one of them",
        )
    return out


def _check_plain(
    prog: _ProgramTable, present: set[str], src: Source, base: tuple[str, ...], pr: Problems
) -> None:
    """Checks of values that are used as they are."""
    _check_finite(prog, _FLOAT_KEYS, present, src, base, pr)
    for key in ("user", "group"):
        name = getattr(prog, key)
        if name is not None and (problem := account_problem(key, name)):
            pr.at(src, (*base, key), problem)
    if prog.socket_owner is not None:
        for problem in socket_owner_problems(prog.socket_owner):
            pr.at(src, (*base, "socket_owner"), f"socket_owner: {problem}")
    for i, addr in enumerate(prog.listen_addrs):
        if problem := listen_addr_problem(addr):
            pr.at(src, (*base, "listen_addrs"), problem, f"[{i}]")
    if prog.find is not None and (problem := find_problem(prog.find, prog.directory)):
        pr.at(src, (*base, "find"), problem)
    for key in ("directory", "stdout_file", "stderr_file", "pidfile"):
        if "\0" in (getattr(prog, key) or ""):
            pr.at(src, (*base, key), "path contains a NUL byte")


def _check_finite(
    table: msgspec.Struct,
    keys: tuple[str, ...],
    present: set[str],
    src: Source,
    base: tuple[str, ...],
    pr: Problems,
) -> None:
    for key in keys:
        if key in present and not math.isfinite(getattr(table, key)):
            pr.at(src, (*base, key), f"must be a finite number, got {_show(getattr(table, key))}")


def _resolve_ready(
    prog: _ProgramTable, src: Source, base: tuple[str, ...], pr: Problems
) -> ReadySpec:
    try:
        return parse_ready(prog.ready, prog.ready_timeout, prog.listen_addrs)
    except ValueError as e:
        pr.at(src, (*base, "ready"), str(e))
        return ReadySpec()


def _resolve_health(
    prog: _ProgramTable, src: Source, base: tuple[str, ...], pr: Problems
) -> HealthSpec | None:
    """The [program.NAME.health] table: exactly one probe and its timing."""
    hbase = (*base, "health")
    valid = check_table(prog.health, _HealthTable, src, hbase, pr)
    h = msgspec.convert(valid, type=_HealthTable)
    _check_finite(h, _HEALTH_FLOAT_KEYS, set(valid), src, hbase, pr)
    given = [k for k in _PROBES if k in prog.health]  # as written: a bad type is no "none"
    if len(given) != 1:
        found = "none is set" if not given else "got " + " and ".join(map(repr, given))
        pr.at(src, hbase, f"a health table needs exactly one of {_PROBES_SHOWN}; {found}")
        return None
    kind = given[0]
    if kind not in valid:
        return None  # the probe had the wrong type: reported by the type check
    try:
        probe, target, argv = health_probe(kind, valid[kind], prog.listen_addrs)
    except ValueError as e:
        pr.at(src, (*hbase, kind), str(e))
        return None
    return HealthSpec(probe, target, argv, h.interval, h.timeout, h.failures)


def _resolve_depends_on(
    prog: _ProgramTable, src: Source, base: tuple[str, ...], pr: Problems
) -> list[tuple[int, Dependency]]:
    """Syntax of each entry; what needs the other programs is checked by _check_dependencies."""
    name = base[-1]
    deps: list[tuple[int, Dependency]] = []
    for i, entry in enumerate(prog.depends_on):
        where, suffix = (*base, "depends_on"), f"[{i}]"
        try:
            dep = parse_dependency(entry)
        except ValueError as e:
            pr.at(src, where, str(e), suffix)
            continue
        if dep.program == name:
            pr.at(src, where, f"program {name!r} depends on itself", suffix)
        elif any(d.program == dep.program for _, d in deps):
            pr.at(src, where, f"{dep.program!r} is listed twice", suffix)
        else:
            deps.append((i, dep))
    return deps


def _abspath(path: str, src: Source) -> str | None:
    """`path` made absolute against the directory of the file that names it."""
    if "\0" in path:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(src.path), os.path.expanduser(path)))


@dataclass
class _Node:
    """What the checks across programs need to know of one program (see depends_on)."""

    src: Source
    depends_on: list[tuple[int, Dependency]]  # (index in the depends_on list, dependency)
    has_health: bool
    oneshot: bool = False


@dataclass
class _Scope:
    """What every program's checks share: the daemon, the groups, the nodes for depends_on."""

    daemon: DaemonSpec
    group_of: dict[str, str]
    nodes: dict[str, _Node] = field(default_factory=dict)


def _program_specs(
    name: str, table: Any, src: Source, scope: _Scope, pr: Problems
) -> list[ProgramSpec]:
    base = ("program", name)
    if problem := name_problem(name):
        pr.at(src, base, problem)
        return []
    if not isinstance(table, dict):
        pr.at(src, base, f"[program.{name}] must be a table, got {_show(table)}")
        return []
    before = len(pr.items)
    valid = check_table(table, _ProgramTable, src, base, pr)
    prog = msgspec.convert(valid, type=_ProgramTable)  # each value already passed alone
    group = scope.group_of.get(name, name)
    members, problem = instance_list(
        name, prog.numprocs, prog.numprocs_start, prog.instance_name, group
    )
    if problem:
        pr.at(src, (*base, "instance_name") if "instance_name" in valid else base, problem)
        # the other keys are still checked, on instances named the default way
        members, _ = instance_list(name, prog.numprocs, prog.numprocs_start, None, group)
    # a health table with problems still counts: "healthy" on it is not a second problem
    has_health = isinstance(table.get("health"), dict)
    oneshot = prog.type == "oneshot"
    if not is_templated(valid) or not members:
        resolved = _check_meaning(prog, set(valid), set(table), src, base, pr)
        resolved.console = _program_console(prog, scope.daemon)
        scope.nodes[name] = _Node(src, resolved.depends_on, has_health, oneshot)
        if len(pr.items) > before:
            return []
        return [_instance(inst, prog, resolved, src, scope.daemon) for inst in members]
    specs = []
    for inst in members:  # placeholders: check what each instance really gets
        own, bad = expand_table(valid, inst)
        mine = Problems()
        for key, message in bad:
            mine.at(src, (*base, key), message)
        if not bad:
            prog_i = msgspec.convert(own, type=_ProgramTable)
            resolved = _check_meaning(prog_i, set(own), set(table), src, base, mine)
            resolved.console = _program_console(prog_i, scope.daemon)
            scope.nodes.setdefault(name, _Node(src, resolved.depends_on, has_health, oneshot))
        note = f" (instance {inst.name!r})" if len(members) > 1 else ""
        pr.items += [p.with_message(p.message + note) for p in mine.items]
        if mine.items:
            return []  # the first instance with problems is enough to show what is wrong
        specs.append(_instance(inst, prog_i, resolved, src, scope.daemon))
    return [] if len(pr.items) > before else specs


def _check_dependencies(nodes: dict[str, _Node], known: list[str], pr: Problems) -> None:
    """depends_on across all files: programs that exist, "healthy" only with health, no cycle."""
    graph: dict[str, list[str]] = {}
    for name, node in nodes.items():
        graph[name] = []
        for i, dep in node.depends_on:
            where, suffix = ("program", name, "depends_on"), f"[{i}]"
            if dep.program not in known:
                pr.at(node.src, where, unknown_program(dep.program, known), suffix)
                continue
            graph[name].append(dep.program)
            target = nodes.get(dep.program)  # None: that program's table is unusable
            if dep.condition is DependCondition.COMPLETED and target and not target.oneshot:
                pr.at(
                    node.src,
                    where,
                    f'{dep.program!r} is not a oneshot (type = "oneshot"), so it never '
                    f"completes; make it one, or depend on '{dep.program}:ready'",
                    suffix,
                )
            if dep.condition is DependCondition.HEALTHY and target and not target.has_health:
                pr.at(
                    node.src,
                    where,
                    f"{dep.program!r} has no [program.{dep.program}.health] table, so it never "
                    f"becomes healthy; add one, or depend on '{dep.program}:ready'",
                    suffix,
                )
    for cycle in dependency_cycles(graph):
        node = nodes[cycle[0]]
        i = next(i for i, d in node.depends_on if d.program == cycle[1])
        shown = " -> ".join([*cycle, cycle[0]])
        where = ("program", cycle[0], "depends_on")
        pr.at(node.src, where, f"dependency cycle: {shown}", f"[{i}]")


def _log(
    value: str | None,
    default: str,
    stream: str,
    prog: _ProgramTable,
    resolved: _Resolved,
    src: Source,
) -> LogSpec:
    # "" means discard (supergo: empty = no output); absent means a file in log_dir, or the
    # console when `console` (or [daemon] console) says so; "console", /dev/stdout and
    # /dev/stderr mean the daemon's own stream (the container's), never the file itself
    sizes = (resolved.log_max_bytes, prog.log_backups, prog.log_timestamps)
    mode = resolved.console
    if value in CONSOLE_FILES or (value is None and mode):
        target = CONSOLE_FILES.get(value or "console") or stream
        return LogSpec(None, *sizes, console=target, console_json=mode == "json")
    path = default if value is None else (_abspath(value, src) if value else None)
    return LogSpec(path, *sizes)


def _program_console(prog: _ProgramTable, daemon: DaemonSpec) -> str:
    return daemon.console if prog.console is None else _console_mode(prog.console)


def _console_mode(value: bool | str) -> str:
    return "json" if value == "json" else ("text" if value is True else "")


def _exit_policy(prog: _ProgramTable) -> tuple[ExitAction, FatalAction]:
    """`essential = true` is the shorthand: a service's exit and anyone's giving up stop
    the daemon (a oneshot's success is its job done); keys written out win."""
    on_exit = prog.on_exit
    if on_exit is None:
        on_exit = "shutdown" if prog.essential and prog.type == "service" else "restart"
    on_fatal = prog.on_fatal or ("shutdown" if prog.essential else "ignore")
    return ExitAction(on_exit), FatalAction(on_fatal)


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
        flap_exits=prog.flap_exits,
        flap_window=prog.flap_window,
    )


def _instance(
    inst: Instance, prog: _ProgramTable, resolved: _Resolved, src: Source, daemon: DaemonSpec
) -> ProgramSpec:
    name = inst.program
    log_base = os.path.join(daemon.log_dir, inst.name)
    stderr = _log(prog.stderr_file, log_base + ".stderr.log", "stderr", prog, resolved, src)
    if prog.redirect_stderr:
        stderr = LogSpec(None)  # into stdout's pipe: the stdout log has both, in order
    on_exit, on_fatal = _exit_policy(prog)
    return ProgramSpec(
        name=inst.name,
        program=name,
        command=resolved.command,
        directory=None if prog.directory is None else _abspath(prog.directory, src),
        environment=resolved.environment,
        autostart=prog.autostart,
        stop_signal=resolved.stop_signal,
        stop_signum=signal_number(resolved.stop_signal),
        stop_timeout=prog.stop_timeout,
        stop_before_restart=prog.stop_before_restart,
        user=prog.user,
        group=prog.group,
        instance=inst.number,
        numprocs=prog.numprocs,
        numprocs_start=prog.numprocs_start,
        stdout=_log(prog.stdout_file, log_base + ".stdout.log", "stdout", prog, resolved, src),
        stderr=stderr,
        redirect_stderr=prog.redirect_stderr,
        umask=resolved.umask,
        priority=prog.priority,
        listen_addrs=tuple(prog.listen_addrs),
        restart=_restart_policy(prog),
        ready=resolved.ready,
        health=resolved.health,
        watchdog_sec=prog.watchdog_sec,
        depends_on=tuple(dep for _, dep in resolved.depends_on),
        restart_batch=prog.restart_batch,
        cgroup=prog.cgroup,
        socket_mode=resolved.socket_mode,
        socket_owner=prog.socket_owner,
        find=prog.find,
        pidfile=None if prog.pidfile is None else _abspath(prog.pidfile, src),
        type=ProgramType(prog.type),
        on_exit=on_exit,
        on_fatal=on_fatal,
        gates_ready=prog.gates_ready,
        source=src.where(("program", name)),
    )


# ---------------------------------------------------------------------------------------------
# the whole file


def _daemon_spec(root: Source, pr: Problems) -> DaemonSpec:
    table = root.data.get("daemon", {})
    valid = (
        check_table(table, _DaemonTable, root, ("daemon",), pr) if isinstance(table, dict) else {}
    )
    d = msgspec.convert(valid, type=_DaemonTable)
    spec = daemon_spec(
        root.path,
        _daemon_path(root, "run_dir", d.run_dir, pr),
        _daemon_path(root, "socket", d.socket, pr),
        _daemon_path(root, "log_dir", d.log_dir, pr),
    )
    socket = spec.socket
    if len(os.fsencode(socket)) > UNIX_PATH_MAX:
        pr.at(
            root,
            ("daemon", "socket"),
            f"control socket path {socket!r} is longer than {UNIX_PATH_MAX} bytes "
            "(AF_UNIX limit); set a shorter [daemon] run_dir or socket",
        )
    http = http_spec(root, table.get("http") if isinstance(table, dict) else None, pr)
    console = _console_mode(d.console)
    return replace(spec, http=http, console=console)


def _daemon_path(root: Source, key: str, value: str | None, pr: Problems) -> str | None:
    """The path as set, made absolute; None when unset (or unusable: the default applies)."""
    path = None if value is None else _abspath(value, root)
    if value is not None and path is None:
        pr.at(root, ("daemon", key), "path contains a NUL byte")
    return path


def _check_top(src: Source, is_main: bool, pr: Problems) -> None:
    for key, value in src.data.items():
        if key not in _TOP_KEYS:
            pr.at(src, (key,), unknown_key(key, _TOP_KEYS))
        elif not isinstance(value, dict):
            pr.at(src, (key,), f"{key} must be a table ([{key}]), got {_show(value)}")
        elif key == "daemon" and not is_main:
            pr.at(src, (key,), "[daemon] belongs in the main config file, not an included one")


def load_config(path: str) -> Config:
    """Read, include, validate. Raises ConfigError listing every problem found."""
    main = os.path.abspath(path)
    pr = Problems()
    sources = _load_sources(main, pr)
    if not sources:
        raise ConfigError(pr.items)
    daemon = _daemon_spec(sources[0], pr)
    found = _read_groups(sources, pr)
    groups = [g for g, _ in found]
    scope = _Scope(daemon, group_of(groups))
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
            programs += _program_specs(name, body, src, scope, pr)
    _check_dependencies(scope.nodes, list(first_seen), pr)
    _check_groups(found, list(first_seen), pr)
    _check_instance_names(programs, scope, pr)
    hooks = [h for src in sources for h in hook_specs(src, pr)]
    if pr.items:
        raise ConfigError(_in_file_order(pr.items))
    return Config(
        path=main,
        daemon=daemon,
        programs=tuple(programs),
        groups=tuple(groups),
        hooks=tuple(hooks),
    )


def _read_groups(sources: list[Source], pr: Problems) -> list[tuple[GroupSpec, Source]]:
    """[group.NAME] tables of every file (read before the programs: {group} needs them)."""
    groups: list[tuple[GroupSpec, Source]] = []
    for src in sources:
        table = src.data.get("group", {})
        for name, body in table.items() if isinstance(table, dict) else ():
            base = ("group", name)
            if problem := name_problem(name):
                pr.at(src, base, problem.replace("program name", "group name"))
                continue
            if not isinstance(body, dict):
                pr.at(src, base, f"[group.{name}] must be a table, got {_show(body)}")
                continue
            if any(g.name == name for g, _ in groups):
                pr.at(src, base, f"group {name!r} is defined twice")
                continue
            valid = check_table(body, _GroupTable, src, base, pr)
            members = tuple(dict.fromkeys(valid.get("programs", [])))
            if not members and "programs" in valid:
                pr.at(src, (*base, "programs"), "a group needs at least one program")
            elif "programs" not in body:
                pr.at(src, base, "missing required key 'programs'")
            groups.append((GroupSpec(name, members, src.where(base)), src))
    return groups


def _check_groups(groups: list[tuple[GroupSpec, Source]], known: list[str], pr: Problems) -> None:
    """Members exist, belong to one group, and no group is named like a program."""
    owner: dict[str, str] = {}
    for g, src in groups:
        base = ("group", g.name)
        if g.name in known:
            pr.at(src, base, f"group {g.name!r} has the name of a program; rename one")
        for i, program in enumerate(g.programs):
            if program not in known:
                message = unknown_program(program, known).replace("depends on", "lists")
                pr.at(src, (*base, "programs"), message, f"[{i}]")
            elif program in owner:
                pr.at(
                    src,
                    (*base, "programs"),
                    f"{program!r} is already in group {owner[program]!r}; a program belongs "
                    "to one group at most",
                    f"[{i}]",
                )
            else:
                owner[program] = g.name


def _check_instance_names(programs: list[ProgramSpec], scope: _Scope, pr: Problems) -> None:
    """Instance names are unique (they name log files, FIFOs and status rows)."""
    seen: dict[str, ProgramSpec] = {}
    for spec in programs:
        other = seen.setdefault(spec.name, spec)
        if other is spec:
            continue
        pr.at(
            scope.nodes[spec.program].src,
            ("program", spec.program),
            f"instance name {spec.name!r} is also an instance of program {other.program!r}; "
            "change instance_name",
        )


def _in_file_order(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """Problems grouped by file (in the order files were first named), then by line."""
    files = list(dict.fromkeys(p.file for p in problems))
    return sorted(problems, key=lambda p: (files.index(p.file), p.line or 0))


def format_problems(err: ConfigError) -> str:
    """One problem a line, "file:line: [key] message", under a count."""
    n = len(err.problems)
    head = f"{n} problem{'s' if n != 1 else ''} in config:"
    return "\n".join([head, *(f"  {p}" for p in err.problems)])
