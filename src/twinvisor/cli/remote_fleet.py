"""One command on many hosts at once: an `ssh` per host, all read by one selector loop.

No thread per host: the loop reads every ssh's stdout and stderr as the bytes arrive, so a
line-streaming verb (`logs -f`) shows each host's lines as they come, prefixed with the host,
while the verbs whose answers are merged (`status`, `--json`) keep each host's output whole.
At most `parallel` ssh run at once (measured: 16 at once through one sshd, a jump host
say, lose some to its MaxStartups, 10 unauthenticated connections by default, as
`kex_exchange_identification: Connection closed`); the rest wait their turn.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from twinvisor.cli.remote_hosts import Target

Emit = Callable[["HostRun", bool, bytes], None]  # (host, is_stderr, one whole line)


@dataclass
class HostRun:
    target: Target
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    rc: int | None = None
    _partial: dict[bool, bytes] = field(default_factory=dict)
    _open: int = 0


def run_all(runs: list[HostRun], parallel: int, emit: Emit | None) -> None:
    """Run every host's ssh to its end; `emit` gets each line as it arrives (None: keep)."""
    waiting = list(reversed(runs))
    with selectors.DefaultSelector() as sel:
        running = 0
        try:
            while waiting or running:
                while waiting and running < parallel:
                    running += _start(sel, waiting.pop())
                for key, _ in sel.select():
                    run, is_err = key.data
                    if _read(sel, key.fd, run, is_err, emit):
                        running -= 1
        finally:
            _stop_all(runs)


def _start(sel: selectors.BaseSelector, run: HostRun) -> int:
    try:
        proc = subprocess.Popen(
            run.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as e:  # no ssh client at all: every host fails the same way
        run.err += f"cannot run {run.argv[0]}: {e.strerror}\n".encode()
        run.rc = 255
        return 0
    run.proc = proc
    assert proc.stdout is not None and proc.stderr is not None
    for stream, is_err in ((proc.stdout, False), (proc.stderr, True)):
        os.set_blocking(stream.fileno(), False)
        sel.register(stream.fileno(), selectors.EVENT_READ, (run, is_err))
    run._open = 2
    return 1


def _read(
    sel: selectors.BaseSelector, fd: int, run: HostRun, is_err: bool, emit: Emit | None
) -> bool:
    """Take what one pipe has; True once the host's ssh has closed both pipes and exited."""
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return False
    if data:
        (run.err if is_err else run.out).extend(data)
        if emit is not None:
            _emit_lines(run, is_err, data, emit)
        return False
    sel.unregister(fd)
    rest = run._partial.pop(is_err, b"")
    if emit is not None and rest:
        emit(run, is_err, rest + b"\n")
    run._open -= 1
    if run._open:
        return False
    assert run.proc is not None
    run.rc = run.proc.wait()  # both pipes at EOF: ssh is exiting
    _close(run.proc)
    return True


def _emit_lines(run: HostRun, is_err: bool, data: bytes, emit: Emit) -> None:
    *lines, rest = (run._partial.get(is_err, b"") + data).split(b"\n")
    run._partial[is_err] = rest
    for line in lines:
        emit(run, is_err, line + b"\n")


def _close(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _stop_all(runs: list[HostRun]) -> None:
    """After Ctrl-C (or an error): no ssh outlives the command, none is left unwaited."""
    for run in runs:
        if run.proc is not None and run.rc is None:
            run.proc.terminate()
            run.rc = run.proc.wait()
            _close(run.proc)


def prefixer(width: int) -> Emit:
    """Lines written as they come, `HOST  line`, stdout to stdout and stderr to stderr."""

    def emit(run: HostRun, is_err: bool, line: bytes) -> None:
        stream = sys.stderr.buffer if is_err else sys.stdout.buffer
        stream.write(run.target.name.ljust(width).encode() + b"  " + line)
        stream.flush()

    return emit
