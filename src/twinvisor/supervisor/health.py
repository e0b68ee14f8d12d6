"""What the runtime learns from running programs: sd_notify datagrams, readiness probes and
health checks, each turned into an event for the core.

`Health` belongs to one Runtime; it owns the per-instance health check tasks, and reads the
runtime's children and core only to attribute what it hears to the right generation.
"""

from __future__ import annotations

import asyncio
import logging

from twinvisor.config.specs import HealthKind, ReadyMode
from twinvisor.core.events import HealthResult, Notified, Ready
from twinvisor.core.states import ProcessState
from twinvisor.linux import readiness
from twinvisor.supervisor import pidfiles
from twinvisor.supervisor.seams import Engine

log = logging.getLogger("twinvisor")


class Health:
    def __init__(self, rt: Engine) -> None:
        self._rt = rt
        self._checks: dict[str, asyncio.Task[None]] = {}  # instance -> its health check loop
        self._rejects = RejectLog()

    def close(self) -> None:
        for task in self._checks.values():
            task.cancel()
        self._rejects.close()

    def forget(self, name: str) -> None:
        check = self._checks.pop(name, None)
        if check is not None:
            check.cancel()

    def owner_of(self, pid: int) -> tuple[str, int] | None:
        """(instance, generation pid) of the process `pid` is, or descends from."""
        entry = self._rt.children.get(pid)
        if entry is not None:
            return entry[0], pid
        import psutil

        try:
            parents = psutil.Process(pid).parents()
        except psutil.Error:
            return None
        for parent in parents:
            entry = self._rt.children.get(parent.pid)
            if entry is not None:
                return entry[0], parent.pid
        return None

    def on_notify(self, pid: int, fields: tuple[tuple[str, str], ...]) -> None:
        stranger = pid not in self._rt.children and self._rejects.known(pid)
        owner = None if stranger else self.owner_of(pid)
        if owner is None:
            self._rejects.note(pid)
            return
        # attributed to the generation it comes from: an old generation's READY=1 must not
        # make a new one ready
        self._rt.dispatch(Notified(owner[0], owner[1], fields))

    async def probe_ready(self, name: str, pid: int) -> None:
        """Poll the tcp/http readiness probe until it passes or the generation is gone."""
        delay = 0.01
        while True:
            proc = self._rt.procs.get(name)
            if proc is None or proc.pid != pid or proc.state is not ProcessState.STARTING:
                return
            spec = proc.spec.ready
            probe = readiness.probe_tcp if spec.mode is ReadyMode.TCP else readiness.probe_http
            ok, _ = await probe(spec.target, min(2.0, spec.timeout))
            if ok:
                self._rt.dispatch(Ready(name, pid))
                return
            await asyncio.sleep(delay)  # probing is inherently periodic: back off to 0.25 s
            delay = min(delay * 2, 0.25)

    def on_state(self, name: str, new: ProcessState) -> None:
        """Every state change: keep the pid file in step, run health checks while RUNNING."""
        proc = self._rt.procs[name]
        if proc.spec.pidfile:
            pidfiles.sync_pidfile(proc)
        if proc.spec.health is None:
            return
        if new is ProcessState.RUNNING and name not in self._checks:
            self._checks[name] = self._rt.loop.create_task(self._check_loop(name))
        elif not new.is_alive and name in self._checks:
            self._checks.pop(name).cancel()

    async def _check_loop(self, name: str) -> None:
        while True:
            proc = self._rt.procs.get(name)
            if proc is None or proc.spec.health is None or proc.pid is None:
                return
            h = proc.spec.health
            await asyncio.sleep(h.interval)  # the check interval itself, not a synchronisation
            proc = self._rt.procs.get(name)
            if proc is None or proc.pid is None:
                return
            pid = proc.pid
            if h.kind is HealthKind.HTTP:
                ok, detail = await readiness.probe_http(h.target, h.timeout)
            elif h.kind is HealthKind.TCP:
                ok, detail = await readiness.probe_tcp(h.target, h.timeout)
            else:
                ok, detail = await readiness.probe_command(
                    h.command, h.timeout, proc.spec.directory
                )
            if not ok:
                program = proc.spec.program
                self._rt.journal.emit(
                    "health", instance=name, program=program, pid=pid, message=detail[:500]
                )
            self._rt.dispatch(HealthResult(name, pid, ok, detail))


class RejectLog:
    """Notify datagrams from strangers, logged at a bounded rate: the first of a period in
    full, the rest as one line with a count when the period ends (a flood of datagrams from
    another uid must not grow the daemon's log, nor cost a process-tree walk each)."""

    PERIOD = 10.0
    MAX_REMEMBERED = 1024

    def __init__(self) -> None:
        self._pids: set[int] = set()  # rejected this period: not walked again
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None

    def known(self, pid: int) -> bool:
        return pid in self._pids

    def note(self, pid: int) -> None:
        if len(self._pids) < self.MAX_REMEMBERED:
            self._pids.add(pid)
        if self._timer is None:
            log.warning(
                "notify from pid %d ignored: not a process of any program "
                "(more are counted, one line per %.0f s)",
                pid,
                self.PERIOD,
            )
            self._timer = asyncio.get_running_loop().call_later(self.PERIOD, self._period_end)
        else:
            self._count += 1

    def _period_end(self) -> None:
        count, self._count = self._count, 0
        self._pids.clear()
        if count:
            log.warning("%d more notify datagrams ignored in the last %.0f s", count, self.PERIOD)
            self._timer = asyncio.get_running_loop().call_later(self.PERIOD, self._period_end)
        else:
            self._timer = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
