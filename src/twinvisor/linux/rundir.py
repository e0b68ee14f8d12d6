"""The run dir is ours, but what is in it is untrusted: a bug, a full disk, an operator or any
process of our uid may have left anything at the paths we use. At start-up (guard and
supervisor alike) every entry of the wrong kind is moved aside, kept for a post-mortem, so that
start-up goes on instead of failing (or crash-looping) on it. Contents are checked by their
readers (the state file by its schema); here only the kind of each entry."""

from __future__ import annotations

import os
import stat

from twinvisor.linux import fsutil

_FILE, _DIR, _SOCKET = "a regular file", "a directory", "a socket"

# name in the run dir -> what it must be
ENTRIES = {
    "state.json": _FILE,
    "applied-config.json": _FILE,
    "twinvisor.lock": _FILE,
    "guard.lock": _FILE,
    "twinvisor.pid": _FILE,
    "guard.pid": _FILE,
    "stop": _FILE,
    "guard.sock": _SOCKET,
    "pipes": _DIR,
}

_TESTS = {_FILE: stat.S_ISREG, _DIR: stat.S_ISDIR, _SOCKET: stat.S_ISSOCK}


def clear_wrong_kinds(run_dir: str, extra: dict[str, str] | None = None) -> list[str]:
    """Move aside what is not of its kind; `extra` adds paths (absolute, inside the run dir
    only: we never move a file of someone else's) such as the control socket and the log
    dir. Returns one message per entry moved, for the log."""
    wanted = {os.path.join(run_dir, name): kind for name, kind in ENTRIES.items()}
    for path, kind in (extra or {}).items():
        if os.path.dirname(os.path.normpath(path)) == os.path.normpath(run_dir):
            wanted[path] = kind
    moved = []
    for path, kind in wanted.items():
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not _TESTS[kind](st.st_mode):
            aside = fsutil.move_aside(path, "bad")
            moved.append(f"{path} was not {kind}: moved to {aside}")
    return moved


def extra(socket: str, log_dir: str) -> dict[str, str]:
    return {socket: _SOCKET, log_dir: _DIR}
