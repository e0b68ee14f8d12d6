"""The guard: a small process that keeps the supervisor alive and holds what it cannot lose.

    twinvisor up ─> guard (subreaper, holds fds) ─> supervisor (asyncio, does everything)
                                                      └─> programs

The guard does almost nothing, so it almost never fails: it restarts the supervisor when it
dies (or hangs: missed heartbeats), and keeps a copy of every fd the supervisor must not lose
— the control socket, the listening sockets, the read ends of the programs' stdout/stderr
pipes — received over a SOCK_SEQPACKET unix socket with SCM_RIGHTS. A new supervisor asks for
them back and carries on: connections wait in the kernel's queues meanwhile, pipe output
waits in the pipe buffers. When the guard dies the supervisor starts a new one (`--watch PID`
mode) and hands it the fds again.

The wire protocol is in protocol.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from twinvisor.config.specs import AfterGiveUp, DaemonSpec, RestartPolicy
from twinvisor.core import policy
from twinvisor.exitcodes import FINAL_AT_STARTUP, Exit
from twinvisor.linux import daemonlog, fsutil, kernel, rundir
from twinvisor.linux.console import CONSOLE_ENV
from twinvisor.linux.stopping import StopPlan
from twinvisor.twin import startup_report, stopmark
from twinvisor.twin.protocol import (
    DAEMON_PATHS_ENV,
    FDS_PER_MESSAGE,
    GUARD_ENV,
    HEARTBEAT_TIMEOUT,
    command,
    peer,
    recv_message,
    send_message,
)

log = logging.getLogger("twinvisor.guard")

FOREGROUND_ENV = "TWINVISOR_FOREGROUND"  # as supervisor/console.py (a neighbour: not imported)
# an upgrade re-executes the guard in place, handing itself its fds through these
_FDS_ENV = "TWINVISOR_GUARD_FDS"  # {key: fd}, the listener under _LISTENER_KEY
_WATCH_ENV = "TWINVISOR_GUARD_WATCH"  # the supervisor's pid
_LISTENER_KEY = "__listener__"
MAX_FAILED_STARTS = 5  # supervisors in a row dead before their start-up was over: give up
# restart policy for the supervisor itself: quick retries, then slower, never a tight loop
# (never giving up: a guard that stops reviving would leave the programs unsupervised)
SUPERVISOR_POLICY = RestartPolicy(
    max_retry=5,
    min_uptime=2.0,
    backoff_initial=0.1,
    backoff_max=5.0,
    after_give_up=AfterGiveUp.SLOW_RETRY,
    slow_retry_interval=5.0,
)


class Guard:
    def __init__(self, config_path: str, daemon: DaemonSpec) -> None:
        self.config_path = config_path
        self.daemon = daemon
        self.sock_path, self.lock_path = daemon.guard_socket, daemon.guard_lock_path
        self.pid_path = daemon.guard_pid_path
        self.held: dict[str, int] = {}
        self.sel = selectors.DefaultSelector()
        self.conn: socket.socket | None = None
        self.supervisor: int | None = None
        self.supervisor_child: subprocess.Popen[bytes] | None = None
        self.supervisor_pidfd: int | None = None
        self.supervisor_started = 0.0
        self.failures = 0
        self.supervisor_ready = False  # it said its start-up is over (op "ready")
        self.failed_starts = 0  # supervisors in a row that died before that
        self.last_ping = time.monotonic()
        self.next_spawn: float | None = None
        self.shutdown_requested = False
        self.upgrade_requested = False

    # -- setup ----------------------------------------------------------------------------

    def lock(self) -> int | None:
        fsutil.make_private_dir(self.daemon.run_dir)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def listen(self, inherited: int | None) -> None:
        if inherited is not None:
            listener = socket.socket(fileno=inherited)
        else:
            fsutil.remove_quietly(self.sock_path)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            old = os.umask(0o177)
            try:
                listener.bind(self.sock_path)
            finally:
                os.umask(old)
            listener.listen(4)
        os.set_inheritable(listener.fileno(), False)
        self.listener = listener
        self.sel.register(listener, selectors.EVENT_READ, "accept")

    def take_over(self, handed: dict[str, int]) -> None:
        """Listen (on the socket a previous guard handed down, if any) and hold its fds."""
        self.listen(handed.pop(_LISTENER_KEY, None))
        self.held = handed
        for fd in self.held.values():
            os.set_inheritable(fd, False)

    # -- the supervisor ------------------------------------------------------------------

    def spawn_supervisor(self, ready_fd: int | None = None) -> None:
        env = dict(os.environ, **{GUARD_ENV: self.sock_path})
        pass_fds = startup_report.hand_down(env, ready_fd)
        console = _console_dups()
        if console:  # programs with `console` write to our stdout/stderr (the container's)
            env[CONSOLE_ENV] = ",".join(map(str, console))
            pass_fds += tuple(console)
        out = _open_out(self.daemon)
        try:
            child = subprocess.Popen(
                command("daemon", self.config_path),
                stdin=subprocess.DEVNULL,
                stdout=out,
                # under a foreground guard the supervisor tells the terminal what its programs
                # do (supervisor/console.py); its own stdout stays in twinvisor.out
                stderr=None if os.environ.get(FOREGROUND_ENV) == "1" else out,
                pass_fds=pass_fds,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            log.error("cannot start the supervisor: %s", e)
            self._schedule_restart(None)
            return
        finally:
            os.close(out)
            for fd in console:
                os.close(fd)
        log.info("started supervisor pid %d", child.pid)
        self.supervisor_ready = False
        self._watch_supervisor(child.pid, child)
        self.supervisor_started = time.monotonic()

    def watch_existing(self, pid: int) -> None:
        """Guard restarted by a live supervisor: watch it, it is not our child."""
        self.supervisor_ready = True
        self._watch_supervisor(pid, None)
        self.supervisor_started = time.monotonic() - SUPERVISOR_POLICY.min_uptime

    def _watch_supervisor(self, pid: int, child: subprocess.Popen[bytes] | None) -> None:
        self.supervisor, self.supervisor_child = pid, child
        self.last_ping = time.monotonic()
        try:
            self.supervisor_pidfd = kernel.pidfd_open(pid)
        except ProcessLookupError:
            self.supervisor_pidfd = None
            self._supervisor_died(None)
            return
        if self.supervisor_pidfd is not None:
            self.sel.register(self.supervisor_pidfd, selectors.EVENT_READ, "supervisor")

    def _supervisor_died(self, status: int | None) -> None:
        pid = self.supervisor
        if self.supervisor_pidfd is not None:
            self.sel.unregister(self.supervisor_pidfd)
            os.close(self.supervisor_pidfd)
            self.supervisor_pidfd = None
        self.supervisor = self.supervisor_child = None
        self._drop_connection()
        if self.shutdown_requested or os.path.exists(self.daemon.stop_marker):
            # an exit policy's code (an essential program's exit), else 0 for a stop
            final = stopmark.read_code(self.daemon.stop_marker) or 0
            log.info("supervisor %s exited after a stop: the guard exits too (%d)", pid, final)
            raise SystemExit(final)
        code = os.waitstatus_to_exitcode(status) if status is not None else None
        # final: config errors, another supervisor holds the lock, a start-up failure the
        # operator's `up` already reported; retrying would only hide it
        if code in FINAL_AT_STARTUP:
            log.error("supervisor %s exited with %s at start-up: the guard exits too", pid, code)
            raise SystemExit(code)
        self.failed_starts = 0 if self.supervisor_ready else self.failed_starts + 1
        if self.failed_starts >= MAX_FAILED_STARTS:
            # a start-up that fails every time (a bug, a run dir we cannot use) would go on
            # behind the operator's back; the next `up` (or the timer's) reports why
            log.error(
                "the supervisor failed %d start-ups in a row: the guard gives up (see above)",
                self.failed_starts,
            )
            raise SystemExit(Exit.STARTUP_REPORTED)
        log.warning("supervisor pid %s died (status %s): restarting it", pid, status)
        self._schedule_restart(time.monotonic() - self.supervisor_started)

    def _schedule_restart(self, run_time: float | None) -> None:
        failed = policy.run_failed(SUPERVISOR_POLICY, run_time)
        self.failures = self.failures + 1 if failed else 0
        decision = policy.decide(SUPERVISOR_POLICY, None, self.failures)
        if isinstance(decision, policy.Restart):
            if self.failures > SUPERVISOR_POLICY.max_retry:
                log.error(
                    "the supervisor keeps dying at start (%d times): retrying every %.0f s",
                    self.failures,
                    decision.delay,
                )
            self.next_spawn = time.monotonic() + decision.delay
            return
        log.error("the supervisor failed %d times in a row; the guard gives up", self.failures)
        raise SystemExit(Exit.FAILED)

    # -- connection with the supervisor ----------------------------------------------------

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        pid, uid = peer(conn)
        if uid not in (os.geteuid(), 0):
            conn.close()
            return
        self._drop_connection()
        conn.setblocking(True)
        conn.settimeout(5.0)
        self.conn = conn
        self.sel.register(conn, selectors.EVENT_READ, "conn")
        self.last_ping = time.monotonic()
        if self.supervisor is None or self.supervisor != pid:
            # a supervisor we did not start (we were restarted, or an upgrade): watch it
            self.supervisor_ready = True
            if self.supervisor_pidfd is not None:
                self.sel.unregister(self.supervisor_pidfd)
                os.close(self.supervisor_pidfd)
                self.supervisor_pidfd = None
            self._watch_supervisor(pid, None)

    def _drop_connection(self) -> None:
        if self.conn is not None:
            self.sel.unregister(self.conn)
            self.conn.close()
            self.conn = None

    def _on_message(self) -> None:
        assert self.conn is not None
        got = recv_message(self.conn)
        if got is None:
            self._drop_connection()
            return
        message, fds = got
        op = message.get("op")
        self.last_ping = time.monotonic()
        if op == "hold" and len(fds) == 1:
            old = self.held.pop(str(message.get("key")), None)
            if old is not None:
                os.close(old)
            self.held[str(message.get("key"))] = fds[0]
            return
        for fd in fds:  # fds only travel with `hold`
            os.close(fd)
        if op == "release":
            fd = self.held.pop(str(message.get("key")), -1)
            if fd >= 0:
                os.close(fd)
        elif op == "hello":
            self._send_held()
        elif op == "ping":
            if fsutil.read_pid(self.pid_path) != os.getpid():  # deleted by someone: seed 000
                fsutil.write_atomic(self.pid_path, f"{os.getpid()}\n", fsync=False)
        elif op == "ready":
            self.supervisor_ready = True
        elif op == "shutdown":
            self.shutdown_requested = True
        elif op == "upgrade":
            self.upgrade_requested = True

    def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        if self.conn is None:
            return
        try:
            send_message(self.conn, message, fds)
        except OSError:
            self._drop_connection()

    def _send_held(self) -> None:
        items = list(self.held.items())
        for i in range(0, len(items), FDS_PER_MESSAGE):
            batch = items[i : i + FDS_PER_MESSAGE]
            self._send({"op": "fds", "keys": [k for k, _ in batch]}, [fd for _, fd in batch])
        self._send({"op": "fds_end"})

    # -- main loop ----------------------------------------------------------------------------

    def serve(self) -> int:
        """Run until the guard exits; its exit status."""
        try:
            self.run()
        except SystemExit as e:
            fsutil.remove_quietly(self.pid_path)
            fsutil.remove_quietly(self.sock_path)
            return int(e.code or Exit.OK)
        return Exit.OK

    def run(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # SIGTERM/SIGINT/SIGQUIT (docker stop, systemctl stop, Ctrl-C) mean `down`: stop
        # marker, then the supervisor stops the programs; we exit when it has
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, self._on_stop_signal)
        # HUP (reload the config), USR1 (status to the log), USR2 (reopen the log files)
        # are the supervisor's: passed on (`docker kill -s HUP` reaches PID 1, the guard)
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, self._forward)
        self.sel.register(wake_r, selectors.EVENT_READ, "signal")
        while True:
            for key, _ in self.sel.select(self._timeout()):
                self._dispatch(key.data, wake_r)
            self._reap()
            self._check_heartbeat()
            if self.next_spawn is not None and time.monotonic() >= self.next_spawn:
                self.next_spawn = None
                self.spawn_supervisor()
            if self.upgrade_requested:
                self._reexec()

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        stopmark.write(self.daemon.stop_marker)
        self.shutdown_requested = True
        if self.supervisor is not None:
            self._stop_plan(self.supervisor).ask()  # a stop that hangs misses its heartbeats
        else:
            raise SystemExit(Exit.OK)

    def _forward(self, signum: int, frame: object) -> None:
        if self.supervisor is not None:
            kernel.signal_pid(self.supervisor, signum)

    def _timeout(self) -> float | None:
        deadlines = []
        if self.next_spawn is not None:
            deadlines.append(self.next_spawn)
        if self.conn is not None:
            deadlines.append(self.last_ping + HEARTBEAT_TIMEOUT)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _dispatch(self, what: str, wake_r: int) -> None:
        if what == "accept":
            self._accept()
        elif what == "conn":
            self._on_message()
        elif what == "signal":
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        elif what == "supervisor" and self.supervisor_child is None:
            self._supervisor_died(None)  # not our child: its parent reaps it

    def _reap(self) -> None:
        """We are a subreaper: reap every orphan, and notice our supervisor's exit."""
        for pid, status in kernel.reap_zombies():
            if pid == self.supervisor:
                self._supervisor_died(status)

    def _check_heartbeat(self) -> None:
        if self.conn is None or self.supervisor is None:
            return
        if time.monotonic() - self.last_ping > HEARTBEAT_TIMEOUT:
            log.warning(
                "supervisor pid %d missed its heartbeats (stopped or hung): SIGKILL",
                self.supervisor,
            )
            self._stop_plan(self.supervisor).force()
            self.last_ping = time.monotonic()

    @staticmethod
    def _stop_plan(supervisor: int) -> StopPlan:
        """The supervisor alone (its programs live in their own groups, and it stops them in
        order); a missed heartbeat is the timeout, so the main loop does the waiting."""
        return StopPlan(supervisor, signal.SIGTERM, HEARTBEAT_TIMEOUT, group=False)

    def _reexec(self) -> None:
        """`twinvisor upgrade`: become the newly installed code, keeping our pid, our child
        (the supervisor), the listener and every held fd."""
        fds = {**self.held, _LISTENER_KEY: self.listener.fileno()}
        for fd in fds.values():
            os.set_inheritable(fd, True)
        env = dict(os.environ, **{_FDS_ENV: json.dumps(fds)})
        if self.supervisor is not None:
            env[_WATCH_ENV] = str(self.supervisor)
        log.info("upgrade: re-executing the guard")
        os.execve(sys.executable, command("guard", self.config_path), env)


def _console_dups() -> list[int]:
    """Copies of our stdout and stderr for the supervisor, or none if either is closed."""
    dups: list[int] = []
    for fd in (1, 2):
        try:
            dups.append(os.dup(fd))
        except OSError:
            for d in dups:
                os.close(d)
            return []
    return dups


def _open_out(daemon: DaemonSpec) -> int:
    os.makedirs(daemon.log_dir, mode=0o750, exist_ok=True)
    try:
        return fsutil.open_log(daemon.out_path)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)


def run_guard(config_path: str, watch_pid: int | None, foreground: bool = False) -> int:
    """Entry point of `twinvisor guard` (started by `up`, by a supervisor, or by itself)."""
    from twinvisor.config.paths import daemon_table_paths

    reporter = startup_report.Reporter()
    # only the [daemon] table: the guard stays small, and a config with errors elsewhere
    # is for the supervisor to report. Started by a supervisor, it is told the paths: the
    # file may have errors by now (edited, not applied), which must not cost us the guard
    daemon = _paths_from_supervisor() or daemon_table_paths(config_path)
    if daemon is None:
        problem = f"{config_path}: cannot read the [daemon] table"
        reporter.send(startup_report.config_errors([problem]))
        return Exit.USAGE
    guard = Guard(os.path.abspath(config_path), daemon)
    handed, watched = _take_handoff()
    moved = rundir.clear_wrong_kinds(daemon.run_dir, rundir.extra(daemon.socket, daemon.log_dir))
    if guard.lock() is None:  # else held until we exit
        holder = fsutil.read_pid(guard.pid_path)
        reporter.send(startup_report.already_running("a guard already runs", holder))
        return Exit.ALREADY_RUNNING
    daemonlog.setup(daemon, foreground, tag="guard")
    if foreground:
        os.environ[FOREGROUND_ENV] = "1"  # inherited by each supervisor this guard starts
    for message in moved:
        log.warning("run dir: %s", message)
    kernel.set_child_subreaper()
    fsutil.write_atomic(guard.pid_path, f"{os.getpid()}\n")
    guard.take_over(handed)
    watch_pid = watched if watched is not None else watch_pid
    if watch_pid is not None:
        guard.watch_existing(watch_pid)
    else:
        guard.spawn_supervisor(reporter.fd)
    reporter.close()  # the supervisor reports how start-up went itself
    return guard.serve()


def _take_handoff() -> tuple[dict[str, int], int | None]:
    """What the guard we were before an upgrade's re-exec handed down: the fds it held (and
    its listener), and the supervisor to watch. Nothing when we were started afresh."""
    fds = json.loads(os.environ.pop(_FDS_ENV, "{}"))
    watch = os.environ.pop(_WATCH_ENV, None)
    watch_pid = int(watch) if watch and watch.isdigit() else None
    return {str(k): int(v) for k, v in fds.items()}, watch_pid


def _paths_from_supervisor() -> DaemonSpec | None:
    try:
        run_dir, log_dir, sock = json.loads(os.environ.pop(DAEMON_PATHS_ENV, ""))
    except (ValueError, TypeError):
        return None
    if not all(isinstance(p, str) and os.path.isabs(p) for p in (run_dir, log_dir, sock)):
        return None
    return DaemonSpec(run_dir=run_dir, log_dir=log_dir, socket=sock)
