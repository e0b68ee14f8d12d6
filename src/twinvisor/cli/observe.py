"""Watching the daemon: `twinvisor events [-f]` and `twinvisor status --watch`.

Both read the event journal by long poll (`GET /events?after=ID&wait=S`), so they wake when
something happens, not on a timer, and resume from the last id they saw: across a supervisor
takeover (the guard keeps the socket; the journal's ids keep growing) nothing is missed.

`--json` prints one JSON object per event, a line each (JSON Lines), also when following.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import msgspec

from twinvisor.cli.common import Fail, Refused, request
from twinvisor.control.messages import (
    EventRecord,
    EventsReply,
    ProcessUsage,
    StatusReply,
    StatusRow,
    UsageReply,
)

POLL_WAIT = 25.0  # seconds a long poll may wait for the next event
_CLEAR = "\x1b[H\x1b[2J"


def format_event(e: EventRecord) -> str:
    """One line: time, id, instance, kind and what happened."""
    when = time.strftime("%H:%M:%S", time.localtime(e.time))
    frac = f"{e.time % 1:.3f}"[1:]
    return f"{when}{frac} #{e.id} {e.instance or '-'} {e.kind}: {describe(e)}"


def describe(e: EventRecord) -> str:
    pid = f" (pid {e.pid})" if e.pid else ""
    if e.kind == "state":
        return f"{e.previous} -> {e.state}{pid}"
    if e.kind == "exit":
        how = f"killed by {e.signal}" if e.signal else f"exit code {e.exit_code}"
        return f"{how}{pid}"
    if e.kind == "restart":
        delay = e.delay or 0.0
        return f"restarting ({e.reason})" + (f" in {delay:g}s" if delay else "")
    if e.kind == "ready":
        return ("ready" if e.ready else "not ready") + pid
    return (e.message or "") + pid


def _events(
    args: argparse.Namespace, after: int, wait: float, names: list[str]
) -> tuple[list[EventRecord], int]:
    query = {"after": str(after), "wait": f"{wait:g}"}
    if names:
        query["names"] = ",".join(names)
    try:
        events = request(args, "GET", "/events", EventsReply, query=query).events
    except Refused as e:
        _unless_answerable(e)
        raise
    return events, events[-1].id if events else after


def _unless_answerable(e: Refused) -> None:
    """A refused (403) or failing (5xx) daemon ends the command like any verb's error; the
    other refusals (a bad id, no such program) are the view's to report."""
    if e.status == 403 or e.status >= 500:
        raise Fail(str(e), e.code) from None


def cmd_events(args: argparse.Namespace) -> int:
    after = int(args.since)
    while True:
        try:
            events, after = _events(args, after, POLL_WAIT if args.follow else 0, args.names)
        except Refused as e:
            _error(args, str(e))
            return 2 if e.status == 404 else 1  # 404: no such program
        for event in events:
            print(_json_line(event) if args.json else format_event(event), flush=True)
        if not args.follow:
            return 0


def _json_line(event: EventRecord) -> str:
    return json.dumps(msgspec.to_builtins(event))  # as the journal has it: unset fields left out


def _error(args: argparse.Namespace, message: str) -> None:
    if args.json:
        print(json.dumps({"ok": False, "error": message}))
    else:
        print(f"twinvisor: {message}", file=sys.stderr)


# ---- status --watch -------------------------------------------------------------------------


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _memory(value: int | None) -> str:
    return "-" if value is None else f"{value / (1024 * 1024):.1f}M"


class _Screen:
    """The view: a status table with CPU and memory, and the last events."""

    def __init__(self, args: argparse.Namespace, names: list[str]) -> None:
        self.args, self.names = args, names
        self.rows: list[StatusRow] = []
        self.usage: dict[str, ProcessUsage] = {}
        self.cpu_pct: dict[str, float] = {}
        self.recent: list[str] = []
        self._last_usage: tuple[float, dict[str, float]] = (0.0, {})

    def refresh_status(self) -> None:
        query = {"names": ",".join(self.names)} if self.names else None
        try:
            self.rows = request(self.args, "GET", "/status", StatusReply, query=query).programs
        except Refused as e:
            _unless_answerable(e)  # else keep the last rows: the events say what went wrong

    def refresh_usage(self) -> None:
        try:
            self.usage = request(self.args, "GET", "/usage", UsageReply).usage
        except Refused as e:
            _unless_answerable(e)
            return
        now = time.monotonic()
        cpu = {n: u.cpu_seconds for n, u in self.usage.items()}
        then, before = self._last_usage
        if then:
            span = max(now - then, 1e-3)
            self.cpu_pct = {n: 100 * max(0.0, c - before.get(n, c)) / span for n, c in cpu.items()}
        self._last_usage = (now, cpu)

    def draw(self) -> str:
        head = (
            f"{'NAME':<20} {'STATE':<9} {'PID':>7} {'UPTIME':>9} {'RESTARTS':>8} "
            f"{'CPU%':>6} {'MEM':>8}"
        )
        lines = [f"twinvisor status --watch   {time.strftime('%H:%M:%S')}   (Ctrl-C quits)", head]
        for r in self.rows:
            use = self.usage.get(r.name)
            cpu = self.cpu_pct.get(r.name)
            lines.append(
                f"{r.name:<20} {r.state.value:<9} {r.pid or '-':>7} "
                f"{_uptime(r.uptime):>9} {r.restarts:>8} "
                f"{'-' if cpu is None else f'{cpu:.1f}':>6} "
                f"{_memory(use.rss_bytes if use else None):>8}"
            )
        lines += ["", "last events:", *self.recent[-8:]]
        return "\n".join(lines)


def cmd_watch(args: argparse.Namespace) -> int:
    """Redraw on every event (and the CPU column every 2 s); without a terminal, print the
    table once and then one line per event."""
    tty = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    screen = _Screen(args, args.names)
    screen.refresh_status()
    screen.refresh_usage()
    try:
        after = _events(args, 0, 0, [])[1]
    except Refused as e:
        _error(args, str(e))
        return 1
    if not tty:
        print(screen.draw(), flush=True)
    next_usage = time.monotonic() + 2.0
    try:
        while True:
            if tty:
                sys.stdout.write(_CLEAR + screen.draw() + "\n")
                sys.stdout.flush()
            wait = max(0.05, next_usage - time.monotonic()) if tty else POLL_WAIT
            try:
                events, after = _events(args, after, wait, args.names)
            except Refused as e:
                _error(args, str(e))
                return 1
            screen.recent += [format_event(event) for event in events]
            if events:
                screen.refresh_status()
            if not tty:
                for event in events:
                    print(format_event(event), flush=True)
            if time.monotonic() >= next_usage:
                screen.refresh_usage()
                screen.refresh_status()  # the uptime column
                next_usage = time.monotonic() + 2.0
    except KeyboardInterrupt:
        return 0
