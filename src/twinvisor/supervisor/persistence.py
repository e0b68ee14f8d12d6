"""The persisted state of one runtime: what the user wants running, and which processes are
ours, written to `run_dir/state.json` (format and atomic writes: `linux.statefile`).

Batched: one write per loop iteration however many events it handled; a change to what the
user wants is fsynced, the list of live children is not (after a machine crash they are gone).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from twinvisor.config import applied
from twinvisor.config.specs import Config
from twinvisor.linux import fsutil, statefile
from twinvisor.supervisor.seams import Recoverable

log = logging.getLogger("twinvisor")


def save_applied(config: Config) -> None:
    """The config now running, for a supervisor restarted while the file has errors."""
    text = applied.encode(config)
    if not fsutil.write_atomic(applied.path(config.daemon.run_dir), text, 0o600):
        log.warning("cannot write the applied config to %s", config.daemon.run_dir)


class StateFile:
    def __init__(self, rt: Recoverable) -> None:
        self._rt = rt
        self.path = f"{rt.config.daemon.run_dir}/state.json"
        self.desired: dict[str, bool] = {}
        self.dirty = False  # a change not written yet
        self.durable = False  # ... that must survive a power cut (the user's wishes)
        self._flush_scheduled = False
        self.counters_reset = False  # after `down`: the next `up` starts with fresh counters

    def want(self, names: Iterable[str], running: bool) -> None:
        for n in names:
            if self.desired.get(n) != running:
                self.desired[n] = running
                self.dirty = self.durable = True
        self.flush()

    def snapshot(self, clean: bool = False) -> statefile.PersistedState:
        rt = self._rt
        wall, now = time.time(), rt.clock()
        records = []
        for pid, (name, child) in rt.children.items():
            proc = rt.procs.get(name)
            started = proc.started_at if proc is not None and proc.pid == pid else None
            age = now - started if started is not None else 0.0
            records.append(statefile.ChildRecord(name, pid, child.known_start(), wall - age))
        records = [] if clean else records
        if self.counters_reset:
            return statefile.PersistedState(dict(self.desired), records, clean)
        restarts = {n: p.restarts for n, p in rt.procs.items() if p.restarts}
        last_exits = {
            n: {
                "exit_code": e.exit_code,
                "signal": e.signal,
                "signal_name": e.signal_name,
                "run_time": round(e.run_time, 3),
                "asked": e.asked,
            }
            for n, p in rt.procs.items()
            if (e := p.last_exit) is not None
        }
        return statefile.PersistedState(dict(self.desired), records, clean, restarts, last_exits)

    def schedule_flush(self) -> None:
        """Write the state once per loop iteration, however many events it handled: starting
        200 programs is then a handful of writes, not 200 growing ones. A supervisor killed
        inside that window loses nothing: recovery also finds our children by their tag."""
        if self.dirty and not self._flush_scheduled:
            self._flush_scheduled = True
            self._rt.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self.dirty:
            return
        if statefile.save(self.path, self.snapshot(), durable=self.durable):
            self.dirty = self.durable = False
        # else: full disk; the next change retries, supervision goes on regardless

    def reset_counters(self) -> None:
        """`down`: RESTARTS and LAST EXIT start afresh with the next `up` (a takeover keeps
        them); what the user wants running is kept."""
        self.counters_reset = self.dirty = self.durable = True
        self.flush()

    def save_clean_shutdown(self) -> None:
        statefile.save(self.path, self.snapshot(clean=True), durable=True)
