"""Program patterns in requests (`web`, `web:*`, `web:0`, `GROUP:*`, `all`) -> instance names."""

from __future__ import annotations

from twinvisor.config.specs import match_instances
from twinvisor.supervisor.runtime import Runtime


def resolve_names(runtime: Runtime, patterns: list[str]) -> tuple[list[str], list[str]]:
    """Expand user patterns to instance names; returns (names, unknown patterns)."""
    procs = runtime.core.procs
    groups = {g.name: g.programs for g in runtime.config.groups}
    return match_instances(patterns, [(n, procs[n].spec.program) for n in runtime.names()], groups)
