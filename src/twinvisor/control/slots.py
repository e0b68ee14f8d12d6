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
import time
from dataclasses import dataclass, field


@dataclass
class Slot:
    """One admitted connection. `reading`: between requests or inside one (it may be
    evicted when silent); False while its request is being answered."""

    task: asyncio.Task[None]
    progress: float = field(default_factory=time.monotonic)
    reading: bool = True

    def touch(self) -> None:
        self.progress = time.monotonic()


class ConnectionSlots:
    def __init__(self, limit: int, stale_after: float = 0.1, max_waiting: int = 256) -> None:
        self.limit = limit
        self.stale_after = stale_after
        self.max_waiting = max_waiting
        self.active: dict[asyncio.Task[None], Slot] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self.evicted = 0

    async def acquire(self, task: asyncio.Task[None], timeout: float) -> Slot | None:
        """A slot for `task`, or None when none could be had within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.active) < self.limit or self._evict_one():
                slot = Slot(task)
                self.active[task] = slot
                return slot
            now = time.monotonic()
            if now >= deadline or len(self._waiters) >= self.max_waiting:
                return None
            # wake when a slot frees, or when the stalest reader becomes evictable
            oldest = min(
                (s.progress for s in self.active.values() if s.reading), default=float("inf")
            )
            wake = min(deadline, oldest + self.stale_after)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(max(0.0, wake - now)):
                    await waiter
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def release(self, task: asyncio.Task[None]) -> None:
        if self.active.pop(task, None) is not None and self._waiters:
            waiter = self._waiters.pop()  # newest first
            if not waiter.done():
                waiter.set_result(None)

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
