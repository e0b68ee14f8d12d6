"""`status` reads the daemon's answer with json (cli/status_lines.py), not msgspec: the rows it
reads must be the StatusRow Structs the daemon encoded, field for field, and a broken answer
must be refused as strictly as msgspec refuses it."""

from __future__ import annotations

import msgspec
import pytest

from twinvisor.cli.status_lines import FIELDS, StatusAnswer
from twinvisor.control.messages import DaemonInfo, ProcessState, StatusReply, StatusRow
from twinvisor.errors import ControlError


def test_the_fields_and_defaults_are_the_structs() -> None:
    struct_fields = msgspec.structs.fields(StatusRow)
    assert [f.name for f in struct_fields] == [name for name, _kind, _null, _default in FIELDS]
    for f, (_name, _kind, nullable, default) in zip(struct_fields, FIELDS, strict=True):
        if f.required:
            assert not nullable
            continue
        given = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
        assert (list(default) if isinstance(default, tuple) else default) == given, f.name


def every_field_set() -> StatusRow:
    return StatusRow(
        name="web:1",
        program="web",
        state=ProcessState.RUNNING,
        group="front",
        pid=41,
        uptime=12.5,
        started=1_700_000_000.25,
        restarts=3,
        failures=1,
        given_up=True,
        type="oneshot",
        completed=True,
        last_exit="exit 1",
        exit_code=1,
        error="boom",
        stdout_file="/l/out",
        stderr_file="/l/err",
        stdout_console="stdout",
        stderr_console="stderr",
        redirect_stderr=True,
        dropped_bytes=9,
        status_text="warming",
        healthy=False,
        previous_pid=40,
        reloading=True,
        main_pid=42,
        listen_addrs=["tcp://127.0.0.1:8080"],
    )


def test_rows_read_back_as_msgspec_reads_them() -> None:
    rows = [every_field_set(), StatusRow(name="db", program="db", state=ProcessState.STOPPED)]
    reply = StatusReply(programs=rows, daemon=DaemonInfo(pid=7, config="/etc/t.toml"))
    answer = StatusAnswer(msgspec.json.encode(reply))
    assert [r.as_json() for r in answer.programs] == msgspec.to_builtins(rows)
    assert answer.programs[0].state is ProcessState.RUNNING
    assert (answer.pid, answer.config, answer.config_problems) == (7, "/etc/t.toml", [])


def test_an_older_daemons_row_gets_the_defaults_and_unknown_fields_are_ignored() -> None:
    raw = b'{"programs": [{"name": "a", "program": "a", "state": "FATAL", "uptime": 3, "x": 1}]}'
    (line,) = StatusAnswer(raw).programs
    (row,) = msgspec.json.decode(raw, type=StatusReply).programs
    assert line.as_json() == msgspec.to_builtins(row)
    assert line.uptime == 3.0 and isinstance(line.uptime, float) and line.listen_addrs == []
    assert StatusAnswer(raw).pid is None


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"not json", "invalid JSON"),
        (b"[]", "the answer should be an object with a 'programs' list"),
        (b'{"programs": [1]}', "programs[0] should be an object"),
        (b'{"programs": [{"name": "a", "state": "RUNNING"}]}', "programs[0] has no 'program'"),
        (b'{"programs": [{"name": "a", "program": "a", "state": "NAPPING"}]}', "a process state"),
        (b'{"programs": [{"name": 5, "program": "a", "state": "STOPPED"}]}', "programs[0].name"),
        (
            b'{"programs": [{"name": "a", "program": "a", "state": "STOPPED", "pid": true}]}',
            "programs[0].pid should be int, not True",
        ),
        (
            b'{"programs": [{"name": "a", "program": "a", "state": "STOPPED", "restarts": null}]}',
            "programs[0].restarts should be int, not None",
        ),
        (
            b'{"programs": [{"name": "a", "program": "a", "state": "STOPPED", '
            b'"listen_addrs": [1]}]}',
            "programs[0].listen_addrs",
        ),
        (b'{"programs": [], "daemon": {"pid": "7", "config": "c"}}', "daemon.pid"),
        (b'{"programs": [], "daemon": []}', "daemon should be an object"),
    ],
)
def test_a_broken_answer_is_refused_naming_the_field(body: bytes, said: str) -> None:
    with pytest.raises(ControlError) as caught:
        StatusAnswer(body)
    assert said in str(caught.value)
    with pytest.raises(msgspec.DecodeError):  # msgspec refuses the same answers
        msgspec.json.decode(body, type=StatusReply)
