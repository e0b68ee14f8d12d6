"""The console writer against real pipes: whole lines only, prefixed or JSON, a reader that
stops reading costs counted drops (never a blocked writer), and tee(2) peeks without consuming."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator

import pytest

from twinvisor.linux.console import Console, ConsoleStream, PipePeek, open_nonblocking


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe2(os.O_CLOEXEC)
    yield r, w
    for fd in (r, w):
        os.close(fd)


def read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    try:
        while chunk := os.read(fd, 1 << 20):
            out += chunk
    except BlockingIOError:
        pass
    return out


def test_whole_prefixed_lines_per_stream_and_the_tail_at_the_end(pipe: tuple[int, int]) -> None:
    r, w = pipe
    console = Console(open_nonblocking(w))
    web = ConsoleStream(console, "web", "stdout", False, width=6)
    db = ConsoleStream(console, "db", "stdout", False, width=6)
    web.write(b"hel", source=7)
    db.write(b"one\ntw", source=8)
    web.write(b"lo\nwor", source=7)  # the unfinished "wor" waits for its newline
    db.end(8)
    web.end(7)
    assert read_all(r) == b"db     | one\nweb    | hello\ndb     | tw\nweb    | wor\n"
    os.close(console.fd)


def test_json_lines(pipe: tuple[int, int]) -> None:
    r, w = pipe
    console = Console(open_nonblocking(w))
    ConsoleStream(console, "j", "stderr", True, wallclock=lambda: 0.5).write(b"caf\xc3\xa9\n")
    assert json.loads(read_all(r)) == {
        "time": "1970-01-01T00:00:00.500Z",
        "program": "j",
        "stream": "stderr",
        "line": "café",
    }
    os.close(console.fd)


def test_a_reader_that_stops_costs_counted_drops_never_a_block(pipe: tuple[int, int]) -> None:
    r, w = pipe
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    console = Console(open_nonblocking(w), limit=64 * 1024)
    wanted: list[bool] = []
    console.on_pending = wanted.append
    flood = ConsoleStream(console, "f", "stdout", False)
    for i in range(10_000):  # ~ 400 KB into a 4 KB pipe nobody reads: returns at once
        flood.write(f"{i:08d} {'x' * 30}\n".encode())
    assert wanted == [True]  # the shell is asked to watch for writability
    assert flood.dropped_bytes > 0 and console.dropped_lines > 0
    received = b""
    while console.pending:  # the reader is back: what was kept arrives, then the notice
        received += read_all(r)
        console.flush()
    received += read_all(r)
    assert wanted == [True, False]
    lines = received.decode().splitlines()
    assert lines[-1].startswith(f"[twinvisor] console: {console.dropped_lines} lines")
    numbers = [int(line.split(" | ")[1].split()[0]) for line in lines[:-1]]
    assert numbers == list(range(len(numbers)))  # whole lines, in order, the first ones kept
    os.close(console.fd)


def test_peek_leaves_the_bytes_in_the_pipe(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.set_blocking(r, False)
    peek = PipePeek()
    assert peek.peek(r) == b""  # empty, a writer still there
    os.write(w, b"a line\npart")
    assert peek.peek(r) == b"a line\npart"
    assert os.read(r, 7) == b"a line\n"  # consumed only now
    assert peek.peek(r) == b"part"
    peek.close()
