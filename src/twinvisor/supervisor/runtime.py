"""The asyncio shell around the pure core: carries out its actions and feeds it events.

Everything runs on the event loop thread. Events are processed one at a time from a queue
(`dispatch` never recurses), so an action that produces an event (a spawn that fails) is
handled after the current batch, in order.

This is the engine (spawn, signal, wait for outcomes, status, config changes); around it:
`watch` (children's exits and output pipes), `listeners` (listening sockets), `orchestration`
(start/stop/restart in dependency order), `recovery` (state file, pid files, adoption after a
restart of the supervisor) and `health` (sd_notify, readiness probes, health checks).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import assert_never

import msgspec

from twinvisor.config.signals import describe_signal
from twinvisor.config.specs import Config, LogSpec, ProgramSpec, ReadyMode, group_of
from twinvisor.core import events, machine
from twinvisor.core.machine import ProcView
from twinvisor.core.states import Outcome, ProcessState
from twinvisor.errors import SpawnError
from twinvisor.linux import children, kernel, readiness, sockets, statefile, tags
from twinvisor.linux.children import Child
from twinvisor.linux.console import Console, ConsoleStream, open_nonblocking
from twinvisor.linux.inflight import InFlight
from twinvisor.linux.logs import LogFile
from twinvisor.supervisor import fdkeys, orchestration, persistence, pidfiles, recovery, trust
from twinvisor.supervisor.health import Health
from twinvisor.supervisor.hooks import HookRunner
from twinvisor.supervisor.journal import Counters, Journal
from twinvisor.supervisor.listeners import Listeners
from twinvisor.supervisor.seams import FdKeeper, OutcomeOf
from twinvisor.supervisor.status import StatusRow, status_row
from twinvisor.supervisor.watch import ChildWatcher, Streams

log = logging.getLogger("twinvisor")


class _Waiter(msgspec.Struct):
    names: tuple[str, ...]
    outcome: OutcomeOf
    future: asyncio.Future[dict[str, Outcome]]
    # the names last seen pending: a dispatch re-checks only those it touched, so waiting on
    # 1000 programs costs O(1) per event, not O(1000) (`up`, `down` of many programs)
    pending: set[str] = msgspec.field(default_factory=set)


class Runtime:
    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.monotonic,
        console_fds: tuple[int, int] = (1, 2),
    ) -> None:
        """`console_fds`: the daemon's own stdout and stderr, where `console` programs write
        (the guard's, handed down, when running as a twin: the container's)."""
        self.config = config
        self._console_fds = console_fds
        self._consoles: dict[str, Console] = {}
        # the config file's errors when we run on the last applied config instead (takeover)
        self.config_problems: list[str] = []
        self.core = machine.Core()
        self.clock = clock
        self.children: dict[
            int, tuple[str, Child]
        ] = {}  # pid -> (instance, child): every generation
        self.listeners = Listeners(lambda: self.link)
        self.cgroups: str | None = None  # our cgroup v2 directory, where one can be had
        self._cgroup_tag = ""
        self.health = Health(self)
        self.notify = readiness.NotifyServer(
            f"{config.daemon.run_dir}/notify.name", self.health.on_notify
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.link: FdKeeper | None = None  # the guard, when running as a twin: keeps our fds
        self.freshness_hooks: list[Callable[[], None]] = []  # run with the pid file checks
        self.state_file = persistence.StateFile(self)
        self.fifo_dir = f"{config.daemon.run_dir}/pipes"
        self.journal = Journal(f"{config.daemon.run_dir}/events.jsonl")
        self.counters = Counters(f"{config.daemon.run_dir}/counters.json")
        self.restarts_by_reason: dict[tuple[str, str], int] = {}  # (instance, reason) -> count
        self.hooks = HookRunner(config.hooks)
        self.journal.listeners.append(self.hooks.on_event)
        self._streams: dict[str, Streams] = {}
        self._events: deque[events.Event] = deque()
        self._dispatching = False
        self._waiters: list[_Waiter] = []
        # the exit policy's way out: the service stops everything and exits with the code
        self.on_shutdown: Callable[[str, int, str], None] | None = None
        self.closing = False  # a shutdown is under way: start nothing more
        self.loop = asyncio.get_running_loop()
        self.watcher = ChildWatcher(
            self.loop, self._on_exit, self._streams, lambda: self.link, self.fifo_dir, self.children
        )
        for spec in config.programs:
            self._add(spec)

    # -- lifecycle ------------------------------------------------------------------------------

    def open(self, handed: dict[str, int] | None = None) -> None:
        """Bind what the programs need before the first spawn; raises OSError naming the address.

        `handed`: fds a previous supervisor left with the guard; listening sockets among them
        are taken over instead of bound again (they never stopped accepting)."""
        handed = {} if handed is None else handed
        self.notify.start(handed.pop(fdkeys.NOTIFY, None))
        if self.link is not None and self.notify.fileno is not None:
            # held like the listening sockets: the name is never free for another uid to take
            self.link.hold(fdkeys.NOTIFY, self.notify.fileno)
        # the chunk of output between a pipe and its log file, kept for the next supervisor
        self.watcher.inflight = InFlight(handed.pop(fdkeys.INFLIGHT, None))
        if self.link is not None:
            self.link.hold(fdkeys.INFLIGHT, self.watcher.inflight.fd)
        from twinvisor.config.paths import sha256_hex  # not hashlib: OpenSSL, 1 MiB PSS

        # one cgroup per daemon (run dir), beside whatever else runs here
        self._cgroup_tag = sha256_hex(os.fsencode(self.config.daemon.run_dir))[:12]
        # only found here (programs of an earlier supervisor may live in it); created on the
        # first spawn of a program with `cgroup = true`
        existing = kernel.cgroup2_path(self._cgroup_tag)
        self.cgroups = existing if existing is not None and os.path.isdir(existing) else None
        self.listeners.take_over(handed)
        for spec in self.config.programs:
            self.listeners.bind(spec, defer_in_use=True)

    def close(self, keep_sockets: bool = False) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.health.close()
        self.hooks.close()
        self.notify.close(forget=not keep_sockets)
        if not keep_sockets:  # an upgrade hands unix sockets on: their files must stay
            self.listeners.close()
        self.watcher.close()
        for console in self._consoles.values():
            console.flush()  # what is left of it, as far as the console takes it now
            self.loop.remove_writer(console.fd)
            os.close(console.fd)
        self._consoles.clear()
        if self.cgroups is not None:  # only what is empty: programs may outlive us (upgrade)
            for leaf in _subdirs(self.cgroups):
                kernel.cgroup_remove(leaf)
            kernel.cgroup_remove(self.cgroups)

    def detach(self) -> None:
        """Upgrade: stop watching, leave every program running for the next supervisor."""
        self.state_file.dirty = True  # written now, whatever changed: the next one reads it
        self.state_file.flush()
        self.watcher.detach()

    def _add(self, spec: ProgramSpec) -> None:
        self.core.add(spec)
        self._streams[spec.name] = Streams(
            self._sink(spec.name, "stdout", spec.stdout),
            self._sink(spec.name, "stderr", spec.stderr),
        )

    def _sink(self, name: str, stream: str, spec: LogSpec) -> LogFile | ConsoleStream:
        if spec.console is None:
            return LogFile(spec, self._log_problem)
        width = max(len(p.name) for p in self.config.programs)
        return ConsoleStream(self._console(spec.console), name, stream, spec.console_json, width)

    def _console(self, which: str) -> Console:
        """The daemon's stdout or stderr, made non-blocking, shared by every program."""
        if which not in self._consoles:
            fd = open_nonblocking(self._console_fds[0 if which == "stdout" else 1])
            console = Console(fd)

            def watch(pending: bool) -> None:
                if pending:
                    self.loop.add_writer(fd, console.flush)
                else:
                    self.loop.remove_writer(fd)

            console.on_pending = watch
            self._consoles[which] = console
        return self._consoles[which]

    def _forget(self, name: str) -> None:
        self.core.remove(name)
        self._check_waiters({name})  # nothing more to wait for on it
        self.health.forget(name)
        streams = self._streams.pop(name)
        streams.stdout.close()
        streams.stderr.close()

    @staticmethod
    def _log_problem(message: str) -> None:
        log.warning("%s", message)

    def names(self) -> list[str]:
        return list(self.core.procs)

    @property
    def procs(self) -> Mapping[str, ProcView]:
        return self.core.procs

    @property
    def desired(self) -> persistence.StateFile:
        return self.state_file

    def restore_desired(self, desired: dict[str, bool]) -> None:
        self.state_file.desired = desired

    def mark_state_dirty(self) -> None:
        self.state_file.dirty = True

    def flush_state(self) -> None:
        self.state_file.flush()

    # -- events in ----------------------------------------------------------------------------

    def dispatch(self, event: events.Event) -> None:
        self._events.append(event)
        if self._dispatching:
            return
        self._dispatching = True
        touched: set[str] = set()
        try:
            while self._events:
                ev = self._events.popleft()
                touched.add(ev.name)
                self._carry_out(self.core.handle(ev, self.clock()))
        finally:
            self._dispatching = False
        self.state_file.schedule_flush()
        self._check_waiters(touched)

    def _on_exit(self, name: str, pid: int, exit_code: int | None, sig: int | None) -> None:
        named = None if sig is None else describe_signal(sig)
        self._event(
            name,
            "exit",
            pid=pid,
            exit_code=exit_code,
            signal=named,
            expected=self._expected_exit(name, pid, exit_code),
        )
        self.dispatch(events.Exited(name, pid, exit_code, sig, named))

    # -- actions out ----------------------------------------------------------------------------

    def _carry_out(self, actions: Iterable[events.Action]) -> None:
        for action in actions:
            match action:
                case events.Spawn(name=name):
                    self._spawn(name)
                case events.SendSignal():
                    self._signal(action)
                case events.ForceKill(name=name, pid=pid):
                    self._signal(events.SendSignal(name, pid, signal.SIGKILL))
                case events.KillRemnants(pid=pid):
                    entry = self.children.pop(pid, None)
                    self.state_file.dirty = True
                    if entry is not None:
                        children.kill_remnants(entry[1])
                        if entry[1].cgroup is not None:
                            self._remove_leaf(entry[1].cgroup)
                case events.SetTimer(name=name, token=token, delay=delay, kind=kind, pid=pid):
                    event = events.TimerFired(name, token, kind, pid)
                    self.loop.call_later(delay, self.dispatch, event)
                case events.StartProbe(name=name, pid=pid):
                    self._spawn_task(self.health.probe_ready(name, pid))
                case events.Restarting(name=name, reason=reason, delay=delay):
                    key = (name, reason.value)
                    self.restarts_by_reason[key] = self.restarts_by_reason.get(key, 0) + 1
                    self._event(name, "restart", reason=reason.value, delay=delay)
                case events.StateChanged(name=name, old=old, new=new):
                    log.info("%s: %s -> %s", name, old.value, new.value)
                    self._state_event(name, old, new)
                    self.health.on_state(name, new)
                case events.ShutdownRequested(name=name, code=code, reason=reason):
                    self._event(name, "shutdown", exit_code=code, message=reason)
                    if self.on_shutdown is not None:
                        self.on_shutdown(name, code, reason)
                case events.LogLine(name=name, message=message, level=level):
                    log.log(logging.getLevelName(level.upper()), "%s: %s", name, message)
                case _:
                    assert_never(action)

    def _expected_exit(self, name: str, pid: int, exit_code: int | None) -> bool:
        """Asked for (a stop, a retiring generation) or an exit code the program declares."""
        proc = self.core.procs.get(name)
        if proc is None or pid in proc.retiring or pid == proc.old_pid:
            return True
        if proc.pid == pid and proc.state is ProcessState.STOPPING:
            return True
        return exit_code is not None and exit_code in proc.spec.restart.exit_codes

    def _event(self, name: str, kind: str, **fields: object) -> None:
        proc = self.core.procs.get(name)
        program = proc.spec.program if proc is not None else None
        self.journal.emit(kind, instance=name, program=program, **fields)

    def _state_event(self, name: str, old: ProcessState, new: ProcessState) -> None:
        pid = self.core.procs[name].pid
        self._event(name, "state", pid=pid, state=new.value, previous=old.value)
        if new is ProcessState.RUNNING:
            self._event(name, "ready", pid=pid, ready=True)
        elif old is ProcessState.RUNNING:
            self._event(name, "ready", pid=pid, ready=False)

    def _spawn(self, name: str) -> None:
        proc = self.core.procs[name]
        spec = proc.spec
        if spec.find and proc.old_pid is None and self._adopt_found(name, spec):
            return
        leaf = self._new_leaf(name) if spec.cgroup else None
        try:
            child = children.spawn(spec, self._spawn_options(spec, leaf))
        except (SpawnError, OSError) as e:
            if leaf is not None:
                kernel.cgroup_remove(leaf)
            self._events.append(events.SpawnFailed(name, str(e)))
            return
        child.cgroup = leaf  # the trampoline moves it there before the program runs
        self.track(name, child)
        self.state_file.dirty = True
        self._events.append(events.Spawned(name, child.pid))

    def track(self, name: str, child: Child) -> None:
        """Take charge of a live child of instance `name` (spawned, or adopted by `recover`)."""
        if self.cgroups is not None and child.cgroup is None and child.popen is None:
            # adopted after a restart: the leaf it lives in (never one it did not)
            child.cgroup = kernel.cgroup_leaf_of(child.pid, self.cgroups)
        self.children[child.pid] = (name, child)
        self.watcher.watch(name, child)

    def _remove_leaf(self, leaf: str, delay: float = 0.05) -> None:
        """rmdir a killed program's cgroup once its processes are gone: they die after
        cgroup.kill returns, so retry with back-off (a few wake-ups, only after an exit)."""
        if kernel.cgroup_remove(leaf) or delay > 5.0:
            return
        self.loop.call_later(delay, self._remove_leaf, leaf, delay * 2)

    def _adopt_found(self, name: str, spec: ProgramSpec) -> bool:
        """Seed 001: a copy started by hand is taken over, never started a second time."""
        from twinvisor.linux import discovery

        assert spec.find is not None
        ours = set(self.children) | {os.getpid()}
        for match in discovery.find_matches(spec, spec.find, exclude_pids=ours):
            if self._owned_elsewhere(match.pid):
                continue
            why = trust.refusal(spec, match.pid, None)  # a look-alike of another uid's
            if why is not None:
                log.warning(
                    "%s: not adopting pid %d found by %s: %s", name, match.pid, spec.find, why
                )
                continue
            child = Child(match.pid, match.start_time, None, None)
            self.children[match.pid] = (name, child)
            self.watcher.watch_exit(name, child)
            log.info("%s: adopted pid %d found by %s: %s", name, match.pid, spec.find, match.reason)
            started = self.clock() - max(0.0, time.time() - recovery.create_time(match.pid))
            self._events.append(events.Adopted(name, match.pid, started))
            self.state_file.dirty = True
            return True
        return False

    def _owned_elsewhere(self, pid: int) -> bool:
        """Already one of our instances (another instance of the same command)."""
        return any(p.pid == pid or p.old_pid == pid for p in self.core.procs.values())

    def _spawn_options(self, spec: ProgramSpec, leaf: str | None) -> children.SpawnOptions:
        # the tag lets a restarted supervisor recognise its programs (and never duplicate them)
        env = tags.spawn_tag(self.config.daemon.run_dir)
        if spec.ready.mode is ReadyMode.NOTIFY or spec.watchdog_sec > 0:
            env["NOTIFY_SOCKET"] = self.notify.path
        if spec.watchdog_sec > 0:
            env["WATCHDOG_USEC"] = str(int(spec.watchdog_sec * 1_000_000))
        preexec = None
        if spec.listen_addrs:
            fds = self.listeners.bind(spec)
            env.update(sockets.listen_env([spec.program] * len(fds)))
            preexec = sockets.place_fds(fds)
        prefix: list[str] = []
        if leaf is not None or spec.listen_addrs:
            procs = None if leaf is None else f"{leaf}/cgroup.procs"
            prefix = children.trampoline(procs, bool(spec.listen_addrs))
        return children.SpawnOptions(env, prefix, preexec, self.fifo_dir)

    def _new_leaf(self, name: str) -> str | None:
        """A fresh cgroup leaf for the next generation of `name`, made before the spawn."""
        if self.cgroups is None:
            self.cgroups = kernel.cgroup2_base(self._cgroup_tag)
        if self.cgroups is None:
            return None
        # unique across supervisor restarts: a leaf is never shared by two generations
        leaf = f"{self.cgroups}/{name}.{time.time_ns()}"
        try:
            os.mkdir(leaf)
        except OSError:
            return None
        return leaf

    def _signal(self, action: events.SendSignal) -> None:
        entry = self.children.get(action.pid)
        if entry is None or entry[0] != action.name:
            return  # not ours (anymore): never signal a pid we cannot vouch for
        child = entry[1]
        if action.signal in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
            children.snapshot_tree(child)
        if action.group:
            kernel.signal_group(child.pgid, action.signal)
            if action.resume:
                kernel.signal_group(child.pgid, signal.SIGCONT)
        else:
            kernel.signal_pid(child.pid, action.signal)
            if action.resume:
                kernel.signal_pid(child.pid, signal.SIGCONT)

    # -- waiting for outcomes -----------------------------------------------------------------

    def _check_waiters(self, touched: set[str] | None = None) -> None:
        """Settle the waiters whose every name has an outcome; `touched`: the instances an
        event changed (None: look at all)."""
        still: list[_Waiter] = []
        for w in self._waiters:
            if w.future.done():
                continue
            candidates = w.pending if touched is None else w.pending & touched
            w.pending -= {n for n in candidates if self._outcome(n, w.outcome) != Outcome.PENDING}
            if w.pending:
                still.append(w)
                continue
            # all settled: the outcomes read together, as they are now (one may have gone
            # back to pending since it settled, a program restarted meanwhile)
            outcomes = {n: self._outcome(n, w.outcome) for n in w.names}
            w.pending = {n for n, o in outcomes.items() if o is Outcome.PENDING}
            if w.pending:
                still.append(w)
            else:
                w.future.set_result(outcomes)
        self._waiters = still

    def _outcome(self, name: str, outcome: OutcomeOf) -> Outcome:
        proc = self.core.procs.get(name)
        return Outcome.OK if proc is None else outcome(proc)  # removed meanwhile: nothing to wait

    async def wait(
        self, names: Iterable[str], outcome: OutcomeOf, timeout: float | None
    ) -> dict[str, Outcome]:
        """Wait until every named instance has an outcome; 'timeout' for those still pending."""
        w = _Waiter(tuple(names), outcome, self.loop.create_future())
        w.pending = set(w.names)
        self._waiters.append(w)
        self._check_waiters()
        try:
            return await asyncio.wait_for(asyncio.shield(w.future), timeout)
        except TimeoutError:
            late = {n: self._outcome(n, outcome) for n in w.names}
            return {n: Outcome.TIMEOUT if v is Outcome.PENDING else v for n, v in late.items()}

    def send_signal(self, name: str, sig: int) -> bool:
        proc = self.core.procs[name]
        if proc.pid is None or proc.pid not in self.children or not proc.state.is_alive:
            return False
        return kernel.signal_pid(proc.pid, sig)

    def leftover_pids(self) -> list[int]:
        """Processes we started that are still alive (for `down`'s exit status)."""
        return [
            c.pid for _, c in self.children.values() if kernel.is_same_process(c.pid, c.start_ticks)
        ]

    def _spawn_task(self, coro: Coroutine[None, None, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- user requests: see orchestration ---------------------------------------------------------

    async def start(self, names: list[str], timeout: float | None = None) -> dict[str, Outcome]:
        return await orchestration.start(self, names, timeout)

    async def stop(
        self, names: list[str], timeout: float | None = None, remember: bool = True
    ) -> dict[str, Outcome]:
        return await orchestration.stop(self, names, timeout, remember)

    async def restart(self, names: list[str], timeout: float | None = None) -> dict[str, Outcome]:
        return await orchestration.restart(self, names, timeout)

    async def stop_all(self) -> dict[str, Outcome]:
        """`down`: stop everything without changing what the user wants running."""
        return await self.stop(self.names(), remember=False)

    # -- what outlives a supervisor: see recovery -------------------------------------------------

    @property
    def state_path(self) -> str:
        return self.state_file.path

    @property
    def sockets(self) -> sockets.SocketRegistry:
        """Where `recovery.claim_sockets` puts the sockets it takes back (owned by listeners)."""
        return self.listeners.registry

    def write_leftover(self, name: str, pid: int, stream: str, fd: int) -> None:
        self.watcher.write_leftover(name, pid, stream, fd)

    def recover(self, saved: statefile.PersistedState, handed: dict[str, int]) -> set[str]:
        # first the chunk a killed supervisor had read, then what waits in the pipes (the
        # leftovers of gone generations here, the live ones' once the loop reads them)
        self.watcher.write_pending()
        return recovery.recover(self, saved, handed)

    def claim_sockets(self) -> None:
        recovery.claim_sockets(self, sorted(self.listeners.unbound))
        self.listeners.unbound.clear()
        self.release_unused_sockets()  # handed back by the guard, but gone from the config

    def remove_stale(self) -> None:
        """After start-up or adoption: FIFOs and cgroup leaves of generations that are gone.
        A leaf nobody tracks holds only what a dead program left behind: it is killed."""
        recovery.remove_stale_fifos(self.fifo_dir, self.watcher.live_fifos())
        if self.cgroups is None:
            return
        live = {c.cgroup for _, c in self.children.values()}
        for entry in _subdirs(self.cgroups):
            if entry not in live:
                kernel.cgroup_kill(entry)
                self._remove_leaf(entry)

    def reap_orphans(self) -> None:
        recovery.reap_orphans(self.children)

    def save_clean_shutdown(self) -> None:
        self.state_file.save_clean_shutdown()

    def start_freshness(self, own_pid_path: str) -> None:
        pidfiles.start_freshness(self, own_pid_path)

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
        self.core.reorder(s.name for s in new.programs)
        self.config = new
        self.config_problems = []
        persistence.save_applied(new)
        self.hooks.hooks = new.hooks
        self.release_unused_sockets()
        summary = ", ".join(f"{k} {', '.join(v)}" for k, v in diff.items() if v) or "no change"
        self.journal.emit("config", message=f"applied {new.path}: {summary}")
        to_start = [n for n in diff["added"] + diff["changed"] if specs[n].autostart]
        if to_start:
            await self.start(to_start, timeout=30)
        return diff

    def release_unused_sockets(self) -> None:
        in_use = {a for s in self.config.programs for a in s.listen_addrs}
        for addr in self.listeners.release_unused(in_use):
            log.info("released listening socket %s: no program uses it any more", addr)

    # -- status ---------------------------------------------------------------------------------

    def status(self, names: Iterable[str] | None = None) -> list[StatusRow]:
        """One row per instance (all of them by default), in config order."""
        now, wall = self.clock(), time.time()
        groups = group_of(self.config.groups)
        return [
            status_row(
                self.core.procs[n],
                now=now,
                wall=wall,
                dropped_bytes=self._dropped(n),
                group=groups.get(self.core.procs[n].spec.program),
            )
            for n in (names if names is not None else self.core.procs)
        ]

    async def usage(self) -> dict[str, kernel.Usage]:
        """CPU, memory and fds of each live instance's main process, read from /proc in a
        worker thread so the loop goes on meanwhile (metrics, /usage, the dashboard)."""
        pids = {n: p.pid for n, p in self.core.procs.items() if p.pid is not None}
        found = await asyncio.to_thread(
            lambda: {n: kernel.process_usage(p) for n, p in pids.items()}
        )
        return {n: u for n, u in found.items() if u is not None}

    def log_counts(self, name: str) -> list[tuple[str, int, int]]:
        """(stream, bytes written, bytes dropped) of an instance's log files."""
        s = self._streams.get(name)
        if s is None:
            return []
        return [
            (n, f.written_bytes, f.dropped_bytes)
            for n, f in (("stdout", s.stdout), ("stderr", s.stderr))
        ]

    def _dropped(self, name: str) -> int:
        s = self._streams.get(name)
        return 0 if s is None else s.stdout.dropped_bytes + s.stderr.dropped_bytes

    def reopen_logs(self) -> None:
        """SIGUSR2: reopen every log file (after an external logrotate moved them away)."""
        for streams in self._streams.values():
            streams.stdout.reopen()
            streams.stderr.reopen()
        log.info("log files reopened")

    def autostart_names(self) -> list[str]:
        return [n for n, p in self.core.procs.items() if p.spec.autostart]


def _subdirs(path: str) -> list[str]:
    try:
        return [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def diff_configs(old: Config, new: Config) -> dict[str, list[str]]:
    """Instance names added, removed and changed between two configs (pure)."""
    a, b = old.by_name(), new.by_name()
    return {
        "added": [n for n in b if n not in a],
        "removed": [n for n in a if n not in b],
        "changed": [n for n in b if n in a and a[n] != b[n]],
    }
