"""Linux specifics in one place: pidfd, process start time, group signals, subreaper.

Each function has a fallback for kernels or systems that lack the feature, so callers never
branch on the platform themselves.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the guard imports this module, and asyncio is heavy
    import asyncio
    import signal
    from collections.abc import Callable
else:  # signal.py is _signal with IntEnum wrappers around it: enum costs the guard 0.8 MiB
    import _signal as signal

_PR_SET_CHILD_SUBREAPER = 36


def pidfd_open(pid: int) -> int | None:
    """A pidfd for `pid`, or None where pidfds are unavailable (old kernel, no permission).

    A pidfd becomes readable when the process exits, which lets asyncio watch any process
    (ours or adopted) without polling and without racing pid reuse.
    """
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except ProcessLookupError:
        raise
    except OSError:
        return None
    os.set_inheritable(fd, False)
    return fd


def process_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (/proc/PID/stat field 22), or None.

    Together with the pid it identifies a process for good: a reused pid has a later start
    time. Never signal a pid read from a file without comparing this.
    """
    fields = stat_fields(pid)
    if fields is None:
        return _psutil_start_time(pid)
    try:
        return int(fields[19])  # field 22
    except (IndexError, ValueError):
        return None


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after comm (index 0 is field 3, the state), or None when
    the process is gone or not readable."""
    try:  # os.open/read: a sixth of what open() costs, which matters 100 times a scrape
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    return data[data.rfind(b")") + 2 :].split()


def process_real_uid(pid: int) -> int | None:
    """The real uid of `pid` (/proc/PID/status), or None when it cannot be read. Unlike the
    environment, no process can set it to another uid's without that uid's privileges."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class Usage:
    """A plain class, not a dataclass: dataclasses (with inspect) would cost the guard 2.6 MiB."""

    __slots__ = ("cpu_seconds", "open_fds", "rss_bytes")

    def __init__(self, cpu_seconds: float, rss_bytes: int, open_fds: int | None) -> None:
        self.cpu_seconds = cpu_seconds  # user + system time of the process itself
        self.rss_bytes = rss_bytes
        self.open_fds = open_fds  # None when /proc/PID/fd is not readable (another uid)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Usage):
            return NotImplemented
        return (self.cpu_seconds, self.rss_bytes, self.open_fds) == (
            other.cpu_seconds,
            other.rss_bytes,
            other.open_fds,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, as a non-frozen value

    def __repr__(self) -> str:
        return f"Usage({self.cpu_seconds!r}, {self.rss_bytes!r}, {self.open_fds!r})"


CLK_TCK = os.sysconf("SC_CLK_TCK")  # /proc times are in these ticks
_PAGE = os.sysconf("SC_PAGE_SIZE")


def process_usage(pid: int) -> Usage | None:
    """CPU, memory and fds of `pid` from /proc: one read and one listdir, no psutil (a metrics
    scrape of 100 programs stays around a millisecond). None when the process is gone."""
    rest = stat_fields(pid)
    if rest is None:
        return None
    try:
        cpu = (int(rest[11]) + int(rest[12])) / CLK_TCK  # utime, stime: fields 14, 15
        rss = int(rest[21]) * _PAGE  # field 24, in pages
    except (IndexError, ValueError):
        return None
    try:
        # Linux 6.2+ gives the number of open fds as the directory's size: one stat instead of
        # reading every entry; older kernels say 0 there, and are listed
        fds: int | None = os.stat(f"/proc/{pid}/fd").st_size or len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = None
    return Usage(cpu, rss, fds)


def _psutil_start_time(pid: int) -> int | None:
    try:
        import psutil

        return int(psutil.Process(pid).create_time() * 100)
    except Exception:
        return None


def is_same_process(pid: int, start_time: int | None) -> bool:
    """True when `pid` is alive and is the very process that had `start_time`."""
    if pid <= 0:
        return False
    current = process_start_time(pid)
    if current is None:
        return False
    return start_time is None or current == start_time


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] == b"Z"


def is_stopped(pid: int) -> bool:
    """SIGSTOPped (T) or stopped by a tracer (t): alive, but it cannot act."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] in (b"T", b"t")


def wait_gone(pid: int, timeout: float | None) -> bool:
    """Block until `pid` (any process, ours or not) has exited, or `timeout`; True if gone.

    Its pidfd turns readable at the exit; without pidfds (kernels before 5.3) probing is
    the only way left for a process that is not our child.
    """
    import select
    import time

    try:
        fd = pidfd_open(pid)
    except ProcessLookupError:
        return True
    if fd is None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while signal_pid(pid, 0) and not is_zombie(pid):
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a whole process group. False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def signal_pid(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the group (signal 0 probes without sending)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SYS_PIDFD_GETFD = 438  # x86_64, arm64 and the other asm-generic architectures


def pidfd_getfd(pid: int, target_fd: int) -> int | None:
    """A duplicate of another process's fd `target_fd` (Linux 5.6+, needs ptrace rights over
    it: root, or our own uid with a permissive yama policy). None where that is not possible."""
    try:
        pidfd = pidfd_open(pid)
    except ProcessLookupError:
        return None
    if pidfd is None:
        return None
    try:
        fd = libc_call("syscall", _SYS_PIDFD_GETFD, pidfd, target_fd, 0)
    except (OSError, AttributeError):
        return None
    finally:
        os.close(pidfd)
    return fd if fd >= 0 else None


def add_signal_handler(
    loop: asyncio.AbstractEventLoop, sig: int, callback: Callable[[], object]
) -> None:
    """loop.add_signal_handler, keeping asyncio's signal wake-up fd without CPython's warning
    when it is full (add_signal_handler turns that warning on again each time).

    Each signal writes one byte there; a burst (a thousand children exiting, a storm of
    SIGUSR1) fills the buffer while the loop is busy, and CPython then prints a traceback
    per signal to stderr (12,618 of them for 13,622 paced SIGUSR1s, measured), and on 3.11
    under load it was seen spinning at 100% CPU inside that printing, never returning to the
    loop. A byte that does not fit is a signal coalesced, as the kernel coalesces them: our
    handlers scan every child, so one SIGCHLD stands for many. Signals are blocked while the
    fd is swapped, so none arrives with no fd set."""
    loop.add_signal_handler(sig, callback)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def set_child_subreaper() -> bool:
    """Make orphaned descendants reparent to us (so we can reap and kill them)."""
    try:
        return libc_call("prctl", _PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def libc_call(name: str, *args: int) -> int:
    """libc's function `name` called with C ints, its C int result: what
    `ctypes.CDLL(None, use_errno=True).name(*args)` does, on `_ctypes` itself.

    ctypes/__init__ (with struct, and the types it defines at import) is 0.4 MiB of anonymous
    memory in the guard, which makes this one call for its whole life (prctl); _ctypes is the
    C module under it. AttributeError where libc has no such function, as with ctypes."""
    function = _libc_functions.get(name)
    if function is None:  # looked up once a name: a takeback calls pidfd_getfd per socket
        function = _libc_functions[name] = _libc_function(name)
    return int(function(*args))


_libc_functions: dict[str, Callable[..., int]] = {}


def _libc_function(name: str) -> Callable[..., int]:
    import _ctypes

    class CInt(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_int, not generic at run time
        _type_ = "i"

    class Function(_ctypes.CFuncPtr):  # a CDLL's function: cdecl, errno saved, int result
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = CInt

    class Libc:  # what CFuncPtr((name, library)) reads: the handle dlopen(NULL) gave
        _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)  # type: ignore[arg-type]  # NULL: us

    return Function((name, Libc()))  # type: ignore[arg-type]  # any `_handle` will do


def reap_zombies() -> list[tuple[int, int]]:
    """Reap every exited child we are not otherwise tracking; returns (pid, status) pairs.

    Only for processes that nobody else waits for (re-parented orphans); callers that own a
    child reap it through its own watcher.
    """
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        except OSError as e:
            if e.errno == errno.EINTR:
                continue
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status))


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid`. /proc/PID/task/*/children lists a process's children
    directly; psutil would scan every process on the machine (slow with 200 programs)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = _children(todo.pop())
        if kids is None:
            return _descendants_psutil(pid)
        found.extend(kids)
        todo.extend(kids)
    return found


def children_of(pid: int) -> list[int]:
    """The live (or zombie) children of `pid`: /proc/PID/task/*/children, else psutil."""
    kids = _children(pid)
    if kids is not None:
        return kids
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children()]
    except psutil.Error:
        return []


def _children(pid: int) -> list[int] | None:
    """None where the kernel lacks CONFIG_PROC_CHILDREN."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                kids.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            if tid == str(pid) and os.path.exists(f"/proc/{pid}/task/{tid}"):
                return None
        except OSError:
            continue
    return kids


def _descendants_psutil(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


# ---- cgroup v2: one leaf per program generation ------------------------------------------------
# A process group can be left (setsid) and a descendant can be orphaned away from its program;
# a cgroup cannot be left by an unprivileged process, so it finds everything a program started.
# Used where a writable cgroup2 hierarchy exists; otherwise callers fall back to groups.


def cgroup2_path(tag: str) -> str | None:
    """Where `cgroup2_base(tag)` lives (`<cgroup2 mount><our cgroup>/twinvisor-<tag>`), without
    creating it; None where there is no cgroup v2 hierarchy."""
    mount = cgroup2_mount()
    own = _own_cgroup2_path()
    if mount is None or own is None:
        return None
    return os.path.join(mount + own.rstrip("/"), f"twinvisor-{tag}")


def cgroup2_base(tag: str) -> str | None:
    """The directory of `cgroup2_path(tag)`, created if needed; None where cgroup v2 is
    missing or not ours to write (the caller then does without)."""
    base = cgroup2_path(tag)
    if base is None:
        return None
    try:
        os.makedirs(base, exist_ok=True)
    except OSError:
        return None
    return base if os.access(os.path.join(base, "cgroup.procs"), os.W_OK) else None


def cgroup2_mount() -> str | None:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        return None
    return None


def _own_cgroup2_path() -> str | None:
    return process_cgroup2(os.getpid())


def process_cgroup2(pid: int) -> str | None:
    """The cgroup v2 path of `pid` ("0::/a/b" in /proc/PID/cgroup), relative to the mount."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


def cgroup_leaf_of(pid: int, base: str) -> str | None:
    """The leaf under `base` that `pid` lives in (after a supervisor restart), if any."""
    mount = cgroup2_mount()
    path = process_cgroup2(pid)
    if mount is None or path is None:
        return None
    leaf = mount + path
    return leaf if os.path.dirname(leaf) == base else None


def cgroup_kill(leaf: str) -> None:
    """SIGKILL every process in `leaf`: cgroup.kill (Linux 5.14+), else one by one."""
    try:
        with open(os.path.join(leaf, "cgroup.kill"), "w") as f:
            f.write("1")
        return
    except OSError:
        pass
    try:
        with open(os.path.join(leaf, "cgroup.procs")) as f:
            pids = [int(x) for x in f.read().split()]
    except OSError:
        return
    for pid in pids:
        signal_pid(pid, signal.SIGKILL)


def cgroup_remove(leaf: str) -> bool:
    """Remove an empty leaf; False while processes are still dying in it."""
    try:
        os.rmdir(leaf)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
