"""Taking over from a previous supervisor: adopting the live children it left (from the state
file, or found by their tag), their output FIFOs and the listening sockets they hold.

What the shell learns here reaches the core as events (Adopted, StrayGeneration,
CountersRestored); nothing here writes core state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time

from twinvisor.core.events import Adopted, CountersRestored, ExitRecord, StrayGeneration
from twinvisor.linux import children, fsutil, kernel, sockets, statefile, tags
from twinvisor.linux.children import Child
from twinvisor.supervisor import fdkeys, trust
from twinvisor.supervisor.seams import Recoverable

log = logging.getLogger("twinvisor")


def recover(rt: Recoverable, saved: statefile.PersistedState, handed: dict[str, int]) -> set[str]:
    """Adopt the live children a previous supervisor left; returns the adopted names.

    A record is trusted only if the pid is alive with the same start time (pid reuse); a
    process found by its environment tag only if it is a generation (see `linux.tags`)."""
    procs = rt.procs
    rt.restore_desired({n: v for n, v in saved.desired.items() if n in procs})
    for name in set(saved.restarts) | set(saved.last_exits):
        if name in procs:
            last = saved.last_exits.get(name)
            record = None if last is None else ExitRecord(**last)
            rt.dispatch(CountersRestored(name, saved.restarts.get(name, 0), record))
    adopted: set[str] = set()
    # newest first: if a restart was half done, the newest generation is the current one
    for rec in sorted(_candidates(rt, saved), key=lambda r: -r.started_wall):
        if not _alive(rec):
            continue
        rt.track(rec.name, _reattach(rt, rec, handed))
        if rec.name in adopted:  # an older generation still alive: the core retires it
            rt.dispatch(StrayGeneration(rec.name, rec.pid))
            continue
        started = rt.clock() - max(0.0, time.time() - rec.started_wall)
        rt.dispatch(Adopted(rec.name, rec.pid, started))
        adopted.add(rec.name)
    for key, fd in handed.items():  # what is left: pipes of generations that are gone
        pipe = fdkeys.pipe_of(key)
        if pipe is not None:
            rt.write_leftover(*pipe, fd)  # their last words to the log, then closed
        else:
            os.close(fd)
    handed.clear()
    rt.remove_stale()
    rt.mark_state_dirty()
    rt.flush_state()
    return adopted


def _candidates(rt: Recoverable, saved: statefile.PersistedState) -> list[statefile.ChildRecord]:
    """Live generations of known instances: the state file's, and those found by their tag,
    which finds them whatever happened to the state file (lost, corrupt, stale)."""
    procs = rt.procs
    candidates = [r for r in saved.children if r.name in procs and _alive(r)]
    known = {r.pid for r in candidates}
    covered = {r.name for r in candidates}
    for t in tags.generations(tags.scan(rt.config.daemon.run_dir, known)):
        # a process from before generation ids is trusted only where the state file has
        # nothing alive for its instance (it may be a double-forked descendant)
        if t.name in procs and (t.generation is not None or t.name not in covered):
            rec = statefile.ChildRecord(t.name, t.pid, t.start_ticks, t.create_time)
            if _trusted(rt, saved, rec):
                candidates.append(rec)
    return candidates


def _trusted(rt: Recoverable, saved: statefile.PersistedState, rec: statefile.ChildRecord) -> bool:
    """A tag is only a claim: see trust.py."""
    why = trust.refusal(rt.procs[rec.name].spec, rec.pid, saved.desired.get(rec.name))
    if why is not None:
        log.warning("not adopting pid %d tagged as %s: %s", rec.pid, rec.name, why)
    return why is None


def _reattach(rt: Recoverable, rec: statefile.ChildRecord, handed: dict[str, int]) -> Child:
    """A Child for a live process, with its output pipes: the guard's copy if it survived,
    else (both twins died) the FIFO by its path, for a program spawned with one, else the
    program's own end of its pipe, through /proc (an OutputPipe, or a FIFO whose path was
    removed too)."""
    spec = rt.procs[rec.name].spec
    ends = []
    named = False
    for stream, target, captured in (("out", 1, spec.stdout), ("err", 2, spec.stderr)):
        fifo = children.fifo_path(rt.fifo_dir, f"{rec.name}.{stream}", rec.pid)
        named = named or os.path.exists(fifo)  # spawned with FIFOs: removed once read out
        fd = handed.pop(fdkeys.pipe(rec.name, rec.pid, stream), None)
        if fd is None:
            fd = children.open_fifo(rt.fifo_dir, rec.name, stream, rec.pid)
        if fd is None and captured.path is not None:
            fd = children.open_program_end(rec.pid, target)
            if fd is not None and children.is_named_fifo(fd):
                log.warning(
                    "%s: output FIFO %s was removed: reading it through /proc/%d/fd/%d",
                    rec.name,
                    fifo,
                    rec.pid,
                    target,
                )
        ends.append(fd)
    start = kernel.process_start_time(rec.pid)
    child = Child(rec.pid, start, ends[0], ends[1], named_fifos=named)
    for fd in ends:
        if fd is not None:
            os.set_blocking(fd, False)
    return child


def _alive(rec: statefile.ChildRecord) -> bool:
    return kernel.is_same_process(rec.pid, rec.start_ticks) and not kernel.is_zombie(rec.pid)


def create_time(pid: int) -> float:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return time.time()


def claim_sockets(rt: Recoverable, unbound: list[str]) -> None:
    """After adoption: take the sockets we could not bind back from the live programs
    that hold them (they were passed to them at fd 3, 4, ...). Raises if one is missing."""
    for addr in unbound:
        sock = _claim_from_programs(rt, addr)
        if sock is None:
            # held by someone else: only the programs that need it fail (their spawn tries to
            # bind and reports why); the daemon and every other program go on
            log.warning("listen_addrs %r is in use by another process", addr)
            continue
        rt.sockets.adopt(addr, sock)
        if rt.link is not None:
            rt.link.hold(fdkeys.listen(addr), sock.fileno())
        log.info("took listening socket %s back from a running program", addr)


def _claim_from_programs(rt: Recoverable, addr: str) -> socket.socket | None:
    wanted = sockets.parse_listen_addr(addr)
    for pid, (name, _child) in rt.children.items():
        spec = rt.procs[name].spec
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
    (ours are reaped by pid through their own watchers, never by a wildcard wait). Our
    children are listed by the kernel (one file per thread), not by psutil's scan of every
    process on the machine, at each SIGCHLD."""
    for kid in kernel.children_of(os.getpid()):
        if kid not in ours and kernel.is_zombie(kid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(kid, os.WNOHANG)
