"""What outlives one supervisor: the state file, pid files, FIFOs and listening sockets, and
taking on the live children a previous supervisor left behind.

`StateFile` belongs to one Runtime and owns the persisted state (what the user wants running,
whether it needs writing); the other functions are called by the runtime with what they need.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from twinvisor.core.events import Adopted
from twinvisor.core.machine import Proc
from twinvisor.linux import children, fsutil, kernel, sockets, statefile
from twinvisor.linux.children import Child

if TYPE_CHECKING:
    from twinvisor.supervisor.runtime import Runtime

log = logging.getLogger("twinvisor")

# seconds between checks that pid files still exist (seed 000: 30 s); tunable for tests
PID_REFRESH = float(os.environ.get("TWINVISOR_PID_REFRESH", "30"))


class StateFile:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self.path = f"{rt.config.daemon.run_dir}/state.json"
        self.desired: dict[str, bool] = {}
        self.dirty = False  # a change not written yet
        self.durable = False  # ... that must survive a power cut (the user's wishes)
        self._flush_scheduled = False

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
            proc = rt.core.procs.get(name)
            started = proc.started_at if proc is not None and proc.pid == pid else None
            age = now - started if started is not None else 0.0
            records.append(statefile.ChildRecord(name, pid, child.start_ticks, wall - age))
        restarts = {n: p.restarts for n, p in rt.core.procs.items() if p.restarts}
        records = [] if clean else records
        return statefile.PersistedState(dict(self.desired), records, clean, restarts)

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

    def save_clean_shutdown(self) -> None:
        statefile.save(self.path, self.snapshot(clean=True), durable=True)


def recover(rt: Runtime, saved: statefile.PersistedState, handed: dict[str, int]) -> set[str]:
    """Adopt the live children a previous supervisor left; returns the adopted names.

    A record is trusted only if the pid is alive with the same start time (pid reuse),
    and a process found by its environment tag only if it leads its own session."""
    procs = rt.core.procs
    rt.state_file.desired = {n: v for n, v in saved.desired.items() if n in procs}
    for name, count in saved.restarts.items():
        if name in procs:
            procs[name].restarts = count
    candidates = [r for r in saved.children if r.name in procs and _alive(r)]
    # the state file is the authority; the tag scan only covers instances it has nothing
    # alive for (a supervisor killed between a spawn and the save)
    covered = {r.name for r in candidates}
    candidates += [
        r
        for r in _tagged_processes(rt.config.daemon.run_dir, {r.pid for r in candidates})
        if r.name in procs and r.name not in covered
    ]
    adopted: set[str] = set()
    # newest first: if a restart was half done, the newest generation is the current one
    for rec in sorted(candidates, key=lambda r: -r.started_wall):
        if not _alive(rec):
            continue
        # the guard's copy if it survived, else the FIFO by its path (both twins died)
        out = handed.pop(f"pipe:{rec.name}:{rec.pid}:out", None)
        err = handed.pop(f"pipe:{rec.name}:{rec.pid}:err", None)
        if out is None:
            out = children.open_fifo(rt.fifo_dir, rec.name, "out", rec.pid)
        if err is None:
            err = children.open_fifo(rt.fifo_dir, rec.name, "err", rec.pid)
        child = Child(rec.pid, kernel.process_start_time(rec.pid), out, err)
        for fd in (child.stdout_fd, child.stderr_fd):
            if fd is not None:
                os.set_blocking(fd, False)
        rt.track(rec.name, child)
        if rec.name in adopted:  # an older generation still alive: retire it
            procs[rec.name].retiring.add(rec.pid)
            kernel.signal_group(rec.pid, procs[rec.name].spec.stop_signum)
            continue
        started = rt.clock() - max(0.0, time.time() - rec.started_wall)
        rt.dispatch(Adopted(rec.name, rec.pid, started))
        adopted.add(rec.name)
    for fd in handed.values():  # pipes of children that are gone
        os.close(fd)
    handed.clear()
    rt.remove_stale()
    rt.state_file.dirty = True
    rt.state_file.flush()
    return adopted


def _alive(rec: statefile.ChildRecord) -> bool:
    return kernel.is_same_process(rec.pid, rec.start_ticks) and not kernel.is_zombie(rec.pid)


def _tagged_processes(run_dir: str, known: set[int]) -> list[statefile.ChildRecord]:
    """Session leaders whose environment carries our run dir: programs of ours that the state
    file missed (a supervisor killed between spawn and save). A tagged process whose parent
    is tagged too is something a program started (say a daemon that called setsid), not a
    generation of its own."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid"]):
        if p.pid in known or p.pid == os.getpid():
            continue
        try:
            if os.getsid(p.pid) != p.pid:
                continue
            env = p.environ()
            if env.get("TWINVISOR_RUN_DIR") != run_dir or "TWINVISOR_PROGRAM" not in env:
                continue
            parent = p.parent()
            penv = parent.environ() if parent is not None else {}
            # both keys: the guard may carry TWINVISOR_RUN_DIR (a user may set it), never
            # TWINVISOR_PROGRAM, which only programs and what they start inherit
            if penv.get("TWINVISOR_RUN_DIR") == run_dir and "TWINVISOR_PROGRAM" in penv:
                continue
            found.append(
                statefile.ChildRecord(
                    env["TWINVISOR_PROGRAM"],
                    p.pid,
                    kernel.process_start_time(p.pid),
                    p.create_time(),
                )
            )
        except (psutil.Error, OSError):
            continue
    return found


def create_time(pid: int) -> float:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return time.time()


def claim_sockets(rt: Runtime, unbound: list[str]) -> None:
    """After adoption: take the sockets we could not bind back from the live programs
    that hold them (they were passed to them at fd 3, 4, ...). Raises if one is missing."""
    for addr in unbound:
        sock = _claim_from_programs(rt, addr)
        if sock is None:
            raise OSError(errno.EADDRINUSE, f"listen_addrs {addr!r} is in use by another process")
        rt.sockets.adopt(addr, sock)
        if rt.link is not None:
            rt.link.hold(f"listen:{addr}", sock.fileno())
        log.info("took listening socket %s back from a running program", addr)


def _claim_from_programs(rt: Runtime, addr: str) -> socket.socket | None:
    wanted = sockets.parse_listen_addr(addr)
    for pid, (name, _child) in rt.children.items():
        spec = rt.core.procs[name].spec
        if addr not in spec.listen_addrs:
            continue
        fd = kernel.pidfd_getfd(pid, sockets.SD_LISTEN_FDS_START + spec.listen_addrs.index(addr))
        if fd is None:
            continue
        sock = socket.socket(fileno=fd)
        if sockets.is_listening_on(sock, wanted):
            return sock
        sock.close()
    return None


def remove_stale_fifos(fifo_dir: str, live: set[str]) -> None:
    """FIFOs of programs that are gone (or of spawns cut short by a kill)."""
    try:
        entries = os.listdir(fifo_dir)
    except OSError:
        return
    for entry in entries:
        path = os.path.join(fifo_dir, entry)
        if path not in live:
            fsutil.remove_quietly(path)


def reap_orphans(ours: dict[int, tuple[str, Child]]) -> None:
    """Without a guard we are the subreaper: reap orphans that are not our programs
    (ours are reaped by pid through their own watchers, never by a wildcard wait)."""
    import psutil

    try:
        kids = psutil.Process().children()
    except psutil.Error:
        return
    for kid in kids:
        if kid.pid not in ours and kernel.is_zombie(kid.pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(kid.pid, os.WNOHANG)


def sync_pidfile(proc: Proc) -> None:
    """Seed 001's pid lock: the file holds the live pid while the program should run.
    Written atomically; a full disk keeps the last good version and is retried later."""
    path = proc.spec.pidfile
    assert path is not None
    if proc.pid is not None and proc.state.is_alive:
        if fsutil.read_pid(path) != proc.pid:
            fsutil.write_atomic(path, f"{proc.pid}\n", fsync=False)
    elif fsutil.read_pid(path) is not None and not proc.state.is_alive:
        fsutil.remove_quietly(path)


def start_freshness(rt: Runtime, own_pid_path: str) -> None:
    """Every PID_REFRESH seconds: rewrite pid files someone deleted (seed 000)."""

    def refresh() -> None:
        if fsutil.read_pid(own_pid_path) != os.getpid():
            log.warning("pid file %s was missing or wrong: rewritten", own_pid_path)
            fsutil.write_atomic(own_pid_path, f"{os.getpid()}\n", fsync=False)
        for proc in rt.core.procs.values():
            if proc.spec.pidfile:
                sync_pidfile(proc)
        rt.state_file.dirty = True  # the state file too, in case it was removed
        rt.state_file.flush()
        for hook in rt.freshness_hooks:
            hook()
        rt.loop.call_later(PID_REFRESH, refresh)

    rt.loop.call_later(PID_REFRESH, refresh)
