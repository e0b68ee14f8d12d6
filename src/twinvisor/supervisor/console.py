"""Program state changes as one short line each, for a terminal: `up --foreground` (containers,
scripts/run-example) shows what happens as it happens instead of one line and then silence.

    12:00:01 web: started (pid 4242)
    12:00:01 web: ready (pid 4242)
    12:00:03 web: pid 4242 exited with code 1
    12:00:03 web: restarting in 0.1s (exit)
    12:00:09 web: gave up (FATAL); `twinvisor start web` tries again

Fed by the event journal (a listener): `line_for` is a pure function of one event record.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from twinvisor.supervisor.journal import EventRecord, Journal

FOREGROUND_ENV = "TWINVISOR_FOREGROUND"  # set by a foreground guard: its supervisor writes here

_STATES = {
    "STARTING": "started",
    "STOPPING": "stopping",
    "STOPPED": "stopped",
    "EXITED": "exited; not restarted (auto_restart, exit_codes)",
}


def line_for(rec: EventRecord) -> str | None:
    """The operator's line for one event; None for the ones a terminal need not show."""
    who = rec.instance or "twinvisor"
    pid = f" (pid {rec.pid})" if rec.pid else ""
    match rec.kind:
        case "state" if rec.state == "FATAL":
            return f"{who}: gave up (FATAL); `twinvisor start {who}` tries again"
        case "state" if rec.state in _STATES:
            return f"{who}: {_STATES[rec.state]}{pid if rec.state == 'STARTING' else ''}"
        case "ready" if rec.ready:
            return f"{who}: ready{pid}"
        case "exit":
            how = f"killed by {rec.signal}" if rec.signal else f"exited with code {rec.exit_code}"
            return f"{who}: pid {rec.pid} {how}" + (" (expected)" if rec.expected else "")
        case "restart":
            when = f"in {rec.delay:.1f}s" if rec.delay else "now"
            return f"{who}: restarting {when} ({rec.reason})"
        case "health" | "takeover" | "guard" | "config":
            return f"{who}: {rec.message}"
        case _:
            return None


def attach(journal: Journal, stream: TextIO | None = None) -> None:
    """Print every event's line to `stream` (default stderr) from now on."""
    out = sys.stderr if stream is None else stream

    def show(rec: EventRecord) -> None:
        line = line_for(rec)
        if line is not None:
            stamp = time.strftime("%H:%M:%S", time.localtime(rec.time))
            try:
                out.write(f"{stamp} {line}\n")
                out.flush()
            except (OSError, ValueError):
                pass  # the terminal went away: supervision goes on

    journal.listeners.append(show)


def wanted() -> bool:
    """This supervisor runs under a foreground guard (or in the foreground itself)."""
    return os.environ.get(FOREGROUND_ENV) == "1"
