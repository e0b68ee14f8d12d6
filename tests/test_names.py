"""Name patterns as supervisorctl users type them, shared by the API and the CLI's own verbs."""

from __future__ import annotations

import pytest

from twinvisor.specs import match_instances

INSTANCES = [("web:0", "web"), ("web:1", "web"), ("worker", "worker"), ("webby", "webby")]


@pytest.mark.parametrize(
    ("patterns", "names", "unknown"),
    [
        (["all"], ["web:0", "web:1", "worker", "webby"], []),
        (["web"], ["web:0", "web:1"], []),
        (["web:*"], ["web:0", "web:1"], []),
        (["web:1"], ["web:1"], []),
        (["web:1", "web"], ["web:1", "web:0"], []),  # no duplicates, first mention first
        (["worker", "nope", "web:7"], ["worker"], ["nope", "web:7"]),
        (["we"], [], ["we"]),  # no prefix matching
        ([], [], []),
    ],
)
def test_match_instances(patterns: list[str], names: list[str], unknown: list[str]) -> None:
    assert match_instances(patterns, INSTANCES) == (names, unknown)
