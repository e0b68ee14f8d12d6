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

import json
import os
import socket
import sys

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
    return {DAEMON_PATHS_ENV: json.dumps([run_dir, log_dir, socket_path])}


# `python -c`, not `-m twinvisor guard`: -m loads runpy, the CLI and argparse into the
# guard for its whole life (0.7 MiB for runpy alone). The word "twinvisor" in its argv keeps
# `ps` (and the tests that find the twins) reading `... twinvisor guard -c CONFIG`.
GUARD_BOOT = "from twinvisor.twin.guard import main; raise SystemExit(main())"


def command(verb: str, config_path: str, *extra: str) -> list[str]:
    """How one side of the twin starts the other: `guard` (the guard, from `up` or from a
    supervisor whose guard died) or `daemon` (the supervisor, from its guard)."""
    if verb == "guard":
        return [sys.executable, "-c", GUARD_BOOT, "twinvisor", verb, "-c", config_path, *extra]
    return [sys.executable, "-m", "twinvisor", verb, "-c", config_path, *extra]


# Any: a decoded JSON object, read by key at the edge (the peer may send anything)
def send_message(
    sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None
) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def recv_message(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One message and its fds; None when the peer is gone."""
    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, FDS_PER_MESSAGE)
    except (ConnectionResetError, BrokenPipeError):
        return None
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    try:
        message = json.loads(data)
    except ValueError:
        message = {}
    return (message if isinstance(message, dict) else {}), fds


def peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end (SO_PEERCRED: the kernel vouches for it)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid, uid = (int.from_bytes(creds[i : i + 4], sys.byteorder, signed=True) for i in (0, 4))
    return pid, uid
