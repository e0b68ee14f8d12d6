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

It is also the lightest process of the two, and stays so: it starts with `python -c` (no
runpy, no CLI, no argparse: see `command`), gets its paths from whoever starts it (no config
loading, no tomllib), and imports no logging, subprocess, asyncio, dataclasses or typing at
run time (tests/e2e/test_guard_imports.py checks the running guard). Every module it loads
is in every page of memory it keeps for the daemon's whole life.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import select
import sys
import time

from twinvisor.exitcodes import FINAL_AT_STARTUP, Exit
from twinvisor.linux import fsutil, kernel, rundir
from twinvisor.linux.quiet import suppress
from twinvisor.twin import cjson, startup_report, stopmark
from twinvisor.twin.guardlog import log
from twinvisor.twin.protocol import (
    DAEMON_PATHS_ENV,
    FDS_PER_MESSAGE,
    GUARD_ENV,
    HEARTBEAT_TIMEOUT,
    STOPPED_GRACE,
    command,
    peer,
    recv_message,
    send_message,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any

    from twinvisor.config.specs import DaemonSpec
else:  # signal.py is _signal with IntEnum wrappers around it: enum alone is 0.8 MiB here
    import _signal as signal

# neighbours' names, not imported (each would bring its module's imports); a test pins them
FOREGROUND_ENV = "TWINVISOR_FOREGROUND"  # as supervisor/console.py
CONSOLE_ENV = "TWINVISOR_CONSOLE_FDS"  # as linux/console.py
# an upgrade re-executes the guard in place, handing itself its fds through these
_FDS_ENV = "TWINVISOR_GUARD_FDS"  # {key: fd}, the listener under _LISTENER_KEY
_WATCH_ENV = "TWINVISOR_GUARD_WATCH"  # the supervisor's pid
_LISTENER_KEY = "__listener__"
# debug: a file the guard keeps listing its sys.modules in (tests/e2e/test_guard_imports.py)
MODULES_ENV = "TWINVISOR_GUARD_MODULES"
MAX_FAILED_STARTS = 5  # supervisors in a row dead before their start-up was over: give up
# restart policy for the supervisor itself (core/policy's rules, inlined: that module brings
# the config specs): quick retries, then every 5 s, never a tight loop, never giving up
# (a guard that stops reviving would leave the programs unsupervised)
MIN_UPTIME = 2.0  # a supervisor that ran less than this failed
MAX_RETRY = 5  # failures in a row retried with backoff, then slowly
BACKOFF_INITIAL, BACKOFF_MAX, SLOW_RETRY = 0.1, 5.0, 5.0


def restart_delay(failures: int) -> float:
    """Seconds before the next supervisor, after `failures` failed runs in a row."""
    if failures <= 0:
        return 0.0
    if failures > MAX_RETRY:
        return SLOW_RETRY
    return min(BACKOFF_INITIAL * 2.0 ** (failures - 1), BACKOFF_MAX)


class DaemonFiles:
    """The guard's view of config.specs.DaemonSpec: the three paths it is told, and the
    files named after them (the same names: a test compares the two)."""

    def __init__(self, run_dir: str, log_dir: str, socket: str) -> None:
        self.run_dir, self.log_dir, self.socket = run_dir, log_dir, socket
        self.pid_path = f"{run_dir}/twinvisor.pid"  # the supervisor's
        self.log_path = f"{log_dir}/twinvisor.log"
        self.out_path = f"{log_dir}/twinvisor.out"
        self.stop_marker = f"{run_dir}/stop"
        self.guard_socket = f"{run_dir}/guard.sock"
        self.guard_lock_path = f"{run_dir}/guard.lock"
        self.guard_pid_path = f"{run_dir}/guard.pid"

    @classmethod
    def of(cls, spec: DaemonSpec) -> DaemonFiles:
        return cls(spec.run_dir, spec.log_dir, spec.socket)


class Guard:
    def __init__(self, config_path: str, daemon: DaemonFiles) -> None:
        self.config_path = config_path
        self.daemon = daemon
        self.sock_path, self.lock_path = daemon.guard_socket, daemon.guard_lock_path
        self.pid_path = daemon.guard_pid_path
        self.held: dict[str, int] = {}
        self.poll = select.epoll()
        self.watched: dict[int, str] = {}  # fd -> what its readiness means (_dispatch)
        self.conn: _socket.socket | None = None
        self.supervisor: int | None = None
        self.supervisor_is_child = False  # we started it: we reap it (else its parent does)
        self.supervisor_pidfd: int | None = None
        self.supervisor_started = 0.0
        self.failures = 0
        self.supervisor_ready = False  # it said its start-up is over (op "ready")
        self.failed_starts = 0  # supervisors in a row that died before that
        # liveness beyond the pidfd (twin/protocol.py): a rare look for a sign of life, and
        # the moment our child supervisor stopped (SIGCHLD, WUNTRACED)
        self.next_look = time.monotonic() + HEARTBEAT_TIMEOUT
        self.sign: tuple[int, int] | None = None  # (pid file mtime, messages) at the last look
        self.messages = 0  # from the supervisor: each one is a sign of life
        self.stopped_since: float | None = None
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
            listener = _socket.socket(fileno=inherited)
        else:
            fsutil.remove_quietly(self.sock_path)
            kind = _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC
            listener = _socket.socket(_socket.AF_UNIX, kind)
            old = os.umask(0o177)
            try:
                listener.bind(self.sock_path)
            finally:
                os.umask(old)
            listener.listen(4)
        os.set_inheritable(listener.fileno(), False)
        self.listener = listener
        self._watch(listener.fileno(), "accept")

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
        # under a foreground guard the supervisor tells the terminal what its programs do
        # (supervisor/console.py); its own stdout stays in twinvisor.out
        foreground = os.environ.get(FOREGROUND_ENV) == "1"
        try:
            pid = _spawn(command("daemon", self.config_path), env, out, foreground, pass_fds)
        except OSError as e:
            log.error(f"cannot start the supervisor: {e}")
            self._schedule_restart(None)
            return
        finally:
            os.close(out)
            for fd in console:
                os.close(fd)
        log.info(f"started supervisor pid {pid}")
        self.supervisor_ready = False
        self._watch_supervisor(pid, child=True)
        self.supervisor_started = time.monotonic()

    def watch_existing(self, pid: int) -> None:
        """Guard restarted by a live supervisor: watch it, it is not our child."""
        self.supervisor_ready = True
        self._watch_supervisor(pid, child=False)
        self.supervisor_started = time.monotonic() - MIN_UPTIME

    def _watch_supervisor(self, pid: int, child: bool) -> None:
        self.supervisor, self.supervisor_is_child = pid, child
        self.stopped_since = None
        self._looked()
        try:
            self.supervisor_pidfd = kernel.pidfd_open(pid)
        except ProcessLookupError:
            self.supervisor_pidfd = None
            self._supervisor_died(None)
            return
        if self.supervisor_pidfd is not None:
            self._watch(self.supervisor_pidfd, "supervisor")

    def _supervisor_died(self, status: int | None) -> None:
        pid = self.supervisor
        if self.supervisor_pidfd is not None:
            self._unwatch(self.supervisor_pidfd)
            os.close(self.supervisor_pidfd)
            self.supervisor_pidfd = None
        self.supervisor, self.supervisor_is_child = None, False
        self._drop_connection()
        if self.shutdown_requested or os.path.exists(self.daemon.stop_marker):
            # an exit policy's code (an essential program's exit), else 0 for a stop
            final = stopmark.read_code(self.daemon.stop_marker) or 0
            log.info(f"supervisor {pid} exited after a stop: the guard exits too ({final})")
            raise SystemExit(final)
        code = os.waitstatus_to_exitcode(status) if status is not None else None
        # final: config errors, another supervisor holds the lock, a start-up failure the
        # operator's `up` already reported; retrying would only hide it
        if code in FINAL_AT_STARTUP:
            log.error(f"supervisor {pid} exited with {code} at start-up: the guard exits too")
            raise SystemExit(code)
        self.failed_starts = 0 if self.supervisor_ready else self.failed_starts + 1
        if self.failed_starts >= MAX_FAILED_STARTS:
            # a start-up that fails every time (a bug, a run dir we cannot use) would go on
            # behind the operator's back; the next `up` (or the timer's) reports why
            log.error(
                f"the supervisor failed {self.failed_starts} start-ups in a row: "
                "the guard gives up (see above)"
            )
            raise SystemExit(Exit.STARTUP_REPORTED)
        log.warning(f"supervisor pid {pid} died (status {status}): restarting it")
        self._schedule_restart(time.monotonic() - self.supervisor_started)

    def _schedule_restart(self, run_time: float | None) -> None:
        failed = run_time is None or run_time < MIN_UPTIME
        self.failures = self.failures + 1 if failed else 0
        delay = restart_delay(self.failures)
        if self.failures > MAX_RETRY:
            log.error(
                f"the supervisor keeps dying at start ({self.failures} times): "
                f"retrying every {delay:.0f} s"
            )
        self.next_spawn = time.monotonic() + delay

    # -- connection with the supervisor ----------------------------------------------------

    def _accept(self) -> None:
        try:
            fd, _ = self.listener._accept()  # type: ignore[attr-defined]  # socket.accept's
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # gone before we looked
        conn = _socket.socket(fileno=fd)
        pid, uid = peer(conn)
        if uid not in (os.geteuid(), 0):
            conn.close()
            return
        self._drop_connection()
        conn.setblocking(True)
        conn.settimeout(5.0)
        self.conn = conn
        self._watch(conn.fileno(), "conn")
        self.messages += 1
        if self.supervisor is None or self.supervisor != pid:
            # a supervisor we did not start (we were restarted, or an upgrade): watch it
            self.supervisor_ready = True
            if self.supervisor_pidfd is not None:
                self._unwatch(self.supervisor_pidfd)
                os.close(self.supervisor_pidfd)
                self.supervisor_pidfd = None
            self._watch_supervisor(pid, child=False)

    def _drop_connection(self) -> None:
        if self.conn is not None:
            self._unwatch(self.conn.fileno())
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
        self.messages += 1  # `ping` (an older supervisor's heartbeat) does no more than this
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
        # only a wake-up: a full pipe still wakes us, no warning per signal (see
        # kernel.add_signal_handler)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # SIGTERM/SIGINT/SIGQUIT (docker stop, systemctl stop, Ctrl-C) mean `down`: stop
        # marker, then the supervisor stops the programs; we exit when it has
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, self._on_stop_signal)
        # HUP (reload the config), USR1 (status to the log), USR2 (reopen the log files)
        # are the supervisor's: passed on (`docker kill -s HUP` reaches PID 1, the guard)
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, self._forward)
        self._watch(wake_r, "signal")
        modules_file = os.environ.get(MODULES_ENV)
        while True:
            if modules_file:
                _tell_modules(modules_file, self.supervisor)
            timeout = self._timeout()
            try:
                ready = self.poll.poll(-1 if timeout is None else timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries; a handler raised
                ready = []
            for fd, _ in ready:
                what = self.watched.get(fd)
                if what is not None:  # not unwatched by an earlier one of this batch
                    self._dispatch(what, wake_r)
            self._reap()
            self._check_stopped()
            if time.monotonic() >= self.next_look:
                self._look()
            if self.next_spawn is not None and time.monotonic() >= self.next_spawn:
                self.next_spawn = None
                self.spawn_supervisor()
            if self.upgrade_requested:
                self._reexec()

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        stopmark.write(self.daemon.stop_marker)
        self.shutdown_requested = True
        if self.supervisor is not None:
            _ask_stop(self.supervisor)  # a stop that hangs gives no sign of life: SIGKILL
        else:
            raise SystemExit(Exit.OK)

    def _forward(self, signum: int, frame: object) -> None:
        if self.supervisor is not None:
            kernel.signal_pid(self.supervisor, signum)

    def _watch(self, fd: int, what: str) -> None:
        self.poll.register(fd, select.EPOLLIN)
        self.watched[fd] = what

    def _unwatch(self, fd: int) -> None:
        if self.watched.pop(fd, None) is not None:
            self.poll.unregister(fd)

    def _timeout(self) -> float | None:
        deadlines = []
        if self.next_spawn is not None:
            deadlines.append(self.next_spawn)
        if self.supervisor is not None:
            deadlines.append(self.next_look)
        if self.stopped_since is not None:
            deadlines.append(self.stopped_since + STOPPED_GRACE)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _dispatch(self, what: str, wake_r: int) -> None:
        if what == "accept":
            self._accept()
        elif what == "conn":
            self._on_message()
        elif what == "signal":
            with suppress(BlockingIOError):
                os.read(wake_r, 4096)
        elif what == "supervisor" and not self.supervisor_is_child:
            self._supervisor_died(None)  # not our child: its parent reaps it

    def _reap(self) -> None:
        """We are a subreaper: reap every orphan, and notice our supervisor's exit (and,
        when it is our child, its stops and continues: the kernel tells, no ping needed)."""
        if self.supervisor is not None and self.supervisor_is_child:
            try:
                flags = os.WNOHANG | os.WUNTRACED | os.WCONTINUED
                pid, status = os.waitpid(self.supervisor, flags)
            except ChildProcessError:
                pid, status = 0, 0
            if pid == self.supervisor:
                if os.WIFSTOPPED(status):
                    self.stopped_since = time.monotonic()
                    log.warning(
                        f"supervisor pid {pid} is stopped: SIGKILL in {STOPPED_GRACE:.0f} s "
                        "unless it continues"
                    )
                elif os.WIFCONTINUED(status):
                    self.stopped_since = None
                else:
                    self._supervisor_died(status)
        for pid, status in kernel.reap_zombies():
            if pid == self.supervisor:
                self._supervisor_died(status)

    def _check_stopped(self) -> None:
        since = self.stopped_since
        if since is None or self.supervisor is None:
            return
        if time.monotonic() - since >= STOPPED_GRACE:
            self.stopped_since = None
            log.warning(f"supervisor pid {self.supervisor} stayed stopped: SIGKILL")
            kernel.signal_pid(self.supervisor, signal.SIGKILL)

    def _sign_of_life(self) -> tuple[int, int]:
        """What changes while the supervisor lives: its pid file's mtime (touched at each
        refresh, supervisor/pidfiles.py) and the messages it sent us."""
        try:
            mtime = os.stat(self.daemon.pid_path).st_mtime_ns
        except OSError:
            mtime = -1
        return mtime, self.messages

    def _looked(self) -> None:
        self.sign = self._sign_of_life()
        self.next_look = time.monotonic() + HEARTBEAT_TIMEOUT

    def _look(self) -> None:
        """The rare periodic look (HEARTBEAT_TIMEOUT): a supervisor that gave no sign of
        life since the last look is hung (or stopped, not being our child): SIGKILL. Our
        own pid file too: rewritten if someone deleted it (seed 000)."""
        if fsutil.read_pid(self.pid_path) != os.getpid():
            fsutil.write_atomic(self.pid_path, f"{os.getpid()}\n", fsync=False)
        before = self.sign
        now = self.sign = self._sign_of_life()
        self.next_look = time.monotonic() + HEARTBEAT_TIMEOUT
        if self.supervisor is None or (self.conn is None and not self.supervisor_ready):
            return  # our child's start-up has its own timeouts (a watched one is past it,
            # connected or not: one stopped before it reached us must not be watched forever)
        # a missing pid file is no sign either way: the supervisor rewrites it in time
        if before == now and now[0] != -1:
            log.warning(
                f"supervisor pid {self.supervisor} gave no sign of life for "
                f"{HEARTBEAT_TIMEOUT:.0f} s (hung or stopped): SIGKILL"
            )
            kernel.signal_pid(self.supervisor, signal.SIGKILL)

    def _reexec(self) -> None:
        """`twinvisor upgrade`: become the newly installed code, keeping our pid, our child
        (the supervisor), the listener and every held fd."""
        fds = {**self.held, _LISTENER_KEY: self.listener.fileno()}
        for fd in fds.values():
            os.set_inheritable(fd, True)
        d = self.daemon  # told again: the new code loads no config either
        env = dict(os.environ, **{_FDS_ENV: cjson.dumps(fds)})
        env[DAEMON_PATHS_ENV] = cjson.dumps([d.run_dir, d.log_dir, d.socket])
        if self.supervisor is not None:
            env[_WATCH_ENV] = str(self.supervisor)
        log.info("upgrade: re-executing the guard")
        os.execve(sys.executable, command("guard", self.config_path), env)


def _tell_modules(path: str, supervisor: int | None) -> None:
    """Debug (MODULES_ENV): what this guard has imported so far, for the test that keeps it
    light; first line the supervisor it watches, so a reader knows the file is current."""
    text = f"{supervisor}\n" + "\n".join(sorted(sys.modules)) + "\n"
    fsutil.write_atomic(path, text, fsync=False)


def _ask_stop(supervisor: int) -> None:
    """linux/stopping's first step (that module imports asyncio): SIGTERM to the supervisor
    alone (its programs live in their own groups, and it stops them in order), then SIGCONT,
    since a stopped process cannot act on it. A missed heartbeat is the timeout (SIGKILL)."""
    kernel.signal_pid(supervisor, signal.SIGTERM)
    kernel.signal_pid(supervisor, signal.SIGCONT)


def _spawn(
    argv: list[str], env: dict[str, str], out: int, foreground: bool, pass_fds: tuple[int, ...]
) -> int:
    """subprocess.Popen's job for our one child, by posix_spawn (subprocess costs the guard
    2.4 MiB): stdin /dev/null, stdout (and stderr unless in the foreground) to `out`, its own
    session, `pass_fds` inherited, SIGPIPE/SIGXFSZ back to default as Popen would. We reap it
    ourselves (waitpid in _reap)."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out, 1),
    ]
    if not foreground:
        actions.append((os.POSIX_SPAWN_DUP2, out, 2))
    for fd in pass_fds:  # ours are close-on-exec: open them to this one exec only
        os.set_inheritable(fd, True)
    try:
        return os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=actions,
            setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
    finally:
        for fd in pass_fds:
            with suppress(OSError):
                os.set_inheritable(fd, False)


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


def _open_out(daemon: DaemonFiles) -> int:
    os.makedirs(daemon.log_dir, mode=0o750, exist_ok=True)
    try:
        return fsutil.open_log(daemon.out_path)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)


def run_guard(config_path: str, watch_pid: int | None, foreground: bool = False) -> int:
    """Start the guard (started by `up`, by a supervisor, or by itself); its exit status."""
    reporter = startup_report.Reporter()
    # whoever starts us tells the paths (DAEMON_PATHS_ENV): `up` has the config loaded, and a
    # supervisor's file may have errors by now (edited, not applied), which must not cost us
    # the guard. Only a guard started by hand reads the [daemon] table itself.
    daemon = _paths_from_parent() or _paths_from_config(config_path)
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
    os.makedirs(daemon.log_dir, mode=0o750, exist_ok=True)
    log.setup(daemon.log_path, foreground)
    if foreground:
        os.environ[FOREGROUND_ENV] = "1"  # inherited by each supervisor this guard starts
    for message in moved:
        log.warning(f"run dir: {message}")
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


def main(argv: list[str] | None = None) -> int:
    """The guard's process entry (`command("guard", ...)`): `guard -c CONFIG [--watch PID]
    [--foreground]`, read by hand: argparse alone would cost the guard more than its code."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["twinvisor"]:
        args = args[1:]
    config, watch, foreground = None, None, False
    words = iter(args[1:] if args[:1] == ["guard"] else args)
    for word in words:
        if word == "--foreground":  # `up --foreground` execs into us (containers, systemd)
            foreground = True
            continue
        value = next(words, None)
        if word == "-c" and value is not None:
            config = value
        elif word == "--watch" and value is not None and value.isdigit():
            watch = int(value)
        else:
            print(f"twinvisor guard: unexpected argument {word!r}", file=sys.stderr)
            return Exit.USAGE
    if config is None:
        print("twinvisor guard: -c CONFIG is required", file=sys.stderr)
        return Exit.USAGE
    return run_guard(config, watch, foreground)


def _take_handoff() -> tuple[dict[str, int], int | None]:
    """What the guard we were before an upgrade's re-exec handed down: the fds it held (and
    its listener), and the supervisor to watch. Nothing when we were started afresh."""
    fds = cjson.loads(os.environ.pop(_FDS_ENV, "{}"))
    watch = os.environ.pop(_WATCH_ENV, None)
    watch_pid = int(watch) if watch and watch.isdigit() else None
    return {str(k): int(v) for k, v in fds.items()}, watch_pid


def _paths_from_parent() -> DaemonFiles | None:
    try:
        run_dir, log_dir, sock = cjson.loads(os.environ.pop(DAEMON_PATHS_ENV, ""))
    except (ValueError, TypeError):
        return None
    if not all(isinstance(p, str) and os.path.isabs(p) for p in (run_dir, log_dir, sock)):
        return None
    return DaemonFiles(run_dir, log_dir, sock)


def _paths_from_config(config_path: str) -> DaemonFiles | None:
    """Only the [daemon] table: a config with errors elsewhere is for the supervisor to
    report. (Loads tomllib and the specs: the one path of the guard that does.)"""
    from twinvisor.config.paths import daemon_table_paths

    spec = daemon_table_paths(config_path)
    return None if spec is None else DaemonFiles.of(spec)
