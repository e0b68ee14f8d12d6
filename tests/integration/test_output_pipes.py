"""A program's output pipes (linux/children.py, OutputPipe): anonymous pipes the program holds
read-write, so that they outlive both twins without a FIFO on disk; a named FIFO where /proc
cannot open them."""

from __future__ import annotations

import os
import select
import signal
import tempfile
from collections.abc import Iterator

import pytest

from twinvisor.config.specs import LogSpec, ProgramSpec
from twinvisor.linux import children, kernel


@pytest.fixture
def pipes_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="tvo", dir="/tmp") as d:
        yield os.path.join(d, "pipes")


def talker(gate: str) -> ProgramSpec:
    """Prints one line once something is written to the FIFO `gate`, then sleeps."""
    return ProgramSpec(
        name="talker",
        program="talker",
        command=("sh", "-c", f'read line < "{gate}"; echo "$line"; exec sleep infinity'),
        stdout=LogSpec(path="talker.log"),  # captured (spawn only makes the pipe)
        stderr=LogSpec(path=None),
    )


def read_line(fd: int) -> bytes:
    ready, _, _ = select.select([fd], [], [], 30)
    assert ready, "no output within 30 s"
    return os.read(fd, 4096)


def spawn(pipes_dir: str, gate: str) -> children.Child:
    os.mkfifo(gate)
    return children.spawn(talker(gate), children.SpawnOptions(fifo_dir=pipes_dir))


def stop(child: children.Child, ours_open: bool = True) -> None:
    os.kill(child.pid, signal.SIGKILL)
    assert child.popen is not None
    child.popen.wait(30)
    if ours_open and child.stdout_fd is not None:
        os.close(child.stdout_fd)


def test_output_is_an_anonymous_pipe_the_program_holds_read_write(pipes_dir: str) -> None:
    gate = os.path.join(os.path.dirname(pipes_dir), "gate")
    child = spawn(pipes_dir, gate)
    try:
        assert child.stdout_fd is not None and not child.named_fifos
        assert os.readlink(f"/proc/{child.pid}/fd/1").startswith("pipe:[")
        with open(f"/proc/{child.pid}/fdinfo/1") as f:
            flags = int(next(line for line in f if line.startswith("flags:")).split()[1], 8)
        assert flags & os.O_ACCMODE == os.O_RDWR  # it is its own reader: never EPIPE
        assert not os.path.exists(pipes_dir) or not os.listdir(pipes_dir)  # nothing on disk
        with open(gate, "w") as g:
            g.write("hello\n")
        assert read_line(child.stdout_fd) == b"hello\n"
    finally:
        stop(child)


def test_output_written_while_nobody_reads_is_read_through_proc(pipes_dir: str) -> None:
    # both twins dead: every read end of ours is closed; the program writes on, and a new
    # supervisor opens a new read end through /proc/PID/fd/1 and finds the line waiting
    gate = os.path.join(os.path.dirname(pipes_dir), "gate")
    child = spawn(pipes_dir, gate)
    try:
        assert child.stdout_fd is not None
        os.close(child.stdout_fd)
        with open(gate, "w") as g:
            g.write("while nobody listened\n")
        fd = children.open_program_end(child.pid, 1)
        assert fd is not None and not children.is_named_fifo(fd)
        try:
            assert read_line(fd) == b"while nobody listened\n"
        finally:
            os.close(fd)
        assert kernel.is_same_process(child.pid, child.start_ticks)  # no EPIPE killed it
    finally:
        stop(child, ours_open=False)


def test_without_proc_a_named_fifo_in_the_run_dir(
    pipes_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(children.OutputPipe, "create", classmethod(lambda cls: None))
    gate = os.path.join(os.path.dirname(pipes_dir), "gate")
    child = spawn(pipes_dir, gate)
    try:
        assert child.named_fifos and child.stdout_fd is not None
        assert os.listdir(pipes_dir) == [f"talker.out.{child.pid}"]
        assert children.is_named_fifo(child.stdout_fd)
        with open(gate, "w") as g:
            g.write("through the fifo\n")
        assert read_line(child.stdout_fd) == b"through the fifo\n"
    finally:
        stop(child)
