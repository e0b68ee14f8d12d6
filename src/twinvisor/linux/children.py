"""Spawning children and tearing them down: new session, env, cwd, user, pipes, tree kill.

The runtime owns every child it spawns: it is reaped only through its `ChildWatcher` (pidfd, or
a SIGCHLD-driven `waitpid(pid)` where pidfds are missing), never by a `waitpid(-1)`, so no
other code can steal an exit status.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

import msgspec

from twinvisor.config.specs import ProgramSpec
from twinvisor.errors import SpawnError
from twinvisor.linux import kernel


class Child(msgspec.Struct):
    pid: int
    start_ticks: int | None  # /proc start time: identifies the process across pid reuse
    stdout_fd: int | None
    stderr_fd: int | None
    popen: subprocess.Popen[bytes] | None = None
    # its output goes through named FIFOs in the run dir (older spawns, or no /proc), which
    # are removed once read to the end; False: anonymous pipes, nothing on disk
    named_fifos: bool = False
    # descendants seen when the stop began: (pid, start ticks); killed if they outlive it
    tree: list[tuple[int, int | None]] = msgspec.field(default_factory=list)
    cgroup: str | None = None  # its cgroup v2 leaf, where available: holds every descendant

    @property
    def pgid(self) -> int:
        return self.pid  # start_new_session makes the child its own group (and session) leader

    def known_start(self) -> int | None:
        """The /proc start time, read when first needed (the state file): a read right
        after the spawn waits for the child's exec to finish, and cost a start of 1000
        programs as much as forking them (py-spy). Until then nothing needs it: while it
        is our unreaped child its pid cannot be reused."""
        if self.start_ticks is None and self.popen is not None and self.popen.returncode is None:
            self.start_ticks = kernel.process_start_time(self.pid)
        return self.start_ticks


def child_environment(spec: ProgramSpec, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # our own control variables must not leak into programs (they would confuse a
    # twinvisor started by a program, or a systemd-aware app)
    for key in (
        "TWINVISOR_READY_FD",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
    ):
        env.pop(key, None)
    env.update(dict(spec.environment))
    env["TWINVISOR_PROGRAM"] = spec.name
    if extra:
        env.update(extra)
    return env


class SpawnOptions(msgspec.Struct, frozen=True):
    """How one generation starts beyond what its spec says (decided by the runtime)."""

    env_extra: Mapping[str, str] = msgspec.field(
        default_factory=dict
    )  # NOTIFY_SOCKET, LISTEN_FDS, …
    argv_prefix: Sequence[str] = ()  # the sh trampoline (LISTEN_PID, cgroup entry)
    preexec: Callable[[], None] | None = None  # places listening sockets at fd 3, 4, …
    # stdout/stderr as pipes the program holds open (OutputPipe; FIFOs here without /proc),
    # that survive both twins; None: plain pipes, which die with the supervisor and guard
    fifo_dir: str | None = None


_NO_OPTIONS = SpawnOptions()


def spawn(spec: ProgramSpec, options: SpawnOptions = _NO_OPTIONS) -> Child:
    """Start one instance. Raises SpawnError with a message naming what went wrong."""
    capture_out = spec.stdout.path is not None or spec.stdout.console is not None
    capture_err = spec.stderr.path is not None or spec.stderr.console is not None
    fifo_dir = options.fifo_dir
    fifos: list[OutputPipe | OutputFifo | None] = [
        _output(fifo_dir, spec.name, stream) if fifo_dir and wanted else None
        for stream, wanted in (("out", capture_out), ("err", capture_err))
    ]
    try:
        return _popen(spec, options, fifos)
    finally:
        for fifo in fifos:
            if fifo is not None:
                fifo.after_spawn()


def _output(fifo_dir: str, name: str, stream: str) -> OutputPipe | OutputFifo:
    return OutputPipe.create() or OutputFifo.create(fifo_dir, name, stream)


def _popen(
    spec: ProgramSpec, options: SpawnOptions, fifos: list[OutputPipe | OutputFifo | None]
) -> Child:
    capture_out = spec.stdout.path is not None or spec.stdout.console is not None
    capture_err = spec.stderr.path is not None or spec.stderr.console is not None
    out_target = (
        fifos[0].child_fd if fifos[0] else (subprocess.PIPE if capture_out else subprocess.DEVNULL)
    )
    err_target = (
        fifos[1].child_fd if fifos[1] else (subprocess.PIPE if capture_err else subprocess.DEVNULL)
    )
    if spec.redirect_stderr:
        err_target = subprocess.STDOUT  # the same pipe: one stream, in the order written
    user, group, extra_groups = _identity(spec)
    argv = [*options.argv_prefix, *spec.command]
    if options.argv_prefix:
        _check_executable(spec)  # behind a trampoline a missing command would only be exit 127
    try:
        popen = subprocess.Popen(
            argv,
            cwd=spec.directory,
            env=child_environment(spec, options.env_extra),
            stdin=subprocess.DEVNULL,
            stdout=out_target,
            stderr=err_target,
            start_new_session=True,
            # with a preexec hook placing fds at 3.., the hook closes the rest itself
            close_fds=options.preexec is None,
            preexec_fn=options.preexec,
            restore_signals=True,
            umask=-1 if spec.umask is None else spec.umask,
            user=user,
            group=group,
            extra_groups=extra_groups,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        raise _spawn_error(spec, e) from None
    out_fd = fifos[0].name_after(popen.pid) if fifos[0] else _detach_pipe(popen.stdout)
    err_fd = fifos[1].name_after(popen.pid) if fifos[1] else _detach_pipe(popen.stderr)
    popen.stdout = popen.stderr = None
    named = any(isinstance(f, OutputFifo) for f in fifos)
    return Child(popen.pid, None, out_fd, err_fd, popen, named_fifos=named)  # (known_start)


FIFO_BUFFER = 1 << 20  # what a program may write while no supervisor reads (capped by the kernel)


class OutputPipe(msgspec.Struct):
    """A program's stdout or stderr: an anonymous pipe that the program holds read-write.

    The program's end is opened through /proc/self/fd with O_RDWR, so the pipe has a reader
    for as long as the program lives: if both twins die, its writes block once the buffer is
    full instead of failing with EPIPE (which kills most programs), and the next supervisor
    opens a new read end through /proc/PID/fd/N (open_program_end) and reads what waits. A
    named FIFO in the run dir did this before (OutputFifo, still the fallback without /proc):
    the pipe needs no inode (creating 2000 FIFOs was a quarter of the supervisor's time
    starting 1000 programs: ext4's inode allocator) and has no path anyone could touch."""

    read_fd: int
    child_fd: int
    taken: bool = False  # the spawn succeeded: read_fd is the supervisor's now

    @classmethod
    def create(cls) -> OutputPipe | None:
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            rw = os.open(f"/proc/self/fd/{w}", os.O_RDWR | os.O_CLOEXEC)
        except OSError:  # no /proc: the FIFO instead
            os.close(r)
            return None
        finally:
            os.close(w)
        os.set_blocking(r, False)
        with contextlib.suppress(OSError):
            fcntl.fcntl(r, F_SETPIPE_SZ, FIFO_BUFFER)
        return cls(r, rw)

    def name_after(self, pid: int) -> int:
        """The supervisor's read end (an OutputFifo is renamed for `pid` here)."""
        self.taken = True
        return self.read_fd

    def after_spawn(self) -> None:
        os.close(self.child_fd)  # only the program keeps its end
        if not self.taken:  # the spawn failed
            os.close(self.read_fd)


class OutputFifo(msgspec.Struct):
    """A program's stdout or stderr as a named FIFO in the run dir.

    The program gets it opened read-write, so the pipe always has a reader as long as the
    program lives: if both twins die, its writes block once the buffer is full instead of
    failing with EPIPE (which kills most programs), and the next supervisor re-opens the FIFO
    by its path and reads what is waiting. An anonymous pipe would be lost with its readers.
    """

    path: str
    read_fd: int
    child_fd: int
    label: str  # "<instance>.<out|err>"

    @classmethod
    def create(cls, directory: str, name: str, stream: str) -> OutputFifo:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        path = os.path.join(directory, f".new-{name}.{stream}.{os.getpid()}.{time.monotonic_ns()}")
        os.mkfifo(path, 0o600)
        read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        child_fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(read_fd, F_SETPIPE_SZ, FIFO_BUFFER)
        return cls(path, read_fd, child_fd, f"{name}.{stream}")

    def name_after(self, pid: int) -> int:
        """Rename to the path a later supervisor will look for; returns our read end."""
        final = fifo_path(os.path.dirname(self.path), self.label, pid)
        os.replace(self.path, final)
        self.path = final
        return self.read_fd

    def after_spawn(self) -> None:
        os.close(self.child_fd)  # only the program keeps its end
        if os.path.basename(self.path).startswith(".new-"):  # the spawn failed
            os.close(self.read_fd)
            with contextlib.suppress(OSError):
                os.unlink(self.path)


F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def fifo_path(directory: str, name_and_stream: str, pid: int) -> str:
    """`<dir>/<instance>.<out|err>.<pid>`: where a program's output waits for a supervisor."""
    return os.path.join(directory, f"{name_and_stream}.{pid}")


def open_fifo(directory: str, name: str, stream: str, pid: int) -> int | None:
    """Re-open the output FIFO of a program adopted after both twins died."""
    try:
        return os.open(
            fifo_path(directory, f"{name}.{stream}", pid),
            os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC,
        )
    except OSError:
        return None


def open_program_end(pid: int, target_fd: int) -> int | None:
    """A new read end of the pipe a live program writes to at `target_fd` (an OutputPipe,
    or a FIFO whose path is gone: run/pipes removed while no supervisor held it): through
    /proc/PID/fd, which reaches the pipe without a path. Not pidfd_getfd: that would share
    the program's open file description, and making it non-blocking for us would make the
    program's writes fail with EAGAIN."""
    path = f"/proc/{pid}/fd/{target_fd}"
    try:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            return None
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None


def is_named_fifo(fd: int) -> bool:
    """A FIFO made by mkfifo (it has an inode on a disk), not an anonymous pipe."""
    try:
        return os.fstat(fd).st_dev != _pipefs_dev()
    except OSError:
        return False


def _pipefs_dev() -> int:
    r, w = os.pipe()
    try:
        return os.fstat(r).st_dev
    finally:
        os.close(r)
        os.close(w)


def trampoline(cgroup_procs: str | None, listen_pid: bool) -> list[str]:
    """A `sh` prefix doing, in the child itself and before the program runs, what the spawner
    cannot do from outside without a race:
      - enter its cgroup leaf: a move made after the spawn can come too late (a migration may
        take milliseconds), after the program has already forked;
      - set LISTEN_PID to its own pid, which the spawner cannot know before the exec.
    `exec` keeps the pid, so the program is still the process we spawned."""
    script = ""
    if cgroup_procs is not None:
        # if the move is refused the program still runs (groups then do the cleaning)
        script += '{ echo $$ >"$1"; } 2>/dev/null; shift; '
    if listen_pid:
        script += "LISTEN_PID=$$; export LISTEN_PID; "
    script += 'exec "$@"'
    return ["/bin/sh", "-c", script, "twinvisor", *([cgroup_procs] if cgroup_procs else [])]


def _spawn_error(spec: ProgramSpec, e: Exception) -> SpawnError:
    """What went wrong, in the operator's words (not errno's)."""
    if isinstance(e, FileNotFoundError):
        missing = e.filename or spec.command[0]
        if spec.directory and missing == spec.directory:
            return SpawnError(f"directory {spec.directory!r} does not exist")
        return SpawnError(f"command not found: {missing!r}")
    if isinstance(e, PermissionError):
        return SpawnError(f"permission denied: {e.filename or spec.command[0]!r}")
    if isinstance(e, NotADirectoryError):
        return SpawnError(f"directory {spec.directory!r} is not a directory")
    return SpawnError(f"{type(e).__name__}: {e}")


def _check_executable(spec: ProgramSpec) -> None:
    import shutil

    program = spec.command[0]
    if "/" in program:
        path = os.path.join(spec.directory or ".", program)
        if not os.access(path, os.X_OK):
            raise SpawnError(f"command not found or not executable: {program!r}")
    elif (
        shutil.which(program, path=dict(spec.environment).get("PATH", os.environ.get("PATH")))
        is None
    ):
        raise SpawnError(f"command not found: {program!r}")
    if spec.directory and not os.path.isdir(spec.directory):
        raise SpawnError(f"directory {spec.directory!r} does not exist")


def _detach_pipe(pipe: object) -> int | None:
    """Take the raw fd out of Popen's file object so that we own (and close) it ourselves."""
    if pipe is None:
        return None
    fd = os.dup(pipe.fileno())  # type: ignore[attr-defined]
    pipe.close()  # type: ignore[attr-defined]
    os.set_blocking(fd, False)
    return fd


def _identity(spec: ProgramSpec) -> tuple[int | None, int | str | None, list[int] | None]:
    """(user, group, extra_groups) for Popen: only meaningful (and allowed) when we are root."""
    if spec.user is None and spec.group is None:
        return None, None, None
    import pwd

    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        if spec.user in (None, me) and spec.group is None:
            return None, None, None
        raise SpawnError(
            f"cannot run as user={spec.user!r} group={spec.group!r}: "
            f"the daemon runs as {me!r}, not root"
        )
    user: int | None = None
    group: int | str | None = spec.group
    extra: list[int] | None = None
    if spec.user is not None:
        entry = pwd.getpwnam(spec.user) if not spec.user.isdigit() else pwd.getpwuid(int(spec.user))
        user, extra = entry.pw_uid, []
        group = spec.group if spec.group is not None else entry.pw_gid
    return user, group, extra


def reap(child: Child) -> tuple[int | None, int | None] | None:
    """Collect the exit status of our own child. None while it is still running.

    Returns (exit_code, signal): exactly one of them is set, or neither for a process that
    is not our child (adopted): its parent, not us, learns how it ended.
    """
    adopted = child.popen is None
    alive = kernel.is_same_process(child.pid, child.start_ticks)
    if adopted and alive and not kernel.is_zombie(child.pid):
        return None  # adopted and alive: waitpid() would not work on it
    try:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
    except ChildProcessError:
        return (None, None)  # not our child (adopted), now gone: status unknown
    if pid == 0:
        return None
    if child.popen is not None:
        child.popen.returncode = status  # Popen must not try to reap it again
    if os.WIFSIGNALED(status):
        return (None, os.WTERMSIG(status))
    return (os.waitstatus_to_exitcode(status), None)


def snapshot_tree(child: Child) -> None:
    """Remember the descendants now, so those that left the process group (setsid) can
    still be killed once the program is gone."""
    seen = {pid for pid, _ in child.tree}
    for pid in kernel.descendants(child.pid):
        if pid not in seen:
            child.tree.append((pid, kernel.process_start_time(pid)))


def kill_remnants(child: Child) -> None:
    """SIGKILL whatever the program left behind: its cgroup leaf (even processes that left
    the group and were orphaned away), its process group, and the descendants it had."""
    if child.cgroup is not None:
        kernel.cgroup_kill(child.cgroup)
    kernel.signal_group(child.pgid, signal.SIGKILL)
    for pid, ticks in child.tree:
        if kernel.is_same_process(pid, ticks):
            kernel.signal_pid(pid, signal.SIGKILL)
