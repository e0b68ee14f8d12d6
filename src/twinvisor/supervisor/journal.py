"""The event journal: every state change, exit, restart, readiness change, health-check failure,
config apply, takeover and guard restart, as a numbered record.

Kept in a bounded ring in memory and appended to `run_dir/events.jsonl` (one JSON object a
line, batched once per loop iteration, no fsync: losing the last events with the machine is
fine, losing them with the supervisor is not). A new supervisor reads the tail back, so ids keep
increasing across takeovers and a client resumes from the last id it saw with none missing.
The file is rewritten to its last `capacity` records when it grows past `MAX_FILE_BYTES`.

Everything read back is untrusted: lines that do not decode are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable

import msgspec

from twinvisor.linux import fsutil
from twinvisor.supervisor.event_record import EventRecord

__all__ = ["EventRecord", "Journal"]

log = logging.getLogger("twinvisor")

CAPACITY = 1000
MAX_FILE_BYTES = 1024 * 1024
_MAX_LINE = 4096  # a longer line in the file is not one of ours


_decode_line = msgspec.json.Decoder(EventRecord).decode
_encode = msgspec.json.Encoder().encode

Listener = Callable[[EventRecord], None]


class Journal:
    def __init__(self, path: str, capacity: int = CAPACITY) -> None:
        self.path = path
        self._ring: deque[EventRecord] = deque(maxlen=capacity)
        self._unwritten: list[EventRecord] = []
        self._flush_scheduled = False
        self._changed = asyncio.Event()
        self.listeners: list[Listener] = []  # hooks, metrics: called for every new event
        self._load()
        self.next_id = self._ring[-1].id + 1 if self._ring else 1

    # -- in -----------------------------------------------------------------------------------

    def emit(self, kind: str, **fields: object) -> EventRecord:
        record = msgspec.convert(
            {"id": self.next_id, "time": round(time.time(), 6), "kind": kind, **fields},
            EventRecord,
        )
        self.next_id += 1
        self._ring.append(record)
        self._unwritten.append(record)
        self._schedule_flush()
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in self.listeners:
            try:
                listener(record)
            except Exception:  # a hook's bug must not cost us the event
                log.exception("event listener failed on event %d", record.id)
        return record

    # -- out ----------------------------------------------------------------------------------

    @property
    def last_id(self) -> int:
        return self.next_id - 1

    def since(self, after: int, names: Iterable[str] | None = None) -> list[EventRecord]:
        """Events with an id above `after` still in the ring (of these instances/programs)."""
        wanted = set(names) if names else None
        return [
            r
            for r in self._ring
            if r.id > after
            and (wanted is None or r.instance in wanted or r.program in wanted or not r.instance)
        ]

    async def wait(
        self, after: int, timeout: float, names: Iterable[str] | None = None
    ) -> list[EventRecord]:
        """Long poll: the events after `after`, waiting up to `timeout` for the first one."""
        names = list(names) if names else None
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = self.since(after, names)
            remaining = deadline - asyncio.get_running_loop().time()
            if found or remaining <= 0:
                return found
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    # -- the file -----------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop (a test, or shutting down): write now
            self.flush()

    def flush(self) -> None:
        self._flush_scheduled = False
        batch, self._unwritten = self._unwritten, []
        if not batch:
            return
        data = b"".join(_encode(r) + b"\n" for r in batch)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
        except OSError as e:  # a full disk: the ring still serves, the file catches up later
            log.warning("cannot append to %s: %s", self.path, e)
            self._unwritten = batch + self._unwritten
            return
        if size > MAX_FILE_BYTES:
            self._compact()

    def _compact(self) -> None:
        data = b"".join(_encode(r) + b"\n" for r in self._ring).decode()
        if not fsutil.write_atomic(self.path, data, mode=0o600, fsync=False):
            log.warning("cannot compact %s", self.path)

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 2 * MAX_FILE_BYTES))
                lines = f.read().split(b"\n")
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("cannot read %s (%s): events start afresh", self.path, e)
            return
        last = 0
        for line in lines:
            if not line or len(line) > _MAX_LINE:
                continue
            try:
                record = _decode_line(line)
            except msgspec.DecodeError:  # ValidationError included
                continue
            if record.id > last:  # ids only grow: anything else is not ours
                self._ring.append(record)
                last = record.id


class _CounterFile(msgspec.Struct):
    takeovers: int = 0
    guard_restarts: int = 0


class Counters:
    """The supervisor's own counters that must outlive it (Prometheus counters only grow):
    takeovers and guard restarts, in `run_dir/counters.json`; untrusted when read back."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                self.values = msgspec.json.decode(f.read(4096), type=_CounterFile)
        except (OSError, msgspec.DecodeError):
            self.values = _CounterFile()
        if self.values.takeovers < 0 or self.values.guard_restarts < 0:
            self.values = _CounterFile()

    def count(self, name: str) -> int:
        value = int(getattr(self.values, name)) + 1
        setattr(self.values, name, value)
        fsutil.write_atomic(self.path, msgspec.json.encode(self.values).decode(), 0o600, False)
        return value
