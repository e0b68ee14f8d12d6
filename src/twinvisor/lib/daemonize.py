"""Run the current program in the background, optionally under a restarting watcher (seed 003).

`background()` re-executes the program (same interpreter argv, same environment) as a
detached child and returns in that child; `Daemon(...).run()` turns the program into a
watcher that runs itself as a worker and restarts it by the supervisor's own policy.

How a re-executed child knows where it is
-----------------------------------------
Re-running a program replays it from the top, so every call of `background()` before the
one that created the child is executed again in the child. xdaemon marks the child with a
*number* (the call index): calls up to that number return "you are the child". That breaks
as soon as one process makes several children (its pitfall): the child of call 2 takes the
child branch of call 1, i.e. a code path its parent never took.

Here the parent hands down the *outcome* of every earlier call instead of a count: the
child replays call k as "child" when the lineage went through the child side of call k,
and as "parent" (a handle on that sibling, which it can watch but not reap) otherwise. So
the child follows its parent's exact path, returns from the call that created it, and any
later call starts a new generation. The token travels in one environment variable that
the child removes at import, so the program sees its parent's environment unchanged and
nothing it starts inherits the token. The token also names a pipe: the child reports
through it once it has taken the pid-file lock, so the parent learns of a refused second
copy (or of a child that died on the way) and fails loudly instead of exiting 0.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import NoReturn

from twinvisor.config.specs import RestartPolicy
from twinvisor.core.policy import GiveUp, Restart, Stay, decide, run_failed
from twinvisor.errors import AlreadyRunning, SpawnError
from twinvisor.exitcodes import Exit
from twinvisor.linux.kernel import pidfd_open, signal_group, wait_gone
from twinvisor.linux.stopping import StopPlan, stop

__all__ = ["BackgroundProcess", "Daemon", "background"]

_ENV = "TWINVISOR_BACKGROUND"
_CHILD = "c"
_HANDSHAKE_OK = b"ok\n"


@dataclass
class _Lineage:
    """What this process knows of its ancestry, and the pid-file locks it holds."""

    path: list[str] = field(default_factory=list)  # "c" or "p:<pid>" per call
    handshake_fd: int | None = None  # tell the parent we made it (None: nobody waits)
    start_cwd: str = ""  # where the first generation started: argv resolves from here
    locks: dict[str, int] = field(default_factory=dict)  # pid file path -> locked fd
    calls: int = 0


def _load_lineage() -> _Lineage:
    """Take the token out of the environment (at import, before the program spawns anything)."""
    raw = os.environ.pop(_ENV, None)
    fresh = _Lineage(start_cwd=os.getcwd())
    if raw is None:
        return fresh
    try:
        data = json.loads(raw)
        fd = int(data["fd"])
        # A token whose pipe we do not hold was inherited by accident: ignore it.
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return fresh
        locks = {str(k): int(v) for k, v in data["locks"].items()}
    except (ValueError, KeyError, TypeError, OSError):
        return fresh
    for held in (fd, *locks.values()):
        os.set_inheritable(held, False)  # pass_fds made them inheritable; our children must not
    return _Lineage([str(p) for p in data["path"]], fd, str(data["cwd"]), locks)


_lineage = _load_lineage()
_calls_lock = threading.Lock()


def _next_call() -> int:
    with _calls_lock:
        _lineage.calls += 1
        return _lineage.calls


class BackgroundProcess:
    """A handle on a background child, returned to a parent that did not exit.

    In a descendant that replays its parent's path, the handle names a sibling: it can be
    watched (`wait`) but not reaped, so its exit status is unknown (None).
    """

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self._popen = popen

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the exit; returns the status, or None when unknown or on timeout."""
        if timeout is None and self._popen is not None:
            return self._popen.wait()  # our own child: waitpid blocks until its exit
        if not wait_gone(self.pid, timeout):
            return None
        return None if self._popen is None else self._popen.wait()

    def send_signal(self, sig: int) -> bool:
        """Signal the child's whole session (it leads its own process group)."""
        return signal_group(self.pid, sig)


def background(
    log_file: str | None = None,
    exit_parent: bool = True,
    *,
    pid_file: str | None = None,
    umask: int | None = None,
    cwd: str | None = None,
    start_timeout: float | None = 30.0,
) -> BackgroundProcess | None:
    """Continue this program as a detached background process.

    Returns None in the background child. In the parent: exits with status 0 once the
    child has started (exit_parent=True) or returns a handle on the child. Raises
    AlreadyRunning when `pid_file` is locked by a live copy, SpawnError when the child
    could not start or died before reaching this call.
    """
    index = _next_call()
    if index <= len(_lineage.path):
        return _replay(index, pid_file=pid_file, umask=umask, cwd=cwd)
    child = _spawn_child(
        [*_lineage.path, _CHILD], log_file, new_session=True, start_timeout=start_timeout
    )
    if exit_parent:
        _exit_now(Exit.OK)
    _lineage.path.append(f"p:{child.pid}")
    return child


def _replay(
    index: int, *, pid_file: str | None, umask: int | None, cwd: str | None
) -> BackgroundProcess | None:
    """Give call `index` the outcome it had in our ancestor."""
    entry = _lineage.path[index - 1]
    if entry != _CHILD:
        return BackgroundProcess(int(entry.partition(":")[2]))
    # umask and cwd are per process: redo them so the state matches the ancestor's
    if umask is not None:
        os.umask(umask)
    if cwd is not None:
        os.chdir(cwd)
    if index == len(_lineage.path):
        _complete_handoff(pid_file)
    return None


def _complete_handoff(pid_file: str | None) -> None:
    """We are the child of this very call: take the pid lock, then release the parent."""
    fd = _lineage.handshake_fd
    _lineage.handshake_fd = None
    if pid_file is not None:
        try:
            _lock_pid_file(pid_file)
        except AlreadyRunning as e:
            _report(fd, f"locked {e.pid or 0} {e}\n".encode())
            print(f"twinvisor.daemon: {e}", file=sys.stderr, flush=True)
            _exit_now(Exit.FAILED)
    _report(fd, _HANDSHAKE_OK)
    # The log file is not a tty: keep lines whole and timely in it
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def _report(fd: int | None, message: bytes) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):  # the parent may have given up and left
        os.write(fd, message)
    os.close(fd)


def _lock_pid_file(path: str) -> None:
    """flock the pid file (BSD pidfile(3) style) and write our pid into it.

    The lock, not the file's content, says a copy is running: it vanishes with the process,
    so a stale pid file never blocks a start. An inherited lock (handed down by a parent
    generation) is already ours.
    """
    path = os.path.abspath(path)
    fd = _lineage.locks.get(path)
    if fd is None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(f"{path} is locked by pid {holder}", holder) from None
        _lineage.locks[path] = fd
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _reexec_argv() -> list[str]:
    """The interpreter's own argv: covers `python x.py`, `python -m pkg`, entry points, -c."""
    argv = list(getattr(sys, "orig_argv", []) or [sys.executable, *sys.argv])
    if sys.executable:
        argv[0] = sys.executable  # orig_argv[0] may be a bare name looked up in PATH
    return argv


def _spawn_child(
    path: list[str],
    log_file: str | None,
    *,
    new_session: bool,
    start_timeout: float | None,
) -> BackgroundProcess:
    """Start the next generation with lineage `path` and wait for its handshake."""
    read_end, write_end = os.pipe()
    token = {"path": path, "fd": write_end, "cwd": _lineage.start_cwd, "locks": _lineage.locks}
    env = dict(os.environ)
    env[_ENV] = json.dumps(token)
    try:
        popen = _popen(env, log_file, new_session, (write_end, *_lineage.locks.values()))
    except OSError as e:
        os.close(read_end)
        raise SpawnError(f"cannot start background process: {e}") from e
    finally:
        os.close(write_end)
    try:
        _await_handshake(read_end, popen, start_timeout)
    finally:
        os.close(read_end)
    return BackgroundProcess(popen.pid, popen)


def _popen(
    env: dict[str, str], log_file: str | None, new_session: bool, keep: tuple[int, ...]
) -> subprocess.Popen[bytes]:
    out = subprocess.DEVNULL if log_file is None else _open_log(log_file)
    try:
        return subprocess.Popen(
            _reexec_argv(),
            env=env,
            cwd=_lineage.start_cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            pass_fds=keep,
            # setsid: no controlling terminal, no SIGHUP/SIGINT from the shell we left.
            # A worker under Daemon only needs its own group, so the watcher can signal
            # the worker and its children as one.
            start_new_session=new_session,
            process_group=None if new_session else 0,
        )
    finally:
        if out != subprocess.DEVNULL:
            os.close(out)


def _open_log(log_file: str) -> int:
    return os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


def _await_handshake(read_end: int, popen: subprocess.Popen[bytes], timeout: float | None) -> None:
    """Block (event driven) until the child reports; raise when it cannot run."""
    message = _read_line(read_end, timeout)
    if message == _HANDSHAKE_OK:
        return
    if message is None:  # timed out: do not leave a half-started orphan behind
        signal_group(popen.pid, signal.SIGKILL)
        popen.wait()
        raise SpawnError(f"background process {popen.pid} did not start in {timeout}s")
    status = popen.wait()
    if message.startswith(b"locked"):
        holder = message.split()[1]
        text = message.decode(errors="replace").split(" ", 2)[2].strip()
        raise AlreadyRunning(text, int(holder) or None)
    raise SpawnError(f"background process exited with status {status} before it started")


def _read_line(fd: int, timeout: float | None) -> bytes | None:
    """Read up to a newline or EOF; None on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data


def _exit_now(code: int) -> NoReturn:
    """Leave without running the program's cleanup: it belongs to the background copy."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


# ---------------------------------------------------------------- Daemon (watcher)


@dataclass
class _Run:
    """One worker run as the watcher saw it."""

    pid: int
    started: bool  # reached Daemon.run() (handshake) before exiting
    run_time: float
    status: int  # Popen returncode: >= 0 exit code, < 0 killed by that signal


class Daemon:
    """Run this program as a worker under a background watcher that restarts it.

    The watcher and the worker are both this program: `run()` returns only in the worker.
    The watcher restarts the worker by the supervisor's policy (`policy.decide`), stops
    after `max_count` restarts (0: never) or `max_error` consecutive failures (a worker
    that died before reaching `run()` or ran less than `min_exit_time` seconds), and
    forwards SIGTERM/SIGINT/SIGHUP to the worker's process group, then exits.
    """

    def __init__(
        self,
        log_file: str | None,
        max_count: int = 0,
        max_error: int = 3,
        min_exit_time: float = 10.0,
        *,
        background: bool = True,
        pid_file: str | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.log_file = log_file
        self.max_count = max_count
        self.max_error = max_error
        self.background = background
        self.pid_file = pid_file
        self.stop_timeout = stop_timeout
        # max_error failures in a row give up: decide() gives up past max_retry failures
        self.policy = RestartPolicy(
            max_retry=max(max_error - 1, 0),
            min_uptime=min_exit_time,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )
        self._stop_signal: int | None = None
        self._wake_r = -1
        self._blocking_pid: int | None = None

    def run(self) -> None:
        """Become the watcher (never returns there) or, in the worker, return at once."""
        if self.background:
            background(self.log_file, pid_file=self.pid_file)
        elif self.pid_file is not None and len(_lineage.path) == 0:
            _lock_pid_file(self.pid_file)
        index = _next_call()
        if index <= len(_lineage.path):
            _replay(index, pid_file=None, umask=None, cwd=None)
            return
        child_path = [*_lineage.path, _CHILD]
        sys.exit(self._watch(child_path))

    # The watcher: one worker at a time, waiting on pidfd / pipes / the signal wake-up fd.

    def _watch(self, child_path: list[str]) -> int:
        self._install_signals()
        failures = restarts = 0
        while True:
            run = self._run_worker(child_path)
            if self._stop_signal is not None:
                self._log(f"stopped by signal {self._stop_signal}; {self._describe(run)}")
                return Exit.OK
            failed = run is None or run_failed(self.policy, run.run_time if run.started else None)
            failures = failures + 1 if failed else 0
            self._log(f"{self._describe(run)}; consecutive failures {failures}/{self.max_error}")
            if self.max_count and restarts >= self.max_count:
                self._log(f"restarted {restarts} times (max_count): stopping")
                return Exit.OK
            delay = self._next_delay(run, failures)
            if delay is None:
                return Exit.FAILED if failures else Exit.OK
            if not self._sleep(delay):
                self._log(f"stopped by signal {self._stop_signal}")
                return Exit.OK
            restarts += 1
            self._log(f"restart {restarts} after {delay:.2f}s")

    def _next_delay(self, run: _Run | None, failures: int) -> float | None:
        exit_code = None if run is None or run.status < 0 else run.status
        decision = decide(self.policy, exit_code, failures)
        match decision:
            case Restart(delay=delay):
                return delay
            case GiveUp():
                self._log(f"{failures} consecutive failures (max_error): giving up")
                return None
            case Stay():
                self._log("exit expected by the policy: not restarting")
                return None

    def _run_worker(self, child_path: list[str]) -> _Run | None:
        started_at = time.monotonic()
        read_end, write_end = os.pipe()
        token = json.dumps(
            {"path": child_path, "fd": write_end, "cwd": _lineage.start_cwd, "locks": {}}
        )
        try:
            popen = _popen({**os.environ, _ENV: token}, self.log_file, False, (write_end,))
        except OSError as e:
            self._log(f"cannot start worker: {e}")
            return None
        finally:
            os.close(write_end)
        try:
            started = self._supervise(popen, read_end)
        finally:
            os.close(read_end)
        return _Run(popen.pid, started, time.monotonic() - started_at, popen.returncode or 0)

    def _supervise(self, popen: subprocess.Popen[bytes], handshake: int) -> bool:
        """Wait for the worker's exit, stopping it on a stop signal; True if it reached run()."""
        pidfd = pidfd_open(popen.pid)
        if pidfd is None:
            return self._supervise_blocking(popen, handshake)
        try:
            started = self._until_exit_or_stop(handshake, pidfd)
        finally:
            os.close(pidfd)
        if self._stop_signal is not None and popen.poll() is None:
            stop(StopPlan(popen.pid, self._stop_signal, self.stop_timeout))
            ready, _, _ = select.select([handshake], [], [], 0)  # reported while stopping?
            started |= self._drain(ready, handshake, [handshake])
        popen.wait()
        return started

    def _until_exit_or_stop(self, handshake: int, pidfd: int) -> bool:
        """Drain the handshake and the wake-up fd until the worker exits or we are told to
        stop; True if the worker reported it reached run()."""
        started = False
        watched = [handshake, self._wake_r, pidfd]
        while self._stop_signal is None:
            ready, _, _ = select.select(watched, [], [])
            if pidfd in ready:
                return started | self._drain(ready, handshake, watched)
            started |= self._drain(ready, handshake, watched)
        return started

    def _supervise_blocking(self, popen: subprocess.Popen[bytes], handshake: int) -> bool:
        """Kernels without pidfd: blocking read + waitpid; the handler forwards signals."""
        self._blocking_pid = popen.pid
        try:
            if self._stop_signal is not None:
                signal_group(popen.pid, self._stop_signal)
            started = _read_line(handshake, None) == _HANDSHAKE_OK
            popen.wait()
        finally:
            self._blocking_pid = None
        return started

    def _drain(self, ready: list[int], handshake: int, watched: list[int]) -> bool:
        started = False
        if handshake in ready:
            started = os.read(handshake, 64).startswith(_HANDSHAKE_OK)
            watched.remove(handshake)  # reported or EOF: nothing more comes from it
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)
        return started

    def _sleep(self, delay: float) -> bool:
        """Back off for `delay` seconds; False when a stop signal came meanwhile."""
        deadline = time.monotonic() + delay
        while self._stop_signal is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            select.select([self._wake_r], [], [], left)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)
        return False

    def _install_signals(self) -> None:
        # The handler only records the signal; set_wakeup_fd wakes whatever select waits.
        self._wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # only a wake-up: a full pipe still wakes us, no warning per signal (see
        # kernel.add_signal_handler)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

        def on_signal(signum: int, _frame: object) -> None:
            self._stop_signal = signum
            if self._blocking_pid is not None:  # nobody is watching the wake-up fd
                signal_group(self._blocking_pid, signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_signal)

    def _describe(self, run: _Run | None) -> str:
        if run is None:
            return "worker failed to start"
        how = f"exit code {run.status}" if run.status >= 0 else f"signal {-run.status}"
        late = "" if run.started else " (before reaching Daemon.run)"
        return f"worker pid {run.pid} exited after {run.run_time:.2f}s with {how}{late}"

    def _log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        line = f"{stamp} twinvisor.daemon[{os.getpid()}]: {message}\n"
        if self.background or self.log_file is None:
            sys.stderr.write(line)  # in the background, stderr is the log file already
            sys.stderr.flush()
            return
        # In the foreground the log file still gets the restart history, beside the worker's
        fd = _open_log(self.log_file)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
