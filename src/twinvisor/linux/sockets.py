"""Listening sockets bound once by the daemon and passed to every generation of a program.

The daemon keeps each socket for its whole life, so connections that arrive while a program
restarts wait in the kernel's accept queue instead of being refused. Programs receive them
as fds 3, 4, ... with LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID, exactly as systemd passes
them, so an app written for socket activation runs unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from collections.abc import Callable, Sequence

import msgspec

SD_LISTEN_FDS_START = 3
BACKLOG = 1024
MAX_FD = 1 << 20


class ListenAddr(msgspec.Struct, frozen=True):
    text: str  # as written in the config: ":4041", "127.0.0.1:8000", "[::1]:8000", "unix:/p"
    family: socket.AddressFamily
    address: str | tuple[str, int]


def parse_listen_addr(text: str) -> ListenAddr:
    if text.startswith("unix:"):
        return ListenAddr(text, socket.AF_UNIX, text[5:])
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"listen address {text!r}: expected HOST:PORT, :PORT or unix:/path")
    port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        return ListenAddr(text, socket.AF_INET6, (host[1:-1], port))
    # ":4041" means every IPv4 interface, as in Go (supergo's config)
    return ListenAddr(text, socket.AF_INET, (host or "0.0.0.0", port))


def bind(
    addr: ListenAddr, mode: int = 0o660, owner: tuple[int, int] | None = None
) -> socket.socket:
    """Bind and listen. The socket is close-on-exec: only the spawner hands it on, on purpose."""
    sock = socket.socket(addr.family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        if addr.family == socket.AF_UNIX:
            _bind_unix(sock, str(addr.address), mode, owner)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if addr.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr.address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_unix(sock: socket.socket, path: str, mode: int, owner: tuple[int, int] | None) -> None:
    _remove_stale_unix(path)
    old_umask = os.umask(0o777 & ~mode)  # born with the right mode: no window of wider access
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, *owner)


def _remove_stale_unix(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a leftover from a dead process
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path}: another process is listening on it")


def is_listening_on(sock: socket.socket, addr: ListenAddr) -> bool:
    """Is `sock` a listening stream socket bound to `addr` (a socket taken from a program)?"""
    try:
        if sock.family != addr.family or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            return False
        name = sock.getsockname()
    except OSError:
        return False
    if addr.family == socket.AF_UNIX:
        return bool(name == addr.address)
    assert isinstance(addr.address, tuple)
    host, port = addr.address
    return bool(name[1] == port and (name[0] == host or host in ("0.0.0.0", "::")))


def listen_env(names: Sequence[str]) -> dict[str, str]:
    """LISTEN_FDS and LISTEN_FDNAMES for the sockets about to be placed at fds 3.."""
    return {"LISTEN_FDS": str(len(names)), "LISTEN_FDNAMES": ":".join(names)}


def place_fds(fds: Sequence[int]) -> Callable[[], None]:
    """A pre-exec hook putting `fds` at 3, 4, ... in the child (and nothing else there).

    It runs between fork and exec, so it only makes system calls: first every source is moved
    above the target range (a source may itself sit at 3..), then each is duplicated onto its
    target without close-on-exec. The sources stay close-on-exec and vanish at the exec.
    """
    sources = tuple(fds)
    top = SD_LISTEN_FDS_START + len(sources)

    def hook() -> None:
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top) for fd in sources]
        for i, fd in enumerate(moved):
            os.dup2(fd, SD_LISTEN_FDS_START + i, inheritable=True)
        # the spawner cannot use close_fds (it would close these too): close the rest here
        os.closerange(top, MAX_FD)

    return hook


class SocketRegistry:
    """Every listening socket the daemon holds, by address text; shared across programs."""

    def __init__(self) -> None:
        self._sockets: dict[str, socket.socket] = {}

    def get(
        self, text: str, mode: int = 0o660, owner: tuple[int, int] | None = None
    ) -> socket.socket:
        sock = self._sockets.get(text)
        if sock is None:
            sock = bind(parse_listen_addr(text), mode, owner)
            self._sockets[text] = sock
        return sock

    def adopt(self, text: str, sock: socket.socket) -> None:
        """Take a socket handed over by another process (the guard, an old supervisor)."""
        self._sockets[text] = sock

    def items(self) -> list[tuple[str, socket.socket]]:
        return list(self._sockets.items())

    def release_unused(self, in_use: set[str]) -> None:
        for text in [t for t in self._sockets if t not in in_use]:
            sock = self._sockets.pop(text)
            if sock.family == socket.AF_UNIX:
                with contextlib.suppress(OSError):
                    os.unlink(sock.getsockname())
            sock.close()

    def close(self) -> None:
        self.release_unused(set())
