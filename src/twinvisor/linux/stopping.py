"""Stopping a process: its stop signal first, SIGKILL when it outlives the timeout.

One plan for everything outside the supervisor's core that stops a process: the daemon
library's watcher, the pool and the guard. Steps:

  1. `ask`:   the stop signal to the process (or its whole group), then SIGCONT, because a
              stopped process cannot act on the signal until it runs again;
  2. wait up to `timeout` for the exit (a pidfd: woken by the exit itself, no polling);
  3. `force`: SIGKILL to the same target, and wait again.

`stop` runs the steps blocking, `stop_async` on an asyncio loop for a caller that reaps
the process itself and hands in its exit future. The guard uses the steps from its own
event loop, where a lapsed heartbeat plays the timeout. The supervisor's runtime stops
programs by the same steps, driven by the core's timers (stop_timeout -> ForceKill) since
it must never block.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Iterator

import msgspec

from twinvisor.linux import kernel


class StopPlan(msgspec.Struct, frozen=True):
    pid: int  # the process whose exit ends the stop (the group leader when `group`)
    signal: int = signal.SIGTERM
    timeout: float | None = 10.0  # from `ask` to `force`; None: never force
    group: bool = True  # signal the process group led by `pid`, not `pid` alone

    def ask(self) -> bool:
        """Step 1; False when there was nothing left to signal."""
        sent = self._send(self.signal)
        self._send(signal.SIGCONT)
        return sent

    def force(self) -> bool:
        """Step 3: SIGKILL; False when there was nothing left to kill."""
        return self._send(signal.SIGKILL)

    def _send(self, sig: int) -> bool:
        if self.group:
            return kernel.signal_group(self.pid, sig)
        return kernel.signal_pid(self.pid, sig)


def _steps(plan: StopPlan, kill_wait: float | None) -> Iterator[float | None]:
    """The plan in order; yields how long to wait for the exit after each signal. A driver
    stops pulling once the process has exited, so `force` runs only when it did not."""
    plan.ask()
    yield plan.timeout
    plan.force()
    yield kill_wait


def stop(plan: StopPlan, kill_wait: float | None = None) -> bool:
    """Stop `plan.pid` and block until it has exited (or `kill_wait` after SIGKILL ran out).

    True when it exited. Works for any process, ours or not; a child of ours is left for
    its parent to reap (it has exited, so the reaping does not block).
    """
    return any(kernel.wait_gone(plan.pid, wait) for wait in _steps(plan, kill_wait))


async def stop_async(
    plan: StopPlan, exited: Awaitable[object], kill_wait: float | None = None
) -> bool:
    """`stop` on the running loop, for a caller that reaps the process itself: `exited`
    resolves at its exit (and is not cancelled by a timeout)."""
    waiting = asyncio.ensure_future(exited)
    for wait in _steps(plan, kill_wait):
        try:
            await asyncio.wait_for(asyncio.shield(waiting), wait)
        except TimeoutError:
            continue
        return True
    return False
