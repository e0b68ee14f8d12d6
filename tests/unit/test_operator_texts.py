"""Operator-facing texts built by pure functions: unknown names, suggestions."""

from __future__ import annotations

from twinvisor.config.suggest import no_such_program


def test_no_such_program_suggests_the_nearest_name() -> None:
    known = ["web", "worker", "web:0", "web:1"]
    assert no_such_program(["wbe"], known) == "no such program: wbe (did you mean 'web'?)"
    assert no_such_program(["wbe:*"], known) == "no such program: wbe:* (did you mean 'web'?)"
    text = no_such_program(["zzz"], ["a", "b"])
    assert text == "no such program: zzz; programs: a, b"
