"""`GET /metrics`: the Prometheus text exposition format (version 0.0.4), by its conventions.

Counters end in `_total`, units are in the name (`_seconds`, `_bytes`), labels are `program`
and `instance` (plus `reason`, `stream`, `state` where a metric has them). Restarts are a
counter, never a gauge, so `rate()` and `increase()` work. Every metric is listed in
docs/metrics.md.

A scrape reads /proc for each live program (one read and one listdir per process) in a worker
thread, so the supervisor's loop keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from twinvisor import __version__
from twinvisor.control.server import Router
from twinvisor.core.states import ProcessState
from twinvisor.linux import kernel
from twinvisor.supervisor.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STATES = tuple(s.value for s in ProcessState)

_HELP = {
    "twinvisor_program_up": ("gauge", "1 while a process of the instance is alive"),
    "twinvisor_program_state": ("gauge", "1 for the state the instance is in (one-hot)"),
    "twinvisor_program_ready": ("gauge", "1 while the instance is RUNNING (ready)"),
    "twinvisor_program_restarts_total": ("counter", "new generations started, by reason"),
    "twinvisor_program_start_time_seconds": ("gauge", "start of the current generation"),
    "twinvisor_program_last_exit_code": ("gauge", "exit code of the last exit (-N: signal N)"),
    "twinvisor_program_cpu_seconds_total": ("counter", "user+system CPU of the main process"),
    "twinvisor_program_resident_memory_bytes": ("gauge", "resident memory of the main process"),
    "twinvisor_program_open_fds": ("gauge", "open file descriptors of the main process"),
    "twinvisor_program_log_bytes_total": ("counter", "output bytes written to the log file"),
    "twinvisor_program_log_dropped_bytes_total": ("counter", "output bytes lost (disk full)"),
    "twinvisor_supervisor_takeovers_total": ("counter", "supervisors that took over live programs"),
    "twinvisor_guard_restarts_total": ("counter", "guards replaced after they died"),
    "twinvisor_api_requests_total": ("counter", "control API requests answered"),
    "twinvisor_event_loop_lag_seconds": ("gauge", "delay of the supervisor loop at this scrape"),
    "twinvisor_events_total": ("counter", "events recorded (the last event id)"),
    "twinvisor_build_info": ("gauge", "always 1; the version is a label"),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if type(value) is int:  # most samples: 0/1 flags and counts
        return str(value)
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Sheet:
    """Samples grouped by metric name, so each family is written once with HELP and TYPE."""

    def __init__(self) -> None:
        self._families: dict[str, list[str]] = {}

    def family(self, name: str) -> list[str]:
        """The sample lines of one family, to append to directly (the per-instance hot path)."""
        return self._families.setdefault(name, [])

    def add(self, name: str, value: float, *labels: tuple[str, str]) -> None:
        self.family(name).append(f"{name}{_labels(labels)} {_number(value)}")

    def text(self) -> bytes:
        out: list[str] = []
        for name, lines in self._families.items():
            kind, help_text = _HELP[name]
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines]
        return ("\n".join(out) + "\n").encode()


class _InstanceLines:
    """What never changes between scrapes for one instance, rendered once: its label string and
    the one-hot state block for each state it has been in (a scrape of 100 programs writes
    some 2,000 lines, so string building is most of its cost)."""

    __slots__ = ("_states", "labels")

    def __init__(self, program: str, instance: str) -> None:
        self.labels = _labels((("program", program), ("instance", instance)))[1:-1]
        self._states: dict[str, list[str]] = {}

    def states(self, current: str) -> list[str]:
        block = self._states.get(current)
        if block is None:
            name = "twinvisor_program_state"
            block = [
                f'{name}{{{self.labels},state="{s}"}} {1 if s == current else 0}' for s in _STATES
            ]
            self._states[current] = block
        return block


# keyed by (program, instance); entries of instances removed by an update are dropped each scrape
_rendered: dict[tuple[str, str], _InstanceLines] = {}


async def render(runtime: Runtime, router: Router) -> bytes:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.sleep(0)  # one trip round the loop: how long the queue in front of us is
    lag = loop.time() - t0
    usage = await runtime.usage()
    sheet = _Sheet()
    _programs(sheet, runtime, usage)
    _supervisor(sheet, runtime, router, lag)
    return sheet.text()


def _instance_lines(program: str, name: str, seen: set[tuple[str, str]]) -> _InstanceLines:
    key = (program, name)
    seen.add(key)
    lines = _rendered.get(key)
    if lines is None:
        lines = _rendered[key] = _InstanceLines(program, name)
    return lines


def _programs(sheet: _Sheet, runtime: Runtime, usage: dict[str, kernel.Usage]) -> None:
    now, wall = runtime.clock(), time.time()
    up, state, ready = (sheet.family(f"twinvisor_program_{n}") for n in ("up", "state", "ready"))
    start_time = sheet.family("twinvisor_program_start_time_seconds")
    last_exit = sheet.family("twinvisor_program_last_exit_code")
    cpu = sheet.family("twinvisor_program_cpu_seconds_total")
    rss = sheet.family("twinvisor_program_resident_memory_bytes")
    fds = sheet.family("twinvisor_program_open_fds")
    written = sheet.family("twinvisor_program_log_bytes_total")
    dropped = sheet.family("twinvisor_program_log_dropped_bytes_total")
    seen: set[tuple[str, str]] = set()
    labels_of: dict[str, str] = {}
    for name, p in runtime.procs.items():
        lines = _instance_lines(p.spec.program, name, seen)
        raw = labels_of[name] = lines.labels
        alive = p.pid is not None and p.state.is_alive
        up.append(f"twinvisor_program_up{{{raw}}} {1 if alive else 0}")
        state += lines.states(p.state.value)
        ready.append(
            f"twinvisor_program_ready{{{raw}}} {1 if p.state is ProcessState.RUNNING else 0}"
        )
        if alive and p.started_at is not None:
            value = _number(round(wall - (now - p.started_at), 3))
            start_time.append(f"twinvisor_program_start_time_seconds{{{raw}}} {value}")
        if p.last_exit is not None:
            code = p.last_exit.exit_code
            if code is None and p.last_exit.signal is not None:
                code = -p.last_exit.signal
            if code is not None:
                last_exit.append(f"twinvisor_program_last_exit_code{{{raw}}} {code}")
        use = usage.get(name)
        if use is not None:
            value = _number(round(use.cpu_seconds, 3))
            cpu.append(f"twinvisor_program_cpu_seconds_total{{{raw}}} {value}")
            rss.append(f"twinvisor_program_resident_memory_bytes{{{raw}}} {use.rss_bytes}")
            if use.open_fds is not None:
                fds.append(f"twinvisor_program_open_fds{{{raw}}} {use.open_fds}")
        for stream, out, lost in runtime.log_counts(name):
            written.append(f'twinvisor_program_log_bytes_total{{{raw},stream="{stream}"}} {out}')
            dropped.append(
                f'twinvisor_program_log_dropped_bytes_total{{{raw},stream="{stream}"}} {lost}'
            )
    for key in _rendered.keys() - seen:
        del _rendered[key]
    # every instance has reason="exit" from the start (0), so increase() sees the first crash
    counts = {(name, "exit"): 0 for name in runtime.procs}
    counts.update(runtime.restarts_by_reason)
    restarts = sheet.family("twinvisor_program_restarts_total")
    for (name, reason), count in sorted(counts.items()):
        ids = labels_of.get(name)
        if ids is None:
            continue  # removed by an update
        restarts.append(
            f'twinvisor_program_restarts_total{{{ids},reason="{_escape(reason)}"}} {count}'
        )


def _supervisor(sheet: _Sheet, runtime: Runtime, router: Router, lag: float) -> None:
    counters = runtime.counters.values
    sheet.add("twinvisor_supervisor_takeovers_total", counters.takeovers)
    sheet.add("twinvisor_guard_restarts_total", counters.guard_restarts)
    for (method, route, code), count in sorted(router.requests.items()):
        sheet.add(
            "twinvisor_api_requests_total",
            count,
            ("method", method),
            ("route", route),
            ("code", str(code)),
        )
    sheet.add("twinvisor_event_loop_lag_seconds", round(lag, 6))
    sheet.add("twinvisor_events_total", runtime.journal.last_id)
    sheet.add("twinvisor_build_info", 1, ("version", __version__))
