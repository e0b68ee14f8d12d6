"""The guard <-> supervisor wire protocol: one JSON object per SOCK_SEQPACKET datagram, with
fds attached (SCM_RIGHTS) where the op carries them.

  supervisor -> guard: hello, hold{key}+fd, release{key}, ping, shutdown, upgrade
  guard -> supervisor: fds{keys}+fds (answer to hello, in batches), fds_end

Liveness costs an idle pair almost no wake-ups (issue 16): each side watches the other's pidfd
(death), the guard sees its child supervisor stop (SIGCHLD, waitpid WUNTRACED); what the kernel
cannot tell is checked rarely, on timers that wake one process and not the other:
- the supervisor, every HEARTBEAT s (with its pid-file refresh), touches its pid file and looks
  at the guard's /proc state (a stopped guard is replaced);
- the guard, every HEARTBEAT_TIMEOUT s, looks whether that pid file was touched since its last
  look: no sign of life (hung, or stopped while the guard is not its parent): SIGKILL.
`ping` (no longer sent) still counts as a sign of life: a supervisor of an older version.
"""

from __future__ import annotations

import _socket
import os
import sys

from twinvisor.twin import bytecode, cjson
from twinvisor.twin.bytecode import package_root

TYPE_CHECKING = False  # the guard imports this: typing stays out of it
if TYPE_CHECKING:
    from typing import Any

GUARD_ENV = "TWINVISOR_GUARD"  # tells a supervisor where its guard listens
# the supervisor's one periodic timer (supervisor/pidfiles.py: the pid-file refresh, seed 000's
# 30 s) is its sign of life too; tests set the variable low
HEARTBEAT = float(os.environ.get("TWINVISOR_PID_REFRESH", "30"))
# the guard looks for that sign this often; two refreshes and a half: a busy loop is not hung
HEARTBEAT_TIMEOUT = max(7.0, 2.5 * HEARTBEAT)
STOPPED_GRACE = 5.0  # a stopped child supervisor is killed this long after it stopped
MAX_MESSAGE = 64 * 1024
FDS_PER_MESSAGE = 200  # SCM_MAX_FD is 253


DAEMON_PATHS_ENV = "TWINVISOR_GUARD_DAEMON"  # [run_dir, log_dir, socket], from the supervisor


def daemon_paths_env(run_dir: str, log_dir: str, socket_path: str) -> dict[str, str]:
    """Told to a guard the supervisor starts: the config file may have errors by now."""
    return {DAEMON_PATHS_ENV: cjson.dumps([run_dir, log_dir, socket_path])}


# `python -I -S -c`, not `-m twinvisor guard`: -m loads runpy, the CLI and argparse into the
# guard for its whole life (0.7 MiB for runpy alone), and `site` (with the .pth files of every
# package installed beside us) is 0.25 MiB more. Without site, the guard is told where
# twinvisor is (argv[1]: the directory holding the package we run from); -I keeps the
# caller's directory and PYTHON* variables out of its sys.path. The word "twinvisor" in its
# argv keeps `ps` (and the tests that find the twins) reading `... twinvisor guard -c CONFIG`.
GUARD_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from twinvisor.twin.guard import main; raise SystemExit(main())"
)


# the supervisor: `-c`, not `-m twinvisor daemon` either (runpy, 0.6 MiB for the daemon's
# whole life); -P keeps the caller's directory out of its sys.path; -OO when its optimized
# bytecode is ready (twin/bytecode.py: 0.6 MiB of docstrings). service/entry.main reads
# the rest of the argv (`twinvisor daemon -c CONFIG`).
DAEMON_BOOT = "from twinvisor.service.entry import main; raise SystemExit(main())"


def command(verb: str, config_path: str, *extra: str) -> list[str]:
    """How one side of the twin starts the other: `guard` (the guard, from `up` or from a
    supervisor whose guard died) or `daemon` (the supervisor, from its guard)."""
    if verb == "guard":
        # -I drops PYTHONDONTWRITEBYTECODE with the rest: keep the caller's choice
        flags = "-IS" + ("B" if sys.dont_write_bytecode else "")
        boot = [sys.executable, flags, "-c", GUARD_BOOT, package_root()]
        return [*boot, "twinvisor", verb, "-c", config_path, *extra]
    boot = [sys.executable, *bytecode.interpreter_flags(), "-P", "-c", DAEMON_BOOT]
    return [*boot, "twinvisor", verb, "-c", config_path, *extra]


# Any: a decoded JSON object, read by key at the edge (the peer may send anything)
# The sockets are `_socket.socket`, the C type that socket.socket subclasses: the guard uses
# it directly (socket.py brings enum and selectors), the supervisor passes socket.socket.
def send_message(
    sock: _socket.socket, message: dict[str, Any], fds: list[int] | None = None
) -> None:
    data = cjson.dumps(message).encode()
    if fds:  # socket.send_fds
        rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _ints(fds))]
        sock.sendmsg([data], rights)
    else:
        sock.send(data)


def recv_message(sock: _socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One message and its fds; None when the peer is gone."""
    try:
        data, fds = _recv_fds(sock)
    except (ConnectionResetError, BrokenPipeError):
        return None
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    try:
        message = cjson.loads(data)
    except ValueError:
        message = {}
    return (message if isinstance(message, dict) else {}), fds


def _recv_fds(sock: _socket.socket) -> tuple[bytes, list[int]]:
    """socket.recv_fds, and the fds arrive close-on-exec (MSG_CMSG_CLOEXEC) as every fd
    Python opens does: a held fd must not leak into whatever either side starts."""
    room = _socket.CMSG_LEN(FDS_PER_MESSAGE * _INT)
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, room, _socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += _from_ints(payload)
    return data, fds


# SCM_RIGHTS carries C ints; not array("i"): the array module brings collections
_INT = 4


def _ints(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(_INT, sys.byteorder, signed=True) for v in values)


def _from_ints(payload: bytes) -> list[int]:
    whole = len(payload) - len(payload) % _INT  # a truncated last one is no fd
    return [
        int.from_bytes(payload[i : i + _INT], sys.byteorder, signed=True)
        for i in range(0, whole, _INT)
    ]


def peer(sock: _socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end (SO_PEERCRED: the kernel vouches for it)."""
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    pid, uid = (int.from_bytes(creds[i : i + 4], sys.byteorder, signed=True) for i in (0, 4))
    return pid, uid
