"""Name patterns as supervisorctl users type them, shared by the API and the CLI's own verbs."""

from __future__ import annotations

import pytest

from twinvisor.config.specs import match_instances

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


def test_status_table_shows_status_text_handover_and_errors() -> None:
    import msgspec

    from twinvisor.cli.render import status_table
    from twinvisor.control.messages import StatusRow

    base: dict[str, object] = {
        "pid": 7,
        "uptime": 65.0,
        "restarts": 1,
        "given_up": False,
        "healthy": None,
    }
    rows = [
        {
            **base,
            "name": "web",
            "program": "web",
            "state": "STARTING",
            "previous_pid": 5,
            "last_exit": None,
            "error": None,
            "status_text": "warming up",
        },
        {
            **base,
            "name": "db",
            "program": "db",
            "state": "BACKOFF",
            "given_up": True,
            "pid": None,
            "uptime": None,
            "last_exit": "exit 1",
            "error": "command not found: 'x'",
            "status_text": None,
            "previous_pid": None,
        },
    ]
    # as the daemon sends them, decoded as the CLI does
    web, db = status_table(msgspec.convert(rows, list[StatusRow])).splitlines()[1:]
    assert "STARTING (pid 5 still serving)" in web and '"warming up"' in web and "0:01:05" in web
    assert "BACKOFF (gave up, slow retry)" in db and "exit 1; command not found: 'x'" in db
