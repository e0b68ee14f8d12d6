"""Program output on the daemon's own stdout/stderr (a container's console), one line at a time.

`Console` is one of the daemon's streams, shared by every program that writes there. It only
ever writes whole lines, from one process, so lines of two programs never mix mid-line; its fd
is non-blocking and what the reader (a terminal, `docker logs`) has not taken yet waits in a
bounded buffer: a flood, or a console nobody reads, costs dropped lines (counted, and announced
on the console once it flows again), never a blocked program or supervisor.

`ConsoleStream` is one program stream's view of it, with the interface of a `LogFile`: it
keeps the unfinished tail of a line until its newline comes and frames each line as
`name | text` (docker-compose, honcho) or as a JSON object (program, stream, time, line).

`PipePeek` reads a pipe without consuming it (tee(2)), so that the supervisor consumes exactly
the bytes it has written out: a supervisor killed in between leaves them in the pipe for the
next one (a line may then appear twice, never lost or cut).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec  # already the supervisor's codec: `json` would add its package and `re` patterns

CONSOLE_ENV = "TWINVISOR_CONSOLE_FDS"  # "OUT,ERR": the guard's console, handed to a supervisor
BUFFER_LIMIT = 1024 * 1024  # bytes waiting for a slow console before lines are dropped
MAX_LINE = 64 * 1024  # content bytes per line; longer ones are split
BATCH = 4096  # PIPE_BUF: a write this size or less reaches a pipe whole, never interleaved
PEEK = 65536


def open_nonblocking(fd: int) -> int:
    """A non-blocking fd for the stream `fd`. Reopening it through /proc gives a file
    description of our own, so O_NONBLOCK does not leak to whoever shares `fd` (the guard,
    a terminal); where that is refused (a pipe created by another uid, a socket) a dup with
    O_NONBLOCK set is the fallback."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode) or stat.S_ISSOCK(mode):
        # a file never blocks, and a reopened one would write from offset 0 over the rest;
        # a socket cannot be reopened, and is sent to with MSG_DONTWAIT
        return os.dup(fd)
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        pass
    new = os.dup(fd)
    with contextlib.suppress(OSError):
        os.set_blocking(new, False)
    return new


class Console:
    def __init__(self, fd: int, limit: int = BUFFER_LIMIT) -> None:
        self.fd = fd
        self._is_socket = _is_socket(fd)
        self._limit = limit
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._unannounced = (0, 0)  # (lines, bytes) dropped since the last announcement
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.on_pending: Callable[[bool], None] | None = None  # watch for writability or not
        self.broken = False  # EPIPE: nobody will ever read it; output is discarded
        self._watching = False  # on_pending was told True last

    @property
    def pending(self) -> bool:
        return bool(self._queue)

    def put(self, lines: bytes) -> bool:
        """Queue complete lines (and write what the console takes now). False: dropped."""
        if self.broken:
            return False
        if self._queued + len(lines) > self._limit:
            lost_lines, lost_bytes = self._unannounced
            self._unannounced = (lost_lines + lines.count(b"\n"), lost_bytes + len(lines))
            self.dropped_lines += lines.count(b"\n")
            self.dropped_bytes += len(lines)
            return False
        was_pending = self.pending
        if self._unannounced != (0, 0):  # the drops came before these lines: say so first
            self._queue_notice()
        self._queue.append(lines)
        self._queued += len(lines)
        if not was_pending:  # else the writer callback is on its way
            self.flush()
        return True

    def flush(self) -> None:
        """Write what the console takes without blocking; tell on_pending what is left."""
        while True:
            if not self._queue and self._unannounced != (0, 0):
                self._queue_notice()  # everything kept before the drops is out
            if not self._queue:
                break
            chunk = _batch(self._queue)
            n = self._write(chunk)
            if n is None:
                if not self.broken:
                    self._queue.appendleft(chunk)  # the console takes nothing now: later
                break
            self._queued -= n
            if n < len(chunk):  # the rest first next time, before anything else
                self._queue.appendleft(chunk[n:])
                break
        if self.on_pending is not None and self._watching != self.pending:
            self._watching = self.pending
            self.on_pending(self.pending)

    def _queue_notice(self) -> None:
        lines, size = self._unannounced
        note = f"[twinvisor] console: {lines} lines ({size} bytes) dropped, the reader was slow\n"
        self._queue.append(note.encode())
        self._queued += len(note)
        self._unannounced = (0, 0)

    def _write(self, data: bytes) -> int | None:
        """Bytes written, or None when the console takes nothing now."""
        try:
            if self._is_socket:
                return _send(self.fd, data)
            return os.write(self.fd, data)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EBADF, errno.EIO):
                self.broken = True  # the reader is gone: keep running, discard output
                self._queue.clear()
                self._queued = 0
            return None


def _send(fd: int, data: bytes) -> int:
    sock = socket.socket(fileno=fd)
    try:
        return sock.send(data, socket.MSG_DONTWAIT)
    finally:
        sock.detach()


def _is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def _batch(queue: deque[bytes]) -> bytes:
    """Whole queued chunks up to BATCH bytes (at least one chunk), popped from the queue."""
    parts = [queue.popleft()]
    size = len(parts[0])
    while queue and size + len(queue[0]) <= BATCH:
        size += len(queue[0])
        parts.append(queue.popleft())
    return b"".join(parts)


class ConsoleStream:
    """One stream of one program on a Console, with LogFile's interface."""

    def __init__(
        self,
        console: Console,
        name: str,
        stream: str,
        as_json: bool,
        width: int = 0,
        wallclock: Callable[[], float] | None = None,
    ) -> None:
        self._console = console
        self._name = name
        self._stream = stream
        self._json = as_json
        self._prefix = f"{name.ljust(width)} | ".encode()
        self._tails: dict[int, bytes] = {}  # per pipe: two generations may write at once
        self._wallclock = wallclock
        self._written = 0
        self._dropped = 0
        self._closed = False

    path: str | None = None

    @property
    def written_bytes(self) -> int:
        return self._written

    @property
    def dropped_bytes(self) -> int:
        return self._dropped

    def write(self, data: bytes, source: int = 0) -> None:
        """Bytes read from the pipe `source`; whole lines go out, the rest waits."""
        if self._closed or not data:
            return
        data = self._tails.pop(source, b"") + data
        end = data.rfind(b"\n") + 1
        complete, tail = data[:end], data[end:]
        if len(tail) >= MAX_LINE:  # no newline in sight: a line (or more) of its own
            complete, tail = complete + tail + b"\n", b""
        if tail:
            self._tails[source] = tail
        if complete:
            self._emit(complete)

    def end(self, source: int = 0) -> None:
        """The pipe is closed: an unfinished last line is still a line."""
        tail = self._tails.pop(source, b"")
        if tail:
            self._emit(tail + b"\n")

    def _emit(self, chunk: bytes) -> None:
        framed = b"".join(self._frame(line) for line in _lines(chunk))
        if self._console.put(framed):
            self._written += len(framed)
        else:
            self._dropped += len(framed)

    def _frame(self, line: bytes) -> bytes:
        if not self._json:
            return self._prefix + line + b"\n"
        record = {
            "time": _now(self._wallclock),
            "program": self._name,
            "stream": self._stream,
            "line": line.decode("utf-8", errors="replace"),
        }
        return msgspec.json.encode(record) + b"\n"  # UTF-8 as is, like ensure_ascii=False

    def reopen(self) -> None:
        pass  # nothing to reopen: the console is the daemon's own stream

    def close(self) -> None:
        for source in list(self._tails):
            self.end(source)
        self._closed = True


def _lines(chunk: bytes) -> list[bytes]:
    """Complete lines of `chunk` (which ends with a newline), without it, split at MAX_LINE."""
    out: list[bytes] = []
    for line in chunk[:-1].split(b"\n"):
        while len(line) > MAX_LINE:
            out.append(line[:MAX_LINE])
            line = line[MAX_LINE:]
        out.append(line)
    return out


def _now(wallclock: Callable[[], float] | None) -> str:
    t = wallclock() if wallclock is not None else datetime.now(UTC).timestamp()
    dt = datetime.fromtimestamp(t, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


# -- reading a pipe without consuming it -------------------------------------------------------

_SPLICE_F_NONBLOCK = 0x02


class PipePeek:
    """tee(2) into a private pipe: see what a pipe holds, consume it later with os.read."""

    def __init__(self) -> None:
        import ctypes  # here: made for the first console program only (ctypes + libffi)

        self._tee: Callable[[int, int, int, int], int] | None = None
        self._errno = ctypes.get_errno
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            tee = libc.tee
            tee.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint)
            tee.restype = ctypes.c_ssize_t
            self._tee = tee
        except (OSError, AttributeError):
            return  # no tee: the caller reads (and consumes) as before
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def peek(self, fd: int, size: int = PEEK) -> bytes | None:
        """What `fd` holds (b"": nothing now, or the end); None: cannot peek at it."""
        if self._tee is None:
            return None
        n = self._tee(fd, self._w, size, _SPLICE_F_NONBLOCK)
        if n < 0:
            err = self._errno()
            return b"" if err == errno.EAGAIN else None
        if n == 0:
            return b""
        parts: list[bytes] = []
        while n > 0:  # the private pipe was empty and holds all of it: no blocking here
            piece = os.read(self._r, n)
            parts.append(piece)
            n -= len(piece)
        return b"".join(parts)

    def close(self) -> None:
        if self._tee is not None:
            os.close(self._r)
            os.close(self._w)
            self._tee = None
