"""Exceptions raised by twinvisor.

TwinvisorError
├── ConfigError          a config file is invalid (carries every problem found)
├── ControlError         talking to the daemon failed
│   └── DaemonNotRunning no daemon answers on the control socket
├── SpawnError           a program could not be started (exec, cwd, user ...)
└── AlreadyRunning       a lock says another instance owns this run dir / pid file
"""

from __future__ import annotations

from typing import NamedTuple


class TwinvisorError(Exception):
    """Base class of every error twinvisor raises on purpose."""


class ConfigProblem(NamedTuple):
    """One problem in a config file, located as precisely as we can.

    A NamedTuple, not a dataclass: every CLI call imports this module (through the control
    client), and `dataclasses` with the `inspect` it pulls in is a tenth of a `status` call."""

    file: str
    line: int | None
    key: str  # dotted key path, e.g. "program.web.max_retry"
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(TwinvisorError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ControlError(TwinvisorError):
    pass


class DaemonNotRunning(ControlError):
    pass


class SpawnError(TwinvisorError):
    pass


class AlreadyRunning(TwinvisorError):
    def __init__(self, message: str, pid: int | None = None) -> None:
        self.pid = pid
        super().__init__(message)
