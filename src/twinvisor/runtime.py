"""The asyncio shell around the pure core: carries out its actions and feeds it events.

Everything runs on the event loop thread. Events are processed one at a time from a queue
(`_dispatch` never recurses), so an action that produces an event (a spawn that fails) is
handled after the current batch, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, assert_never

from twinvisor import children, core, deps, fsutil, platform, readiness, sockets, state
from twinvisor.children import Child
from twinvisor.errors import SpawnError
from twinvisor.logs import LogFile
from twinvisor.specs import Config, DependCondition, HealthKind, ProgramSpec, ReadyMode
from twinvisor.states import ProcessState

log = logging.getLogger("twinvisor")

# seconds between checks that pid files still exist (seed 000: 30 s); tunable for tests
PID_REFRESH = float(os.environ.get("TWINVISOR_PID_REFRESH", "30"))


@dataclass
class _Waiter:
    names: tuple[str, ...]
    outcome: Callable[[core.Proc], str]  # 'ok' | 'failed' | 'pending'
    future: asyncio.Future[dict[str, str]]


@dataclass
class _Streams:
    stdout: LogFile
    stderr: LogFile


class Runtime:
    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.core = core.Core()
        self.clock = clock
        self.children: dict[
            int, tuple[str, Child]
        ] = {}  # pid -> (instance, child): every generation
        self.sockets = sockets.SocketRegistry()
        self.notify = readiness.NotifyServer(
            f"{config.daemon.run_dir}/notify.sock", self._on_notify
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.link: Any = None  # GuardLink when running as a twin: holds our fds for us
        self._pipe_keys: dict[int, str] = {}  # pipe fd -> key it is held under by the guard
        self._fifo_paths: dict[int, str] = {}  # pipe fd -> its FIFO in the run dir
        self._unbound: set[str] = set()  # listen_addrs in use at start-up: see claim_sockets
        self.freshness_hooks: list[Callable[[], None]] = []  # run with the pid file checks
        self.state_path = f"{config.daemon.run_dir}/state.json"
        self.fifo_dir = f"{config.daemon.run_dir}/pipes"
        self.desired: dict[str, bool] = {}
        self._dirty = False
        self._durable = False
        self._flush_scheduled = False
        self._health: dict[str, asyncio.Task[None]] = {}
        self._streams: dict[str, _Streams] = {}
        self._events: deque[core.Event] = deque()
        self._dispatching = False
        self._waiters: list[_Waiter] = []
        self._loop = asyncio.get_running_loop()
        self._sigchld_fallback = False
        for spec in config.programs:
            self._add(spec)

    # -- lifecycle ------------------------------------------------------------------------------

    def open(self, handed: dict[str, int] | None = None) -> None:
        """Bind what the programs need before the first spawn; raises OSError naming the address.

        `handed`: fds a previous supervisor left with the guard; listening sockets among them
        are taken over instead of bound again (they never stopped accepting)."""
        self.notify.start()
        for key in [k for k in (handed or {}) if k.startswith("listen:")]:
            assert handed is not None
            sock = socket.socket(fileno=handed.pop(key))
            self.sockets.adopt(key.removeprefix("listen:"), sock)
            if self.link is not None:
                self.link.hold(key, sock.fileno())
        for spec in self.config.programs:
            self._bind_sockets(spec, defer_in_use=True)

    def close(self, keep_sockets: bool = False) -> None:
        for task in [*self._tasks, *self._health.values()]:
            task.cancel()
        self.notify.close()
        if not keep_sockets:  # an upgrade hands unix sockets on: their files must stay
            self.sockets.close()

    def detach(self) -> None:
        """Upgrade: stop watching, leave every program running for the next supervisor."""
        self._flush_state()
        self._dirty = True
        self._flush_state()
        for fd in list(self._pipe_keys):
            self._loop.remove_reader(fd)

    def _bind_sockets(self, spec: ProgramSpec, defer_in_use: bool = False) -> list[int]:
        owner = _owner_ids(spec.socket_owner) if spec.socket_owner else None
        fds = []
        for addr in spec.listen_addrs:
            known = addr in dict(self.sockets.items())
            try:
                fd = self.sockets.get(addr, spec.socket_mode, owner).fileno()
            except OSError as e:
                if not (defer_in_use and e.errno == errno.EADDRINUSE):
                    raise OSError(
                        e.errno, f"{spec.name}: listen_addrs {addr!r}: {e.strerror}"
                    ) from None
                # perhaps held by a program of ours that outlived both twins: see claim_sockets
                self._unbound.add(addr)
                continue
            if not known and self.link is not None:
                self.link.hold(f"listen:{addr}", fd)
            fds.append(fd)
        return fds

    def claim_sockets(self) -> None:
        """After adoption: take the sockets we could not bind back from the live programs
        that hold them (they were passed to them at fd 3, 4, ...). Raises if one is missing."""
        for addr in sorted(self._unbound):
            sock = self._claim_from_programs(addr)
            if sock is None:
                raise OSError(
                    errno.EADDRINUSE, f"listen_addrs {addr!r} is in use by another process"
                )
            self.sockets.adopt(addr, sock)
            if self.link is not None:
                self.link.hold(f"listen:{addr}", sock.fileno())
            log.info("took listening socket %s back from a running program", addr)
        self._unbound.clear()

    def _claim_from_programs(self, addr: str) -> socket.socket | None:
        wanted = sockets.parse_listen_addr(addr)
        for pid, (name, _child) in self.children.items():
            spec = self.core.procs[name].spec
            if addr not in spec.listen_addrs:
                continue
            fd = platform.pidfd_getfd(
                pid, sockets.SD_LISTEN_FDS_START + spec.listen_addrs.index(addr)
            )
            if fd is None:
                continue
            sock = socket.socket(fileno=fd)
            if sockets.is_listening_on(sock, wanted):
                return sock
            sock.close()
        return None

    def _add(self, spec: ProgramSpec) -> None:
        self.core.add(spec)
        self._streams[spec.name] = _Streams(
            LogFile(spec.stdout, self._log_problem), LogFile(spec.stderr, self._log_problem)
        )

    def _forget(self, name: str) -> None:
        self.core.remove(name)
        health = self._health.pop(name, None)
        if health is not None:
            health.cancel()
        streams = self._streams.pop(name)
        streams.stdout.close()
        streams.stderr.close()

    @staticmethod
    def _log_problem(message: str) -> None:
        log.warning("%s", message)

    def names(self) -> list[str]:
        return list(self.core.procs)

    # -- events in ----------------------------------------------------------------------------

    def dispatch(self, event: core.Event) -> None:
        self._events.append(event)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._events:
                ev = self._events.popleft()
                self._carry_out(self.core.handle(ev, self.clock()))
        finally:
            self._dispatching = False
        self._schedule_flush()
        self._check_waiters()

    # -- actions out ----------------------------------------------------------------------------

    def _carry_out(self, actions: Iterable[core.Action]) -> None:
        for action in actions:
            match action:
                case core.Spawn(name=name):
                    self._spawn(name)
                case core.SendSignal():
                    self._signal(action)
                case core.KillRemnants(pid=pid):
                    entry = self.children.pop(pid, None)
                    self._dirty = True
                    if entry is not None:
                        children.kill_remnants(entry[1])
                case core.SetTimer(name=name, token=token, delay=delay, kind=kind, pid=pid):
                    event = core.TimerFired(name, token, kind, pid)
                    self._loop.call_later(delay, self.dispatch, event)
                case core.StartProbe(name=name, pid=pid):
                    self._spawn_task(self._probe_ready(name, pid))
                case core.StateChanged(name=name, old=old, new=new):
                    log.info("%s: %s -> %s", name, old.value, new.value)
                    self._on_state(name, new)
                case core.LogLine(name=name, message=message, level=level):
                    log.log(logging.getLevelName(level.upper()), "%s: %s", name, message)
                case _:
                    assert_never(action)

    def _spawn(self, name: str) -> None:
        proc = self.core.procs[name]
        spec = proc.spec
        if spec.find and proc.old_pid is None and self._adopt_found(name, spec):
            return
        try:
            child = children.spawn(spec, fifo_dir=self.fifo_dir, **self._spawn_extras(spec))
        except (SpawnError, OSError) as e:
            self._events.append(core.SpawnFailed(name, str(e)))
            return
        self.children[child.pid] = (name, child)
        self._dirty = True
        self._hold_pipes(name, child)
        self._watch_output(name, child)
        self._watch_exit(name, child)
        self._events.append(core.Spawned(name, child.pid))

    def _adopt_found(self, name: str, spec: ProgramSpec) -> bool:
        """Seed 001: a copy started by hand is taken over, never started a second time."""
        from twinvisor import discovery

        assert spec.find is not None
        ours = set(self.children) | {os.getpid()}
        for match in discovery.find_matches(spec, spec.find, exclude_pids=ours):
            if self._owned_elsewhere(match.pid):
                continue
            child = Child(match.pid, match.start_time, None, None)
            self.children[match.pid] = (name, child)
            self._watch_exit(name, child)
            log.info("%s: adopted pid %d found by %s: %s", name, match.pid, spec.find, match.reason)
            started = self.clock() - max(0.0, time.time() - _create_time(match.pid))
            self._events.append(core.Adopted(name, match.pid, started))
            self._dirty = True
            return True
        return False

    def _owned_elsewhere(self, pid: int) -> bool:
        """Already one of our instances (another instance of the same command)."""
        return any(p.pid == pid or p.old_pid == pid for p in self.core.procs.values())

    def _hold_pipes(self, name: str, child: Child) -> None:
        for stream, fd in (("out", child.stdout_fd), ("err", child.stderr_fd)):
            if fd is not None:
                key = f"pipe:{name}:{child.pid}:{stream}"
                self._pipe_keys[fd] = key
                self._fifo_paths[fd] = children.fifo_path(
                    self.fifo_dir, f"{name}.{stream}", child.pid
                )
                if self.link is not None:
                    self.link.hold(key, fd)

    def _spawn_extras(self, spec: ProgramSpec) -> dict[str, Any]:
        # the tag lets a restarted supervisor recognise its programs (and never duplicate them)
        env = {"TWINVISOR_RUN_DIR": self.config.daemon.run_dir}
        if spec.ready.mode is ReadyMode.NOTIFY or spec.watchdog_sec > 0:
            env["NOTIFY_SOCKET"] = self.notify.path
        if spec.watchdog_sec > 0:
            env["WATCHDOG_USEC"] = str(int(spec.watchdog_sec * 1_000_000))
        if not spec.listen_addrs:
            return {"env_extra": env}
        fds = self._bind_sockets(spec)
        env.update(sockets.listen_env([spec.program] * len(fds)))
        return {
            "env_extra": env,
            "preexec": sockets.place_fds(fds),
            "argv_prefix": sockets.LISTEN_PID_TRAMPOLINE,
        }

    def _signal(self, action: core.SendSignal) -> None:
        entry = self.children.get(action.pid)
        if entry is None or entry[0] != action.name:
            return  # not ours (anymore): never signal a pid we cannot vouch for
        child = entry[1]
        if action.signal in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
            children.snapshot_tree(child)
        if action.group:
            platform.signal_group(child.pgid, action.signal)
        else:
            platform.signal_pid(child.pid, action.signal)

    # -- watching children ----------------------------------------------------------------------

    def _watch_exit(self, name: str, child: Child) -> None:
        try:
            pidfd = platform.pidfd_open(child.pid)
        except ProcessLookupError:
            pidfd = None
        if pidfd is None:
            self._enable_sigchld_fallback()
            self._loop.call_soon(self._poll_exit, name, child)
            return

        def on_exit() -> None:
            if self._poll_exit(name, child):
                self._loop.remove_reader(pidfd)
                os.close(pidfd)

        self._loop.add_reader(pidfd, on_exit)

    def _poll_exit(self, name: str, child: Child) -> bool:
        status = children.reap(child)
        if status is None:
            return False
        self._drain_output(name, child)
        self.dispatch(core.Exited(name, child.pid, status[0], status[1]))
        return True

    def _enable_sigchld_fallback(self) -> None:
        """Without pidfds, SIGCHLD tells us that *some* child exited; we then reap ours by pid."""
        if self._sigchld_fallback:
            return
        self._sigchld_fallback = True

        def on_sigchld() -> None:
            for name, child in list(self.children.values()):
                self._poll_exit(name, child)

        self._loop.add_signal_handler(signal.SIGCHLD, on_sigchld)

    def _watch_output(self, name: str, child: Child) -> None:
        streams = self._streams[name]
        for fd, sink in ((child.stdout_fd, streams.stdout), (child.stderr_fd, streams.stderr)):
            if fd is not None:
                self._loop.add_reader(fd, self._read_pipe, fd, sink)

    def _read_pipe(self, fd: int, sink: LogFile) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            sink.write(data)
            return
        self._loop.remove_reader(fd)
        os.close(fd)
        key = self._pipe_keys.pop(fd, None)
        if key is not None and self.link is not None:
            self.link.release(key)
        fifo = self._fifo_paths.pop(fd, None)
        if fifo is not None:  # every writer is gone: nothing will ever wait in it again
            fsutil.remove_quietly(fifo)

    def _drain_output(self, name: str, child: Child) -> None:
        """Read what is already in the pipes, so output lands before the exit is logged.
        The pipes stay watched: a grandchild may still hold them open."""
        streams = self._streams.get(name)
        if streams is None:
            return
        for fd, sink in ((child.stdout_fd, streams.stdout), (child.stderr_fd, streams.stderr)):
            if fd is None:
                continue
            for _ in range(64):  # bounded: a grandchild writing endlessly must not stall us
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                sink.write(data)

    # -- waiting for outcomes -----------------------------------------------------------------

    def _check_waiters(self) -> None:
        still: list[_Waiter] = []
        for w in self._waiters:
            if w.future.done():
                continue
            outcomes = {
                n: w.outcome(self.core.procs[n]) if n in self.core.procs else "ok" for n in w.names
            }
            if "pending" in outcomes.values():
                still.append(w)
            else:
                w.future.set_result(outcomes)
        self._waiters = still

    async def wait(
        self, names: Iterable[str], outcome: Callable[[core.Proc], str], timeout: float | None
    ) -> dict[str, str]:
        """Wait until every named instance has an outcome; 'timeout' for those still pending."""
        w = _Waiter(tuple(names), outcome, self._loop.create_future())
        self._waiters.append(w)
        self._check_waiters()
        try:
            return await asyncio.wait_for(asyncio.shield(w.future), timeout)
        except TimeoutError:
            return {
                n: (outcome(self.core.procs[n]) if n in self.core.procs else "ok").replace(
                    "pending", "timeout"
                )
                for n in w.names
            }

    # -- user requests ----------------------------------------------------------------------------
    # All three honour depends_on: what a program needs starts first (and must reach the
    # condition), dependents stop first, and a restarted program's dependents restart after it.

    def _graph(self) -> dict[str, list[str]]:
        return {
            p.spec.program: [d.program for d in p.spec.depends_on] for p in self.core.procs.values()
        }

    def _instances(self, program: str) -> list[str]:
        return self._by_program().get(program, [])

    def _by_program(self) -> dict[str, list[str]]:
        by: dict[str, list[str]] = {}
        for n, p in self.core.procs.items():
            by.setdefault(p.spec.program, []).append(n)
        return by

    def _pick(self, program: str, names: list[str], by: dict[str, list[str]]) -> list[str]:
        """The requested instances of `program`, or all of them if none was named."""
        mine = by.get(program, [])
        named = set(names)
        return [n for n in mine if n in named] or mine

    def _condition(self, program: str, among: set[str]) -> Callable[[core.Proc], str]:
        """The strictest condition the dependents being started (`among`) ask of `program`."""
        wanted = {
            d.condition
            for p in self.core.procs.values()
            if p.spec.program in among
            for d in p.spec.depends_on
            if d.program == program
        }
        if DependCondition.HEALTHY in wanted:
            return _healthy_outcome
        if DependCondition.READY in wanted or not wanted:
            return core.Proc.start_outcome
        return _started_outcome

    def _want(self, names: Iterable[str], running: bool) -> None:
        for n in names:
            if self.desired.get(n) != running:
                self.desired[n] = running
                self._dirty = self._durable = True
        self._flush_state()

    async def start(self, names: list[str], timeout: float | None = None) -> dict[str, str]:
        self._want(names, True)
        graph = self._graph()
        requested = {self.core.procs[n].spec.program for n in names}
        needed = deps.requirements(graph, requested)
        by = self._by_program()
        results: dict[str, str] = {}
        failed: set[str] = set()
        for level in deps.start_levels(graph, needed):
            level_names: list[str] = []
            outcome: dict[str, Callable[[core.Proc], str]] = {}
            for program in level:
                inst = self._pick(program, names, by)
                blocker = next((d for d in graph.get(program, ()) if d in failed), None)
                if blocker is not None:
                    for n in inst:
                        results[n] = "failed"
                        self.core.procs[n].last_error = f"dependency {blocker!r} did not start"
                    failed.add(program)
                    continue
                check = self._condition(program, needed)
                if program in requested and check is _started_outcome:
                    check = core.Proc.start_outcome  # asked for itself: it must be ready
                for n in inst:
                    outcome[n] = check
                    level_names.append(n)
            for n in level_names:
                self.dispatch(core.StartRequested(n))
            got = await self.wait(level_names, _per_name(outcome), timeout)
            results.update(got)
            failed.update(self.core.procs[n].spec.program for n, v in got.items() if v != "ok")
        return {n: results.get(n, "failed") for n in names}

    async def stop(
        self, names: list[str], timeout: float | None = None, remember: bool = True
    ) -> dict[str, str]:
        if remember:
            self._want(names, False)
        graph = self._graph()
        requested = {self.core.procs[n].spec.program for n in names}
        by = self._by_program()
        results: dict[str, str] = {}
        for level in deps.stop_levels(graph, deps.dependents(graph, requested)):
            level_names = [n for program in level for n in self._pick(program, names, by)]
            for n in level_names:
                self.dispatch(core.StopRequested(n))
            results.update(await self.wait(level_names, core.Proc.stop_outcome, timeout))
        return {n: results[n] for n in names}

    async def restart(self, names: list[str], timeout: float | None = None) -> dict[str, str]:
        self._want(names, True)
        graph = self._graph()
        requested = {self.core.procs[n].spec.program for n in names}
        running_dependents = {
            p
            for p in deps.dependents(graph, requested) - requested
            if any(self.core.procs[n].state.is_alive for n in self._instances(p))
        }
        results: dict[str, str] = {}
        by = self._by_program()
        for level in deps.start_levels(graph, requested | running_dependents):
            rolls = [self._roll(self._pick(p, names, by), timeout) for p in level]
            for got in await asyncio.gather(*rolls):
                results.update(got)
        return {n: results[n] for n in names}

    async def _roll(self, names: list[str], timeout: float | None) -> dict[str, str]:
        """Restart instances `restart_batch` at a time; stop rolling at the first failure so
        the instances not yet restarted keep serving with the previous generation."""
        results: dict[str, str] = {}
        batch = max(1, self.core.procs[names[0]].spec.restart_batch) if names else 1
        for i in range(0, len(names), batch):
            chunk = names[i : i + batch]
            if any(v != "ok" for v in results.values()):
                results.update(dict.fromkeys(chunk, "skipped"))
                continue
            for n in chunk:
                self.dispatch(core.RestartRequested(n))
            results.update(await self.wait(chunk, core.Proc.start_outcome, timeout))
        return results

    def send_signal(self, name: str, sig: int) -> bool:
        proc = self.core.procs[name]
        if proc.pid is None or proc.pid not in self.children or not proc.state.is_alive:
            return False
        return platform.signal_pid(proc.pid, sig)

    async def stop_all(self) -> dict[str, str]:
        """`down`: stop everything without changing what the user wants running."""
        return await self.stop(self.names(), remember=False)

    # -- persisted state and adoption -----------------------------------------------------------

    def _snapshot(self, clean: bool = False) -> state.PersistedState:
        wall, now = time.time(), self.clock()
        records = []
        for pid, (name, child) in self.children.items():
            proc = self.core.procs.get(name)
            started = proc.started_at if proc is not None and proc.pid == pid else None
            age = now - started if started is not None else 0.0
            records.append(state.ChildRecord(name, pid, child.start_ticks, wall - age))
        restarts = {n: p.restarts for n, p in self.core.procs.items() if p.restarts}
        return state.PersistedState(dict(self.desired), [] if clean else records, clean, restarts)

    def _schedule_flush(self) -> None:
        """Write the state once per loop iteration, however many events it handled: starting
        200 programs is then a handful of writes, not 200 growing ones. A supervisor killed
        inside that window loses nothing: recovery also finds our children by their tag."""
        if self._dirty and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_state)

    def _flush_state(self) -> None:
        self._flush_scheduled = False
        if not self._dirty:
            return
        if state.save(self.state_path, self._snapshot(), durable=self._durable):
            self._dirty = self._durable = False
        # else: full disk; the next change retries, supervision goes on regardless

    def save_clean_shutdown(self) -> None:
        state.save(self.state_path, self._snapshot(clean=True), durable=True)

    def recover(self, saved: state.PersistedState, handed: dict[str, int]) -> set[str]:
        """Adopt the live children a previous supervisor left; returns the adopted names.

        A record is trusted only if the pid is alive with the same start time (pid reuse),
        and a process found by its environment tag only if it leads its own session."""
        self.desired = {n: v for n, v in saved.desired.items() if n in self.core.procs}
        for name, count in saved.restarts.items():
            if name in self.core.procs:
                self.core.procs[name].restarts = count
        candidates = [r for r in saved.children if r.name in self.core.procs]
        candidates += _tagged_processes(self.config.daemon.run_dir, {r.pid for r in candidates})
        adopted: set[str] = set()
        # newest first: if a restart was half done, the newest generation is the current one
        for rec in sorted(candidates, key=lambda r: -r.started_wall):
            if not platform.is_same_process(rec.pid, rec.start_ticks) or platform.is_zombie(
                rec.pid
            ):
                continue
            # the guard's copy if it survived, else the FIFO by its path (both twins died)
            out = handed.pop(f"pipe:{rec.name}:{rec.pid}:out", None)
            err = handed.pop(f"pipe:{rec.name}:{rec.pid}:err", None)
            if out is None:
                out = children.open_fifo(self.fifo_dir, rec.name, "out", rec.pid)
            if err is None:
                err = children.open_fifo(self.fifo_dir, rec.name, "err", rec.pid)
            child = Child(rec.pid, platform.process_start_time(rec.pid), out, err)
            for fd in (child.stdout_fd, child.stderr_fd):
                if fd is not None:
                    os.set_blocking(fd, False)
            self.children[rec.pid] = (rec.name, child)
            self._hold_pipes(rec.name, child)
            self._watch_output(rec.name, child)
            self._watch_exit(rec.name, child)
            if rec.name in adopted:  # an older generation still alive: retire it
                self.core.procs[rec.name].retiring.add(rec.pid)
                platform.signal_group(
                    rec.pid, platform.signal_number(self.core.procs[rec.name].spec.stop_signal)
                )
                continue
            started = self.clock() - max(0.0, time.time() - rec.started_wall)
            self.dispatch(core.Adopted(rec.name, rec.pid, started))
            adopted.add(rec.name)
        for fd in handed.values():  # pipes of children that are gone
            os.close(fd)
        handed.clear()
        self.remove_stale_fifos()
        self._dirty = True
        self._flush_state()
        return adopted

    def remove_stale_fifos(self) -> None:
        """FIFOs of programs that are gone (or of spawns cut short by a kill)."""
        try:
            entries = os.listdir(self.fifo_dir)
        except OSError:
            return
        live = set(self._fifo_paths.values())
        for entry in entries:
            path = os.path.join(self.fifo_dir, entry)
            if path not in live:
                fsutil.remove_quietly(path)

    def reap_orphans(self) -> None:
        """Without a guard we are the subreaper: reap orphans that are not our programs
        (ours are reaped by pid through their own watchers, never by a wildcard wait)."""
        import psutil

        try:
            kids = psutil.Process().children()
        except psutil.Error:
            return
        for kid in kids:
            if kid.pid not in self.children and platform.is_zombie(kid.pid):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(kid.pid, os.WNOHANG)

    def leftover_pids(self) -> list[int]:
        """Processes we started that are still alive (for `down`'s exit status)."""
        return [
            c.pid
            for _, c in self.children.values()
            if platform.is_same_process(c.pid, c.start_ticks)
        ]

    # -- readiness and health --------------------------------------------------------------------

    def _spawn_task(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _owner_of(self, pid: int) -> tuple[str, int] | None:
        """(instance, generation pid) of the process `pid` is, or descends from."""
        entry = self.children.get(pid)
        if entry is not None:
            return entry[0], pid
        import psutil

        try:
            parents = psutil.Process(pid).parents()
        except psutil.Error:
            return None
        for parent in parents:
            entry = self.children.get(parent.pid)
            if entry is not None:
                return entry[0], parent.pid
        return None

    def _on_notify(self, pid: int, fields: tuple[tuple[str, str], ...]) -> None:
        owner = self._owner_of(pid)
        if owner is None:
            log.warning("notify from pid %d ignored: not a process of any program", pid)
            return
        # attributed to the generation it comes from: an old generation's READY=1 must not
        # make a new one ready
        self.dispatch(core.Notified(owner[0], owner[1], fields))

    async def _probe_ready(self, name: str, pid: int) -> None:
        """Poll the tcp/http readiness probe until it passes or the generation is gone."""
        delay = 0.01
        while True:
            proc = self.core.procs.get(name)
            if proc is None or proc.pid != pid or proc.state is not ProcessState.STARTING:
                return
            spec = proc.spec.ready
            probe = readiness.probe_tcp if spec.mode is ReadyMode.TCP else readiness.probe_http
            ok, _ = await probe(spec.target, min(2.0, spec.timeout))
            if ok:
                self.dispatch(core.Ready(name, pid))
                return
            await asyncio.sleep(delay)  # probing is inherently periodic: back off to 0.25 s
            delay = min(delay * 2, 0.25)

    def _on_state(self, name: str, new: ProcessState) -> None:
        proc = self.core.procs[name]
        if proc.spec.pidfile:
            self._sync_pidfile(proc)
        if proc.spec.health is None:
            return
        if new is ProcessState.RUNNING and name not in self._health:
            self._health[name] = self._loop.create_task(self._health_loop(name))
        elif not new.is_alive and name in self._health:
            self._health.pop(name).cancel()

    def _sync_pidfile(self, proc: core.Proc) -> None:
        """Seed 001's pid lock: the file holds the live pid while the program should run.
        Written atomically; a full disk keeps the last good version and is retried later."""
        path = proc.spec.pidfile
        assert path is not None
        if proc.pid is not None and proc.state.is_alive:
            if fsutil.read_pid(path) != proc.pid:
                fsutil.write_atomic(path, f"{proc.pid}\n", fsync=False)
        elif fsutil.read_pid(path) is not None and not proc.state.is_alive:
            fsutil.remove_quietly(path)

    def start_freshness(self, own_pid_path: str) -> None:
        """Every PID_REFRESH seconds: rewrite pid files someone deleted (seed 000)."""

        def refresh() -> None:
            if fsutil.read_pid(own_pid_path) != os.getpid():
                log.warning("pid file %s was missing or wrong: rewritten", own_pid_path)
                fsutil.write_atomic(own_pid_path, f"{os.getpid()}\n", fsync=False)
            for proc in self.core.procs.values():
                if proc.spec.pidfile:
                    self._sync_pidfile(proc)
            self._dirty = True  # the state file too, in case it was removed
            self._flush_state()
            for hook in self.freshness_hooks:
                hook()
            self._loop.call_later(PID_REFRESH, refresh)

        self._loop.call_later(PID_REFRESH, refresh)

    async def _health_loop(self, name: str) -> None:
        while True:
            proc = self.core.procs.get(name)
            if proc is None or proc.spec.health is None or proc.pid is None:
                return
            h = proc.spec.health
            await asyncio.sleep(h.interval)  # the check interval itself, not a synchronisation
            proc = self.core.procs.get(name)
            if proc is None or proc.pid is None:
                return
            pid = proc.pid
            if h.kind is HealthKind.HTTP:
                ok, detail = await readiness.probe_http(h.target, h.timeout)
            elif h.kind is HealthKind.TCP:
                ok, detail = await readiness.probe_tcp(h.target, h.timeout)
            else:
                ok, detail = await readiness.probe_command(
                    h.command, h.timeout, proc.spec.directory
                )
            self.dispatch(core.HealthResult(name, pid, ok, detail))

    # -- config changes -------------------------------------------------------------------------

    async def apply_config(self, new: Config) -> dict[str, list[str]]:
        """`update`: add, remove, and restart only what changed."""
        diff = diff_configs(self.config, new)
        specs = new.by_name()
        if diff["removed"] or diff["changed"]:
            await self.stop(diff["removed"] + diff["changed"])
        for name in diff["removed"]:
            self._forget(name)
        for name in diff["changed"]:
            self._forget(name)
            self._add(specs[name])
        for name in diff["added"]:
            self._add(specs[name])
        # keep config order for status listings
        self.core.procs = {s.name: self.core.procs[s.name] for s in new.programs}
        self.config = new
        to_start = [n for n in diff["added"] + diff["changed"] if specs[n].autostart]
        if to_start:
            await self.start(to_start, timeout=30)
        return diff

    # -- status ---------------------------------------------------------------------------------

    def status(self, names: Iterable[str] | None = None) -> list[dict[str, object]]:
        now = self.clock()
        wall = time.time()
        rows: list[dict[str, object]] = []
        for name in names if names is not None else self.core.procs:
            p = self.core.procs[name]
            alive = p.state.is_alive and p.started_at is not None
            uptime = now - p.started_at if alive and p.started_at is not None else None
            rows.append(
                {
                    "name": name,
                    "program": p.spec.program,
                    "state": p.state.value,
                    "pid": p.pid,
                    "uptime": round(uptime, 3) if uptime is not None else None,
                    "started": round(wall - uptime, 3) if uptime is not None else None,
                    "restarts": p.restarts,
                    "failures": p.failures,
                    "given_up": p.given_up,
                    "last_exit": p.last_exit.describe() if p.last_exit else None,
                    "exit_code": p.last_exit.exit_code if p.last_exit else None,
                    "error": p.last_error,
                    "stdout_file": p.spec.stdout.path,
                    "stderr_file": p.spec.stderr.path,
                    "dropped_bytes": self._dropped(name),
                    "status_text": p.status_text,
                    "healthy": p.healthy,
                    "previous_pid": p.old_pid,
                    "listen_addrs": list(p.spec.listen_addrs),
                }
            )
        return rows

    def _dropped(self, name: str) -> int:
        s = self._streams.get(name)
        return 0 if s is None else s.stdout.dropped_bytes + s.stderr.dropped_bytes

    def autostart_names(self) -> list[str]:
        return [n for n, p in self.core.procs.items() if p.spec.autostart]

    def state_of(self, name: str) -> ProcessState:
        return self.core.procs[name].state


def _per_name(outcomes: dict[str, Callable[[core.Proc], str]]) -> Callable[[core.Proc], str]:
    def outcome(proc: core.Proc) -> str:
        return outcomes[proc.spec.name](proc)

    return outcome


def _started_outcome(proc: core.Proc) -> str:
    if proc.state in (ProcessState.STARTING, ProcessState.RUNNING):
        return "ok"
    return core.Proc.start_outcome(proc)


def _healthy_outcome(proc: core.Proc) -> str:
    outcome = core.Proc.start_outcome(proc)
    if outcome == "ok" and proc.healthy is not True:
        return "failed" if proc.healthy is False and proc.health_failures > 1 else "pending"
    return outcome


def _create_time(pid: int) -> float:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return time.time()


def _tagged_processes(run_dir: str, known: set[int]) -> list[state.ChildRecord]:
    """Session leaders whose environment carries our run dir: programs of ours that the state
    file missed (a supervisor killed between spawn and save)."""
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
            found.append(
                state.ChildRecord(
                    env["TWINVISOR_PROGRAM"],
                    p.pid,
                    platform.process_start_time(p.pid),
                    p.create_time(),
                )
            )
        except (psutil.Error, OSError):
            continue
    return found


def _owner_ids(owner: str) -> tuple[int, int]:
    import grp
    import pwd

    user, _, group = owner.partition(":")
    entry = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    return entry.pw_uid, gid


def diff_configs(old: Config, new: Config) -> dict[str, list[str]]:
    """Instance names added, removed and changed between two configs (pure)."""
    a, b = old.by_name(), new.by_name()
    return {
        "added": [n for n in b if n not in a],
        "removed": [n for n in a if n not in b],
        "changed": [n for n in b if n in a and a[n] != b[n]],
    }
