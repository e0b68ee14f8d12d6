"""Running `[hooks.NAME]` commands on events, without ever blocking the supervisor.

A hook gets the event as one JSON object on stdin and as TWINVISOR_EVENT (plus
TWINVISOR_EVENT_KIND, _ID, _INSTANCE, _PROGRAM) in its environment; no shell unless its command
is one. It runs in its own session, is SIGKILLed (with its group) at `timeout`, and its failure
(exit code, signal, timeout, not found) is logged. At most MAX_RUNNING hooks run at once and
MAX_QUEUED wait; past that an event's hooks are dropped with a warning, so a flood of events
cannot pile up processes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import deque

import msgspec

from twinvisor.config.specs import HookSpec
from twinvisor.linux import kernel
from twinvisor.supervisor.journal import EventRecord

log = logging.getLogger("twinvisor")

MAX_RUNNING = 4
MAX_QUEUED = 100


def matches(hook: HookSpec, event: EventRecord) -> bool:
    if hook.programs and not ({event.program, event.instance} & set(hook.programs)):
        return False
    for kind in hook.on:
        if kind == "*" or kind == event.kind:
            return True
        if kind == "unexpected_exit" and event.kind == "exit" and event.expected is False:
            return True
        if kind == "fatal" and event.kind == "state" and event.state == "FATAL":
            return True
    return False


class HookRunner:
    def __init__(self, hooks: tuple[HookSpec, ...]) -> None:
        self.hooks = hooks
        self._queue: deque[tuple[HookSpec, EventRecord]] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._pids: set[int] = set()  # hooks running now: killed when the supervisor ends
        self.failures = 0  # for metrics and tests

    def on_event(self, event: EventRecord) -> None:
        """A journal listener: queue the hooks this event wakes."""
        for hook in self.hooks:
            if not matches(hook, event):
                continue
            if len(self._queue) >= MAX_QUEUED:
                log.warning("hook %s dropped for event %d: too many queued", hook.name, event.id)
                continue
            self._queue.append((hook, event))
        self._start_more()

    def close(self) -> None:
        """The supervisor ends (down, upgrade): hooks still running are killed, not orphaned."""
        for pid in self._pids:
            kernel.signal_group(pid, signal.SIGKILL)
        for task in list(self._tasks):
            task.cancel()

    def _start_more(self) -> None:
        while self._queue and self._running < MAX_RUNNING:
            hook, event = self._queue.popleft()
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._run(hook, event))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._running -= 1
        self._start_more()

    async def _run(self, hook: HookSpec, event: EventRecord) -> None:
        payload = msgspec.json.encode(event)
        env = dict(os.environ)
        env.update(
            TWINVISOR_EVENT=payload.decode(),
            TWINVISOR_EVENT_KIND=event.kind,
            TWINVISOR_EVENT_ID=str(event.id),
            TWINVISOR_EVENT_INSTANCE=event.instance or "",
            TWINVISOR_EVENT_PROGRAM=event.program or "",
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *hook.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            self.failures += 1
            log.error("hook %s for event %d could not start: %s", hook.name, event.id, e)
            return
        self._pids.add(proc.pid)
        try:
            code = await asyncio.wait_for(self._feed_and_wait(proc, payload), hook.timeout)
        except TimeoutError:
            kernel.signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            self.failures += 1
            log.error("hook %s for event %d killed after %gs", hook.name, event.id, hook.timeout)
            return
        finally:
            self._pids.discard(proc.pid)
        if code != 0:
            self.failures += 1
            log.error("hook %s for event %d failed with exit status %s", hook.name, event.id, code)

    @staticmethod
    async def _feed_and_wait(proc: asyncio.subprocess.Process, payload: bytes) -> int:
        assert proc.stdin is not None
        try:
            proc.stdin.write(payload + b"\n")
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # a hook that does not read its stdin is fine
        finally:
            proc.stdin.close()
        return await proc.wait()
