"""The narrow interfaces between the runtime and the modules around it.

`orchestration`, `health` and `recovery` work *on* the runtime without importing it (no import
circle): each is handed the runtime typed as the smallest Protocol it needs. The guard link is
one too, so the supervisor never imports the twin layer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from twinvisor.config.specs import Config
from twinvisor.core.events import Event
from twinvisor.core.machine import ProcView
from twinvisor.core.states import Outcome
from twinvisor.linux import sockets
from twinvisor.linux.children import Child
from twinvisor.supervisor.journal import Journal

OutcomeOf = Callable[[ProcView], Outcome]


class FdKeeper(Protocol):
    """The guard, as the supervisor sees it: it keeps duplicates of fds we cannot lose."""

    def hold(self, key: str, fd: int) -> None: ...
    def release(self, key: str) -> None: ...


class DesiredState(Protocol):
    def want(self, names: Iterable[str], running: bool) -> None: ...


class Engine(Protocol):
    """Events in, outcomes out, and a read-only view of the core (orchestration, health)."""

    @property
    def procs(self) -> Mapping[str, ProcView]: ...
    @property
    def children(self) -> Mapping[int, tuple[str, Child]]: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def desired(self) -> DesiredState: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def closing(self) -> bool: ...

    def dispatch(self, event: Event) -> None: ...
    async def wait(
        self, names: Iterable[str], outcome: OutcomeOf, timeout: float | None
    ) -> dict[str, Outcome]: ...


class Recoverable(Engine, Protocol):
    """What taking over from a previous supervisor needs on top (recovery)."""

    @property
    def config(self) -> Config: ...
    @property
    def fifo_dir(self) -> str: ...
    @property
    def sockets(self) -> sockets.SocketRegistry: ...
    @property
    def link(self) -> FdKeeper | None: ...
    @property
    def freshness_hooks(self) -> list[Callable[[], None]]: ...

    def clock(self) -> float: ...
    def track(self, name: str, child: Child) -> None: ...
    def remove_stale(self) -> None: ...
    def restore_desired(self, desired: dict[str, bool]) -> None: ...
    def mark_state_dirty(self) -> None: ...
    def flush_state(self) -> None: ...
    def write_leftover(self, name: str, pid: int, stream: str, fd: int) -> None: ...
