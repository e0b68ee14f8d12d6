"""The guard's wire on C modules only (issue 16): twin/cjson.py is json.loads/json.dumps on the
stdlib's own `_json`, and twin/protocol.py passes fds on `_socket` as socket.send_fds and
recv_fds do, the fds arriving close-on-exec. Real socketpairs, real fds."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinvisor.twin import bytecode, cjson, protocol

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_cjson_reads_and_writes_what_json_does(value: object) -> None:
    text = cjson.dumps(value)
    assert json.loads(text) == value
    assert cjson.loads(text) == value
    assert cjson.loads(json.dumps(value, indent=2)) == value  # whitespace between tokens
    assert cjson.loads(text.encode()) == value


@pytest.mark.parametrize(
    "text",
    ["", " ", "{", '{"a":1} x', "NaN", "[Infinity]", "-Infinity", "01", '{"a" 1}', "[1,]"],
)
def test_cjson_refuses_what_is_not_one_json_document(text: str) -> None:
    with pytest.raises(ValueError):
        cjson.loads(text)


def test_cjson_refuses_bad_bytes_deep_nesting_and_nan() -> None:
    with pytest.raises(ValueError):
        cjson.loads(b"\xff")
    with pytest.raises(ValueError):
        cjson.loads("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError):
        cjson.dumps(float("nan"))
    with pytest.raises(TypeError):
        cjson.dumps({"a": object()})


def _cloexec(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def test_messages_carry_fds_that_arrive_close_on_exec() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    os.set_inheritable(r, True)
    try:
        protocol.send_message(a, {"op": "hold", "key": "x"}, [r, w])
        got = protocol.recv_message(b)
        assert got is not None
        message, fds = got
        assert message == {"op": "hold", "key": "x"}
        assert len(fds) == 2 and all(_cloexec(fd) for fd in fds)
        os.write(fds[1], b"through the copy")
        assert os.read(r, 100) == b"through the copy"
        for fd in fds:
            os.close(fd)
        protocol.send_message(a, {"op": "ping"})
        assert protocol.recv_message(b) == ({"op": "ping"}, [])
        a.send(b"not json")  # a peer that sends anything: an empty message, not an error
        assert protocol.recv_message(b) == ({}, [])
        assert protocol.peer(b) == (os.getpid(), os.geteuid())
        a.close()
        assert protocol.recv_message(b) is None
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


def test_the_guard_command_runs_isolated_from_the_callers_directory() -> None:
    argv = protocol.command("guard", "/etc/x.toml")
    assert argv[0] == sys.executable and argv[1].startswith("-IS")
    assert argv[4] == bytecode.package_root()
    assert os.path.isdir(os.path.join(argv[4], "twinvisor"))
    assert argv[5:] == ["twinvisor", "guard", "-c", "/etc/x.toml"]


def test_the_supervisor_command_runs_without_runpy() -> None:
    argv = protocol.command("daemon", "/etc/x.toml")
    flags = bytecode.interpreter_flags()  # -OO when its optimized bytecode is ready
    assert "-m" not in argv and argv[1 : len(flags) + 1] == flags
    rest = argv[len(flags) + 1 :]
    assert rest[:3] == ["-P", "-c", protocol.DAEMON_BOOT]
    assert rest[3:] == ["twinvisor", "daemon", "-c", "/etc/x.toml"]
    # the boot line runs entry.main, which refuses anything but that argv (exit 2, no traceback)
    bad = subprocess.run(
        [sys.executable, "-P", "-c", protocol.DAEMON_BOOT, "twinvisor", "daemon", "--x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "unexpected arguments" in bad.stderr
    assert "Traceback" not in bad.stderr
