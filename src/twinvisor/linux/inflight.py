"""The chunk of a program's output between its pipe and its log file, kept where a SIGKILL of
the supervisor cannot take it.

The supervisor reads a chunk from a program's pipe (which takes it out of the pipe), then
writes it to the log file. Killed between the two, it lost that chunk: the pipe no longer
had it, the file never got it (a line missing from the middle of the log; under load a
preemption widens the moment to milliseconds). So the chunk is first copied here, a small
shared memory file (memfd) that the guard holds like the pipes, and cleared once written.
A new supervisor finds it and writes it before anything else read from that pipe, unless
the file shows it was written: the file's identity and size were noted with the chunk.

Exactly once, as far as a file can tell: written if the file (same device and inode) grew
past the noted size or was replaced since (rotation in the middle of the write); written
again if it did not grow. Only the supervisor of the same uid ever maps it: the guard hands
it back over its unix socket (SO_PEERCRED-checked), and every field is still checked as
untrusted input.
"""

from __future__ import annotations

import mmap
import os
import stat

SIZE = 72 * 1024  # the header, then one chunk (the supervisor reads at most 64 KiB at once)
HEADER = 4096
MAX_DATA = SIZE - HEADER
MAX_NAME = 2048
_MAGIC = b"TVIF1\0"
_FULL = 1
# header: magic, state byte, then little-endian u64s: dev, ino, size, name length, data
# length, and the stream byte (0 stdout, 1 stderr); the name after them
_INTS_AT = len(_MAGIC) + 1
_NAME_AT = _INTS_AT + 6 * 8


class Pending:
    """A chunk a previous supervisor read and may not have written."""

    __slots__ = ("data", "file", "name", "stream")

    def __init__(
        self, name: str, stream: str, file: tuple[int, int, int] | None, data: bytes
    ) -> None:
        self.name = name  # the program instance
        self.stream = stream  # "out" or "err"
        self.file = file  # (dev, ino, size) of its log file before the write; None: no file yet
        self.data = data

    def written(self, path: str) -> bool:
        """Whether the log file at `path` shows that the chunk reached it."""
        try:
            st = os.stat(path)
        except OSError:
            return False  # no file: created by the write, which did not happen
        if self.file is None:
            return st.st_size > 0
        dev, ino, size = self.file
        if (st.st_dev, st.st_ino) != (dev, ino):
            return True  # rotated (or replaced) since: the write had begun
        return st.st_size > size


class InFlight:
    """One slot: `put` before the write, `clear` after it."""

    def __init__(self, fd: int | None = None) -> None:
        """`fd`: the memfd a previous supervisor made (handed back by the guard); None, or
        one that is not what we made: a new one."""
        if fd is not None and not _usable(fd):
            os.close(fd)
            fd = None
        if fd is None:
            fd = os.memfd_create("twinvisor-inflight", os.MFD_CLOEXEC)
            os.ftruncate(fd, SIZE)
        self.fd = fd
        self._map = mmap.mmap(fd, SIZE)

    def put(self, name: str, stream: str, file: tuple[int, int, int] | None, data: bytes) -> bool:
        """Note the chunk before writing it; False (nothing noted) if it does not fit."""
        raw = name.encode(errors="surrogateescape")
        if len(data) > MAX_DATA or len(raw) > MAX_NAME:
            return False
        m = self._map
        m[HEADER : HEADER + len(data)] = data
        dev, ino, size = file if file is not None else (0, 0, 0)
        known = 0 if file is None else 1
        ints = (dev, ino, size, len(raw), len(data), (stream == "err") | known << 1)
        m[_INTS_AT:_NAME_AT] = b"".join(v.to_bytes(8, "little") for v in ints)
        m[_NAME_AT : _NAME_AT + len(raw)] = raw
        m[: len(_MAGIC)] = _MAGIC
        m[len(_MAGIC)] = _FULL  # last: a chunk is pending only once all of it is there
        return True

    def clear(self) -> None:
        self._map[len(_MAGIC)] = 0

    def pending(self) -> Pending | None:
        """What a previous supervisor left noted and not cleared; None if nothing (or if what
        is there does not hold together)."""
        m = self._map
        if m[: len(_MAGIC)] != _MAGIC or m[len(_MAGIC)] != _FULL:
            return None
        dev, ino, size, name_len, data_len, flags = (
            int.from_bytes(m[i : i + 8], "little") for i in range(_INTS_AT, _NAME_AT, 8)
        )
        if name_len > MAX_NAME or data_len > MAX_DATA or flags > 3:
            return None
        name = m[_NAME_AT : _NAME_AT + name_len].decode(errors="surrogateescape")
        stream = "err" if flags & 1 else "out"
        file = (dev, ino, size) if flags & 2 else None
        return Pending(name, stream, file, bytes(m[HEADER : HEADER + data_len]))

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)


def _usable(fd: int) -> bool:
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == SIZE and st.st_uid == os.geteuid()
