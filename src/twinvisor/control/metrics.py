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

    def add(self, name: str, value: float, *labels: tuple[str, str]) -> None:
        self._families.setdefault(name, []).append(f"{name}{_labels(labels)} {_number(value)}")

    def add_raw(self, name: str, labels: str, value: float) -> None:
        """`labels` already rendered, without the braces (the per-instance hot path)."""
        self._families.setdefault(name, []).append(f"{name}{{{labels}}} {_number(value)}")

    def text(self) -> bytes:
        out: list[str] = []
        for name, lines in self._families.items():
            kind, help_text = _HELP[name]
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines]
        return ("\n".join(out) + "\n").encode()


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


def _programs(sheet: _Sheet, runtime: Runtime, usage: dict[str, kernel.Usage]) -> None:
    now, wall = runtime.clock(), time.time()
    for name, p in runtime.procs.items():
        ids = (("program", p.spec.program), ("instance", name))
        raw = _labels(ids)[1:-1]  # rendered once per instance, used by most lines below
        alive = p.pid is not None and p.state.is_alive
        sheet.add_raw("twinvisor_program_up", raw, 1 if alive else 0)
        for state in _STATES:
            on = 1 if p.state.value == state else 0
            sheet.add_raw("twinvisor_program_state", f'{raw},state="{state}"', on)
        sheet.add_raw("twinvisor_program_ready", raw, 1 if p.state is ProcessState.RUNNING else 0)
        if alive and p.started_at is not None:
            sheet.add(
                "twinvisor_program_start_time_seconds", round(wall - (now - p.started_at), 3), *ids
            )
        if p.last_exit is not None:
            code = p.last_exit.exit_code
            if code is None and p.last_exit.signal is not None:
                code = -p.last_exit.signal
            if code is not None:
                sheet.add("twinvisor_program_last_exit_code", code, *ids)
        use = usage.get(name)
        if use is not None:
            sheet.add("twinvisor_program_cpu_seconds_total", round(use.cpu_seconds, 3), *ids)
            sheet.add("twinvisor_program_resident_memory_bytes", use.rss_bytes, *ids)
            if use.open_fds is not None:
                sheet.add("twinvisor_program_open_fds", use.open_fds, *ids)
        for stream, written, dropped in runtime.log_counts(name):
            sheet.add("twinvisor_program_log_bytes_total", written, *ids, ("stream", stream))
            sheet.add(
                "twinvisor_program_log_dropped_bytes_total", dropped, *ids, ("stream", stream)
            )
    # every instance has reason="exit" from the start (0), so increase() sees the first crash
    counts = {(name, "exit"): 0 for name in runtime.procs}
    counts.update(runtime.restarts_by_reason)
    for (name, reason), count in sorted(counts.items()):
        proc = runtime.procs.get(name)
        if proc is None:
            continue  # removed by an update
        program = proc.spec.program
        sheet.add(
            "twinvisor_program_restarts_total",
            count,
            ("program", program),
            ("instance", name),
            ("reason", reason),
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
