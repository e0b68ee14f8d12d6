"""The listening sockets of one supervisor: bound once for its whole life, taken over from the
guard after a restart, and each handed to the guard to hold for the next supervisor.

`Listeners` belongs to one Runtime and owns its `SocketRegistry`. An address already in use at
start-up is remembered, not an error: a program of ours that outlived both twins may hold it,
and `recovery.claim_sockets` takes it back once the programs are adopted.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from twinvisor.config.specs import ProgramSpec
from twinvisor.linux import sockets
from twinvisor.supervisor import fdkeys
from twinvisor.supervisor.seams import FdKeeper


class Listeners:
    def __init__(self, link: Callable[[], FdKeeper | None]) -> None:
        """`link`: the GuardLink when running as a twin (set after start-up, hence asked)."""
        self.registry = sockets.SocketRegistry()
        self._link = link
        self.unbound: set[str] = set()  # listen_addrs in use at start-up: see claim_sockets

    def take_over(self, handed: dict[str, int]) -> None:
        """Adopt the listening sockets among the fds a previous supervisor left with the guard
        (popped from `handed`): they never stopped accepting."""
        for key, addr in [(k, fdkeys.listen_addr(k)) for k in handed]:
            if addr is None:
                continue
            sock = socket.socket(fileno=handed.pop(key))
            self.registry.adopt(addr, sock)
            link = self._link()
            if link is not None:
                link.hold(key, sock.fileno())

    def bind(self, spec: ProgramSpec, defer_in_use: bool = False) -> list[int]:
        """The fds of `spec`'s listen_addrs, bound now if new; raises OSError naming the address."""
        owner = _owner_ids(spec.socket_owner) if spec.socket_owner else None
        fds = []
        for addr in spec.listen_addrs:
            known = addr in dict(self.registry.items())
            try:
                fd = self.registry.get(addr, spec.socket_mode, owner).fileno()
            except OSError as e:
                if not (defer_in_use and e.errno == errno.EADDRINUSE):
                    raise OSError(
                        e.errno, f"{spec.name}: listen_addrs {addr!r}: {e.strerror}"
                    ) from None
                # perhaps held by a program of ours that outlived both twins: see claim_sockets
                self.unbound.add(addr)
                continue
            link = self._link()
            if not known and link is not None:
                link.hold(fdkeys.listen(addr), fd)
            fds.append(fd)
        return fds

    def release_unused(self, in_use: set[str]) -> list[str]:
        """Close the sockets no program names any more (after `update`, or a config changed
        while the daemon was down), here and in the guard: a port is not kept forever."""
        gone = [addr for addr, _ in self.registry.items() if addr not in in_use]
        link = self._link()
        for addr in gone:
            if link is not None:
                link.release(fdkeys.listen(addr))
        self.registry.release_unused(in_use)
        return gone

    def close(self) -> None:
        self.registry.close()


def _owner_ids(owner: str) -> tuple[int, int]:
    import grp
    import pwd

    user, _, group = owner.partition(":")
    entry = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    return entry.pw_uid, gid
