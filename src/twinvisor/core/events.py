"""What flows through the pure core: the events it is fed and the actions it answers with.

Frozen records only, no logic. The runtime turns the world into events (a spawn happened, a
process exited, a timer fired, the user asked for something) and carries actions out (spawn,
signal, arm a timer); `core.Core.handle` maps one to the other.

msgspec Structs rather than dataclasses: a dataclass is ~13 KiB of generated methods per
class, a Struct ~3 KiB, and the daemon keeps these 25 for its whole life (issue 16).
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from twinvisor.core.states import ProcessState


class TimerKind(StrEnum):
    MAIN = "main"  # the one per-instance timer: min_uptime / ready timeout, backoff, stop timeout
    WATCHDOG = "watchdog"  # WATCHDOG=1 expected by then
    KILL = "kill"  # SIGKILL a retiring generation that outlived stop_timeout


class RestartReason(StrEnum):
    """Why a generation is replaced: the `reason` label of restarts_total."""

    EXIT = "exit"  # it exited and the restart policy wants it back
    SPAWN_FAILED = "spawn_failed"
    NOT_READY = "ready_timeout"
    WATCHDOG = "watchdog"
    HEALTH = "health"  # failed health checks
    MANUAL = "manual"  # restart asked for by the user (CLI, API, update)


# ---- events -------------------------------------------------------------------------------


class StartRequested(msgspec.Struct, frozen=True):
    name: str


class StopRequested(msgspec.Struct, frozen=True):
    name: str


class RestartRequested(msgspec.Struct, frozen=True):
    name: str


class Spawned(msgspec.Struct, frozen=True):
    name: str
    pid: int


class SpawnFailed(msgspec.Struct, frozen=True):
    name: str
    reason: str


class Exited(msgspec.Struct, frozen=True):
    name: str
    pid: int
    exit_code: int | None  # None when killed by a signal or unknown (adopted process)
    signal: int | None = None
    signal_name: str | None = None  # "SIGTERM": the shell names it, the core has no table


class TimerFired(msgspec.Struct, frozen=True):
    name: str
    token: int
    kind: TimerKind = TimerKind.MAIN
    pid: int | None = None  # for TimerKind.KILL


class Ready(msgspec.Struct, frozen=True):
    """A readiness probe succeeded for `pid` (tcp/http probes run in the runtime)."""

    name: str
    pid: int


class Notified(msgspec.Struct, frozen=True):
    """An sd_notify datagram from a process of this program (sender already verified)."""

    name: str
    pid: int  # the generation (process we spawned) the sender is, or descends from
    fields: tuple[tuple[str, str], ...]


class Adopted(msgspec.Struct, frozen=True):
    """A live process of this instance found at start-up (state file, guard): take it on."""

    name: str
    pid: int
    started_at: float  # monotonic, reconstructed from its wall-clock start


class StrayGeneration(msgspec.Struct, frozen=True):
    """At a takeover, an older generation of this instance is still alive beside the one
    adopted (a restart was half done when the supervisor died): it is retired."""

    name: str
    pid: int


class ExitRecord(msgspec.Struct, frozen=True):
    """How a generation ended, as a previous supervisor persisted it."""

    exit_code: int | None
    signal: int | None
    run_time: float
    signal_name: str | None = None
    asked: bool = False


class CountersRestored(msgspec.Struct, frozen=True):
    """Counters a previous supervisor persisted: RESTARTS and LAST EXIT survive a takeover."""

    name: str
    restarts: int
    last_exit: ExitRecord | None = None


class DependencyFailed(msgspec.Struct, frozen=True):
    """The shell's start order found a dependency of this instance that did not start."""

    name: str
    dependency: str


class HealthResult(msgspec.Struct, frozen=True):
    name: str
    pid: int
    ok: bool
    detail: str = ""


Event = (
    StartRequested
    | StopRequested
    | RestartRequested
    | Spawned
    | SpawnFailed
    | Exited
    | TimerFired
    | Ready
    | Notified
    | HealthResult
    | Adopted
    | StrayGeneration
    | CountersRestored
    | DependencyFailed
)


# ---- actions ------------------------------------------------------------------------------


class Spawn(msgspec.Struct, frozen=True):
    name: str


class SendSignal(msgspec.Struct, frozen=True):
    """The program's stop signal (a number resolved by the config) to `pid`'s group."""

    name: str
    pid: int
    signal: int
    group: bool = True  # to the whole process group (the program and its children)
    resume: bool = False  # then SIGCONT: a stopped (SIGSTOP) process cannot act on it otherwise


class ForceKill(msgspec.Struct, frozen=True):
    """SIGKILL `pid`'s process group: it outlived stop_timeout (or was asked to die)."""

    name: str
    pid: int


class KillRemnants(msgspec.Struct, frozen=True):
    """The group leader is gone: SIGKILL whatever it left behind in its group."""

    name: str
    pid: int


class SetTimer(msgspec.Struct, frozen=True):
    name: str
    token: int
    delay: float
    kind: TimerKind = TimerKind.MAIN
    pid: int | None = None


class StartProbe(msgspec.Struct, frozen=True):
    """Start probing readiness (tcp/http) of `pid`; the runtime answers with Ready."""

    name: str
    pid: int


class Restarting(msgspec.Struct, frozen=True):
    """A new generation is on its way for `reason` (after `delay` seconds): for events and
    metrics; the Spawn itself comes as its own action."""

    name: str
    reason: RestartReason
    delay: float = 0.0


class StateChanged(msgspec.Struct, frozen=True):
    name: str
    old: ProcessState
    new: ProcessState


class ShutdownRequested(msgspec.Struct, frozen=True):
    """This program's exit policy (on_exit / on_fatal = "shutdown", essential) asks for the
    whole daemon to stop, every program in dependency order, then exit with `code`."""

    name: str
    code: int
    reason: str


class LogLine(msgspec.Struct, frozen=True):
    name: str
    message: str
    level: str = "info"


Action = (
    Spawn
    | SendSignal
    | ForceKill
    | KillRemnants
    | SetTimer
    | StartProbe
    | Restarting
    | StateChanged
    | ShutdownRequested
    | LogLine
)
