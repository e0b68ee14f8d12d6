"""`depends_on` between programs as pure graph functions: start levels, stop levels, closures.

`priority` (supervisord's) orders what depends_on leaves free: lower first, stopping in
reverse; it only orders, never pulls a program in (starting one program starts only what it
depends on). See effective_priorities for how the two combine.

Programs (not instances) are the nodes; the config loader has already rejected unknown names
and cycles, but these functions still terminate on a cycle (the rest goes in a last level).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Graph = Mapping[str, Iterable[str]]  # program -> the programs it depends on


def requirements(graph: Graph, programs: Iterable[str]) -> set[str]:
    """`programs` and everything they depend on, transitively."""
    seen: set[str] = set()
    todo = list(programs)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(graph.get(p, ()))
    return seen


def dependents(graph: Graph, programs: Iterable[str]) -> set[str]:
    """`programs` and everything that depends on them, transitively."""
    reverse: dict[str, set[str]] = {}
    for p, deps in graph.items():
        for d in deps:
            reverse.setdefault(d, set()).add(p)
    return requirements(reverse, programs)


def effective_priorities(graph: Graph, priority: Mapping[str, int]) -> dict[str, int]:
    """Each program's priority raised to the highest of what it depends on, transitively:
    lower priorities start first, and a program never waits for one that waits for it."""
    eff = {p: priority.get(p, 0) for p in graph}
    changed = True
    rounds = 0
    while changed and rounds <= len(eff):  # bounded: a cycle cannot loop forever
        changed, rounds = False, rounds + 1
        for p, needs in graph.items():
            top = max((eff.get(d, priority.get(d, 0)) for d in needs), default=eff[p])
            if top > eff[p]:
                eff[p], changed = top, True
    return eff


def start_levels(
    graph: Graph, programs: Iterable[str], priority: Mapping[str, int] | None = None
) -> list[list[str]]:
    """Group `programs` into levels: each level depends only on earlier ones, and with
    `priority`, holds only the lowest (effective) priority still pending."""
    pending = set(programs)
    eff = effective_priorities(graph, priority) if priority else {}
    levels: list[list[str]] = []
    done: set[str] = set()
    while pending:
        free = [p for p in pending if all(d in done or d not in pending for d in graph.get(p, ()))]
        if eff and free:
            low = min(eff.get(p, 0) for p in pending)
            free = [p for p in free if eff.get(p, 0) == low] or free
        level = sorted(free) if free else sorted(pending)  # a cycle: the rest together
        levels.append(level)
        done.update(level)
        pending.difference_update(level)
    return levels


def stop_levels(
    graph: Graph, programs: Iterable[str], priority: Mapping[str, int] | None = None
) -> list[list[str]]:
    """Dependents (and higher priorities) stop before what they depend on."""
    return list(reversed(start_levels(graph, programs, priority)))
