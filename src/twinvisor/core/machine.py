"""The pure supervisor: `Core.handle(event, now) -> list[Action]`.

No I/O, no clock, no os: the runtime feeds events in (a spawn happened, a process exited, a
timer fired, the user asked for something) together with the monotonic time, and carries out
the actions that come back (spawn, signal, arm a timer). That keeps every policy decision
testable in microseconds and makes the runtime a thin, mechanical shell.
The event and action records themselves are in `events`.

One timer per instance is enough: an instance is only ever waiting for one thing (the end of
min_uptime, the restart delay, or the stop timeout). Timers carry a token; a timer whose
token is stale is ignored, so nothing has to be cancelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from types import MappingProxyType
from typing import Protocol, assert_never

import msgspec

from twinvisor.config.specs import (
    AfterGiveUp,
    ExitAction,
    FatalAction,
    ProgramSpec,
    ProgramType,
    ReadyMode,
)
from twinvisor.core import policy
from twinvisor.core.events import (
    Action,
    Adopted,
    CountersRestored,
    DependencyFailed,
    Event,
    Exited,
    ForceKill,
    HealthResult,
    KillRemnants,
    LogLine,
    Notified,
    Ready,
    Restarting,
    RestartReason,
    RestartRequested,
    SendSignal,
    SetTimer,
    ShutdownRequested,
    Spawn,
    Spawned,
    SpawnFailed,
    StartProbe,
    StartRequested,
    StateChanged,
    StopRequested,
    StrayGeneration,
    TimerFired,
    TimerKind,
)
from twinvisor.core.states import Outcome, ProcessState, is_legal

S = ProcessState


# ---- per-instance record ------------------------------------------------------------------


class ExitInfo(msgspec.Struct, frozen=True):
    exit_code: int | None
    signal: int | None
    run_time: float
    signal_name: str | None = None
    asked: bool = False  # the end of a stop we asked for (stop, restart, down), not a crash

    def describe(self) -> str:
        if self.asked:
            how = self.signal_name or (
                f"signal {self.signal}" if self.signal is not None else f"exit {self.exit_code}"
            )
            return f"stopped ({how})"
        if self.signal is not None:
            return f"killed by {self.signal_name or f'signal {self.signal}'}"
        if self.exit_code is None:
            return "exited (status unknown)"
        return f"exit {self.exit_code}"


class Proc(msgspec.Struct):  # one per program instance: no __dict__ each (issue 16)
    spec: ProgramSpec
    state: ProcessState = S.STOPPED
    pid: int | None = None  # the current generation
    started_at: float | None = None  # monotonic time of its spawn
    failures: int = 0  # consecutive failed runs
    restarts: int = 0  # automatic restarts since the daemon started
    last_exit: ExitInfo | None = None
    last_error: str | None = None
    token: int = 0  # main timer (min_uptime / ready timeout, backoff, stop timeout)
    watchdog_token: int = 0
    start_after_stop: bool = False  # a restart (or start) is waiting for the stop to finish
    given_up: bool = False  # max_retry exceeded (FATAL, or slow retry in BACKOFF)
    # zero-downtime restart: the previous generation keeps serving until the new one is ready
    old_pid: int | None = None
    old_started_at: float | None = None
    retiring: set[int] = msgspec.field(default_factory=set)  # pids being stopped in the background
    handover_failed: bool = False
    restart_pending: bool = False  # asked while a handover was under way: runs after it
    status_text: str | None = None  # last STATUS= from sd_notify
    main_pid: int | None = None  # MAINPID= from sd_notify, for display
    reloading: bool = False
    healthy: bool | None = None
    health_failures: int = 0
    exit_times: tuple[float, ...] = ()  # within flap_window: the crash rate
    flapping: bool = False  # the current back-off comes from the crash rate
    completed: bool = False  # a oneshot whose last run succeeded (EXITED with an exit_code)

    def start_outcome(self) -> Outcome:
        """For a caller waiting on `start`/`restart`."""
        if self.handover_failed:
            return Outcome.FAILED
        if (
            self.restart_pending
            or self.old_pid is not None
            or (self.retiring and self.state is S.RUNNING)
        ):
            return Outcome.PENDING  # a restart is still swapping generations
        if self.state is S.RUNNING or self.completed:
            return Outcome.OK
        if self.state in (S.FATAL, S.EXITED, S.STOPPED) or self.given_up:
            return Outcome.FAILED
        return Outcome.PENDING

    def stop_outcome(self) -> Outcome:
        busy = self.state.is_alive or self.start_after_stop or self.retiring or self.old_pid
        return Outcome.PENDING if busy else Outcome.OK


class ProcView(Protocol):
    """What the shell may read of an instance: everything, and nothing it can write. The
    shell tells the core what it learned by events (see `events`); only `Core` changes a Proc."""

    @property
    def spec(self) -> ProgramSpec: ...
    @property
    def state(self) -> ProcessState: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def failures(self) -> int: ...
    @property
    def restarts(self) -> int: ...
    @property
    def last_exit(self) -> ExitInfo | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def given_up(self) -> bool: ...
    @property
    def old_pid(self) -> int | None: ...
    @property
    def retiring(self) -> Set[int]: ...
    @property
    def status_text(self) -> str | None: ...
    @property
    def main_pid(self) -> int | None: ...
    @property
    def reloading(self) -> bool: ...
    @property
    def healthy(self) -> bool | None: ...
    @property
    def health_failures(self) -> int: ...
    @property
    def flapping(self) -> bool: ...
    @property
    def completed(self) -> bool: ...
    def start_outcome(self) -> Outcome: ...
    def stop_outcome(self) -> Outcome: ...


class Core(msgspec.Struct):
    _procs: dict[str, Proc] = msgspec.field(default_factory=dict)

    @property
    def procs(self) -> Mapping[str, ProcView]:
        """Every instance, in config order, read-only."""
        return MappingProxyType(self._procs)

    # -- configuration ----------------------------------------------------------------------

    def add(self, spec: ProgramSpec) -> None:
        self._procs[spec.name] = Proc(spec)

    def remove(self, name: str) -> None:
        """Forget an instance; the caller stops it first (see `update` in the runtime)."""
        del self._procs[name]

    def reorder(self, names: Iterable[str]) -> None:
        """List instances in this order (the config's, for status listings)."""
        self._procs = {n: self._procs[n] for n in names}

    # -- the one entry point -----------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        proc = self._procs.get(event.name)
        if proc is None:
            return []
        out: list[Action] = []
        match event:
            case StartRequested():
                self._on_start(proc, out)
            case StopRequested():
                self._on_stop(proc, out)
            case RestartRequested():
                proc.handover_failed = False
                out.append(Restarting(proc.spec.name, RestartReason.MANUAL))
                self._on_restart(proc, out)
            case Spawned(pid=pid):
                self._on_spawned(proc, pid, now, out)
            case SpawnFailed(reason=reason):
                self._on_spawn_failed(proc, reason, now, out)
            case Exited():
                self._on_exited(proc, event, now, out)
            case TimerFired():
                self._on_timer(proc, event, now, out)
            case Ready(pid=pid):
                if pid == proc.pid and proc.state is S.STARTING:
                    self._became_ready(proc, out)
            case Notified():
                self._on_notify(proc, event, out)
            case HealthResult():
                self._on_health(proc, event, out)
            case Adopted(pid=pid, started_at=started_at):
                self._on_adopted(proc, pid, started_at, out)
            case StrayGeneration(pid=pid):
                if pid != proc.pid and pid not in proc.retiring:
                    self._retire(proc, pid, out)
            case CountersRestored(restarts=restarts, last_exit=last):
                proc.restarts = restarts
                if last is not None and proc.last_exit is None:
                    proc.last_exit = ExitInfo(
                        last.exit_code, last.signal, last.run_time, last.signal_name, last.asked
                    )
            case DependencyFailed(dependency=dependency):
                proc.last_error = f"dependency {dependency!r} did not start"
            case _:
                assert_never(event)
        return out

    def _on_adopted(self, proc: Proc, pid: int, started_at: float, out: list[Action]) -> None:
        if proc.pid is not None:
            return
        proc.pid, proc.started_at = pid, started_at
        if not is_legal(proc.state, S.RUNNING):
            self._set(proc, S.STARTING, out)  # e.g. from STOPPING (restart)
        self._cancel_timer(proc)
        self._set(proc, S.RUNNING, out)
        self._log(proc, f"adopted running pid {pid}", out)
        self._arm_watchdog(proc, out)

    # -- helpers --------------------------------------------------------------------------------

    def _set(self, proc: Proc, new: ProcessState, out: list[Action]) -> None:
        old = proc.state
        if old is new:
            return
        if not is_legal(old, new):  # an invariant, kept under -OO (twin/bytecode.py)
            raise AssertionError(f"{proc.spec.name}: illegal transition {old} -> {new}")
        proc.state = new
        out.append(StateChanged(proc.spec.name, old, new))

    def _timer(self, proc: Proc, delay: float, out: list[Action]) -> None:
        proc.token += 1
        out.append(SetTimer(proc.spec.name, proc.token, delay))

    def _cancel_timer(self, proc: Proc) -> None:
        proc.token += 1

    def _log(self, proc: Proc, message: str, out: list[Action], level: str = "info") -> None:
        out.append(LogLine(proc.spec.name, message, level))

    def _spawn(self, proc: Proc, out: list[Action]) -> None:
        self._cancel_timer(proc)
        out.append(Spawn(proc.spec.name))

    def _stop_signals(self, proc: Proc, pid: int, out: list[Action]) -> None:
        resume = proc.spec.stop_signal != "KILL"  # KILL needs no SIGCONT to act
        out.append(SendSignal(proc.spec.name, pid, proc.spec.stop_signum, resume=resume))

    def _retire(self, proc: Proc, pid: int, out: list[Action]) -> None:
        """Stop a generation in the background (stop signal, SIGKILL at stop_timeout)."""
        proc.retiring.add(pid)
        self._stop_signals(proc, pid, out)
        out.append(SetTimer(proc.spec.name, 0, proc.spec.stop_timeout, TimerKind.KILL, pid))
        self._log(proc, f"stopping previous generation pid {pid}", out)

    def _restore_old(self, proc: Proc, why: str, out: list[Action]) -> None:
        """The new generation failed during a restart: the old one stays in charge."""
        assert proc.old_pid is not None
        self._cancel_timer(proc)
        proc.pid, proc.started_at = proc.old_pid, proc.old_started_at
        proc.old_pid = proc.old_started_at = None
        proc.handover_failed = True
        proc.restart_pending = False
        proc.last_error = f"restart failed: {why}; the previous generation keeps serving"
        self._set(proc, S.RUNNING, out)
        self._log(proc, proc.last_error, out, "error")

    # -- user requests --------------------------------------------------------------------------

    def _on_start(self, proc: Proc, out: list[Action]) -> None:
        if proc.state is S.STOPPING:
            proc.start_after_stop = True
            return
        if proc.state.is_alive:
            return
        # an explicit start clears the failure history, like supervisorctl start
        proc.failures = 0
        proc.given_up = False
        proc.last_error = None
        proc.exit_times, proc.flapping = (), False
        proc.completed = False
        self._spawn(proc, out)

    def _on_stop(self, proc: Proc, out: list[Action]) -> None:
        proc.start_after_stop = False
        proc.restart_pending = False
        if proc.old_pid is not None:
            self._retire(proc, proc.old_pid, out)
            proc.old_pid = proc.old_started_at = None
        if proc.state in (S.STARTING, S.RUNNING) and proc.pid is not None:
            self._begin_stop(proc, out)
        elif proc.state in (S.BACKOFF, S.EXITED, S.FATAL):
            self._cancel_timer(proc)
            self._set(proc, S.STOPPED, out)

    def _on_restart(self, proc: Proc, out: list[Action]) -> None:
        if proc.old_pid is not None or (proc.retiring and proc.state is S.RUNNING):
            # one handover at a time: never a third generation; restarts asked meanwhile
            # coalesce into one that runs when this one is done
            proc.restart_pending = True
            return
        alive = proc.state in (S.STARTING, S.RUNNING) and proc.pid is not None
        if alive:  # RESTARTS counts restarts asked for (restart, health checks) too
            proc.restarts += 1
        if alive and proc.state is S.RUNNING and not proc.spec.stop_before_restart:
            # start the new generation first; the old one serves until the new is ready
            proc.old_pid, proc.old_started_at = proc.pid, proc.started_at
            proc.pid = None
            self._spawn(proc, out)
        elif alive:
            self._begin_stop(proc, out)
            proc.start_after_stop = True
        elif proc.state is S.STOPPING:
            proc.start_after_stop = True
        else:
            self._on_start(proc, out)

    def _run_pending_restart(self, proc: Proc, out: list[Action]) -> None:
        if proc.restart_pending and not proc.retiring and proc.old_pid is None:
            proc.restart_pending = False
            if proc.state is S.RUNNING:
                self._on_restart(proc, out)

    def _begin_stop(self, proc: Proc, out: list[Action]) -> None:
        assert proc.pid is not None
        self._set(proc, S.STOPPING, out)
        self._stop_signals(proc, proc.pid, out)
        self._timer(proc, proc.spec.stop_timeout, out)
        proc.watchdog_token += 1
        self._log(proc, f"stopping pid {proc.pid} with SIG{proc.spec.stop_signal}", out)

    # -- process life ---------------------------------------------------------------------------

    def _on_spawned(self, proc: Proc, pid: int, now: float, out: list[Action]) -> None:
        proc.pid = pid
        proc.started_at = now
        proc.status_text = proc.main_pid = None
        proc.reloading = False
        proc.healthy = None
        proc.health_failures = 0
        proc.completed = False
        self._set(proc, S.STARTING, out)
        self._log(proc, f"spawned pid {pid}", out)
        ready = proc.spec.ready
        if ready.mode is ReadyMode.SPAWN:
            # a oneshot proves itself by its exit, not by staying up: running is ready
            if proc.spec.restart.min_uptime <= 0 or proc.spec.type is ProgramType.ONESHOT:
                self._became_ready(proc, out)
            else:
                self._timer(proc, proc.spec.restart.min_uptime, out)
        elif ready.mode is ReadyMode.DELAY:
            self._timer(proc, ready.delay, out)
        else:
            self._timer(proc, ready.timeout, out)  # not ready by then: a failed start
            if ready.mode in (ReadyMode.TCP, ReadyMode.HTTP):
                out.append(StartProbe(proc.spec.name, pid))
        self._arm_watchdog(proc, out)

    def _arm_watchdog(self, proc: Proc, out: list[Action]) -> None:
        if proc.spec.watchdog_sec > 0:
            proc.watchdog_token += 1
            delay = proc.spec.watchdog_sec
            out.append(SetTimer(proc.spec.name, proc.watchdog_token, delay, TimerKind.WATCHDOG))

    def _became_ready(self, proc: Proc, out: list[Action]) -> None:
        self._cancel_timer(proc)
        self._set(proc, S.RUNNING, out)
        if proc.old_pid is not None:
            self._retire(proc, proc.old_pid, out)
            proc.old_pid = proc.old_started_at = None

    def _on_spawn_failed(self, proc: Proc, reason: str, now: float, out: list[Action]) -> None:
        self._log(proc, f"could not start: {reason}", out, "error")
        if proc.old_pid is not None:
            self._restore_old(proc, f"could not start: {reason}", out)
            return
        proc.last_error = reason
        proc.pid = None
        proc.failures += 1
        self._after_run(proc, None, out, RestartReason.SPAWN_FAILED, policy.EXIT_NOT_STARTED)

    def _on_exited(self, proc: Proc, ev: Exited, now: float, out: list[Action]) -> None:
        if ev.pid in proc.retiring or ev.pid == proc.old_pid:
            proc.retiring.discard(ev.pid)
            if ev.pid == proc.old_pid:
                proc.old_pid = proc.old_started_at = None
            out.append(KillRemnants(proc.spec.name, ev.pid))
            how = ExitInfo(ev.exit_code, ev.signal, 0.0, ev.signal_name).describe()
            self._log(proc, f"previous generation pid {ev.pid} {how}", out)
            self._run_pending_restart(proc, out)
            return
        if ev.pid != proc.pid:
            return  # not a generation we track
        run_time = now - (proc.started_at if proc.started_at is not None else now)
        asked = proc.state is S.STOPPING  # a stop we asked for ended it, not a crash
        proc.last_exit = ExitInfo(ev.exit_code, ev.signal, run_time, ev.signal_name, asked)
        proc.pid = None
        proc.watchdog_token += 1
        out.append(KillRemnants(proc.spec.name, ev.pid))
        self._log(proc, f"pid {ev.pid} {proc.last_exit.describe()} after {run_time:.3f}s", out)
        if proc.old_pid is not None:
            self._restore_old(
                proc, f"new generation {proc.last_exit.describe()} before it was ready", out
            )
            return
        if proc.state is S.STOPPING:
            self._cancel_timer(proc)
            if proc.start_after_stop:
                proc.start_after_stop = False
                proc.failures = 0
                self._spawn(proc, out)
            else:
                self._set(proc, S.STOPPED, out)
            return
        self._count_run(proc, failed=self._run_failed(proc, run_time, ev.exit_code))
        proc.exit_times = policy.recent_exits(proc.spec.restart, (*proc.exit_times, now), now)
        code = policy.exit_status(ev.exit_code, ev.signal)
        self._after_run(proc, ev.exit_code, out, RestartReason.EXIT, code)

    @staticmethod
    def _run_failed(proc: Proc, run_time: float, exit_code: int | None) -> bool:
        """Exiting before ready is a failure. In spawn/delay mode RUNNING itself proves the
        program stayed up min_uptime (re-measuring could misjudge a timer firing a hair
        early); with notify/probes a program can be ready sooner, so the time counts.
        A oneshot is judged by its exit code alone: a quick success is what it is for."""
        if proc.spec.type is ProgramType.ONESHOT:
            return not policy.exit_expected(proc.spec.restart, exit_code)
        if proc.state is S.STARTING:
            return True
        if proc.spec.ready.mode in (ReadyMode.SPAWN, ReadyMode.DELAY):
            return False
        return policy.run_failed(proc.spec.restart, run_time)

    def _count_run(self, proc: Proc, failed: bool) -> None:
        if failed:
            proc.failures += 1
        else:
            proc.failures = 0
            proc.given_up = False

    def _after_run(
        self,
        proc: Proc,
        exit_code: int | None,
        out: list[Action],
        reason: RestartReason,
        code: int,
    ) -> None:
        """`code`: what the daemon exits with if this run's end stops it (exit policy)."""
        spec = proc.spec
        oneshot = spec.type is ProgramType.ONESHOT
        decide = policy.decide_oneshot if oneshot else policy.decide
        recent = len(proc.exit_times)
        decision = decide(spec.restart, exit_code, proc.failures, recent)
        if spec.on_exit is not ExitAction.RESTART:
            decision = policy.Stay()
        self._note_flapping(proc, decision, recent, out)
        match decision:
            case policy.Stay():
                self._cancel_timer(proc)
                if oneshot and policy.exit_expected(spec.restart, exit_code):
                    proc.completed = True
                    self._log(proc, "completed", out)
                elif oneshot:
                    proc.last_error = f"failed: {self._how(proc)}"
                self._set(proc, S.EXITED, out)
                if spec.on_exit is ExitAction.SHUTDOWN:
                    self._shutdown(proc, code, f"{spec.name} {self._how(proc)}", out)
            case policy.GiveUp():
                self._cancel_timer(proc)
                proc.given_up = True
                self._set(proc, S.FATAL, out)
                self._log(proc, f"gave up after {proc.failures} consecutive failures", out, "error")
                if spec.on_fatal is FatalAction.SHUTDOWN:
                    why = f"{spec.name} gave up after {proc.failures} failures ({self._how(proc)})"
                    self._shutdown(proc, code, why, out)
            case policy.Restart(delay=delay):
                proc.restarts += 1
                out.append(Restarting(proc.spec.name, reason, delay))
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

    def _note_flapping(
        self, proc: Proc, decision: policy.Decision, recent: int, out: list[Action]
    ) -> None:
        """Flapping shows in status (the error column) while it lasts, and is logged."""
        flapping = isinstance(decision, policy.Restart) and decision.flapping
        if isinstance(decision, policy.Restart) and decision.flapping:
            window = proc.spec.restart.flap_window
            proc.last_error = (
                f"flapping: {recent} exits within {window:g}s; next start in {decision.delay:.1f}s"
            )
            self._log(proc, proc.last_error, out, "warning")
        elif proc.flapping:
            proc.last_error = None  # the rate is back under the limit
        proc.flapping = flapping

    @staticmethod
    def _how(proc: Proc) -> str:
        return proc.last_exit.describe() if proc.last_exit else (proc.last_error or "failed")

    def _shutdown(self, proc: Proc, code: int, why: str, out: list[Action]) -> None:
        self._log(proc, f"exit policy: {why}: stopping everything (exit code {code})", out, "error")
        out.append(ShutdownRequested(proc.spec.name, code, why))

    def _abandon(self, proc: Proc, why: str, reason: RestartReason, out: list[Action]) -> None:
        """The current generation is hung (not ready in time, watchdog): kill it in the
        background and go through the restart policy as for a failed run."""
        assert proc.pid is not None
        self._log(proc, why, out, "warning")
        proc.last_error = why
        self._retire(proc, proc.pid, out)
        proc.pid = None
        proc.watchdog_token += 1
        proc.failures += 1
        self._after_run(proc, None, out, reason, policy.EXIT_ABANDONED)

    # -- timers -----------------------------------------------------------------------------------

    def _on_timer(self, proc: Proc, ev: TimerFired, now: float, out: list[Action]) -> None:
        if ev.kind is TimerKind.KILL:
            if ev.pid in proc.retiring:
                out.append(ForceKill(proc.spec.name, ev.pid))
                self._log(proc, f"pid {ev.pid} outlived stop_timeout: SIGKILL", out, "warning")
            return
        if ev.kind is TimerKind.WATCHDOG:
            hung = ev.token == proc.watchdog_token and proc.pid is not None
            if hung and proc.state in (S.STARTING, S.RUNNING):
                self._abandon(
                    proc,
                    f"watchdog: no WATCHDOG=1 within {proc.spec.watchdog_sec}s",
                    RestartReason.WATCHDOG,
                    out,
                )
            return
        if ev.token != proc.token:
            return
        match proc.state:
            case S.STARTING:
                self._starting_timer(proc, out)
            case S.BACKOFF:
                self._spawn(proc, out)
            case S.STOPPING:
                if proc.pid is not None:
                    out.append(ForceKill(proc.spec.name, proc.pid))
                    self._log(
                        proc,
                        f"pid {proc.pid} outlived stop_timeout={proc.spec.stop_timeout}s: SIGKILL",
                        out,
                        "warning",
                    )
            case _:
                pass

    def _starting_timer(self, proc: Proc, out: list[Action]) -> None:
        if proc.spec.ready.mode in (ReadyMode.SPAWN, ReadyMode.DELAY):
            self._became_ready(proc, out)
            return
        why = f"not ready within ready_timeout={proc.spec.ready.timeout}s"
        if proc.old_pid is not None and proc.pid is not None:
            new_pid = proc.pid
            self._restore_old(proc, f"new generation {why}", out)
            self._retire(proc, new_pid, out)
        elif proc.pid is not None:
            self._abandon(proc, why, RestartReason.NOT_READY, out)

    # -- notifications and health -------------------------------------------------------------

    def _on_notify(self, proc: Proc, ev: Notified, out: list[Action]) -> None:
        if ev.pid != proc.pid:
            return  # an old or retiring generation speaks only for itself: ignored
        for key, value in ev.fields:
            if key == "READY" and value == "1":
                proc.reloading = False
                if proc.state is S.STARTING and proc.spec.ready.mode is ReadyMode.NOTIFY:
                    self._became_ready(proc, out)
            elif key == "STATUS":
                proc.status_text = value[:200]
            elif key == "RELOADING" and value == "1":
                proc.reloading = True
            elif key == "STOPPING" and value == "1":
                self._log(proc, "reports STOPPING", out)
            elif key == "MAINPID" and value.isdigit():
                proc.main_pid = int(value)
            elif key == "WATCHDOG" and value == "1":
                self._arm_watchdog(proc, out)

    def _on_health(self, proc: Proc, ev: HealthResult, out: list[Action]) -> None:
        if ev.pid != proc.pid or proc.state is not S.RUNNING or proc.spec.health is None:
            return
        if ev.ok:
            proc.healthy, proc.health_failures = True, 0
            return
        proc.healthy = False
        proc.health_failures += 1
        self._log(
            proc,
            f"health check {proc.health_failures}/{proc.spec.health.failures} failed: {ev.detail}",
            out,
            "warning",
        )
        if proc.health_failures >= proc.spec.health.failures:
            proc.health_failures = 0
            proc.last_error = f"restarted: {proc.spec.health.failures} failed health checks"
            out.append(Restarting(proc.spec.name, RestartReason.HEALTH))
            self._on_restart(proc, out)
