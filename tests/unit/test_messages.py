"""The control API's Structs are its wire format: field names, order and values as documented in
docs/api.md (scripts and `curl` users read them)."""

from __future__ import annotations

import msgspec

from twinvisor.control.messages import (
    ErrorReply,
    Outcome,
    ProcessState,
    ShutdownReply,
    StatusReply,
    StatusRow,
    UpgradeReply,
    VerbReply,
)

ROW_FIELDS = [
    "name",
    "program",
    "state",
    "group",
    "pid",
    "uptime",
    "started",
    "restarts",
    "failures",
    "given_up",
    "type",
    "completed",
    "last_exit",
    "exit_code",
    "error",
    "stdout_file",
    "stderr_file",
    "stdout_console",
    "stderr_console",
    "redirect_stderr",
    "dropped_bytes",
    "status_text",
    "healthy",
    "previous_pid",
    "reloading",
    "main_pid",
    "listen_addrs",
]


def wire(value: object) -> object:
    return msgspec.json.decode(msgspec.json.encode(value))


def test_a_status_row_has_every_field_in_order_with_plain_values() -> None:
    row = StatusRow(name="web:0", program="web", state=ProcessState.RUNNING, pid=7, uptime=1.5)
    data = wire(row)
    assert isinstance(data, dict) and list(data) == ROW_FIELDS
    assert data["state"] == "RUNNING" and data["pid"] == 7 and data["listen_addrs"] == []
    assert data["healthy"] is None and data["given_up"] is False


def test_a_row_from_an_older_daemon_decodes_and_unknown_fields_are_ignored() -> None:
    raw = b'{"programs": [{"name": "a", "program": "a", "state": "FATAL", "uptime": 3, "x": 1}]}'
    (row,) = msgspec.json.decode(raw, type=StatusReply).programs
    assert row.state is ProcessState.FATAL and row.uptime == 3.0 and row.pid is None


def test_outcomes_are_the_api_words() -> None:
    reply = VerbReply(
        ok=False, results={"a": Outcome.OK, "b": Outcome.TIMEOUT, "c": Outcome.SKIPPED}
    )
    assert wire(reply) == {
        "ok": False,
        "results": {"a": "ok", "b": "timeout", "c": "skipped"},
        "already": [],
        "programs": [],
    }
    down = ShutdownReply(ok=True, results={"a": Outcome.OK})
    assert wire(down) == {"ok": True, "results": {"a": "ok"}, "leftover": []}


def test_optional_details_stay_off_the_wire() -> None:
    assert wire(ErrorReply(error="no")) == {"error": "no"}
    assert wire(ErrorReply(error="no such program: x", unknown=["x"])) == {
        "error": "no such program: x",
        "unknown": ["x"],
    }
    assert wire(UpgradeReply(ok=True, old_pid=5)) == {"ok": True, "old_pid": 5}
    assert wire(UpgradeReply(ok=False, error="why")) == {"ok": False, "error": "why"}
