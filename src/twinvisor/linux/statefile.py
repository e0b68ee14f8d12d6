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

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from twinvisor.linux import fsutil

log = logging.getLogger("twinvisor")

VERSION = 1


@dataclass(frozen=True)
class ChildRecord:
    name: str  # instance name
    pid: int
    start_ticks: int | None  # /proc start time: a reused pid never matches
    started_wall: float  # time.time() at spawn, for uptime after adoption


@dataclass
class PersistedState:
    desired: dict[str, bool] = field(default_factory=dict)  # instance -> should run
    children: list[ChildRecord] = field(default_factory=list)
    clean_shutdown: bool = False  # `down` finished: the next `up` starts afresh
    restarts: dict[str, int] = field(default_factory=dict)
    # instance -> how its last generation ended: {exit_code, signal, signal_name, run_time, asked}
    last_exits: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "version": VERSION,
            "written": time.time(),
            "clean_shutdown": self.clean_shutdown,
            "desired": self.desired,
            "restarts": self.restarts,
            "last_exits": self.last_exits,
            "children": [[c.name, c.pid, c.start_ticks, c.started_wall] for c in self.children],
        }
        return json.dumps(data, separators=(",", ":"))


def load(path: str) -> PersistedState:
    """The saved state; an empty one when missing. A corrupt file is moved aside (kept for
    a post-mortem, never deleted) and the daemon starts anyway."""
    try:
        with open(path, "rb") as f:
            raw = f.read(16 * 1024 * 1024)
    except FileNotFoundError:
        return PersistedState()
    except OSError as e:
        log.error("cannot read state file %s: %s; starting without it", path, e.strerror)
        return PersistedState()
    try:
        return _parse(json.loads(raw))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        aside = f"{path}.corrupt-{int(time.time())}"
        try:
            os.replace(path, aside)
        except OSError:
            aside = "(could not move it aside)"
        log.error("state file %s is corrupt (%s); moved to %s; starting without it", path, e, aside)
        return PersistedState()


def _parse(data: Any) -> PersistedState:
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError("unknown format or version")
    desired = {str(k): bool(v) for k, v in dict(data["desired"]).items()}
    restarts = {str(k): int(v) for k, v in dict(data.get("restarts", {})).items()}
    last_exits = {str(k): _exit(v) for k, v in dict(data.get("last_exits", {})).items()}
    children = [
        ChildRecord(str(name), int(pid), None if ticks is None else int(ticks), float(wall))
        for name, pid, ticks, wall in data["children"]
    ]
    return PersistedState(desired, children, bool(data["clean_shutdown"]), restarts, last_exits)


def _exit(raw: Any) -> dict[str, Any]:
    """One last_exits entry, its types checked (an older or edited file must not crash us)."""
    d = dict(raw)

    def num(key: str) -> int | None:
        return None if d.get(key) is None else int(d[key])

    name = d.get("signal_name")
    return {
        "exit_code": num("exit_code"),
        "signal": num("signal"),
        "signal_name": None if name is None else str(name),
        "run_time": float(d.get("run_time", 0.0)),
        "asked": bool(d.get("asked", False)),
    }


def save(path: str, state: PersistedState, durable: bool) -> bool:
    """False when it could not be written (full disk): the caller keeps going and retries
    with the next change; supervision never depends on this succeeding."""
    if durable:
        return fsutil.write_atomic(path, state.to_json(), 0o600)
    return fsutil.write_atomic(path, state.to_json(), 0o600, fsync=False)
