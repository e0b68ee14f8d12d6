"""Watching the daemon: `twinvisor events [-f]` and `twinvisor status --watch`.

Both read the event journal by long poll (`GET /events?after=ID&wait=S`), so they wake when
something happens, not on a timer, and resume from the last id they saw: across a supervisor
takeover (the guard keeps the socket; the journal's ids keep growing) nothing is missed.

`--json` prints one JSON object per event, a line each (JSON Lines), also when following.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

# (method, path, query) -> (HTTP status, decoded JSON body): the CLI's own call, with its
# errors and exit codes (cli/app.py)
Call = Callable[[str, str, dict[str, str] | None], tuple[int, Any]]

POLL_WAIT = 25.0  # seconds a long poll may wait for the next event
_CLEAR = "\x1b[H\x1b[2J"


def format_event(e: dict[str, Any]) -> str:
    """One line: time, id, instance, kind and what happened."""
    when = time.strftime("%H:%M:%S", time.localtime(float(e.get("time", 0))))
    frac = f"{float(e.get('time', 0)) % 1:.3f}"[1:]
    who = e.get("instance") or "-"
    kind = e.get("kind", "?")
    return f"{when}{frac} #{e.get('id')} {who} {kind}: {describe(e)}"


def describe(e: dict[str, Any]) -> str:
    kind = e.get("kind")
    pid = f" (pid {e['pid']})" if e.get("pid") else ""
    if kind == "state":
        return f"{e.get('previous')} -> {e.get('state')}{pid}"
    if kind == "exit":
        how = f"killed by {e['signal']}" if e.get("signal") else f"exit code {e.get('exit_code')}"
        return f"{how}{pid}"
    if kind == "restart":
        delay = float(e.get("delay") or 0)
        return f"restarting ({e.get('reason')})" + (f" in {delay:g}s" if delay else "")
    if kind == "ready":
        return ("ready" if e.get("ready") else "not ready") + pid
    return str(e.get("message") or "") + pid


def _events(call: Call, after: int, wait: float, names: list[str]) -> tuple[list[Any], int]:
    query = {"after": str(after), "wait": f"{wait:g}"}
    if names:
        query["names"] = ",".join(names)
    code, body = call("GET", "/events", query)
    if code != 200:
        raise LookupError(body.get("error", f"HTTP {code}") if isinstance(body, dict) else code)
    events = body.get("events", [])
    last = events[-1]["id"] if events else after
    return events, last


def cmd_events(args: Any, call: Call) -> int:
    after = int(args.since)
    while True:
        try:
            events, after = _events(call, after, POLL_WAIT if args.follow else 0, args.names)
        except LookupError as e:
            _error(args, str(e))
            return 2 if "no such program" in str(e) else 1
        for event in events:
            print(json.dumps(event) if args.json else format_event(event), flush=True)
        if not args.follow:
            return 0


def _error(args: Any, message: str) -> None:
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

    def __init__(self, call: Call, names: list[str]) -> None:
        self.call, self.names = call, names
        self.rows: list[dict[str, Any]] = []
        self.usage: dict[str, Any] = {}
        self.cpu_pct: dict[str, float] = {}
        self.recent: list[str] = []
        self._last_usage: tuple[float, dict[str, float]] = (0.0, {})

    def refresh_status(self) -> None:
        query = {"names": ",".join(self.names)} if self.names else None
        code, body = self.call("GET", "/status", query)
        if code == 200:
            self.rows = body["programs"]

    def refresh_usage(self) -> None:
        code, body = self.call("GET", "/usage", None)
        if code != 200:
            return
        now = time.monotonic()
        self.usage = body["usage"]
        cpu = {n: float(u["cpu_seconds"]) for n, u in self.usage.items()}
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
            use = self.usage.get(r["name"], {})
            cpu = self.cpu_pct.get(r["name"])
            lines.append(
                f"{r['name']:<20} {r['state']:<9} {r['pid'] or '-':>7} "
                f"{_uptime(r.get('uptime')):>9} {r.get('restarts', 0):>8} "
                f"{'-' if cpu is None else f'{cpu:.1f}':>6} {_memory(use.get('rss_bytes')):>8}"
            )
        lines += ["", "last events:", *self.recent[-8:]]
        return "\n".join(lines)


def cmd_watch(args: Any, call: Call) -> int:
    """Redraw on every event (and the CPU column every 2 s); without a terminal, print the
    table once and then one line per event."""
    tty = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    screen = _Screen(call, args.names)
    screen.refresh_status()
    screen.refresh_usage()
    try:
        after = _events(call, 0, 0, [])[1]
    except LookupError as e:
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
                events, after = _events(call, after, wait, args.names)
            except LookupError as e:
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
