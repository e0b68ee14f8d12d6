"""The stop marker's contents: who stopped the daemon and the code it ends with.

While the marker (`<run dir>/stop`) exists nothing revives the supervisor (seed 000). Its
first line is the pid that wrote it; an `exit N` line, written by a supervisor whose exit
policy stops the daemon (an essential program exited), is the code the guard then exits
with, so `up --foreground` (a container's PID 1) ends with it rather than 0.
"""

from __future__ import annotations

import os

from twinvisor.linux import fsutil


def write(path: str, code: int | None = None) -> None:
    """Create the marker; never lower a code already in it to a plain stop."""
    if code is None and read_code(path) is not None:
        return
    line = "" if code is None else f"exit {code}\n"
    fsutil.write_atomic(path, f"{os.getpid()}\n{line}")


def read_code(path: str) -> int | None:
    """The `exit N` line's N, or None (no marker, or a plain stop)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(4096)
    except OSError:
        return None
    for line in text.splitlines():
        word, _, value = line.partition(" ")
        if word == "exit" and value.strip().isdigit():
            return min(int(value), 255)
    return None
