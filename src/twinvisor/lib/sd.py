"""systemd protocols for programs run by twinvisor (or by systemd itself).

`notify("READY=1")` speaks sd_notify on $NOTIFY_SOCKET; `listen_sockets()` returns the sockets
passed as fds 3.. per LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES. Both are no-ops outside a
supervisor, so an app can call them unconditionally.
"""

from __future__ import annotations

import os
import socket

SD_LISTEN_FDS_START = 3


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1", "STATUS=warming up") to $NOTIFY_SOCKET. False if unset."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.connect(address)
            s.sendall(state.encode())
        except OSError:
            return False
    return True


def listen_fds(unset_environment: bool = True) -> list[tuple[int, str]]:
    """(fd, name) for each socket passed to us, [] when they are not meant for this process."""
    try:
        if int(os.environ.get("LISTEN_PID", "0")) != os.getpid():
            return []
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    names = os.environ.get("LISTEN_FDNAMES", "").split(":") if count else []
    names += ["unknown"] * (count - len(names))
    if unset_environment:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(key, None)
    fds = []
    for i in range(count):
        fd = SD_LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        fds.append((fd, names[i]))
    return fds


def listen_sockets(name: str | None = None) -> list[socket.socket]:
    """The passed listening sockets as socket objects; only those called `name` if given."""
    return [socket.socket(fileno=fd) for fd, n in listen_fds() if name is None or n == name]
