"""`depends_on` between programs as pure graph functions: start levels, stop levels, closures.

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


def start_levels(graph: Graph, programs: Iterable[str]) -> list[list[str]]:
    """Group `programs` into levels: each level depends only on earlier ones."""
    pending = set(programs)
    levels: list[list[str]] = []
    done: set[str] = set()
    while pending:
        level = sorted(
            p for p in pending if all(d in done or d not in pending for d in graph.get(p, ()))
        )
        if not level:  # a cycle: start the rest together rather than never
            level = sorted(pending)
        levels.append(level)
        done.update(level)
        pending.difference_update(level)
    return levels


def stop_levels(graph: Graph, programs: Iterable[str]) -> list[list[str]]:
    """Dependents stop before what they depend on."""
    return list(reversed(start_levels(graph, programs)))
