"""Program log files: what the supervisor does with the bytes it reads from children's pipes.

`LogFile` is the writing side (one per stream): size rotation, optional timestamps, a line cap,
and above all it never raises and never stops the daemon, whatever the disk does. A full disk
costs output, counted and marked in the file, never the supervisor or the child.

`tail_lines` and `follow` are the reading side, for the CLI's `logs` command, which reads the
files directly rather than asking the daemon.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import TracebackType

from twinvisor.config.specs import LogSpec
from twinvisor.linux import fsutil

MAX_LINE = 64 * 1024  # content bytes per line; longer lines are split, never buffered
PROBLEM_INTERVAL = 60.0  # at most one error report per file per this many clock seconds
CHECK_INTERVAL = 1.0  # how often (clock seconds) to check that the path still names our file
READ_CHUNK = 64 * 1024

_DIR_MODE = 0o750
# After these the fd itself is fine: keep it and simply retry on the next write. After any other
# error the fd is closed so that the next write starts again from open().
_KEEP_FD_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class LogFile:
    """One output stream of one program, written to `spec.path` (None: discarded).

    Dropped bytes are counted after framing (timestamps and line splits included), since those
    are the bytes that did not reach the file.
    """

    def __init__(
        self,
        spec: LogSpec,
        on_problem: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self._spec = spec
        self._on_problem = on_problem  # must not raise: it is called from write()
        self._clock = clock
        self._framer = _LineFramer(spec.timestamps, wallclock)
        self._fd: int | None = None
        self._size = 0  # our idea of the file size, resynced from fstat on open and each check
        self._ident: tuple[int, int] | None = None  # (device, inode) of the open file
        self._at_line_start = True  # the last byte we wrote was a newline (or we wrote none)
        self._closed = False
        self._last_check = 0.0
        self._last_report: float | None = None
        # failure bookkeeping
        self._dropped_total = 0
        self._written_total = 0  # bytes written to the file (framing included), for metrics
        self._unmarked = 0  # dropped bytes not yet announced by a gap marker in the file
        self._episode_dropped = 0  # dropped since writing last worked, for the recovery message
        self._failing = False
        self._announced = False  # on_problem was told about the current failure
        self._reason = ""
        if spec.path is not None:
            self._check_at_start()

    @property
    def path(self) -> str | None:
        return self._spec.path

    @property
    def written_bytes(self) -> int:
        """Total bytes written to the file (with timestamps, if framed), over this object's life."""
        return self._written_total

    def position(self) -> tuple[int, int, int] | None:
        """(device, inode, size) of the open file as the next write finds it; None: no file
        open yet (the first output creates it). Noted with a chunk in flight (inflight.py)."""
        if self._fd is None or self._ident is None:
            return None
        return (*self._ident, self._size)

    @property
    def dropped_bytes(self) -> int:
        """Total bytes that could not be written, over the life of this object."""
        return self._dropped_total

    def write(self, data: bytes) -> None:
        """Append `data`; never raises (on_problem hears about failures instead)."""
        if self._spec.path is None or self._closed or not data:
            return
        self._emit(self._framer.frame(data))

    def reopen(self) -> None:
        """Reopen the path, e.g. after logrotate moved the file away."""
        if self._spec.path is None or self._closed:
            return
        self._close_fd()
        self._emit(b"")

    def close(self) -> None:
        """Close the file; later writes are ignored."""
        self._close_fd()
        self._closed = True

    def __enter__(self) -> LogFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def _emit(self, out: bytes) -> None:
        """Write framed bytes, with a gap marker first if bytes were dropped before."""
        self._check_path()
        err = self._ensure_open()
        if err is None and self._unmarked:
            _, err = self._put(self._gap_marker())
            if err is None:
                self._unmarked = 0
        written = 0
        if err is None and out:
            written, err = self._put(out)
            self._written_total += written
        if err is not None:
            self._fail(err, len(out) - written)
        elif self._failing:
            self._recovered()

    def _put(self, buf: bytes) -> tuple[int, OSError | None]:
        """Write all of buf, rotating as needed; return (bytes written, error or None)."""
        view = memoryview(buf)
        done = 0
        try:
            while done < len(buf):
                if self._must_rotate(len(buf) - done):
                    self._rotate()
                fd = self._require_fd()
                limit = self._spec.max_bytes
                room = limit - self._size if limit > 0 else len(buf)
                n = os.write(fd, view[done : done + room])
                if n <= 0:  # never seen on a regular file; guard against spinning forever
                    raise OSError(errno.EIO, "write wrote nothing")
                done += n
                self._size += n
                self._at_line_start = view[done - 1] == 0x0A
        except OSError as e:
            return done, e
        return done, None

    def _must_rotate(self, pending: int) -> bool:
        # A non-empty file is rotated before it would exceed the limit; an empty one takes up to
        # max_bytes, so a single write larger than the limit is split across files.
        limit = self._spec.max_bytes
        return limit > 0 and self._size > 0 and self._size + pending > limit

    def _rotate(self) -> None:
        """x.log -> x.log.1 -> ... -> x.log.<backups> (oldest overwritten), then a fresh x.log."""
        path = self._require_path()
        backups = self._spec.backups
        if backups <= 0:
            # O_APPEND: after truncation, writes land at offset 0 again
            os.ftruncate(self._require_fd(), 0)
            self._size = 0
            return
        for i in range(backups - 1, 0, -1):
            _rename_if_exists(f"{path}.{i}", f"{path}.{i + 1}")
        _rename_if_exists(path, f"{path}.1")
        self._close_fd()
        self._open_fd()

    # -- opening and checking ------------------------------------------------------------

    def _check_at_start(self) -> None:
        """A bad path is reported at start, not at the first output; but a file that does
        not exist yet is created by the first output. Quiet programs leave no empty files,
        and a start of 1000 programs no longer creates 2000 inodes (ext4's allocator was a
        fifth of that start's CPU time, measured with perf)."""
        path = self._require_path()
        try:
            if os.path.lexists(path):
                self._open_fd()  # ours already: open it as before (and see what it is)
                return
            parent = os.path.dirname(path) or "."
            os.makedirs(parent, mode=_DIR_MODE, exist_ok=True)
            if not os.access(parent, os.W_OK | os.X_OK):
                code = errno.EROFS if os.statvfs(parent).f_flag & os.ST_RDONLY else errno.EACCES
                raise OSError(code, os.strerror(code), parent)
        except OSError as e:
            self._fail(e, 0)

    def _ensure_open(self) -> OSError | None:
        if self._fd is not None:
            return None
        try:
            self._open_fd()
        except OSError as e:
            return e
        return None

    def _open_fd(self) -> None:
        path = self._require_path()
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, mode=_DIR_MODE, exist_ok=True)
        fd = fsutil.open_log(path)
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        self._size = st.st_size
        self._ident = (st.st_dev, st.st_ino)
        self._fd = fd
        self._last_check = self._clock()

    def _check_path(self) -> None:
        """Reopen if the path no longer names our file (directory deleted, file replaced).

        A stat per write would be wasted work on the hot path, so this runs at most once per
        CHECK_INTERVAL of the clock; output written meanwhile goes to the old inode.
        """
        if self._fd is None:
            return
        now = self._clock()
        if now - self._last_check < CHECK_INTERVAL:
            return
        self._last_check = now
        try:
            mine = os.fstat(self._fd)
            st = os.stat(self._require_path())
        except OSError:
            self._close_fd()
            return
        if not _same_file(st, mine):
            self._close_fd()
        else:
            self._size = mine.st_size  # someone may have truncated it (copytruncate)

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            # a failing close() loses nothing more than the failed writes already did
            with contextlib.suppress(OSError):
                os.close(fd)

    def _require_fd(self) -> int:
        if self._fd is None:
            raise OSError(errno.EBADF, "log file not open")
        return self._fd

    def _require_path(self) -> str:
        path = self._spec.path
        if path is None:
            raise OSError(errno.EINVAL, "log discarded")
        return path

    # -- failure bookkeeping -------------------------------------------------------------

    def _fail(self, err: OSError, lost: int) -> None:
        self._dropped_total += lost
        self._unmarked += lost
        self._episode_dropped += lost
        self._failing = True
        self._reason = _describe(err, self._spec.path)
        if err.errno not in _KEEP_FD_ERRNOS:
            self._close_fd()
        now = self._clock()
        if self._last_report is None or now - self._last_report >= PROBLEM_INTERVAL:
            self._last_report = now
            self._announced = True
            self._on_problem(
                f"log {self._spec.path}: {self._reason}; output is being dropped "
                f"({self._dropped_total} bytes so far)"
            )

    def _recovered(self) -> None:
        # Only announce recovery of a failure that was announced: a short failure inside the
        # throttle window stays quiet (its gap marker in the file still tells the story).
        if self._announced:
            self._on_problem(
                f"log {self._spec.path}: writing again after {self._episode_dropped} bytes "
                f"dropped ({self._reason})"
            )
        self._failing = False
        self._announced = False
        self._episode_dropped = 0

    def _gap_marker(self) -> bytes:
        # on a line of its own, even if the drop cut a line in half
        lead = "" if self._at_line_start else "\n"
        return f"{lead}[twinvisor: {self._unmarked} bytes dropped: {self._reason}]\n".encode()


class _LineFramer:
    """Adds timestamps at line starts and splits over-long lines; keeps state across writes."""

    def __init__(self, timestamps: bool, wallclock: Callable[[], float]) -> None:
        self._timestamps = timestamps
        self._wallclock = wallclock
        self._line_len = 0  # content bytes of the current (unterminated) line so far

    def frame(self, data: bytes) -> bytes:
        if not self._timestamps and self._line_len + len(data) <= MAX_LINE:
            # Fast path (the common case): nothing to insert.
            nl = data.rfind(b"\n")
            self._line_len = len(data) - nl - 1 if nl >= 0 else self._line_len + len(data)
            return data
        stamp = _timestamp(self._wallclock()) if self._timestamps else b""
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            if self._line_len >= MAX_LINE and data[pos] != 0x0A:
                out.append(b"\n")  # the cap: end this line here, the rest is a new line
                self._line_len = 0
            if self._line_len == 0:
                out.append(stamp)
            pos = self._take_line_piece(data, pos, out)
        return b"".join(out)

    def _take_line_piece(self, data: bytes, pos: int, out: list[bytes]) -> int:
        """Append the rest of the current line (up to the cap) to out; return the new pos."""
        room = MAX_LINE - self._line_len
        nl = data.find(b"\n", pos, pos + room + 1)
        if nl >= 0:
            out.append(data[pos : nl + 1])
            self._line_len = 0
            return nl + 1
        end = min(len(data), pos + room)
        out.append(data[pos:end])
        self._line_len += end - pos
        return end


def _timestamp(t: float) -> bytes:
    dt = datetime.fromtimestamp(t, UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z ".encode()


def _describe(err: OSError, path: str | None) -> str:
    reason = err.strerror or str(err)
    # makedirs/rename failures name another path; say which, or the message is a riddle
    if err.filename is not None and err.filename != path:
        reason += f" ({err.filename})"
    return reason


def _rename_if_exists(src: str, dst: str) -> None:
    # a missing backup (or a log moved away by someone else) is not an error
    with contextlib.suppress(FileNotFoundError):
        os.rename(src, dst)


# -- reading side, for the CLI ---------------------------------------------------------------


def tail_lines(path: str, n: int, *, chunk: int = READ_CHUNK) -> list[bytes]:
    """The last n lines of path, each with its b"\\n" (the last one may lack it).

    Reads backwards from the end in `chunk`-sized pieces, so a huge file costs only its tail.
    """
    if n <= 0:
        return []
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        pieces: list[bytes] = []
        newlines = 0
        # n+1 newlines guarantee the first of the n lines is complete, whether or not the
        # file ends with a newline
        while pos > 0 and newlines <= n:
            step = min(chunk, pos)
            pos -= step
            f.seek(pos)
            piece = f.read(step)
            pieces.append(piece)
            newlines += piece.count(b"\n")
    return _split_lines(b"".join(reversed(pieces)))[-n:]


def _split_lines(data: bytes) -> list[bytes]:
    # not bytes.splitlines(): that also splits on \r and friends, which a log line may contain
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def follow(
    path: str,
    poll: float = 0.2,
    stop: threading.Event | None = None,
    *,
    from_start: bool = False,
) -> Iterator[bytes]:
    """Yield data appended to path, like `tail -F`, until `stop` is set.

    Starts at the current end (or the beginning with from_start). Survives rotation: when the
    path names a new file, the old one is drained first, then the new one is read from its
    start; a truncated file is read again from its start. A missing file is waited for.
    Polling is fine here: this is a CLI, not the daemon.
    """
    stop = stop or threading.Event()
    try:
        f = io.FileIO(path, "rb")
    except FileNotFoundError:
        # it did not exist when we started, so all of it is new: read it from the start
        waited = _open_when_present(path, poll, stop)
        if waited is None:
            return
        f = waited
    else:
        if not from_start:
            f.seek(0, os.SEEK_END)
    try:
        while not stop.is_set():
            yield from _drain(f)
            new = _replacement(path, f)
            if new is not None:
                # the writer may have appended to the old file between our read and its rename;
                # swap first so that the outer finally closes `new` if we are closed meanwhile
                old, f = f, new
                try:
                    yield from _drain(old)
                finally:
                    old.close()
            elif os.fstat(f.fileno()).st_size < f.tell():
                f.seek(0)  # truncated in place (backups=0, copytruncate)
            else:
                stop.wait(poll)
        yield from _drain(f)  # whatever arrived before the stop
    finally:
        f.close()


def _open_when_present(path: str, poll: float, stop: threading.Event) -> io.FileIO | None:
    while not stop.is_set():
        try:
            return io.FileIO(path, "rb")
        except FileNotFoundError:
            stop.wait(poll)
    return None


def _drain(f: io.FileIO) -> Iterator[bytes]:
    while data := f.read(READ_CHUNK):
        yield data


def _replacement(path: str, f: io.FileIO) -> io.FileIO | None:
    """The new file at path if path no longer names f (rotated away), else None."""
    try:
        st = os.stat(path)
        if _same_file(st, os.fstat(f.fileno())):
            return None
        return io.FileIO(path, "rb")
    except FileNotFoundError:
        return None  # between the rename and the re-create: keep reading the old one


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
