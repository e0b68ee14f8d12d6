"""The user's start, stop and restart, in dependency order, on top of the runtime's engine.

All three honour depends_on: what a program needs starts first (and must reach the
condition), dependents stop first, and a restarted program's dependents restart after it.
Start and stop also follow `priority` (see core/deps.py): a level that only priority orders
waits for its programs to be started, not ready; their readiness is waited for at the end.
Restarts roll `restart_batch` instances at a time. Module-level functions of the runtime: they
only ask it to dispatch events and wait for outcomes, and keep no state of their own.
"""

from __future__ import annotations

import asyncio

from twinvisor.config.specs import DependCondition
from twinvisor.core import deps
from twinvisor.core.events import (
    DependencyFailed,
    RestartRequested,
    StartRequested,
    StopRequested,
)
from twinvisor.core.machine import ProcView
from twinvisor.core.states import Outcome, ProcessState
from twinvisor.supervisor.seams import Engine, OutcomeOf


async def start(rt: Engine, names: list[str], timeout: float | None = None) -> dict[str, Outcome]:
    rt.desired.want(names, True)
    graph = _graph(rt)
    requested = {rt.procs[n].spec.program for n in names}
    needed = deps.requirements(graph, requested)
    by = _by_program(rt)
    named = set(names)
    wanted = _conditions(rt, needed)
    results: dict[str, Outcome] = {}
    failed: set[str] = set()
    later: list[str] = []  # waited for only as started in their level; ready at the end
    for level in deps.start_levels(graph, needed, _priorities(rt)):
        if rt.closing:  # the exit policy stops the daemon meanwhile: start nothing more
            break
        level_names: list[str] = []
        outcome: dict[str, OutcomeOf] = {}
        for program in level:
            inst = _pick(program, named, by)
            blocker = next((d for d in graph.get(program, ()) if d in failed), None)
            if blocker is not None:
                for n in inst:
                    results[n] = Outcome.FAILED
                    rt.dispatch(DependencyFailed(n, blocker))
                failed.add(program)
                continue
            check = _condition(wanted.get(program, set()))
            if check is None:
                # nothing depends on it: only the start order (priority) waits for it
                check = _started_outcome
                later += inst
            elif program in requested and check is _started_outcome:
                check = _ready_outcome  # asked for itself: it must be ready
            for n in inst:
                outcome[n] = check
                level_names.append(n)
        for n in level_names:
            # a oneshot that completed is not run again for a dependent, only when named
            if n in names or not rt.procs[n].completed:
                rt.dispatch(StartRequested(n))
        got = await rt.wait(level_names, _per_name(outcome), timeout)
        results.update(got)
        failed.update(rt.procs[n].spec.program for n, v in got.items() if v is not Outcome.OK)
    pending = [n for n in later if results.get(n) is Outcome.OK]
    results.update(await rt.wait(pending, _ready_outcome, timeout) if pending else {})
    return {n: results.get(n, Outcome.FAILED) for n in names}


async def stop(
    rt: Engine, names: list[str], timeout: float | None = None, remember: bool = True
) -> dict[str, Outcome]:
    if remember:
        rt.desired.want(names, False)
    graph = _graph(rt)
    requested = {rt.procs[n].spec.program for n in names}
    by = _by_program(rt)
    named = set(names)
    results: dict[str, Outcome] = {}
    for level in deps.stop_levels(graph, deps.dependents(graph, requested), _priorities(rt)):
        level_names = [n for program in level for n in _pick(program, named, by)]
        for n in level_names:
            rt.dispatch(StopRequested(n))
        results.update(await rt.wait(level_names, _stopped_outcome, timeout))
    return {n: results[n] for n in names}


async def restart(rt: Engine, names: list[str], timeout: float | None = None) -> dict[str, Outcome]:
    rt.desired.want(names, True)
    graph = _graph(rt)
    requested = {rt.procs[n].spec.program for n in names}
    by = _by_program(rt)
    running_dependents = {
        p
        for p in deps.dependents(graph, requested) - requested
        if any(rt.procs[n].state.is_alive for n in by.get(p, []))
    }
    named = set(names)
    results: dict[str, Outcome] = {}
    for level in deps.start_levels(graph, requested | running_dependents):
        rolls = [_roll(rt, _pick(p, named, by), timeout) for p in level]
        for got in await asyncio.gather(*rolls):
            results.update(got)
    return {n: results[n] for n in names}


async def _roll(rt: Engine, names: list[str], timeout: float | None) -> dict[str, Outcome]:
    """Restart instances `restart_batch` at a time; stop rolling at the first failure so
    the instances not yet restarted keep serving with the previous generation."""
    results: dict[str, Outcome] = {}
    batch = max(1, rt.procs[names[0]].spec.restart_batch) if names else 1
    for i in range(0, len(names), batch):
        chunk = names[i : i + batch]
        if any(v is not Outcome.OK for v in results.values()):
            results.update(dict.fromkeys(chunk, Outcome.SKIPPED))
            continue
        for n in chunk:
            rt.dispatch(RestartRequested(n))
        results.update(await rt.wait(chunk, _ready_outcome, timeout))
    return results


# -- the dependency graph and the outcomes waited for ---------------------------------------------


def _graph(rt: Engine) -> dict[str, list[str]]:
    return {p.spec.program: [d.program for d in p.spec.depends_on] for p in rt.procs.values()}


def _by_program(rt: Engine) -> dict[str, list[str]]:
    by: dict[str, list[str]] = {}
    for n, p in rt.procs.items():
        by.setdefault(p.spec.program, []).append(n)
    return by


def _pick(program: str, named: set[str], by: dict[str, list[str]]) -> list[str]:
    """The requested instances of `program`, or all of them if none was named."""
    mine = by.get(program, [])
    return [n for n in mine if n in named] or mine


def _priorities(rt: Engine) -> dict[str, int]:
    return {p.spec.program: p.spec.priority for p in rt.procs.values()}


def _conditions(rt: Engine, among: set[str]) -> dict[str, set[DependCondition]]:
    """Program -> the conditions the dependents being started (`among`) ask of it: one pass
    over the instances, not one per program (a start of 1000 programs)."""
    wanted: dict[str, set[DependCondition]] = {}
    for p in rt.procs.values():
        if p.spec.program in among:
            for d in p.spec.depends_on:
                wanted.setdefault(d.program, set()).add(d.condition)
    return wanted


def _condition(wanted: set[DependCondition]) -> OutcomeOf | None:
    """The strictest of the conditions dependents ask of a program; None when none does."""
    if DependCondition.COMPLETED in wanted:
        return _completed_outcome
    if DependCondition.HEALTHY in wanted:
        return _healthy_outcome
    if not wanted:
        return None
    if DependCondition.READY in wanted:
        return _ready_outcome
    return _started_outcome


def _per_name(outcomes: dict[str, OutcomeOf]) -> OutcomeOf:
    def outcome(proc: ProcView) -> Outcome:
        return outcomes[proc.spec.name](proc)

    return outcome


def _ready_outcome(proc: ProcView) -> Outcome:
    return proc.start_outcome()


def _stopped_outcome(proc: ProcView) -> Outcome:
    return proc.stop_outcome()


def _started_outcome(proc: ProcView) -> Outcome:
    if proc.state in (ProcessState.STARTING, ProcessState.RUNNING):
        return Outcome.OK
    return proc.start_outcome()


def _completed_outcome(proc: ProcView) -> Outcome:
    """A oneshot gate: done when it exited with success; failed when it will not be."""
    if proc.completed:
        return Outcome.OK
    if proc.state in (ProcessState.EXITED, ProcessState.STOPPED, ProcessState.FATAL):
        return Outcome.FAILED
    return Outcome.FAILED if proc.given_up else Outcome.PENDING


def _healthy_outcome(proc: ProcView) -> Outcome:
    outcome = proc.start_outcome()
    if outcome is Outcome.OK and proc.healthy is not True:
        failing = proc.healthy is False and proc.health_failures > 1
        return Outcome.FAILED if failing else Outcome.PENDING
    return outcome
