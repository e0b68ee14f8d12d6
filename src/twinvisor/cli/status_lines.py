"""The daemon's `GET /status` answer read as JSON into plain rows: what `status` and `logs` show.

Every other verb decodes its answer into the msgspec Structs of control.messages. Importing msgspec
costs a CLI call about 20 ms (its C module loads datetime, decimal, uuid, typing and dataclasses), a
third of a `status` with 200 programs, and `status` is the call that scripts and probes make in a
loop. So these rows are read with the C JSON scanner the client has already loaded (twin/cjson:
`_json` without the json package). They carry StatusRow's fields and defaults
(tests/unit/test_status_lines.py pins both against the Struct) and are checked as strictly as
msgspec would: a value of the wrong type is a ControlError naming the field, never a traceback in
the renderer.
"""

from __future__ import annotations

from twinvisor.core.states import ProcessState
from twinvisor.errors import ControlError
from twinvisor.twin import cjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_STR, _INT, _FLOAT, _BOOL, _STATE, _STRS = "str", "int", "float", "bool", "state", "list[str]"
_REQUIRED = object()

# StatusRow's fields (supervisor/status.py), in its order: (name, kind, may be null, default)
FIELDS: tuple[tuple[str, str, bool, object], ...] = (
    ("name", _STR, False, _REQUIRED),
    ("program", _STR, False, _REQUIRED),
    ("state", _STATE, False, _REQUIRED),
    ("group", _STR, True, None),
    ("pid", _INT, True, None),
    ("uptime", _FLOAT, True, None),
    ("started", _FLOAT, True, None),
    ("restarts", _INT, False, 0),
    ("failures", _INT, False, 0),
    ("given_up", _BOOL, False, False),
    ("type", _STR, False, "service"),
    ("completed", _BOOL, False, False),
    ("last_exit", _STR, True, None),
    ("exit_code", _INT, True, None),
    ("error", _STR, True, None),
    ("stdout_file", _STR, True, None),
    ("stderr_file", _STR, True, None),
    ("stdout_console", _STR, True, None),
    ("stderr_console", _STR, True, None),
    ("redirect_stderr", _BOOL, False, False),
    ("dropped_bytes", _INT, False, 0),
    ("status_text", _STR, True, None),
    ("healthy", _BOOL, True, None),
    ("previous_pid", _INT, True, None),
    ("reloading", _BOOL, False, False),
    ("main_pid", _INT, True, None),
    ("listen_addrs", _STRS, False, ()),
)


# the value types taken as they are; the others (a state, a list, an int for a float, a
# wrong type) go through _checked
_TAKEN = {_STR: (str,), _INT: (int,), _FLOAT: (float,), _BOOL: (bool,), _STATE: (), _STRS: ()}
_PLAIN: dict[str, frozenset[type]] = {
    name: frozenset(_TAKEN[kind] + ((type(None),) if nullable else ()))
    for name, kind, nullable, _default in FIELDS
}


class StatusLine:
    """One instance as the daemon reported it: StatusRow's attributes, without msgspec."""

    __slots__ = tuple(name for name, _kind, _null, _default in FIELDS)

    name: str
    program: str
    state: ProcessState
    group: str | None
    pid: int | None
    uptime: float | None
    started: float | None
    restarts: int
    failures: int
    given_up: bool
    type: str
    completed: bool
    last_exit: str | None
    exit_code: int | None
    error: str | None
    stdout_file: str | None
    stderr_file: str | None
    stdout_console: str | None
    stderr_console: str | None
    redirect_stderr: bool
    dropped_bytes: int
    status_text: str | None
    healthy: bool | None
    previous_pid: int | None
    reloading: bool
    main_pid: int | None
    listen_addrs: list[str]

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise _bad(where, "an object", data)
        for name, kind, nullable, default in FIELDS:
            if name not in data:
                if default is _REQUIRED:
                    raise _unexpected(f"{where} has no {name!r}")
                value: Any = list(default) if isinstance(default, tuple) else default
            else:
                value = data[name]
                if type(value) not in _PLAIN[name]:  # most values: one set lookup, no call
                    value = _checked(value, kind, nullable, f"{where}.{name}")
            setattr(self, name, value)

    def as_json(self) -> dict[str, object]:
        """The row as `status --json` prints it: StatusRow's msgspec.to_builtins."""
        out: dict[str, object] = {name: getattr(self, name) for name in self.__slots__}
        out["state"] = self.state.value
        return out


class StatusAnswer:
    """`GET /status`: the rows, and which daemon answered (its config and that config's
    problems, when the file on disk has errors)."""

    __slots__ = ("config", "config_problems", "pid", "programs")

    def __init__(self, body: bytes) -> None:
        try:
            data = cjson.loads(body)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise ControlError(f"daemon sent invalid JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("programs"), list):
            raise _bad("the answer", "an object with a 'programs' list", data)
        self.programs = [
            StatusLine(row, f"programs[{i}]") for i, row in enumerate(data["programs"])
        ]
        daemon = data.get("daemon")
        self.pid: int | None = None
        self.config: str | None = None
        self.config_problems: list[str] = []
        if daemon is not None:
            if not isinstance(daemon, dict):
                raise _bad("daemon", "an object", daemon)
            self.pid = _checked(daemon.get("pid"), _INT, False, "daemon.pid")
            self.config = _checked(daemon.get("config"), _STR, False, "daemon.config")
            self.config_problems = _checked(
                daemon.get("config_problems", []), _STRS, False, "daemon.config_problems"
            )


def _checked(value: object, kind: str, nullable: bool, where: str) -> Any:
    if value is None:
        if nullable:
            return None
        raise _bad(where, kind, value)
    if kind == _STR and isinstance(value, str):
        return value
    if kind == _BOOL and isinstance(value, bool):
        return value
    if isinstance(value, bool):  # JSON true is not a number, as msgspec reads it
        raise _bad(where, kind, value)
    if kind == _INT and isinstance(value, int):
        return value
    if kind == _FLOAT and isinstance(value, int | float):
        return float(value)
    if kind == _STATE and isinstance(value, str):
        try:
            return ProcessState(value)
        except ValueError:
            raise _bad(where, "a process state", value) from None
    if kind == _STRS and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise _bad(where, kind, value)


def _bad(where: str, expected: str, value: object) -> ControlError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return _unexpected(f"{where} should be {expected}, not {shown}")


def _unexpected(what: str) -> ControlError:
    # the likely cause is a daemon started from another version than this CLI
    return ControlError(
        f"daemon sent an unexpected answer: {what} (a daemon of another twinvisor version? "
        "`twinvisor upgrade` restarts it on the installed one)"
    )
