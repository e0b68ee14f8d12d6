"""A small synchronous client for the control API, used by the CLI.

The CLI starts often, so ``call()`` needs only CPython's C modules ``_socket`` and ``_json``
(twin/cjson), not ``socket`` (its enum conversions: 4 ms of every `status`) nor the ``json`` package
(its regexes: 2 ms), nor asyncio or h11; ``request()`` decodes the answer into the Structs of
control.messages and imports msgspec when first used. The HTTP side is deliberately narrow because
the server is ours: one request per connection (``Connection: close``), a ``Content-Length`` body
each way, and a bounded, careful reader for the response head and body.
"""

from __future__ import annotations

import _socket
import sys
import time

from twinvisor.errors import ControlError, DaemonNotRunning
from twinvisor.twin import cjson

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing and msgspec costs the CLI start-up time
    from collections.abc import Container
    from typing import Any, TypeVar

    from twinvisor.control.messages import ErrorReply

    R = TypeVar("R")

__all__ = ["ApiError", "ControlClient", "quote"]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_CONNECT_TIMEOUT = 1.0
_LONG = 8 if sys.maxsize > 2**32 else 4  # a C long: struct timeval's two fields
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(text: str, safe: str = "") -> str:
    """Percent-encode ``text`` (UTF-8), keeping unreserved characters and ``safe``."""
    keep = _SAFE | frozenset(safe.encode("ascii"))
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode("utf-8"))


class ApiError(ControlError):
    """The daemon answered with an error status; ``reply`` says why."""

    def __init__(self, status: int, reply: ErrorReply) -> None:
        super().__init__(reply.error)
        self.status = status
        self.reply = reply


def _error_reply(status: int, data: bytes) -> ErrorReply:
    """The ErrorReply in an error answer, or one naming the status if the body has none."""
    import msgspec

    from twinvisor.control.messages import ErrorReply

    try:
        return msgspec.json.decode(data, type=ErrorReply)
    except msgspec.DecodeError:
        return ErrorReply(error=f"the daemon answered HTTP {status}")


class ControlClient:
    """Talk to the daemon's control socket: ``request()`` returns the answer as a Struct,
    ``call()`` as ``(status, parsed JSON)``."""

    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        body: object = None,  # anything json.dumps takes (NaN is not JSON)
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:  # Any: JSON of whatever shape the daemon sent, the caller checks it
        """Send one request and return the status and decoded JSON body (None if empty).

        ``path`` is taken literally (it is percent-encoded here, "/" kept), so pass names as they
        are. HTTP error statuses are returned, not raised; a daemon that cannot be reached
        raises DaemonNotRunning, anything else that goes wrong ControlError.
        """
        payload = b"" if body is None else cjson.dumps(body).encode("utf-8")
        status, data = self._exchange(method, path, payload, query)
        if not data.strip():
            return status, None
        try:
            return status, cjson.loads(data)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
            raise ControlError(f"daemon sent invalid JSON (status {status}): {e}") from None

    def request(
        self,
        method: str,
        path: str,
        reply: type[R],
        *,
        body: object = None,
        query: dict[str, str] | None = None,
        accept: Container[int] = (200,),
    ) -> R:
        """Send one request (``body`` encoded by msgspec: a Struct, a dict) and decode the
        answer into ``reply``, a Struct of control.messages.

        A status outside ``accept`` raises ApiError with the daemon's ErrorReply; an answer of
        another shape raises ControlError, as do the failures of ``call()``.
        """
        import msgspec

        payload = b"" if body is None else msgspec.json.encode(body)
        status, data = self.fetch(method, path, payload, query=query, accept=accept)
        try:
            return msgspec.json.decode(data, type=reply)
        except msgspec.DecodeError as e:
            raise ControlError(f"daemon sent an unexpected answer (status {status}): {e}") from None

    def fetch(
        self,
        method: str,
        path: str,
        payload: bytes = b"",
        *,
        query: dict[str, str] | None = None,
        accept: Container[int] = (200,),
    ) -> tuple[int, bytes]:
        """One request: the status and the raw body, for a caller that reads it itself
        (`status` does, with json). A status outside ``accept`` raises ApiError."""
        status, data = self._exchange(method, path, payload, query)
        if status not in accept:
            raise ApiError(status, _error_reply(status, data))
        return status, data

    def _exchange(
        self, method: str, path: str, payload: bytes, query: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """One request with a JSON ``payload`` (b"" for none): the status and the raw body."""
        target = quote(path, safe="/")
        if query:
            target += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
        head = (
            f"{method.upper()} {target} HTTP/1.1\r\n"
            "Host: twinvisor\r\n"
            "Accept: application/json\r\n"
            "Connection: close\r\n"
            + ("Content-Type: application/json\r\n" if payload else "")
            + f"Content-Length: {len(payload)}\r\n\r\n"
        )
        deadline = time.monotonic() + self.timeout
        sock = self._connect()
        try:
            try:
                sock.settimeout(self.timeout)
                sock.sendall(head.encode("ascii") + payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may have answered early (403, 413): read what it said
            except TimeoutError:
                raise ControlError(f"timed out sending to {self.socket_path}") from None
            except OSError as e:
                raise ControlError(f"sending to {self.socket_path} failed: {e}") from None
            return _Reader(sock, deadline, self.socket_path).response()
        finally:
            sock.close()

    def _connect(self) -> _socket.socket:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        # A unix connect never waits for the peer to accept, only for backlog room: a
        # blocking connect waits for that room up to SO_SNDTIMEO (a non-blocking one would
        # fail at once with EAGAIN while a burst of clients fills the backlog)
        wait = min(_CONNECT_TIMEOUT, self.timeout)
        seconds = int(wait)
        micros = int((wait - seconds) * 1_000_000)
        timeval = b"".join(v.to_bytes(_LONG, sys.byteorder) for v in (seconds, micros))
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, timeval)
        try:
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
            sock.close()
            raise DaemonNotRunning(
                f"no twinvisor daemon is answering on {self.socket_path}: {e.strerror or e}"
            ) from None
        except (TimeoutError, BlockingIOError):
            sock.close()
            raise ControlError(
                f"the daemon on {self.socket_path} is not accepting connections (busy)"
            ) from None
        except OSError as e:
            sock.close()
            raise ControlError(f"cannot connect to {self.socket_path}: {e}") from None
        return sock


class _Reader:
    """Read one HTTP/1.1 response with a Content-Length body (or up to EOF) within limits."""

    def __init__(self, sock: _socket.socket, deadline: float, where: str) -> None:
        self._sock = sock
        self._deadline = deadline
        self._where = where
        self._buf = b""
        self._eof = False

    def _fill(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ControlError(f"timed out waiting for the daemon on {self._where}")
        self._sock.settimeout(left)
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            raise ControlError(f"timed out waiting for the daemon on {self._where}") from None
        except ConnectionResetError:
            data = b""
        except OSError as e:
            raise ControlError(f"reading from {self._where} failed: {e}") from None
        if not data:
            self._eof = True
        self._buf += data

    def _head(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                head, self._buf = self._buf[:end], self._buf[end + 4 :]
                return head
            if len(self._buf) > _MAX_HEAD:
                raise ControlError("daemon sent an oversized response header")
            if self._eof:
                if not self._buf:
                    raise ControlError(f"the daemon on {self._where} closed without answering")
                raise ControlError("daemon closed the connection inside a response header")
            self._fill()

    def response(self) -> tuple[int, bytes]:
        while True:
            status, headers = _parse_head(self._head())
            if status >= 200:
                break  # 1xx interim responses carry no body: skip them
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise ControlError("daemon sent a chunked response, which this client does not read")
        if status in (204, 304):
            return status, b""
        length_text = headers.get("content-length")
        if length_text is None:
            while not self._eof:  # body delimited by the end of the connection
                if len(self._buf) > _MAX_BODY:
                    raise ControlError("daemon response body is too large")
                self._fill()
            return status, self._buf
        if not length_text.isdigit():
            raise ControlError(f"daemon sent a bad Content-Length: {length_text!r}")
        length = int(length_text)
        if length > _MAX_BODY:
            raise ControlError(f"daemon response body is too large ({length} bytes)")
        while len(self._buf) < length:
            if self._eof:
                raise ControlError(
                    f"daemon closed the connection after {len(self._buf)} of {length} bytes"
                )
            self._fill()
        return status, self._buf[:length]


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    try:
        lines = head.decode("latin-1").split("\r\n")
        version, code, *_ = lines[0].split(" ", 2)
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ValueError(lines[0])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ValueError(line)
            key = name.lower()
            value = value.strip()
            if key in headers and key == "content-length" and headers[key] != value:
                raise ValueError("conflicting Content-Length headers")
            headers[key] = value
    except ValueError as e:
        raise ControlError(f"daemon sent a malformed response header: {e}") from None
    return int(code), headers
