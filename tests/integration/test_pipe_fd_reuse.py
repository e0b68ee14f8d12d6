"""A program's pipe is closed when it has been read to its end; its fd number is then free for
whatever the supervisor opens next. The drain at the program's exit must not read that number
again: a control connection that got it lost its request into the program's log, and the CLI
waited 10 s for an answer (test_kill failed 1 run in 14 under load)."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from pathlib import Path

from twinvisor.config.specs import LogSpec, ProgramSpec
from twinvisor.linux import children
from twinvisor.linux.logs import LogFile
from twinvisor.supervisor.watch import ChildWatcher, Streams


def test_the_exit_drain_does_not_read_a_reused_fd_number() -> None:
    with tempfile.TemporaryDirectory(prefix="tvr", dir="/tmp") as d:
        asyncio.run(_scenario(Path(d)))


async def _scenario(d: Path) -> None:
    spec = ProgramSpec(
        name="p",
        program="p",
        command=("sh", "-c", "echo out; echo err >&2"),
        stdout=LogSpec(path=str(d / "p.out")),
        stderr=LogSpec(path=str(d / "p.err")),
    )
    exits: list[tuple[str, int]] = []
    sinks = {"p": Streams(LogFile(spec.stdout, print), LogFile(spec.stderr, print))}
    loop = asyncio.get_running_loop()
    watcher = ChildWatcher(
        loop, lambda n, pid, code, sig: exits.append((n, pid)), sinks, lambda: None, str(d), {}
    )
    child = children.spawn(spec, children.SpawnOptions(fifo_dir=str(d / "pipes")))
    assert child.popen is not None and child.stderr_fd is not None
    watcher._watch_output("p", child)  # the pipes only: the exit is driven by hand below
    child.popen.wait(30)
    stdout_fd, stderr_fd = child.stdout_fd, child.stderr_fd
    assert stdout_fd is not None
    deadline = loop.time() + 10
    while not (_closed(stdout_fd) and _closed(stderr_fd)):  # read to their ends and closed
        assert loop.time() < deadline, "the pipes were not read to their end within 10 s"
        await asyncio.sleep(0.01)
    # the number is free: a control connection gets it (the lowest free number: most often
    # by itself), with a request waiting in it
    ours, peer = socket.socketpair()
    if peer.fileno() == stderr_fd:
        ours, peer = peer, ours
    ours.setblocking(False)  # as asyncio's accepted connections are
    peer.setblocking(False)  # (it may have the other pipe's old number)
    dup = ours.fileno() != stderr_fd
    if dup:
        os.dup2(ours.fileno(), stderr_fd)
    peer.sendall(b"GET /status HTTP/1.1\r\n\r\n")
    try:
        assert watcher._poll_exit("p", child)  # the exit, after the pipes' ends
        assert exits == [("p", child.pid)]
        try:
            left = os.read(stderr_fd, 100)
        except BlockingIOError:
            left = b""  # read by the drain, into the program's log
        assert left == b"GET /status HTTP/1.1\r\n\r\n"  # still the connection's own
        assert (d / "p.err").read_bytes() == b"err\n" and (d / "p.out").read_bytes() == b"out\n"
    finally:
        if dup:
            os.close(stderr_fd)
        ours.close()
        peer.close()
        for sink in sinks["p"].stdout, sinks["p"].stderr:
            sink.close()


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False
