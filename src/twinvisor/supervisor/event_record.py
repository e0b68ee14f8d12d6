"""One event of the journal, as it is stored (events.jsonl) and served (GET /events).

Its own module because the CLI decodes it too (`twinvisor events`, `status --watch`) and must
not import the journal's asyncio to do so.
"""

from __future__ import annotations

import msgspec


class EventRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """One event; `kind` says which fields are set (docs/api.md lists them)."""

    id: int
    time: float  # wall clock, seconds since the epoch
    kind: str  # state | exit | restart | ready | health | config | takeover | guard | shutdown
    instance: str | None = None
    program: str | None = None
    pid: int | None = None
    state: str | None = None  # kind=state: the new state
    previous: str | None = None  # kind=state: the old one
    ready: bool | None = None  # kind=ready
    exit_code: int | None = None  # kind=exit; kind=shutdown: the code the daemon exits with
    signal: str | None = None  # kind=exit, e.g. "SIGKILL"
    expected: bool | None = None  # kind=exit: a stop, or an exit code the program declares
    reason: str | None = None  # kind=restart: exit|spawn_failed|ready_timeout|watchdog|...
    delay: float | None = None  # kind=restart: seconds until the new generation starts
    message: str | None = None
