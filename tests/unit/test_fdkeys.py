"""supervisor.fdkeys: the names the guard holds fds under read back as what they were built from."""

from __future__ import annotations

from twinvisor.supervisor import fdkeys


def test_a_listen_key_gives_back_its_address_and_no_other_key_does() -> None:
    for addr in ("127.0.0.1:8080", "[::1]:443", "unix:/run/app.sock", "tcp:0.0.0.0:80"):
        assert fdkeys.listen_addr(fdkeys.listen(addr)) == addr
    for other in (fdkeys.CONTROL, fdkeys.pipe("web", 42, "out"), fdkeys.pipe("listen", 1, "err")):
        assert fdkeys.listen_addr(other) is None


def test_pipe_keys_differ_by_program_generation_and_stream() -> None:
    keys = {fdkeys.pipe(n, p, s) for n in ("a", "b") for p in (1, 2) for s in ("out", "err")}
    assert len(keys) == 8


def test_pipe_keys_read_back_and_others_are_none() -> None:
    for name in ("web", "web:1", "group:web:2", "a b"):
        for stream in ("out", "err"):
            assert fdkeys.pipe_of(fdkeys.pipe(name, 4242, stream)) == (name, 4242, stream)
    for key in (
        fdkeys.CONTROL,
        fdkeys.INFLIGHT,
        fdkeys.listen("127.0.0.1:80"),
        "pipe:",
        "pipe:web",
        "pipe:web:x:out",
        "pipe:web:12:both",
        "pipe::12:out",
    ):
        assert fdkeys.pipe_of(key) is None, key
