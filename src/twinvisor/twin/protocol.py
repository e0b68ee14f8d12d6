"""The guard <-> supervisor wire protocol: one JSON object per SOCK_SEQPACKET datagram, with
fds attached (SCM_RIGHTS) where the op carries them.

  supervisor -> guard: hello, hold{key}+fd, release{key}, ping, shutdown, upgrade
  guard -> supervisor: fds{keys}+fds (answer to hello, in batches), fds_end

Pings go one way only (a reply would double the wake-ups of an idle pair): the guard detects
a hung supervisor by missing pings; the supervisor detects a stopped guard by its /proc state.
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
HEARTBEAT = 3.0  # the supervisor pings this often, one way (a third of a wake-up per second each)
HEARTBEAT_TIMEOUT = 7.0  # no ping for this long: the supervisor is hung or stopped
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
