"""A storm of signals must not turn the supervisor into the weak point.

Every signal the supervisor handles writes one byte to asyncio's wake-up fd; a burst that
comes faster than the loop drains it (a thousand children exiting, a script hammering
SIGUSR1) fills that buffer. CPython then printed one traceback per signal to the
supervisor's stderr (8,243 of them for a 2 s storm, before the fix) and, under load, was seen
spinning at 100% CPU inside that printing with every program unsupervised. A byte that does
not fit is now a coalesced signal, as the kernel coalesces them (linux/kernel.py,
add_signal_handler)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.helpers import Daemon, daemon_fixture  # noqa: F401

PROGRAMS = 50  # each SIGUSR1 logs one line per program: the loop drains slower than we send


def storm(pid: int, seconds: float, gap: float) -> int:
    """SIGUSR1 to `pid`, one every `gap` seconds (paced, so the kernel delivers each one
    rather than coalescing them while one is pending); how many were sent."""
    sent, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        os.kill(pid, signal.SIGUSR1)
        sent += 1
        pause = time.monotonic() + gap
        while time.monotonic() < pause:
            pass  # a busy wait: time.sleep would oversleep a 200 µs gap by far
    return sent


def test_a_signal_storm_is_coalesced_without_a_traceback(daemon: Daemon) -> None:
    daemon.up({f"p{i:02d}": {"command": ["sleep", "infinity"]} for i in range(PROGRAMS)})
    for i in range(PROGRAMS):
        daemon.wait_state(f"p{i:02d}", "RUNNING")
    supervisor = int(Path(daemon.run_dir, "twinvisor.pid").read_text().split()[0])

    sent = storm(supervisor, seconds=2.0, gap=0.0002)

    assert sent > 2000, sent
    rows = daemon.status()  # it answers: the loop is back
    assert len(rows) == PROGRAMS and all(r["state"] == "RUNNING" for r in rows.values())
    # and a signal after it still reaches its handler: SIGHUP reloads, adding a program
    daemon.write_config(
        {f"p{i:02d}": {"command": ["sleep", "infinity"]} for i in range(PROGRAMS + 1)}
    )
    os.kill(supervisor, signal.SIGHUP)
    daemon.wait_state(f"p{PROGRAMS:02d}", "RUNNING")
    stderr = Path(daemon.log_dir, "twinvisor.out").read_text(errors="replace")
    assert "Exception ignored" not in stderr and "BlockingIOError" not in stderr, stderr[-2000:]
    assert int(Path(daemon.run_dir, "twinvisor.pid").read_text().split()[0]) == supervisor
