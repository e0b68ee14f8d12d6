"""What flows through the pure core: the events it is fed and the actions it answers with.

Frozen records only, no logic. The runtime turns the world into events (a spawn happened, a
process exited, a timer fired, the user asked for something) and carries actions out (spawn,
signal, arm a timer); `core.Core.handle` maps one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

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


@dataclass(frozen=True)
class StartRequested:
    name: str


@dataclass(frozen=True)
class StopRequested:
    name: str


@dataclass(frozen=True)
class RestartRequested:
    name: str


@dataclass(frozen=True)
class Spawned:
    name: str
    pid: int


@dataclass(frozen=True)
class SpawnFailed:
    name: str
    reason: str


@dataclass(frozen=True)
class Exited:
    name: str
    pid: int
    exit_code: int | None  # None when killed by a signal or unknown (adopted process)
    signal: int | None = None
    signal_name: str | None = None  # "SIGTERM": the shell names it, the core has no table


@dataclass(frozen=True)
class TimerFired:
    name: str
    token: int
    kind: TimerKind = TimerKind.MAIN
    pid: int | None = None  # for TimerKind.KILL


@dataclass(frozen=True)
class Ready:
    """A readiness probe succeeded for `pid` (tcp/http probes run in the runtime)."""

    name: str
    pid: int


@dataclass(frozen=True)
class Notified:
    """An sd_notify datagram from a process of this program (sender already verified)."""

    name: str
    pid: int  # the generation (process we spawned) the sender is, or descends from
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Adopted:
    """A live process of this instance found at start-up (state file, guard): take it on."""

    name: str
    pid: int
    started_at: float  # monotonic, reconstructed from its wall-clock start


@dataclass(frozen=True)
class StrayGeneration:
    """At a takeover, an older generation of this instance is still alive beside the one
    adopted (a restart was half done when the supervisor died): it is retired."""

    name: str
    pid: int


@dataclass(frozen=True)
class ExitRecord:
    """How a generation ended, as a previous supervisor persisted it."""

    exit_code: int | None
    signal: int | None
    run_time: float
    signal_name: str | None = None
    asked: bool = False


@dataclass(frozen=True)
class CountersRestored:
    """Counters a previous supervisor persisted: RESTARTS and LAST EXIT survive a takeover."""

    name: str
    restarts: int
    last_exit: ExitRecord | None = None


@dataclass(frozen=True)
class DependencyFailed:
    """The shell's start order found a dependency of this instance that did not start."""

    name: str
    dependency: str


@dataclass(frozen=True)
class HealthResult:
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


@dataclass(frozen=True)
class Spawn:
    name: str


@dataclass(frozen=True)
class SendSignal:
    """The program's stop signal (a number resolved by the config) to `pid`'s group."""

    name: str
    pid: int
    signal: int
    group: bool = True  # to the whole process group (the program and its children)
    resume: bool = False  # then SIGCONT: a stopped (SIGSTOP) process cannot act on it otherwise


@dataclass(frozen=True)
class ForceKill:
    """SIGKILL `pid`'s process group: it outlived stop_timeout (or was asked to die)."""

    name: str
    pid: int


@dataclass(frozen=True)
class KillRemnants:
    """The group leader is gone: SIGKILL whatever it left behind in its group."""

    name: str
    pid: int


@dataclass(frozen=True)
class SetTimer:
    name: str
    token: int
    delay: float
    kind: TimerKind = TimerKind.MAIN
    pid: int | None = None


@dataclass(frozen=True)
class StartProbe:
    """Start probing readiness (tcp/http) of `pid`; the runtime answers with Ready."""

    name: str
    pid: int


@dataclass(frozen=True)
class Restarting:
    """A new generation is on its way for `reason` (after `delay` seconds): for events and
    metrics; the Spawn itself comes as its own action."""

    name: str
    reason: RestartReason
    delay: float = 0.0


@dataclass(frozen=True)
class StateChanged:
    name: str
    old: ProcessState
    new: ProcessState


@dataclass(frozen=True)
class ShutdownRequested:
    """This program's exit policy (on_exit / on_fatal = "shutdown", essential) asks for the
    whole daemon to stop, every program in dependency order, then exit with `code`."""

    name: str
    code: int
    reason: str


@dataclass(frozen=True)
class LogLine:
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
