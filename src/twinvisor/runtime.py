"""The asyncio shell around the pure core: carries out its actions and feeds it events.

Everything runs on the event loop thread. Events are processed one at a time from a queue
(`_dispatch` never recurses), so an action that produces an event (a spawn that fails) is
handled after the current batch, in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import assert_never

from twinvisor import children, core, platform
from twinvisor.children import Child
from twinvisor.errors import SpawnError
from twinvisor.logs import LogFile
from twinvisor.specs import Config, ProgramSpec
from twinvisor.states import ProcessState

log = logging.getLogger("twinvisor")


@dataclass
class _Waiter:
    names: tuple[str, ...]
    outcome: Callable[[core.Proc], str]  # 'ok' | 'failed' | 'pending'
    future: asyncio.Future[dict[str, str]]


@dataclass
class _Streams:
    stdout: LogFile
    stderr: LogFile


class Runtime:
    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.core = core.Core()
        self.clock = clock
        self.children: dict[str, Child] = {}
        self._streams: dict[str, _Streams] = {}
        self._events: deque[core.Event] = deque()
        self._dispatching = False
        self._waiters: list[_Waiter] = []
        self._loop = asyncio.get_running_loop()
        self._sigchld_fallback = False
        for spec in config.programs:
            self._add(spec)

    # -- lifecycle ------------------------------------------------------------------------------

    def _add(self, spec: ProgramSpec) -> None:
        self.core.add(spec)
        self._streams[spec.name] = _Streams(
            LogFile(spec.stdout, self._log_problem), LogFile(spec.stderr, self._log_problem)
        )

    def _forget(self, name: str) -> None:
        self.core.remove(name)
        streams = self._streams.pop(name)
        streams.stdout.close()
        streams.stderr.close()

    @staticmethod
    def _log_problem(message: str) -> None:
        log.warning("%s", message)

    def names(self) -> list[str]:
        return list(self.core.procs)

    # -- events in ----------------------------------------------------------------------------

    def dispatch(self, event: core.Event) -> None:
        self._events.append(event)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._events:
                ev = self._events.popleft()
                self._carry_out(self.core.handle(ev, self.clock()))
        finally:
            self._dispatching = False
        self._check_waiters()

    # -- actions out ----------------------------------------------------------------------------

    def _carry_out(self, actions: Iterable[core.Action]) -> None:
        for action in actions:
            match action:
                case core.Spawn(name=name):
                    self._spawn(name)
                case core.SendSignal():
                    self._signal(action)
                case core.KillRemnants(name=name):
                    child = self.children.pop(name, None)
                    if child is not None:
                        children.kill_remnants(child)
                case core.SetTimer(name=name, token=token, delay=delay):
                    self._loop.call_later(delay, self.dispatch, core.TimerFired(name, token))
                case core.StateChanged(name=name, old=old, new=new):
                    log.info("%s: %s -> %s", name, old.value, new.value)
                case core.LogLine(name=name, message=message, level=level):
                    log.log(logging.getLevelName(level.upper()), "%s: %s", name, message)
                case _:
                    assert_never(action)

    def _spawn(self, name: str) -> None:
        spec = self.core.procs[name].spec
        try:
            child = children.spawn(spec)
        except SpawnError as e:
            self._events.append(core.SpawnFailed(name, str(e)))
            return
        self.children[name] = child
        self._watch_output(name, child)
        self._watch_exit(name, child)
        self._events.append(core.Spawned(name, child.pid))

    def _signal(self, action: core.SendSignal) -> None:
        child = self.children.get(action.name)
        if child is None or child.pid != action.pid:
            return  # not ours (anymore): never signal a pid we cannot vouch for
        if action.signal in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
            children.snapshot_tree(child)
        if action.group:
            platform.signal_group(child.pgid, action.signal)
        else:
            platform.signal_pid(child.pid, action.signal)

    # -- watching children ----------------------------------------------------------------------

    def _watch_exit(self, name: str, child: Child) -> None:
        try:
            pidfd = platform.pidfd_open(child.pid)
        except ProcessLookupError:
            pidfd = None
        if pidfd is None:
            self._enable_sigchld_fallback()
            self._loop.call_soon(self._poll_exit, name, child)
            return

        def on_exit() -> None:
            if self._poll_exit(name, child):
                self._loop.remove_reader(pidfd)
                os.close(pidfd)

        self._loop.add_reader(pidfd, on_exit)

    def _poll_exit(self, name: str, child: Child) -> bool:
        status = children.reap(child)
        if status is None:
            return False
        self._drain_output(name, child)
        self.dispatch(core.Exited(name, child.pid, status[0], status[1]))
        return True

    def _enable_sigchld_fallback(self) -> None:
        """Without pidfds, SIGCHLD tells us that *some* child exited; we then reap ours by pid."""
        if self._sigchld_fallback:
            return
        self._sigchld_fallback = True

        def on_sigchld() -> None:
            for name, child in list(self.children.items()):
                self._poll_exit(name, child)

        self._loop.add_signal_handler(signal.SIGCHLD, on_sigchld)

    def _watch_output(self, name: str, child: Child) -> None:
        streams = self._streams[name]
        for fd, sink in ((child.stdout_fd, streams.stdout), (child.stderr_fd, streams.stderr)):
            if fd is not None:
                self._loop.add_reader(fd, self._read_pipe, fd, sink)

    def _read_pipe(self, fd: int, sink: LogFile) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            sink.write(data)
            return
        self._loop.remove_reader(fd)
        os.close(fd)

    def _drain_output(self, name: str, child: Child) -> None:
        """Read what is already in the pipes, so output lands before the exit is logged.
        The pipes stay watched: a grandchild may still hold them open."""
        streams = self._streams.get(name)
        if streams is None:
            return
        for fd, sink in ((child.stdout_fd, streams.stdout), (child.stderr_fd, streams.stderr)):
            if fd is None:
                continue
            for _ in range(64):  # bounded: a grandchild writing endlessly must not stall us
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                sink.write(data)

    # -- waiting for outcomes -----------------------------------------------------------------

    def _check_waiters(self) -> None:
        still: list[_Waiter] = []
        for w in self._waiters:
            if w.future.done():
                continue
            outcomes = {n: w.outcome(self.core.procs[n]) if n in self.core.procs else "ok" for n in w.names}
            if "pending" in outcomes.values():
                still.append(w)
            else:
                w.future.set_result(outcomes)
        self._waiters = still

    async def wait(
        self, names: Iterable[str], outcome: Callable[[core.Proc], str], timeout: float | None
    ) -> dict[str, str]:
        """Wait until every named instance has an outcome; 'timeout' for those still pending."""
        w = _Waiter(tuple(names), outcome, self._loop.create_future())
        self._waiters.append(w)
        self._check_waiters()
        try:
            return await asyncio.wait_for(asyncio.shield(w.future), timeout)
        except TimeoutError:
            return {
                n: (outcome(self.core.procs[n]) if n in self.core.procs else "ok").replace(
                    "pending", "timeout"
                )
                for n in w.names
            }

    # -- user requests ----------------------------------------------------------------------------

    async def start(self, names: list[str], timeout: float | None = None) -> dict[str, str]:
        for n in names:
            self.dispatch(core.StartRequested(n))
        return await self.wait(names, core.Proc.start_outcome, timeout)

    async def stop(self, names: list[str], timeout: float | None = None) -> dict[str, str]:
        for n in names:
            self.dispatch(core.StopRequested(n))
        return await self.wait(names, core.Proc.stop_outcome, timeout)

    async def restart(self, names: list[str], timeout: float | None = None) -> dict[str, str]:
        for n in names:
            self.dispatch(core.RestartRequested(n))
        return await self.wait(names, core.Proc.start_outcome, timeout)

    def send_signal(self, name: str, sig: int) -> bool:
        child = self.children.get(name)
        proc = self.core.procs[name]
        if child is None or not proc.state.is_alive:
            return False
        return platform.signal_pid(child.pid, sig)

    async def stop_all(self) -> dict[str, str]:
        return await self.stop(self.names())

    def leftover_pids(self) -> list[int]:
        """Processes we started that are still alive (for `down`'s exit status)."""
        return [c.pid for c in self.children.values() if platform.is_same_process(c.pid, c.start_ticks)]

    # -- config changes -------------------------------------------------------------------------

    async def apply_config(self, new: Config) -> dict[str, list[str]]:
        """`update`: add, remove, and restart only what changed."""
        diff = diff_configs(self.config, new)
        specs = new.by_name()
        if diff["removed"] or diff["changed"]:
            await self.stop(diff["removed"] + diff["changed"])
        for name in diff["removed"]:
            self._forget(name)
        for name in diff["changed"]:
            self._forget(name)
            self._add(specs[name])
        for name in diff["added"]:
            self._add(specs[name])
        # keep config order for status listings
        self.core.procs = {s.name: self.core.procs[s.name] for s in new.programs}
        self.config = new
        to_start = [n for n in diff["added"] + diff["changed"] if specs[n].autostart]
        if to_start:
            await self.start(to_start, timeout=30)
        return diff

    # -- status ---------------------------------------------------------------------------------

    def status(self, names: Iterable[str] | None = None) -> list[dict[str, object]]:
        now = self.clock()
        wall = time.time()
        rows = []
        for name in names if names is not None else self.core.procs:
            p = self.core.procs[name]
            alive = p.state.is_alive and p.started_at is not None
            uptime = now - p.started_at if alive and p.started_at is not None else None
            rows.append(
                {
                    "name": name,
                    "program": p.spec.program,
                    "state": p.state.value,
                    "pid": p.pid,
                    "uptime": round(uptime, 3) if uptime is not None else None,
                    "started": round(wall - uptime, 3) if uptime is not None else None,
                    "restarts": p.restarts,
                    "failures": p.failures,
                    "given_up": p.given_up,
                    "last_exit": p.last_exit.describe() if p.last_exit else None,
                    "exit_code": p.last_exit.exit_code if p.last_exit else None,
                    "error": p.last_error,
                    "stdout_file": p.spec.stdout.path,
                    "stderr_file": p.spec.stderr.path,
                    "dropped_bytes": self._dropped(name),
                }
            )
        return rows

    def _dropped(self, name: str) -> int:
        s = self._streams.get(name)
        return 0 if s is None else s.stdout.dropped_bytes + s.stderr.dropped_bytes

    def autostart_names(self) -> list[str]:
        return [n for n, p in self.core.procs.items() if p.spec.autostart]

    def state_of(self, name: str) -> ProcessState:
        return self.core.procs[name].state


def diff_configs(old: Config, new: Config) -> dict[str, list[str]]:
    """Instance names added, removed and changed between two configs (pure)."""
    a, b = old.by_name(), new.by_name()
    return {
        "added": [n for n in b if n not in a],
        "removed": [n for n in a if n not in b],
        "changed": [n for n in b if n in a and a[n] != b[n]],
    }
