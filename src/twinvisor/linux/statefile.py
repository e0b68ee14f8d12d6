"""Persisted state: what the user wants running, and which processes are ours right now.

A supervisor that dies and comes back (by the guard, the timer, or a manual `up`) reads this
to adopt the children that are still alive instead of starting second copies, and to keep
a program the user stopped stopped.

Durability: the file is replaced atomically (temp file + rename), so a reader sees the old or
the new state, never a torn one. Changes to the *desired* state are also fsynced (they must
survive a reboot); the list of live children is not, because after a machine crash those
children are gone anyway, and skipping fsync keeps spawning fast.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any, Literal, cast

import msgspec

from twinvisor.linux import fsutil

log = logging.getLogger("twinvisor")

VERSION: Literal[1] = 1
MAX_BYTES = 16 * 1024 * 1024  # 200 programs take a few KB

# The file is untrusted input (any process of our uid, a bug or a full disk may have left
# anything there): a typed schema with bounds, checked by msgspec while it parses, so nested
# garbage, a pid of 1e400 or a string where a number belongs is a clean error, not a crash.
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
_Pid = Annotated[int, msgspec.Meta(ge=1, le=1 << 22)]  # PID_MAX_LIMIT
_Ticks = Annotated[int, msgspec.Meta(ge=0, le=1 << 62)]
_Wall = Annotated[float, msgspec.Meta(ge=0, le=1e11)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=1 << 31)]


class _Exit(msgspec.Struct, frozen=True):
    exit_code: Annotated[int, msgspec.Meta(ge=-(1 << 31), le=1 << 31)] | None = None
    signal: Annotated[int, msgspec.Meta(ge=0, le=1024)] | None = None
    signal_name: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    run_time: Annotated[float, msgspec.Meta(ge=0, le=1e11)] = 0.0
    asked: bool = False


class _Wire(msgspec.Struct, frozen=True):
    version: Literal[1]
    clean_shutdown: bool
    desired: dict[_Name, bool]
    children: list[tuple[_Name, _Pid, _Ticks | None, _Wall]]
    restarts: dict[_Name, _Count] = {}
    # instance -> how its last generation ended
    last_exits: dict[_Name, _Exit] = {}
    written: float = 0.0


_decoder = msgspec.json.Decoder(_Wire)


class ChildRecord(msgspec.Struct, frozen=True):
    name: str  # instance name
    pid: int
    start_ticks: int | None  # /proc start time: a reused pid never matches
    started_wall: float  # time.time() at spawn, for uptime after adoption


class PersistedState(msgspec.Struct):
    desired: dict[str, bool] = msgspec.field(default_factory=dict)  # instance -> should run
    children: list[ChildRecord] = msgspec.field(default_factory=list)
    clean_shutdown: bool = False  # `down` finished: the next `up` starts afresh
    restarts: dict[str, int] = msgspec.field(default_factory=dict)
    # instance -> how its last generation ended: {exit_code, signal, signal_name, run_time, asked}
    last_exits: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)

    def to_json(self) -> str:
        wire = _Wire(
            VERSION,
            self.clean_shutdown,
            self.desired,
            [(c.name, c.pid, c.start_ticks, c.started_wall) for c in self.children],
            self.restarts,
            # encoded as they are (encoding checks no bounds: that is for reading back)
            cast(dict[str, _Exit], self.last_exits),
            time.time(),
        )
        return msgspec.json.encode(wire).decode()


def load(path: str) -> PersistedState:
    """The saved state; an empty one when missing. A bad file (not JSON, not our schema, not
    a regular file, too large) is moved aside, kept for a post-mortem, and the daemon starts
    anyway: adoption does not depend on this file (recovery also finds programs by their tag)."""
    try:
        raw = fsutil.read_untrusted(path, MAX_BYTES)
        if raw is None:
            return PersistedState()
        wire = _decoder.decode(raw)
    except (fsutil.Untrusted, msgspec.DecodeError) as e:
        aside = fsutil.move_aside(path)
        log.error("state file %s is corrupt (%s); moved to %s; starting without it", path, e, aside)
        return PersistedState()
    except OSError as e:
        log.error("cannot read state file %s: %s; starting without it", path, e.strerror)
        return PersistedState()
    children = [ChildRecord(n, pid, ticks, wall) for n, pid, ticks, wall in wire.children]
    exits = {n: msgspec.structs.asdict(e) for n, e in wire.last_exits.items()}
    return PersistedState(
        dict(wire.desired), children, wire.clean_shutdown, dict(wire.restarts), exits
    )


def save(path: str, state: PersistedState, durable: bool) -> bool:
    """False when it could not be written (full disk): the caller keeps going and retries
    with the next change; supervision never depends on this succeeding."""
    if durable:
        return fsutil.write_atomic(path, state.to_json(), 0o600)
    return fsutil.write_atomic(path, state.to_json(), 0o600, fsync=False)
