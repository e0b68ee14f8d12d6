"""priority in the pure dependency functions: orders what depends_on leaves free, never
contradicts it, never pulls a program in."""

from __future__ import annotations

from twinvisor.core.deps import effective_priorities, start_levels, stop_levels


def test_priority_orders_free_programs() -> None:
    graph: dict[str, list[str]] = {"a": [], "b": [], "c": [], "d": []}
    prio = {"a": 30, "b": 10, "c": 20, "d": 10}
    assert start_levels(graph, graph, prio) == [["b", "d"], ["c"], ["a"]]
    assert stop_levels(graph, graph, prio) == [["a"], ["c"], ["b", "d"]]
    # without priorities (or all equal) nothing changes: one level
    assert start_levels(graph, graph) == [["a", "b", "c", "d"]]
    assert start_levels(graph, graph, dict.fromkeys(graph, 999)) == [["a", "b", "c", "d"]]


def test_depends_on_raises_the_priority() -> None:
    graph = {"db": [], "app": ["db"], "cache": []}
    prio = {"db": 50, "app": 1, "cache": 10}
    assert effective_priorities(graph, prio) == {"db": 50, "app": 50, "cache": 10}
    assert start_levels(graph, graph, prio) == [["cache"], ["db"], ["app"]]


def test_priority_and_depends_on_never_deadlock() -> None:
    # p waits for lower q by priority; q needs r; r has the highest priority: with raised
    # priorities q counts as 9, so the order is p, r, q and every program starts
    graph = {"p": [], "q": ["r"], "r": []}
    prio = {"p": 5, "q": 1, "r": 9}
    levels = start_levels(graph, graph, prio)
    assert levels == [["p"], ["r"], ["q"]]
    # a cycle (rejected by the loader) still terminates
    cyclic = {"x": ["y"], "y": ["x"]}
    assert start_levels(cyclic, cyclic, {"x": 1, "y": 2}) == [["x", "y"]]


def test_only_the_requested_programs_are_ordered() -> None:
    graph: dict[str, list[str]] = {"a": [], "b": []}
    assert start_levels(graph, ["b"], {"a": 1, "b": 2}) == [["b"]]
