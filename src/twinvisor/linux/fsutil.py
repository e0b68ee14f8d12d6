"""Small file-system helpers: private dirs, atomic writes, pid files. Nothing here may raise
on a full disk where the caller is the daemon."""

from __future__ import annotations

import os
import stat
import time

from twinvisor.linux.quiet import suppress


def make_private_dir(path: str) -> None:
    """Create `path` (and parents) with mode 0700; tighten it if it already exists and is ours."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid == os.geteuid() and st.st_mode & 0o077:
        os.chmod(path, 0o700)


def write_atomic(path: str, text: str, mode: int = 0o644, fsync: bool = True) -> bool:
    """temp file + fsync + rename + fsync(dir): readers see the old or the new content, never
    a torn one. Returns False (and leaves the old file) when the disk is full or unwritable."""
    directory = os.path.dirname(path) or "."
    try:
        fd, tmp = _create_temp(directory)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        if fsync:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError:
        remove_quietly(tmp)
        return False
    return True


def _create_temp(directory: str) -> tuple[int, str]:
    """tempfile.mkstemp's job (0600, O_EXCL, a fresh name), without tempfile: it imports
    random, shutil and more, 1.8 MiB the guard (which writes its pid file) cannot spare."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = os.path.join(directory, f".tmp-{os.urandom(6).hex()}.new")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: no fresh temporary name")


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read(64).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class Untrusted(Exception):
    """A run-dir file that cannot be what it should: the message says why."""


def read_untrusted(path: str, limit: int) -> bytes | None:
    """The content of a file in the run dir, which anyone with our uid (or a bug, or a full
    disk) may have replaced by anything: None when it is missing; raises Untrusted when it is
    not a regular file or larger than `limit` (a FIFO would block us, a directory can never be
    replaced by a rename). Never follows a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Untrusted(e.strerror or str(e)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Untrusted("not a regular file")
        if st.st_size > limit:
            raise Untrusted(f"{st.st_size} bytes, more than {limit}")
        return os.read(fd, limit + 1)
    finally:
        os.close(fd)


def move_aside(path: str, what: str = "corrupt") -> str:
    """Rename a bad file (or directory) out of the way, kept for a post-mortem, never deleted;
    returns where it went (or why it could not be moved)."""
    aside = f"{path}.{what}-{time.time_ns()}"
    try:
        os.replace(path, aside)
    except OSError as e:
        return f"(could not be moved aside: {e.strerror})"
    return aside


def remove_quietly(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)


LOG_MODE = 0o640  # every log file twinvisor writes: the daemon's own and the programs'


def open_log(path: str) -> int:
    """An O_APPEND fd on the log file `path`, created 0640 (whatever the umask). A file of
    ours left wider by an older version is tightened: logs may hold secrets a program
    prints, and the daemon's logs are no less private than the programs'."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_MODE)
    with suppress(OSError):
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o777 != LOG_MODE:
            os.fchmod(fd, LOG_MODE)
    return fd
