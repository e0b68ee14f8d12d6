"""The exit policy and run-to-completion programs in the pure core: what a program's exit
does to the whole daemon (ShutdownRequested with the documented code), and oneshots."""

from __future__ import annotations

import dataclasses
import signal
from typing import Any

import pytest

from twinvisor.config.specs import ExitAction, FatalAction, ProgramSpec, ProgramType, RestartPolicy
from twinvisor.core import events, machine, policy
from twinvisor.core.states import Outcome, ProcessState

S = ProcessState


def core_with(**fields: Any) -> machine.Core:
    restart = RestartPolicy(max_retry=1, min_uptime=1.0, backoff_initial=0.5)
    spec = ProgramSpec(name="p", program="p", command=("prog",), restart=restart)
    core = machine.Core()
    core.add(dataclasses.replace(spec, **fields))
    return core


def shutdowns(actions: list[events.Action]) -> list[tuple[int, str]]:
    return [(a.code, a.reason) for a in actions if isinstance(a, events.ShutdownRequested)]


def fire(core: machine.Core, actions: list[events.Action], now: float) -> list[events.Action]:
    (timer,) = [a for a in actions if isinstance(a, events.SetTimer)]
    return core.handle(events.TimerFired("p", timer.token), now)


def run(core: machine.Core, pid: int = 10, now: float = 0.0) -> list[events.Action]:
    core.handle(events.StartRequested("p"), now)
    return core.handle(events.Spawned("p", pid), now)


@pytest.mark.parametrize(
    ("exit_code", "sig", "code", "how"),
    [(3, None, 3, "exit 3"), (0, None, 0, "exit 0"), (None, 9, 137, "killed by SIGKILL")],
)
def test_a_shutdown_program_exiting_stops_the_daemon_with_its_code(
    exit_code: int | None, sig: int | None, code: int, how: str
) -> None:
    core = core_with(on_exit=ExitAction.SHUTDOWN)
    run(core)
    named = "SIGKILL" if sig else None
    out = core.handle(events.Exited("p", 10, exit_code, sig, named), 5.0)
    assert shutdowns(out) == [(code, f"p {how}")]
    assert core.procs["p"].state is S.EXITED
    assert not any(isinstance(a, events.Spawn) for a in out)  # never restarted


def test_a_requested_stop_is_no_exit_of_the_policy() -> None:
    core = core_with(on_exit=ExitAction.SHUTDOWN, on_fatal=FatalAction.SHUTDOWN)
    run(core)
    core.handle(events.StopRequested("p"), 2.0)
    out = core.handle(events.Exited("p", 10, None, signal.SIGTERM, "SIGTERM"), 2.1)
    assert shutdowns(out) == []
    assert core.procs["p"].state is S.STOPPED


def test_ignore_stays_exited_and_restart_follows_the_policy() -> None:
    core = core_with(on_exit=ExitAction.IGNORE)
    run(core)
    out = core.handle(events.Exited("p", 10, 1), 5.0)
    assert core.procs["p"].state is S.EXITED and shutdowns(out) == []
    core = core_with()
    fire(core, run(core), 1.0)  # min_uptime: RUNNING
    out = core.handle(events.Exited("p", 10, 1), 5.0)
    assert any(isinstance(a, events.Spawn) for a in out)  # a crash after min_uptime: at once


def test_giving_up_stops_the_daemon_only_with_on_fatal_shutdown() -> None:
    for on_fatal, expected in ((FatalAction.IGNORE, []), (FatalAction.SHUTDOWN, [(4, "p")])):
        core = core_with(on_fatal=on_fatal)
        run(core)
        out = core.handle(events.Exited("p", 10, 4), 0.1)  # before min_uptime: failed, retried
        fire(core, out, 0.6)  # the backoff
        core.handle(events.Spawned("p", 11), 0.6)
        out = core.handle(events.Exited("p", 11, 4), 0.7)  # second failure > max_retry=1
        assert core.procs["p"].state is S.FATAL
        assert [(c, r.split(" ")[0]) for c, r in shutdowns(out)] == expected


def test_a_spawn_failure_that_gives_up_exits_127() -> None:
    core = core_with(on_fatal=FatalAction.SHUTDOWN, restart=RestartPolicy(max_retry=0))
    core.handle(events.StartRequested("p"), 0.0)
    out = core.handle(events.SpawnFailed("p", "no such file"), 0.0)
    assert [c for c, _ in shutdowns(out)] == [policy.EXIT_NOT_STARTED] == [127]


def test_a_oneshot_success_is_completed_however_short() -> None:
    core = core_with(type=ProgramType.ONESHOT)
    out = run(core)
    assert core.procs["p"].state is S.RUNNING  # running is ready: no min_uptime wait
    assert not any(isinstance(a, events.SetTimer) for a in out)
    out = core.handle(events.Exited("p", 10, 0), 0.01)
    p = core.procs["p"]
    assert (p.state, p.completed, p.failures, p.restarts) == (S.EXITED, True, 0, 0)
    assert p.start_outcome() is Outcome.OK
    assert not any(isinstance(a, events.Spawn) for a in out)
    run(core, pid=11, now=1.0)  # started again: not completed until it exits well again
    assert not core.procs["p"].completed


def test_a_oneshot_failure_is_retried_then_fatal_and_reported() -> None:
    core = core_with(type=ProgramType.ONESHOT, on_fatal=FatalAction.SHUTDOWN)
    run(core)
    out = core.handle(events.Exited("p", 10, 2), 30.0)  # long run: still a failure
    assert core.procs["p"].state is S.BACKOFF and core.procs["p"].failures == 1
    fire(core, out, 31.0)
    core.handle(events.Spawned("p", 11), 31.0)
    out = core.handle(events.Exited("p", 11, 2), 60.0)
    p = core.procs["p"]
    assert (p.state, p.completed, p.start_outcome()) == (S.FATAL, False, Outcome.FAILED)
    assert shutdowns(out) == [(2, "p gave up after 2 failures (exit 2)")]


def test_exit_status_is_the_code_or_128_plus_the_signal() -> None:
    assert policy.exit_status(3, None) == 3
    assert policy.exit_status(None, 15) == 143
    assert policy.exit_status(None, None) == policy.EXIT_ABANDONED
