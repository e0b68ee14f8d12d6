"""`twinvisor export systemd DIR`: one systemd unit per program instance, as close to the
twinvisor config as systemd allows, and a `.socket` unit per program with listen_addrs.

Values are escaped for systemd (systemd.syntax(7), systemd.service(7)): in command lines an
argument with spaces, quotes or backslashes is double-quoted with C escapes, `%` is doubled
(specifiers) and `$` is doubled (variable expansion); in other settings only `%` is special.
What systemd has no setting for is returned as notes for the user, never silently dropped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from twinvisor.config.specs import AutoRestart, Config, LogSpec, ProgramSpec, ProgramType, ReadyMode
from twinvisor.linux.discovery import resolve_program

__all__ = [
    "Unit",
    "exec_line",
    "export_units",
    "quote_arg",
    "specifiers",
    "unit_name",
    "write_units",
]

_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./$-]+")
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


@dataclass(frozen=True)
class Unit:
    name: str  # file name: "web.service"
    text: str


def specifiers(value: str) -> str:
    """A value with `%` doubled, so that systemd's specifier expansion leaves it as written."""
    return value.replace("%", "%%")


def quote_arg(arg: str) -> str:
    """One argument of an Exec*= line."""
    arg = specifiers(arg).replace("$", "$$")
    if arg == ";":
        return "\\;"  # a lone semicolon would separate commands
    if _PLAIN.fullmatch(arg):
        return arg
    body = "".join(_C_ESCAPES.get(c, c) for c in arg)
    return f'"{body}"'


def exec_line(argv: Iterable[str]) -> str:
    return " ".join(quote_arg(a) for a in argv)


def _quote_setting(value: str) -> str:
    """A word of a space-separated list setting (Environment=): double-quoted, C escapes."""
    body = "".join(_C_ESCAPES.get(c, c) for c in specifiers(value))
    return f'"{body}"'


def unit_name(prefix: str, instance: str, suffix: str = ".service") -> str:
    return f"{prefix}{instance.replace(':', '-')}{suffix}"


def _seconds(value: float) -> str:
    return f"{value:g}s" if value != int(value) else f"{int(value)}s"


def _listen_stream(addr: str) -> str:
    if addr.startswith("unix:"):
        return addr[5:]
    host, _, port = addr.rpartition(":")
    return port if host in ("", "0.0.0.0", "[::]") else addr


def _resolved_command(spec: ProgramSpec, notes: list[str]) -> list[str]:
    path_env = dict(spec.environment).get("PATH", os.environ.get("PATH"))
    exe = resolve_program(spec.command[0], spec.directory, path_env)
    if exe is None:
        notes.append(
            f"{spec.name}: command {spec.command[0]!r} not found here; ExecStart keeps it as "
            "written (systemd needs an absolute path)"
        )
        return list(spec.command)
    # keep a symlink's own path (a venv's python), only made absolute
    first = spec.command[0]
    if "/" in first:
        first = os.path.normpath(os.path.join(spec.directory or os.getcwd(), first))
    else:
        import shutil

        first = shutil.which(first, path=path_env) or exe
    return [os.path.abspath(first), *spec.command[1:]]


def _unit_type(spec: ProgramSpec) -> str:
    if spec.type is ProgramType.ONESHOT:
        return "oneshot"
    return "notify" if spec.ready.mode is ReadyMode.NOTIFY else "simple"


def _restart_lines(spec: ProgramSpec) -> list[str]:
    policy = spec.restart
    if spec.type is ProgramType.ONESHOT:  # systemd allows only these two for a oneshot
        restart = "no" if policy.auto_restart is AutoRestart.NEVER else "on-failure"
        return [f"Restart={restart}", f"RestartSec={_seconds(policy.backoff_initial)}"]
    restart = {
        AutoRestart.ALWAYS: "always",
        AutoRestart.UNEXPECTED: "on-failure",
        AutoRestart.NEVER: "no",
    }[policy.auto_restart]
    lines = [f"Restart={restart}", f"RestartSec={_seconds(policy.backoff_initial)}"]
    if policy.auto_restart is AutoRestart.UNEXPECTED:
        codes = [c for c in policy.exit_codes if c != 0]
        if codes:
            lines.append("SuccessExitStatus=" + " ".join(map(str, codes)))
        if 0 not in policy.exit_codes:
            lines.append("RestartForceExitStatus=0")
    return lines


def _service(
    spec: ProgramSpec, config: Config, prefix: str, notes: list[str], socket: str | None
) -> Unit:
    unit = _unit_section(spec, config, prefix, socket)
    service = _service_section(spec, notes, socket)
    install = ["", "[Install]", "WantedBy=multi-user.target"] if spec.autostart else []
    _note_dropped(spec, notes)
    text = "\n".join([*unit, *service, *install]) + "\n"
    return Unit(unit_name(prefix, spec.name), text)


def _unit_section(spec: ProgramSpec, config: Config, prefix: str, socket: str | None) -> list[str]:
    policy = spec.restart
    unit = [
        "[Unit]",
        f"Description={specifiers(spec.name)} (exported from twinvisor)",
        f"StartLimitBurst={max(policy.max_retry, 1)}",
        # systemd counts starts in a window, twinvisor counts consecutive short runs: a window
        # as long as max_retry quick failures with backoff is the nearest equivalent
        "StartLimitIntervalSec="
        + _seconds(max(10.0, (policy.min_uptime + policy.backoff_max) * max(policy.max_retry, 1))),
    ]
    deps = _dependency_units(spec, config, prefix)
    if socket:
        deps.append(socket)
    if deps:
        unit += [f"After={' '.join(deps)}", f"Requires={' '.join(deps)}"]
    return unit


def _service_section(spec: ProgramSpec, notes: list[str], socket: str | None) -> list[str]:
    service = [
        "",
        "[Service]",
        f"Type={_unit_type(spec)}",
        f"ExecStart={exec_line(_resolved_command(spec, notes))}",
    ]
    if spec.type is ProgramType.ONESHOT:  # `NAME:completed` dependents wait for its end
        service.append("RemainAfterExit=yes")
    if spec.directory:
        service.append(f"WorkingDirectory={specifiers(spec.directory)}")
    env = [*spec.environment, ("TWINVISOR_PROGRAM", spec.name)]
    service.append("Environment=" + " ".join(_quote_setting(f"{k}={v}") for k, v in env))
    if spec.user:
        service.append(f"User={specifiers(spec.user)}")
    if spec.group:
        service.append(f"Group={specifiers(spec.group)}")
    service += _restart_lines(spec)
    if spec.umask is not None:
        service.append(f"UMask={spec.umask:04o}")
    service += [
        f"TimeoutStopSec={_seconds(spec.stop_timeout)}",
        f"KillSignal=SIG{spec.stop_signal}",
        "KillMode=control-group",
        _output("StandardOutput", spec.stdout),
        "StandardError=inherit"  # redirect_stderr: the same place as stdout
        if spec.redirect_stderr
        else _output("StandardError", spec.stderr),
    ]
    if spec.ready.mode is ReadyMode.NOTIFY:
        service.append(f"TimeoutStartSec={_seconds(spec.ready.timeout)}")
    if spec.watchdog_sec:
        service.append(f"WatchdogSec={_seconds(spec.watchdog_sec)}")
    if socket:
        service.append(f"Sockets={socket}")
    return service


def _output(key: str, log: LogSpec) -> str:
    if log.console is not None:  # the daemon's own stream: under systemd, the journal
        return f"{key}=journal"
    return f"{key}=append:{specifiers(log.path)}" if log.path else f"{key}=null"


def _dependency_units(spec: ProgramSpec, config: Config, prefix: str) -> list[str]:
    names: list[str] = []
    for dep in spec.depends_on:
        names += [unit_name(prefix, p.name) for p in config.programs if p.program == dep.program]
    return names


def _note_dropped(spec: ProgramSpec, notes: list[str]) -> None:
    if spec.instance != spec.numprocs_start:
        return  # one note per program, not per instance
    name = spec.program
    if spec.ready.mode in (ReadyMode.TCP, ReadyMode.HTTP, ReadyMode.DELAY):
        notes.append(f"{name}: ready = {spec.ready.mode.value} has no systemd equivalent")
    if spec.health is not None:
        notes.append(f"{name}: the health check is not carried over")
    if spec.stop_before_restart or spec.restart_batch != 1:
        notes.append(f"{name}: restart order (stop_before_restart, restart_batch) is twinvisor's")
    if spec.restart.backoff_factor != 1 or spec.restart.after_give_up.value != "fatal":
        notes.append(
            f"{name}: exponential backoff and after_give_up are not carried over "
            "(RestartSec is the initial backoff)"
        )
    if spec.stdout.path or spec.stderr.path:
        notes.append(f"{name}: log rotation (log_max_bytes, log_backups) is left to logrotate")
    if spec.find or spec.pidfile:
        notes.append(f"{name}: find and pidfile are not carried over")


def _socket(spec: ProgramSpec, prefix: str, service: str) -> Unit:
    lines = ["[Unit]", f"Description={specifiers(spec.program)} sockets (exported from twinvisor)"]
    lines += ["", "[Socket]"]
    lines += [f"ListenStream={specifiers(_listen_stream(a))}" for a in spec.listen_addrs]
    lines.append(f"FileDescriptorName={spec.program}")
    lines.append(f"Service={service}")
    if any(a.startswith("unix:") for a in spec.listen_addrs):
        lines.append(f"SocketMode={spec.socket_mode:04o}")
        if spec.socket_owner:
            user, _, group = spec.socket_owner.partition(":")
            lines.append(f"SocketUser={specifiers(user)}")
            if group:
                lines.append(f"SocketGroup={specifiers(group)}")
    lines += ["", "[Install]", "WantedBy=sockets.target"]
    return Unit(unit_name(prefix, spec.program, ".socket"), "\n".join(lines) + "\n")


def export_units(config: Config, prefix: str = "") -> tuple[list[Unit], list[str]]:
    """Units for every instance of `config`, and notes on what could not be carried over."""
    units: list[Unit] = []
    notes: list[str] = []
    for spec in config.programs:
        socket = None
        if spec.listen_addrs:
            socket = unit_name(prefix, spec.program, ".socket")
            if spec.instance == spec.numprocs_start:
                first = unit_name(prefix, spec.name)
                units.append(_socket(spec, prefix, first))
        units.append(_service(spec, config, prefix, notes, socket))
    return units, notes


def write_units(units: list[Unit], directory: str) -> list[str]:
    os.makedirs(directory, exist_ok=True)
    written = []
    for unit in units:
        path = os.path.join(directory, unit.name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(unit.text)
        os.replace(tmp, path)
        written.append(path)
    return written
