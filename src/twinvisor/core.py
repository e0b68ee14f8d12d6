"""The pure supervisor: `Core.handle(event, now) -> list[Action]`.

No I/O, no clock, no os: the runtime feeds events in (a spawn happened, a process exited, a
timer fired, the user asked for something) together with the monotonic time, and carries out
the actions that come back (spawn, signal, arm a timer). That keeps every policy decision
testable in microseconds and makes the runtime a thin, mechanical shell.

One timer per instance is enough: an instance is only ever waiting for one thing (the end of
min_uptime, the restart delay, or the stop timeout). Timers carry a token; a timer whose
token is stale is ignored, so nothing has to be cancelled.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import assert_never

from twinvisor import policy
from twinvisor.platform import signal_number
from twinvisor.specs import AfterGiveUp, ProgramSpec
from twinvisor.states import ProcessState, is_legal

S = ProcessState


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


@dataclass(frozen=True)
class TimerFired:
    name: str
    token: int


Event = (
    StartRequested | StopRequested | RestartRequested | Spawned | SpawnFailed | Exited | TimerFired
)


# ---- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spawn:
    name: str


@dataclass(frozen=True)
class SendSignal:
    name: str
    pid: int
    signal: int
    group: bool = True  # to the whole process group (the program and its children)


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


@dataclass(frozen=True)
class StateChanged:
    name: str
    old: ProcessState
    new: ProcessState


@dataclass(frozen=True)
class LogLine:
    name: str
    message: str
    level: str = "info"


Action = Spawn | SendSignal | KillRemnants | SetTimer | StateChanged | LogLine


# ---- per-instance record ------------------------------------------------------------------


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int | None
    signal: int | None
    run_time: float

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}"
        if self.exit_code is None:
            return "exited (status unknown)"
        return f"exit {self.exit_code}"


@dataclass
class Proc:
    spec: ProgramSpec
    state: ProcessState = S.STOPPED
    pid: int | None = None
    started_at: float | None = None  # monotonic time of the spawn
    failures: int = 0  # consecutive failed runs
    restarts: int = 0  # automatic restarts since the daemon started
    last_exit: ExitInfo | None = None
    last_error: str | None = None
    token: int = 0
    start_after_stop: bool = False  # a restart (or start) is waiting for the stop to finish
    given_up: bool = False  # max_retry exceeded (FATAL, or slow retry in BACKOFF)

    def start_outcome(self) -> str:
        """For a caller waiting on `start`: 'ok', 'failed' or 'pending'."""
        if self.state is S.RUNNING:
            return "ok"
        if self.state in (S.FATAL, S.EXITED, S.STOPPED) or self.given_up:
            return "failed"
        return "pending"

    def stop_outcome(self) -> str:
        return "pending" if self.state.is_alive or self.start_after_stop else "ok"


@dataclass
class Core:
    procs: dict[str, Proc] = field(default_factory=dict)

    # -- configuration ----------------------------------------------------------------------

    def add(self, spec: ProgramSpec) -> None:
        self.procs[spec.name] = Proc(spec)

    def remove(self, name: str) -> None:
        """Forget an instance; the caller stops it first (see `update` in the runtime)."""
        del self.procs[name]

    def replace_spec(self, spec: ProgramSpec) -> None:
        self.procs[spec.name].spec = spec

    # -- the one entry point -----------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        proc = self.procs.get(event.name)
        if proc is None:
            return []
        out: list[Action] = []
        match event:
            case StartRequested():
                self._on_start(proc, now, out)
            case StopRequested():
                self._on_stop(proc, now, out)
            case RestartRequested():
                self._on_restart(proc, now, out)
            case Spawned(pid=pid):
                self._on_spawned(proc, pid, now, out)
            case SpawnFailed(reason=reason):
                self._on_spawn_failed(proc, reason, now, out)
            case Exited():
                self._on_exited(proc, event, now, out)
            case TimerFired(token=token):
                if token == proc.token:
                    self._on_timer(proc, now, out)
            case _:
                assert_never(event)
        return out

    # -- transitions --------------------------------------------------------------------------

    def _set(self, proc: Proc, new: ProcessState, out: list[Action]) -> None:
        old = proc.state
        if old is new:
            return
        assert is_legal(old, new), f"{proc.spec.name}: illegal transition {old} -> {new}"
        proc.state = new
        out.append(StateChanged(proc.spec.name, old, new))

    def _timer(self, proc: Proc, delay: float, out: list[Action]) -> None:
        proc.token += 1
        out.append(SetTimer(proc.spec.name, proc.token, delay))

    def _cancel_timer(self, proc: Proc) -> None:
        proc.token += 1

    def _spawn(self, proc: Proc, out: list[Action]) -> None:
        self._cancel_timer(proc)
        out.append(Spawn(proc.spec.name))

    def _on_start(self, proc: Proc, now: float, out: list[Action]) -> None:
        if proc.state is S.STOPPING:
            proc.start_after_stop = True
            return
        if proc.state.is_alive:
            return
        # an explicit start clears the failure history, like supervisorctl start
        proc.failures = 0
        proc.given_up = False
        proc.last_error = None
        self._spawn(proc, out)

    def _on_stop(self, proc: Proc, now: float, out: list[Action]) -> None:
        proc.start_after_stop = False
        if proc.state in (S.STARTING, S.RUNNING) and proc.pid is not None:
            self._begin_stop(proc, out)
        elif proc.state in (S.BACKOFF, S.EXITED, S.FATAL):
            self._cancel_timer(proc)
            self._set(proc, S.STOPPED, out)

    def _on_restart(self, proc: Proc, now: float, out: list[Action]) -> None:
        if proc.state in (S.STARTING, S.RUNNING) and proc.pid is not None:
            self._begin_stop(proc, out)
            proc.start_after_stop = True
        elif proc.state is S.STOPPING:
            proc.start_after_stop = True
        else:
            self._on_start(proc, now, out)

    def _begin_stop(self, proc: Proc, out: list[Action]) -> None:
        assert proc.pid is not None
        sig = signal_number(proc.spec.stop_signal)
        self._set(proc, S.STOPPING, out)
        out.append(SendSignal(proc.spec.name, proc.pid, sig))
        if sig != signal.SIGKILL:
            # a stopped (SIGSTOP) process cannot act on the stop signal until continued
            out.append(SendSignal(proc.spec.name, proc.pid, signal.SIGCONT))
        self._timer(proc, proc.spec.stop_timeout, out)
        out.append(LogLine(proc.spec.name, f"stopping pid {proc.pid} with SIG{proc.spec.stop_signal.upper().removeprefix('SIG')}"))

    def _on_spawned(self, proc: Proc, pid: int, now: float, out: list[Action]) -> None:
        proc.pid = pid
        proc.started_at = now
        self._set(proc, S.STARTING, out)
        out.append(LogLine(proc.spec.name, f"spawned pid {pid}"))
        if proc.spec.restart.min_uptime <= 0:
            self._became_running(proc, out)
        else:
            self._timer(proc, proc.spec.restart.min_uptime, out)

    def _became_running(self, proc: Proc, out: list[Action]) -> None:
        proc.failures = 0
        proc.given_up = False
        self._set(proc, S.RUNNING, out)

    def _on_spawn_failed(self, proc: Proc, reason: str, now: float, out: list[Action]) -> None:
        proc.last_error = reason
        proc.pid = None
        out.append(LogLine(proc.spec.name, f"could not start: {reason}", "error"))
        proc.failures += 1
        self._after_run(proc, None, now, out)

    def _on_exited(self, proc: Proc, ev: Exited, now: float, out: list[Action]) -> None:
        if ev.pid != proc.pid:
            return  # a stale generation; the runtime already cleaned it up
        run_time = now - (proc.started_at or now)
        proc.last_exit = ExitInfo(ev.exit_code, ev.signal, run_time)
        proc.pid = None
        out.append(KillRemnants(proc.spec.name, ev.pid))
        out.append(LogLine(proc.spec.name, f"pid {ev.pid} {proc.last_exit.describe()} after {run_time:.3f}s"))
        if proc.state is S.STOPPING:
            self._cancel_timer(proc)
            if proc.start_after_stop:
                proc.start_after_stop = False
                proc.failures = 0
                self._spawn(proc, out)
            else:
                self._set(proc, S.STOPPED, out)
            return
        if proc.state is S.STARTING:
            proc.failures += 1  # died before min_uptime: a failed run
        self._after_run(proc, ev.exit_code, now, out)

    def _after_run(self, proc: Proc, exit_code: int | None, now: float, out: list[Action]) -> None:
        decision = policy.decide(proc.spec.restart, exit_code, proc.failures)
        match decision:
            case policy.Stay():
                self._cancel_timer(proc)
                self._set(proc, S.EXITED, out)
            case policy.GiveUp():
                self._cancel_timer(proc)
                proc.given_up = True
                self._set(proc, S.FATAL, out)
                out.append(LogLine(proc.spec.name, f"gave up after {proc.failures} consecutive failures", "error"))
            case policy.Restart(delay=delay):
                proc.restarts += 1
                if proc.failures > proc.spec.restart.max_retry:
                    proc.given_up = True  # slow retry: never silent, visible in status
                    assert proc.spec.restart.after_give_up is AfterGiveUp.SLOW_RETRY
                if delay <= 0:
                    self._spawn(proc, out)
                else:
                    self._set(proc, S.BACKOFF, out)
                    self._timer(proc, delay, out)
            case _:
                assert_never(decision)

    def _on_timer(self, proc: Proc, now: float, out: list[Action]) -> None:
        match proc.state:
            case S.STARTING:
                self._became_running(proc, out)
            case S.BACKOFF:
                self._spawn(proc, out)
            case S.STOPPING:
                if proc.pid is not None:
                    out.append(SendSignal(proc.spec.name, proc.pid, signal.SIGKILL))
                    out.append(LogLine(proc.spec.name, f"pid {proc.pid} still running after stop_timeout={proc.spec.stop_timeout}s: SIGKILL", "warning"))
            case _:
                pass
