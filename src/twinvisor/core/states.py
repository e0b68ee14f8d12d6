"""Process states and the table of legal transitions (stdlib only, no I/O)."""

from __future__ import annotations

from enum import Enum, StrEnum


class ProcessState(Enum):
    STOPPED = "STOPPED"  # not running, and nobody wants it running
    STARTING = "STARTING"  # spawned; not yet ready (min_uptime / readiness pending)
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"  # exited; waiting for the restart delay
    STOPPING = "STOPPING"  # stop signal sent; waiting for the exit (then SIGKILL)
    EXITED = "EXITED"  # exited and not restarted (expected exit, or auto_restart off)
    FATAL = "FATAL"  # gave up after max_retry consecutive failures

    @property
    def is_alive(self) -> bool:
        """A process exists for this instance in these states."""
        return self in _ALIVE


_ALIVE = frozenset({ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING})

S = ProcessState
LEGAL_TRANSITIONS: dict[ProcessState, frozenset[ProcessState]] = {
    S.STOPPED: frozenset(
        {S.STARTING, S.BACKOFF, S.FATAL, S.EXITED, S.RUNNING}
    ),  # RUNNING: adoption
    S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.BACKOFF, S.EXITED, S.FATAL}),
    S.RUNNING: frozenset({S.STOPPING, S.BACKOFF, S.EXITED, S.FATAL, S.STARTING}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED, S.FATAL}),
    S.STOPPING: frozenset({S.STOPPED, S.STARTING, S.BACKOFF, S.FATAL}),
    S.EXITED: frozenset({S.STARTING, S.STOPPED, S.BACKOFF, S.FATAL}),
    S.FATAL: frozenset({S.STARTING, S.STOPPED, S.BACKOFF}),
}


class Outcome(StrEnum):
    """What a caller waiting on start/stop/restart learns of one instance (the API's words)."""

    OK = "ok"
    FAILED = "failed"
    PENDING = "pending"  # not decided yet: keep waiting
    TIMEOUT = "timeout"  # still pending when the caller stopped waiting
    SKIPPED = "skipped"  # not tried: an earlier batch of a rolling restart failed


def is_legal(old: ProcessState, new: ProcessState) -> bool:
    return old == new or new in LEGAL_TRANSITIONS[old]
