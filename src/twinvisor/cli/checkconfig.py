"""`twinvisor check-config`: a short table of what the config runs, and warnings about what
would fail at start-up although the file is valid (a command not on PATH, a missing
directory, a port already taken; an unknown user or group is an error of the file itself,
reported at its line by the loader). The resolved config is `--json`.

Warnings do not change the exit status (0): the machine the file is checked on may not be the
one it runs on. Errors in the file itself are exit 2, as before.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

from twinvisor.config.specs import Config, ProgramSpec, ReadyMode


def table(config: Config) -> str:
    """One line per program (instances folded): name, command, sockets, readiness."""
    rows = [("PROGRAM", "INSTANCES", "COMMAND", "SOCKETS", "READY")]
    seen: dict[str, list[ProgramSpec]] = {}
    for spec in config.programs:
        seen.setdefault(spec.program, []).append(spec)
    for program, specs in seen.items():
        spec = specs[0]
        command = " ".join(spec.command)
        command = command if len(command) <= 48 else command[:45] + "..."
        rows.append(
            (
                program,
                str(len(specs)),
                command,
                ", ".join(spec.listen_addrs) or "-",
                _ready_text(spec),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]
    return "\n".join(lines)


def _ready_text(spec: ProgramSpec) -> str:
    ready = spec.ready
    match ready.mode:
        case ReadyMode.SPAWN:
            return f"spawn (up {spec.restart.min_uptime:g}s)"
        case ReadyMode.DELAY:
            return f"delay {ready.delay:g}s"
        case ReadyMode.TCP | ReadyMode.HTTP:
            return f"{ready.mode.value}://{ready.target}".replace("http://http://", "http://")
        case _:
            return str(ready.mode.value)


def warnings(config: Config, daemon_running: bool) -> list[str]:
    """What the start-up would trip over; ports are only tried when no daemon of this config
    runs (it holds them itself)."""
    found: list[str] = []
    done: set[str] = set()
    for spec in config.programs:
        if spec.program in done:
            continue
        done.add(spec.program)
        found += [f"{spec.program}: {w}" for w in _program_warnings(spec, daemon_running)]
    return found


def _program_warnings(spec: ProgramSpec, daemon_running: bool) -> Iterator[str]:
    if spec.directory and not os.path.isdir(spec.directory):
        yield f"directory {spec.directory} does not exist"
    if spec.command:
        problem = _command_problem(spec)
        if problem:
            yield problem
    if not daemon_running:
        for addr in spec.listen_addrs:
            taken = _port_taken(addr)
            if taken:
                yield f"listen_addrs {addr!r}: {taken}"


def _command_problem(spec: ProgramSpec) -> str | None:
    exe = spec.command[0]
    env = dict(spec.environment)
    path = env.get("PATH", os.environ.get("PATH", os.defpath))
    if "/" in exe:
        full = exe if os.path.isabs(exe) else os.path.join(spec.directory or os.getcwd(), exe)
        if not os.access(full, os.X_OK):
            return f"command {exe!r} is not an executable file"
        return None
    if shutil.which(exe, path=path) is None:
        return f"command {exe!r} is not found on PATH"
    return None


def _port_taken(text: str) -> str | None:
    """Why binding `text` now would fail (in use, no permission), or None."""
    import socket

    from twinvisor.linux import sockets

    try:
        addr = sockets.parse_listen_addr(text)
    except ValueError:
        return None  # the loader has said so already
    if addr.family == socket.AF_UNIX:
        return None  # a stale file is replaced at start-up; nothing to try without side effects
    try:
        sockets.bind(addr).close()
    except OSError as e:
        return f"cannot bind now: {e.strerror or e} (another process holds it?)"
    return None
