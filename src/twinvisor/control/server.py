"""The control API transport: HTTP/1.1 + JSON on a unix socket.

h11 does the HTTP parsing (sans-IO); this module feeds it bytes from asyncio streams in bounded
chunks, routes complete requests to handlers and writes JSON responses. The daemon supplies the
handlers through a :class:`Router`; only registered routes answer.

Safety rules, all enforced here so handlers need not care:

* the socket is 0600 from the moment it exists, in a 0700 directory when we create it;
* every connection's peer is identified with SO_PEERCRED and refused (403) unless allowed;
* request head and body are capped (431 / 413); reading stops past the cap, so memory stays
  bounded whatever a client sends;
* malformed HTTP, a bad target or invalid JSON get 400; a handler exception gets 500 and is
  logged; the server itself never dies of a request;
* a request must arrive complete within ``request_timeout`` (408 and close otherwise), and
  an idle keep-alive connection is closed after the same delay;
* at most ``max_connections`` are served at once, and idle or slow ones cannot lock the API
  out: a new request takes the slot of the connection silent longest (see slots.py);
* no request input, however malformed (deep JSON, a bad target, an unknown transfer
  coding), gets anything but a JSON 4xx, and none logs a traceback.

Errors are always ``{"error": "<message>"}``. See docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from typing import TypeVar

import h11
import msgspec

from twinvisor.control.slots import ConnectionSlots, Slot
from twinvisor.control.target import absolute_to_origin, parse_qsl, unquote
from twinvisor.errors import AlreadyRunning, ControlError

__all__ = [
    "ControlServer",
    "HTTPError",
    "Handler",
    "Request",
    "Response",
    "Router",
]

log = logging.getLogger("twinvisor.control")

_CHUNK = 16 * 1024
_UCRED = struct.Struct("3i")  # struct ucred { pid_t pid; uid_t uid; gid_t gid; }
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_MAX_QUERY_FIELDS = 100
_LINGER_BYTES = 1024 * 1024  # discarded at most after an error, so the client sees the answer
_LINGER_SECONDS = 1.0
_BACKLOG = 4096  # connects beyond it fail at once (EAGAIN): a burst must fit; capped by somaxconn

T = TypeVar("T")


class Request(msgspec.Struct, frozen=True):
    method: str  # upper case, e.g. "GET"
    path: str  # percent-decoded path, without the query
    params: dict[str, str]  # path parameters from the route pattern
    query: dict[str, str]  # last value wins for repeated keys
    body: object  # parsed JSON (any shape: check it, or use decode()), a dict for an HTML
    # form post, or None when the body is empty
    peer_uid: int
    peer_pid: int
    # lower-case names; repeated headers joined with ", " (Cookie with "; ")
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    raw_body: bytes = b""  # as it arrived

    def decode(self, shape: type[T]) -> T:
        """The JSON body as `shape` (a msgspec Struct); a body of another shape is a 400 that
        says which field is wrong, and an empty body reads as ``{}``."""
        try:
            return msgspec.json.decode(self.raw_body.strip() or b"{}", type=shape)
        except msgspec.DecodeError as e:
            raise HTTPError(400, f"bad request body: {e}") from None


class Response(msgspec.Struct, frozen=True):
    status: int
    body: object = None  # anything msgspec.json encodes: a Struct, a dict, a list...
    headers: tuple[tuple[str, str], ...] = msgspec.field(default=())


Handler = Callable[[Request], Awaitable[Response]]


class HTTPError(Exception):
    """Raise from a handler to answer ``status`` with ``{"error": message}``, or with ``body``
    when the answer has more to say than the message."""

    def __init__(self, status: int, message: str, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = {"error": message} if body is None else body


class _Route(msgspec.Struct, frozen=True):
    method: str
    pattern: str
    segments: tuple[tuple[bool, str], ...]  # (is_param, literal text or param name)
    handler: Handler


class Router:
    """An explicit table of routes; patterns look like ``/programs/{name}/start``."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        # answered requests by (method, route pattern, status): the API's own metrics
        self.requests: dict[tuple[str, str, int], int] = {}
        # debug: called as each answer is counted, before it is sent (service/process.py)
        self.answered: Callable[[], None] | None = None

    def count(self, method: str, pattern: str, status: int) -> None:
        key = (method, pattern, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if self.answered is not None:
            self.answered()

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        method = method.upper()
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/': {pattern!r}")
        segments: list[tuple[bool, str]] = []
        names: set[str] = set()
        for part in pattern.split("/")[1:]:
            m = _PARAM.match(part)
            if m:
                if m.group(1) in names:
                    raise ValueError(f"duplicate parameter {m.group(1)!r} in {pattern!r}")
                names.add(m.group(1))
                segments.append((True, m.group(1)))
            elif "{" in part or "}" in part:
                raise ValueError(f"bad segment {part!r} in route pattern {pattern!r}")
            else:
                segments.append((False, part))
        shape = tuple((p, "" if p else s) for p, s in segments)
        for r in self._routes:
            if r.method == method and tuple((p, "" if p else s) for p, s in r.segments) == shape:
                raise ValueError(f"route {method} {pattern} clashes with {r.method} {r.pattern}")
        self._routes.append(_Route(method, pattern, tuple(segments), handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """Find the handler for ``path``, a raw (still percent-encoded) request path.

        Raises HTTPError 400 / 404 / 405. Literal segments win over parameters.
        """
        route, params = self.resolve_route(method, path)
        return route.handler, params

    def resolve_route(self, method: str, path: str) -> tuple[_Route, dict[str, str]]:
        raw = path.split("/")[1:]
        try:
            parts = [unquote(p, errors="strict") for p in raw]
        except UnicodeDecodeError:
            raise HTTPError(400, "request path is not valid UTF-8") from None
        best: tuple[tuple[bool, ...], _Route, dict[str, str]] | None = None
        allowed: set[str] = set()
        for route in self._routes:
            params = _match(route.segments, parts)
            if params is None:
                continue
            if route.method != method:
                allowed.add(route.method)
                continue
            key = tuple(p for p, _ in route.segments)
            if best is None or key < best[0]:
                best = (key, route, params)
        if best is not None:
            return best[1], best[2]
        if allowed:
            raise _MethodNotAllowed(sorted(allowed))
        raise HTTPError(404, f"no such resource: {'/' + '/'.join(parts)}")


class _MethodNotAllowed(HTTPError):
    def __init__(self, allowed: list[str]) -> None:
        super().__init__(405, f"method not allowed; allowed: {', '.join(allowed)}")
        self.allowed = allowed


def _match(segments: tuple[tuple[bool, str], ...], parts: list[str]) -> dict[str, str] | None:
    if len(segments) != len(parts):
        return None
    params: dict[str, str] = {}
    for (is_param, text), part in zip(segments, parts, strict=True):
        if is_param:
            if not part:
                return None
            params[text] = part
        elif text != part:
            return None
    return params


class _Reject(Exception):
    """Stop reading this request: answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ClientGone(Exception):
    pass


class _Peer(msgspec.Struct, frozen=True):
    pid: int
    uid: int
    gid: int


def _peer_credentials(writer: asyncio.StreamWriter) -> _Peer | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    pid, uid, gid = _UCRED.unpack(raw)
    return _Peer(pid, uid, gid)


# the statuses this server answers with; http.HTTPStatus (an enum of 60) for any other
_REASONS = {
    200: b"OK",
    303: b"See Other",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    413: b"Request Entity Too Large",
    415: b"Unsupported Media Type",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


def _reason(status: int) -> bytes:
    known = _REASONS.get(status)
    if known is not None:
        return known
    import http

    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class ControlServer:
    """Serve a :class:`Router` over HTTP/1.1 on a unix socket."""

    def __init__(
        self,
        path: str,
        router: Router,
        *,
        allowed_uids: frozenset[int] | None = None,
        max_body: int = 64 * 1024,
        max_header: int = 16 * 1024,
        request_timeout: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        self.path = path
        self._router = router
        self._allowed = (
            frozenset({os.getuid(), 0}) if allowed_uids is None else frozenset(allowed_uids)
        )
        self._max_body = max_body
        self._max_header = max_header
        self._timeout = request_timeout
        self._slots = ConnectionSlots(max_connections)
        self._sock: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._bound_inode: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we made
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        """Connections currently open (being read, answered or lingering)."""
        return len(self._tasks)

    @property
    def listening_socket(self) -> socket.socket | None:
        """The listening socket (bound or adopted), e.g. to hand it to another process."""
        return self._sock

    def adopt_socket(self, sock: socket.socket) -> None:
        """Serve on an already-listening unix socket instead of binding ``path``.

        Call before :meth:`start`. The socket file is not ours, so :meth:`close` leaves it in
        place unless asked to unlink it.
        """
        if self._server is not None or self._sock is not None:
            raise RuntimeError("adopt_socket() must be called once, before start()")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError("adopt_socket() needs an AF_UNIX SOCK_STREAM socket")
        sock.setblocking(False)
        self._sock = sock

    async def start(self) -> None:
        """Bind ``path`` (unless a socket was adopted) and start accepting connections."""
        if self._server is not None:
            raise RuntimeError("server already started")
        if self._sock is None:
            self._sock = await self._bind()
        self._server = await asyncio.start_unix_server(
            self._on_connect, sock=self._sock, limit=_CHUNK, backlog=_BACKLOG
        )

    async def close(self, *, unlink: bool | None = None) -> None:
        """Stop accepting, close every connection, and unlink the socket file.

        ``unlink=None`` removes the file only if this server created it (and it is still the
        same file); ``False`` keeps it, e.g. after handing the socket to another process.
        """
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        if unlink is None:
            unlink = self._bound_inode is not None and self._same_file(self._bound_inode)
        if unlink:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self._bound_inode = None

    async def restore_path(self) -> socket.socket | None:
        """Seed 000's rule for pid files, applied to the socket: if someone deleted the socket
        file, bind a fresh one at the path and serve it (connections in progress go on).
        Returns the new listening socket, or None when the file is there (or not ours to
        replace: another file took the path)."""
        if self._server is None or os.path.lexists(self.path):
            return None
        sock = await self._bind()
        old_server, old_sock = self._server, self._sock
        self._sock = sock
        self._server = await asyncio.start_unix_server(
            self._on_connect, sock=sock, limit=_CHUNK, backlog=_BACKLOG
        )
        old_server.close()
        if old_sock is not None:
            old_sock.close()
        return sock

    async def wait_idle(self) -> None:
        """Return once no connection is open."""
        await self._idle.wait()

    def _same_file(self, ident: tuple[int, int]) -> bool:
        try:
            st = os.lstat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == ident

    async def _bind(self) -> socket.socket:
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            old = os.umask(0o077)
            try:
                os.makedirs(parent, mode=0o700, exist_ok=True)
            finally:
                os.umask(old)
            os.chmod(parent, 0o700)
        if len(os.fsencode(self.path)) >= 108:
            raise ControlError(f"control socket path is too long for AF_UNIX: {self.path}")
        await self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Both make the file 0600 at creation: fchmod on an unbound socket sets the mode
            # bind() uses (Linux), and the umask covers any other platform.
            os.fchmod(sock.fileno(), 0o600)
            old = os.umask(0o177)
            try:
                sock.bind(self.path)
            finally:
                os.umask(old)
            st = os.lstat(self.path)
            self._bound_inode = (st.st_dev, st.st_ino)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(1.0):
                await loop.sock_connect(probe, self.path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            log.info("removed stale control socket %s", self.path)
            return
        except (TimeoutError, BlockingIOError):
            raise AlreadyRunning(f"a daemon is already listening on {self.path} (busy)") from None
        except OSError as e:
            if e.errno == errno.EAGAIN:
                raise AlreadyRunning(f"a daemon is already listening on {self.path}") from None
            raise
        else:
            try:
                raw = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
                pid: int | None = _UCRED.unpack(raw)[0]
            except OSError:
                pid = None
            raise AlreadyRunning(
                f"a daemon is already answering on {self.path}" + (f" (pid {pid})" if pid else ""),
                pid=pid,
            )
        finally:
            probe.close()

    # -- connections ---------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._idle.clear()
        try:
            try:
                slot = await self._slots.acquire(task, self._timeout)
                if slot is None:
                    conn = h11.Connection(h11.SERVER)
                    await self._send_error(conn, writer, 503, "too many control connections")
                else:
                    await self._serve(reader, writer, slot)
            except Exception:  # never let one connection take the server down
                log.exception("control connection failed")
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        except asyncio.CancelledError:
            # The top of the connection's own task, cancelled by close() or evicted for a
            # newer request: end quietly, or asyncio's stream callback would log it as an error.
            pass
        finally:
            self._slots.release(task)
            self._tasks.discard(task)
            if not self._tasks:
                self._idle.set()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slot: Slot
    ) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_header)
        peer = self._identify(writer)
        while True:
            got = [False]  # any byte of this request received yet?
            slot.reading = True
            slot.touch()
            try:
                async with asyncio.timeout(self._timeout):
                    req, body = await self._read_request(conn, reader, writer, got, slot)
            except _ClientGone:
                return
            except TimeoutError:
                if got[0]:
                    await self._send_error(conn, writer, 408, "request not received in time")
                return
            except h11.RemoteProtocolError as e:
                # a 5xx hint (501: an unsupported Transfer-Encoding) is still the client's fault
                status = e.error_status_hint if 400 <= e.error_status_hint < 500 else 400
                msg = "request header too large" if status == 431 else f"bad request: {e}"
                await self._reject(conn, reader, writer, status, msg)
                return
            except _Reject as e:
                await self._reject(conn, reader, writer, e.status, e.message)
                return
            if peer is None or not self._permits(peer):
                who = "unknown peer" if peer is None else f"uid {peer.uid}"
                log.warning("control: refused %s (pid %s)", who, peer.pid if peer else "?")
                await self._send_error(conn, writer, 403, f"{who} is not allowed here")
                return
            slot.reading = False  # being answered: not to be evicted
            response = await self._dispatch(req, body, peer)
            keep = await self._send(conn, writer, response, head=req.method == b"HEAD")
            if not keep or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    def _identify(self, writer: asyncio.StreamWriter) -> _Peer | None:
        """Who is on the other end (SO_PEERCRED on the unix socket)."""
        return _peer_credentials(writer)

    def _permits(self, peer: _Peer) -> bool:
        """Only the daemon's own uid and root may use the control socket."""
        return peer.uid in self._allowed

    async def _read_request(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        got: list[bool],
        slot: Slot,
    ) -> tuple[h11.Request, bytes]:
        req: h11.Request | None = None
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    cont = h11.InformationalResponse(
                        status_code=100, headers=[], reason=b"Continue"
                    )
                    writer.write(conn.send(cont) or b"")
                data = await reader.read(_CHUNK)
                if data:
                    got[0] = True
                    slot.touch()
                elif not got[0]:
                    raise _ClientGone
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                req = event
                # h11 caps only an incomplete head; one that arrived whole is measured here
                head = len(event.method) + len(event.target) + 12
                head += sum(len(k) + len(v) + 4 for k, v in event.headers)
                if head > self._max_header:
                    raise _Reject(431, "request header too large")
                length = _content_length(event)
                if length is not None and length > self._max_body:
                    raise _Reject(413, f"request body larger than {self._max_body} bytes")
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._max_body:
                    raise _Reject(413, f"request body larger than {self._max_body} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert req is not None
                return req, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise _ClientGone
            else:  # h11.PAUSED cannot happen before EndOfMessage
                raise _Reject(400, "unexpected request framing")

    async def _dispatch(self, req: h11.Request, raw_body: bytes, peer: _Peer) -> Response:
        method = req.method.decode("ascii", "replace").upper()
        pattern = ["unmatched"]  # the route, once known: requests are counted by route
        response = await self._respond(req, raw_body, peer, method, pattern)
        self._router.count(
            method if pattern[0] != "unmatched" else "-", pattern[0], response.status
        )
        return response

    async def _respond(
        self, req: h11.Request, raw_body: bytes, peer: _Peer, method: str, pattern: list[str]
    ) -> Response:
        try:
            path, query = _split_target(req.target)
            route, params = self._router.resolve_route(method, path)
            handler, pattern[0] = route.handler, route.pattern
            headers = _headers(req)
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                body: object = _decode_form(raw_body)
            else:
                body = _decode_body(raw_body)
            request = Request(
                method=method,
                path=unquote(path),
                params=params,
                query=query,
                body=body,
                peer_uid=peer.uid,
                peer_pid=peer.pid,
                headers=headers,
                raw_body=raw_body,
            )
        except _MethodNotAllowed as e:
            return Response(405, {"error": e.message}, (("allow", ", ".join(e.allowed)),))
        except HTTPError as e:
            return Response(e.status, {"error": e.message})
        try:
            response = await handler(request)
        except HTTPError as e:
            return Response(e.status, e.body)
        except Exception as e:
            log.exception("control: handler for %s %s failed", method, path)
            return Response(500, {"error": f"internal error: {type(e).__name__}: {e}"})
        if not isinstance(response, Response):
            log.error("control: handler for %s %s returned %r", method, path, response)
            return Response(500, {"error": "internal error: handler returned no Response"})
        return response

    async def _send(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        response: Response,
        *,
        head: bool = False,
        close: bool = False,
    ) -> bool:
        """Write ``response``; returns False when the connection must be closed."""
        status = response.status
        headers = [(k.lower(), v) for k, v in response.headers]
        try:
            if isinstance(response.body, bytes):  # already encoded (metrics text, a page)
                payload = response.body
            else:
                payload = b"" if status in (204, 304) else msgspec.json.encode(response.body)
        except (TypeError, msgspec.EncodeError, OverflowError) as e:
            log.error("control: response for status %s is not JSON-serialisable: %s", status, e)
            status, close = 500, True
            payload = msgspec.json.encode({"error": f"internal error: bad response body: {e}"})
        if not any(k == "content-type" for k, _ in headers):
            headers.append(("content-type", "application/json"))
        if status not in (204, 304):
            headers.append(("content-length", str(len(payload))))
        if close:
            headers.append(("connection", "close"))
        try:
            out = conn.send(
                h11.Response(status_code=status, headers=headers, reason=_reason(status))
            )
            if payload and not head:
                out = (out or b"") + (conn.send(h11.Data(data=payload)) or b"")
            out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            # h11 refuses (e.g. its state is broken): write a minimal answer by hand and close.
            out = (
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n"
                % (status, _reason(status), len(payload))
            ) + payload
            close = True
        writer.write(out)
        try:
            async with asyncio.timeout(self._timeout):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            return False
        return not close and conn.our_state is h11.DONE

    async def _send_error(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int, message: str
    ) -> None:
        await self._send(conn, writer, Response(status, {"error": message}), close=True)

    async def _reject(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
    ) -> None:
        """Answer an error, then discard (boundedly) what the client still sends.

        Closing a unix socket with unread data makes the peer's send fail, so a client still
        writing its oversized body would never read our 413; a short, capped drain fixes that.
        """
        log.debug("control: rejecting request: %s %s", status, message)
        await self._send_error(conn, writer, status, message)
        if not writer.can_write_eof():
            return
        with contextlib.suppress(OSError):
            writer.write_eof()
        left = _LINGER_BYTES
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            async with asyncio.timeout(min(_LINGER_SECONDS, self._timeout)):
                while left > 0:
                    data = await reader.read(min(_CHUNK, left))
                    if not data:
                        break
                    left -= len(data)


def _headers(req: h11.Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in req.headers:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        if key in out:
            text = out[key] + ("; " if key == "cookie" else ", ") + text
        out[key] = text
    return out


def _decode_form(raw: bytes) -> dict[str, str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, "form body is not valid UTF-8") from None
    try:
        return dict(parse_qsl(text, _MAX_QUERY_FIELDS))
    except ValueError:
        raise HTTPError(400, "too many form fields") from None


def _decode_body(raw: bytes) -> object:  # JSON of any shape: Request.decode checks it
    if not raw.strip():
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise HTTPError(400, f"invalid JSON body: {e}") from None
    except RecursionError:  # msgspec's own depth guard: deep nesting is an attack, not data
        raise HTTPError(400, "invalid JSON body: nested too deep") from None


def _content_length(req: h11.Request) -> int | None:
    for name, value in req.headers:
        if name == b"content-length":
            return int(value)  # h11 has validated it
    return None


def _split_target(target: bytes) -> tuple[str, dict[str, str]]:
    """Split a request target into its raw path and decoded query."""
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise HTTPError(400, "request target is not ASCII") from None
    if not text.startswith("/"):
        try:
            text = absolute_to_origin(text)  # absolute-form, e.g. "http://x/status"
        except ValueError:  # no scheme, or "http://[::1": an unclosed IPv6 literal
            raise HTTPError(400, f"bad request target: {text[:100]}") from None
    path, _, qs = text.partition("?")
    path = path.partition("#")[0]
    try:
        pairs = parse_qsl(qs, _MAX_QUERY_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError) as e:
        raise HTTPError(400, f"bad query string: {e}") from None
    return path, dict(pairs)
