"""Connection slots for the control server: a bounded number of connections are served at
once, and a new request always gets one.

Idle or slow connections cannot lock the API: when every slot is taken, a newcomer takes the
slot of the connection that has been silent longest (no byte for `stale_after` seconds while
it is waiting for a request), which is closed. Only when every connection is busy (a request
being read at speed or being answered) does a newcomer wait, newest first (under overload the
freshest request is the one whose client is still waiting; `status` answers at once), for at
most its deadline.
"""

from __future__ import annotations

import asyncio
import resource
import time

import msgspec


class Slot(msgspec.Struct):
    """One admitted connection. `reading`: between requests or inside one (it may be
    evicted when silent); False while its request is being answered."""

    task: asyncio.Task[None]
    progress: float = msgspec.field(default_factory=time.monotonic)
    reading: bool = True

    def touch(self) -> None:
        self.progress = time.monotonic()


class _Waiter:
    """A connection waiting for a slot; keeps its place in the queue across wake-ups."""

    def __init__(self) -> None:
        self.wake: asyncio.Future[bool] | None = None

    def poke(self, admit: bool = True) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(admit)


def default_max_waiting() -> int:
    """Waiting connections cost an fd each: a quarter of the fd limit at most."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(1024, soft // 4)) if soft > 0 else 1024


class ConnectionSlots:
    def __init__(
        self, limit: int, stale_after: float = 0.1, max_waiting: int | None = None
    ) -> None:
        self.limit = limit
        self.stale_after = stale_after
        self.max_waiting = default_max_waiting() if max_waiting is None else max_waiting
        self.active: dict[asyncio.Task[None], Slot] = {}
        self._waiters: list[_Waiter] = []  # oldest first
        self.evicted = 0

    async def acquire(self, task: asyncio.Task[None], timeout: float) -> Slot | None:
        """A slot for `task`, or None when none could be had within `timeout` (or the
        waiting room overflowed and this was the oldest waiter)."""
        deadline = time.monotonic() + timeout
        me: _Waiter | None = None
        try:
            while True:
                if len(self.active) < self.limit or self._evict_one():
                    slot = self.active[task] = Slot(task)
                    if me is not None:
                        self._waiters.remove(me)
                        me = None
                    self._poke_newest()  # the next may take a stale slot too, newest first
                    return slot
                now = time.monotonic()
                if now >= deadline:
                    return None
                if me is None:
                    if len(self._waiters) >= self.max_waiting:
                        self._waiters.pop(0).poke(admit=False)
                    me = _Waiter()
                    self._waiters.append(me)
                if not await self._wait(me, now, deadline):
                    return None
        finally:
            if me is not None and me in self._waiters:
                self._waiters.remove(me)

    async def _wait(self, me: _Waiter, now: float, deadline: float) -> bool:
        """False: dropped from the waiting room. Only the newest waiter wakes for the
        moment the stalest reader becomes evictable; it then pokes the next one."""
        wake = deadline
        if self._waiters[-1] is me:
            readers = [s.progress for s in self.active.values() if s.reading]
            if readers:
                wake = min(wake, min(readers) + self.stale_after)
        me.wake = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(max(0.0, wake - now)):
                return await me.wake
        except TimeoutError:
            return True

    def release(self, task: asyncio.Task[None]) -> None:
        if self.active.pop(task, None) is not None:
            self._poke_newest()

    def _poke_newest(self) -> None:
        if self._waiters:
            self._waiters[-1].poke()

    def _evict_one(self) -> bool:
        """Close the connection silent the longest, if it is silent long enough."""
        now = time.monotonic()
        stale = [
            s for s in self.active.values() if s.reading and now - s.progress >= self.stale_after
        ]
        if not stale:
            return False
        victim = min(stale, key=lambda s: s.progress)
        del self.active[victim.task]
        victim.task.cancel()
        self.evicted += 1
        return True
