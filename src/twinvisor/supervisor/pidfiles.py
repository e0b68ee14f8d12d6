"""Seed 000/001's pid files: the supervisor's own and each program's `pidfile`, kept true.

A pid file someone deleted is rewritten within PID_REFRESH seconds; the state file too.
"""

from __future__ import annotations

import contextlib
import logging
import os

from twinvisor.core.machine import ProcView
from twinvisor.linux import fsutil
from twinvisor.supervisor.seams import Recoverable

log = logging.getLogger("twinvisor")

# seconds between checks that pid files still exist (seed 000: 30 s; TWINVISOR_PID_REFRESH for
# tests). The supervisor's only periodic timer: the guard link's look rides on it (a hook), and
# the pid file's mtime is its sign of life for the guard (twin/protocol.py reads the same
# variable: HEARTBEAT)
PID_REFRESH = float(os.environ.get("TWINVISOR_PID_REFRESH", "30"))


def sync_pidfile(proc: ProcView) -> None:
    """Seed 001's pid lock: the file holds the live pid while the program should run.
    Written atomically; a full disk keeps the last good version and is retried later."""
    path = proc.spec.pidfile
    assert path is not None
    if proc.pid is not None and proc.state.is_alive:
        if fsutil.read_pid(path) != proc.pid:
            fsutil.write_atomic(path, f"{proc.pid}\n", fsync=False)
    elif fsutil.read_pid(path) is not None and not proc.state.is_alive:
        fsutil.remove_quietly(path)


def start_freshness(rt: Recoverable, own_pid_path: str) -> None:
    """Every PID_REFRESH seconds: rewrite pid files someone deleted (seed 000)."""

    def refresh() -> None:
        if fsutil.read_pid(own_pid_path) != os.getpid():
            log.warning("pid file %s was missing or wrong: rewritten", own_pid_path)
            fsutil.write_atomic(own_pid_path, f"{os.getpid()}\n", fsync=False)
        else:  # its mtime is our sign of life for the guard (twin/protocol.py)
            with contextlib.suppress(OSError):
                os.utime(own_pid_path)
        for proc in rt.procs.values():
            if proc.spec.pidfile:
                sync_pidfile(proc)
        if not os.path.exists(f"{rt.config.daemon.run_dir}/state.json"):
            rt.mark_state_dirty()  # the state file too, if it was removed (else unchanged:
            rt.flush_state()  # rewriting it each time cost an idle daemon a wake-up more)
        for hook in rt.freshness_hooks:
            hook()
        rt.loop.call_later(PID_REFRESH, refresh)

    rt.loop.call_later(PID_REFRESH, refresh)
