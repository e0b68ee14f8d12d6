"""The optional TCP listener (`[daemon.http]`): the same HTTP transport as the control socket,
serving its own, smaller router.

Access is decided by construction: nobody on TCP can be identified the way SO_PEERCRED
identifies a unix-socket peer, so the TCP router holds only the routes that need no credential
(`GET /health`, and `GET /metrics` when `open_metrics`); any other path is 404 there, whatever
the method. Routes that need a credential are added by the dashboard's auth layer only.

The listening socket is held by the guard like the programs' sockets, so a supervisor takeover
refuses no probe.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from twinvisor.control.server import _CHUNK, ControlServer, Router, _Peer
from twinvisor.linux import sockets

ANONYMOUS = _Peer(pid=0, uid=-1, gid=-1)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """Server-side TLS from a certificate chain and its key (PEM); raises OSError/SSLError."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


class TcpListener(ControlServer):
    def __init__(self, listen: str, router: Router, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(f"tcp:{listen}", router, max_connections=128)
        self.listen = listen
        self.tls = tls

    def bind_socket(self) -> socket.socket:
        """Bind now (start-up reports a busy port at once); `start` serves it."""
        sock = sockets.bind(sockets.parse_listen_addr(self.listen))
        sock.setblocking(False)
        self._sock = sock
        return sock

    async def start(self) -> None:
        if self._sock is None:
            self.bind_socket()
        self._server = await asyncio.start_server(
            self._on_connect, sock=self._sock, limit=_CHUNK, ssl=self.tls
        )

    def adopt_tcp(self, sock: socket.socket) -> None:
        """Serve a listening socket a previous supervisor left with the guard."""
        sock.setblocking(False)
        self._sock = sock

    def _identify(self, writer: asyncio.StreamWriter) -> _Peer | None:
        return ANONYMOUS

    def _permits(self, peer: _Peer) -> bool:
        return True  # the router only has open routes
