"""The user's start, stop and restart, in dependency order, on top of the runtime's engine.

All three honour depends_on: what a program needs starts first (and must reach the
condition), dependents stop first, and a restarted program's dependents restart after it.
Restarts roll `restart_batch` instances at a time. Module-level functions of the runtime: they
only ask it to dispatch events and wait for outcomes, and keep no state of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from twinvisor.config.specs import DependCondition
from twinvisor.core import deps
from twinvisor.core.events import RestartRequested, StartRequested, StopRequested
from twinvisor.core.machine import Proc
from twinvisor.core.states import ProcessState

if TYPE_CHECKING:
    from twinvisor.supervisor.runtime import Runtime

Outcome = Callable[[Proc], str]  # 'ok' | 'failed' | 'pending'


async def start(rt: Runtime, names: list[str], timeout: float | None = None) -> dict[str, str]:
    rt.state_file.want(names, True)
    graph = _graph(rt)
    requested = {rt.core.procs[n].spec.program for n in names}
    needed = deps.requirements(graph, requested)
    by = _by_program(rt)
    results: dict[str, str] = {}
    failed: set[str] = set()
    for level in deps.start_levels(graph, needed):
        level_names: list[str] = []
        outcome: dict[str, Outcome] = {}
        for program in level:
            inst = _pick(program, names, by)
            blocker = next((d for d in graph.get(program, ()) if d in failed), None)
            if blocker is not None:
                for n in inst:
                    results[n] = "failed"
                    rt.core.procs[n].last_error = f"dependency {blocker!r} did not start"
                failed.add(program)
                continue
            check = _condition(rt, program, needed)
            if program in requested and check is _started_outcome:
                check = Proc.start_outcome  # asked for itself: it must be ready
            for n in inst:
                outcome[n] = check
                level_names.append(n)
        for n in level_names:
            rt.dispatch(StartRequested(n))
        got = await rt.wait(level_names, _per_name(outcome), timeout)
        results.update(got)
        failed.update(rt.core.procs[n].spec.program for n, v in got.items() if v != "ok")
    return {n: results.get(n, "failed") for n in names}


async def stop(
    rt: Runtime, names: list[str], timeout: float | None = None, remember: bool = True
) -> dict[str, str]:
    if remember:
        rt.state_file.want(names, False)
    graph = _graph(rt)
    requested = {rt.core.procs[n].spec.program for n in names}
    by = _by_program(rt)
    results: dict[str, str] = {}
    for level in deps.stop_levels(graph, deps.dependents(graph, requested)):
        level_names = [n for program in level for n in _pick(program, names, by)]
        for n in level_names:
            rt.dispatch(StopRequested(n))
        results.update(await rt.wait(level_names, Proc.stop_outcome, timeout))
    return {n: results[n] for n in names}


async def restart(rt: Runtime, names: list[str], timeout: float | None = None) -> dict[str, str]:
    rt.state_file.want(names, True)
    graph = _graph(rt)
    requested = {rt.core.procs[n].spec.program for n in names}
    by = _by_program(rt)
    running_dependents = {
        p
        for p in deps.dependents(graph, requested) - requested
        if any(rt.core.procs[n].state.is_alive for n in by.get(p, []))
    }
    results: dict[str, str] = {}
    for level in deps.start_levels(graph, requested | running_dependents):
        rolls = [_roll(rt, _pick(p, names, by), timeout) for p in level]
        for got in await asyncio.gather(*rolls):
            results.update(got)
    return {n: results[n] for n in names}


async def _roll(rt: Runtime, names: list[str], timeout: float | None) -> dict[str, str]:
    """Restart instances `restart_batch` at a time; stop rolling at the first failure so
    the instances not yet restarted keep serving with the previous generation."""
    results: dict[str, str] = {}
    batch = max(1, rt.core.procs[names[0]].spec.restart_batch) if names else 1
    for i in range(0, len(names), batch):
        chunk = names[i : i + batch]
        if any(v != "ok" for v in results.values()):
            results.update(dict.fromkeys(chunk, "skipped"))
            continue
        for n in chunk:
            rt.dispatch(RestartRequested(n))
        results.update(await rt.wait(chunk, Proc.start_outcome, timeout))
    return results


# -- the dependency graph and the outcomes waited for ---------------------------------------------


def _graph(rt: Runtime) -> dict[str, list[str]]:
    return {p.spec.program: [d.program for d in p.spec.depends_on] for p in rt.core.procs.values()}


def _by_program(rt: Runtime) -> dict[str, list[str]]:
    by: dict[str, list[str]] = {}
    for n, p in rt.core.procs.items():
        by.setdefault(p.spec.program, []).append(n)
    return by


def _pick(program: str, names: list[str], by: dict[str, list[str]]) -> list[str]:
    """The requested instances of `program`, or all of them if none was named."""
    mine = by.get(program, [])
    named = set(names)
    return [n for n in mine if n in named] or mine


def _condition(rt: Runtime, program: str, among: set[str]) -> Outcome:
    """The strictest condition the dependents being started (`among`) ask of `program`."""
    wanted = {
        d.condition
        for p in rt.core.procs.values()
        if p.spec.program in among
        for d in p.spec.depends_on
        if d.program == program
    }
    if DependCondition.HEALTHY in wanted:
        return _healthy_outcome
    if DependCondition.READY in wanted or not wanted:
        return Proc.start_outcome
    return _started_outcome


def _per_name(outcomes: dict[str, Outcome]) -> Outcome:
    def outcome(proc: Proc) -> str:
        return outcomes[proc.spec.name](proc)

    return outcome


def _started_outcome(proc: Proc) -> str:
    if proc.state in (ProcessState.STARTING, ProcessState.RUNNING):
        return "ok"
    return Proc.start_outcome(proc)


def _healthy_outcome(proc: Proc) -> str:
    outcome = Proc.start_outcome(proc)
    if outcome == "ok" and proc.healthy is not True:
        return "failed" if proc.healthy is False and proc.health_failures > 1 else "pending"
    return outcome
