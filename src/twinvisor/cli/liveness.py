"""Is a daemon running for this run dir? Decided as the daemon decides it: by its flock on
`run_dir/twinvisor.lock`, never by a pid file or a socket file (both outlive a kill -9)."""

from __future__ import annotations

import fcntl
import os


def daemon_running(run_dir: str) -> bool:
    return _locked(os.path.join(run_dir, "twinvisor.lock"))


def _locked(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # never started here (or the run dir is gone)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops our shared lock at once: no daemon start is held up
    return False


def anything_running(run_dir: str) -> bool:
    """The supervisor or its guard holds its lock (a guard may be between two supervisors)."""
    return daemon_running(run_dir) or _locked(os.path.join(run_dir, "guard.lock"))


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read(32).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pids_text(run_dir: str) -> list[str]:
    """The labelled pids of a running daemon, as `up` and the foreground refusal show them."""
    lines = []
    for label, name in (("supervisor pid", "twinvisor.pid"), ("guard pid", "guard.pid")):
        pid = read_pid(os.path.join(run_dir, name))
        if pid is not None:
            lines.append(f"  {label + ':':<16}{pid}")
    return lines


def clean_stale(run_dir: str, socket_path: str) -> list[str]:
    """After both twins were killed (kill -9) their socket and pid files stay behind: when no
    lock is held, nobody can be using them. Returns the files removed."""
    if anything_running(run_dir):
        return []
    removed = []
    names = ("twinvisor.pid", "guard.pid", "guard.sock")
    for path in [socket_path, *(os.path.join(run_dir, n) for n in names)]:
        try:
            os.unlink(path)
        except OSError:
            continue
        removed.append(path)
    return removed


def not_running_text(socket_path: str, error: Exception, removed: list[str] | None = None) -> str:
    """One wording whether the socket file is missing or stale ("Connection refused"); it
    keeps the client's own phrase, which scripts (the Ansible module) look for."""
    why = str(error).rpartition(": ")[2]
    stale = "; removed its stale socket and pid files" if removed and socket_path in removed else ""
    return f"no daemon running: no twinvisor daemon is answering on {socket_path} ({why}){stale}"
