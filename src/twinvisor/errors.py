"""Exceptions raised by twinvisor.

TwinvisorError
├── ConfigError          a config file is invalid (carries every problem found)
├── ControlError         talking to the daemon failed
│   └── DaemonNotRunning no daemon answers on the control socket
├── SpawnError           a program could not be started (exec, cwd, user ...)
└── AlreadyRunning       a lock says another instance owns this run dir / pid file
"""

from __future__ import annotations


class TwinvisorError(Exception):
    """Base class of every error twinvisor raises on purpose."""


class ConfigProblem:
    """One problem in a config file, located as precisely as we can.

    A plain class, not a dataclass nor a NamedTuple: every CLI call imports this module
    (through the control client), and `dataclasses` (with `inspect`) or `typing` would be a
    tenth of a `status` call."""

    __slots__ = ("file", "key", "line", "message")

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        self.file = file
        self.line = line
        self.key = key  # dotted key path, e.g. "program.web.max_retry"
        self.message = message

    def with_message(self, message: str) -> ConfigProblem:
        return ConfigProblem(self.file, self.line, self.key, message)

    def _as_tuple(self) -> tuple[str, int | None, str, str]:
        return (self.file, self.line, self.key, self.message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigProblem) and self._as_tuple() == other._as_tuple()

    def __hash__(self) -> int:
        return hash(self._as_tuple())

    def __repr__(self) -> str:
        file, line, key, message = self._as_tuple()
        return f"ConfigProblem({file=!r}, {line=!r}, {key=!r}, {message=!r})"

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
