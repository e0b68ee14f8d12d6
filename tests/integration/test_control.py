"""The control API transport: a real ControlServer on a real unix socket.

The server runs in an asyncio loop on a background thread; tests talk to it with the real
ControlClient or with raw sockets. Readiness is awaited (start() returning, responses read,
wait_idle()), never slept for.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from twinvisor.control.client import ControlClient, quote
from twinvisor.control.server import (
    ControlServer,
    HTTPError,
    Request,
    Response,
    Router,
)
from twinvisor.errors import AlreadyRunning, ControlError, DaemonNotRunning

T = TypeVar("T")


# -- harness ------------------------------------------------------------------------------


class Loop:
    """An asyncio loop on a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _status(req: Request) -> Response:
    return Response(200, {"ok": True})


async def _echo(req: Request) -> Response:
    return Response(
        200,
        {
            "method": req.method,
            "path": req.path,
            "params": req.params,
            "query": req.query,
            "body": req.body,
            "uid": req.peer_uid,
            "pid": req.peer_pid,
        },
    )


async def _all(req: Request) -> Response:
    return Response(200, {"which": "all"})


async def _boom(req: Request) -> Response:
    raise RuntimeError("kaboom")


async def _teapot(req: Request) -> Response:
    raise HTTPError(418, "short and stout")


async def _nothing(req: Request) -> Response:
    return Response(204)


def make_router() -> Router:
    r = Router()
    r.add("GET", "/status", _status)
    r.add("POST", "/programs/{name}/start", _echo)
    r.add("GET", "/programs/{name}", _echo)
    r.add("GET", "/programs/all", _all)
    r.add("DELETE", "/programs/{name}", _echo)
    r.add("GET", "/boom", _boom)
    r.add("GET", "/teapot", _teapot)
    r.add("POST", "/nothing", _nothing)
    return r


@pytest.fixture
def short_dir() -> Iterator[str]:
    # pytest's tmp_path can exceed the 108-byte AF_UNIX limit
    d = tempfile.mkdtemp(prefix="tvctl-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.stop()


class Running:
    def __init__(self, loop: Loop, server: ControlServer) -> None:
        self.loop = loop
        self.server = server
        self.path = server.path
        self.client = ControlClient(server.path, timeout=10)

    def idle(self) -> int:
        self.loop.run(self.server.wait_idle())
        return self.server.connection_count


@pytest.fixture
def serve(loop: Loop, short_dir: str) -> Iterator[Any]:
    started: list[ControlServer] = []

    def start(**kwargs: Any) -> Running:
        path = kwargs.pop("path", os.path.join(short_dir, "run", "ctl.sock"))
        kwargs.setdefault("request_timeout", 5.0)
        server = ControlServer(path, kwargs.pop("router", make_router()), **kwargs)
        loop.run(server.start())
        started.append(server)
        return Running(loop, server)

    yield start
    for s in started:
        loop.run(s.close())


def raw(path: str, data: bytes, *, shut: bool = True, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read everything until EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def parse(resp: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    n = int(headers["content-length"])
    return status, headers, json.loads(body[:n]) if n else None


# -- routing ------------------------------------------------------------------------------


def test_routing_with_path_params_query_and_body(serve: Any) -> None:
    srv = serve()
    status, body = srv.client.call(
        "POST", "/programs/my web/start", {"wait": True}, {"force": "1", "q": "a b&c=d"}
    )
    assert status == 200
    assert body == {
        "method": "POST",
        "path": "/programs/my web/start",
        "params": {"name": "my web"},
        "query": {"force": "1", "q": "a b&c=d"},
        "body": {"wait": True},
        "uid": os.getuid(),
        "pid": os.getpid(),
    }
    assert srv.client.call("GET", "/status") == (200, {"ok": True})


def test_percent_encoded_slash_stays_inside_a_parameter(serve: Any) -> None:
    srv = serve()
    resp = raw(srv.path, b"GET /programs/a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parse(resp)[2]["params"] == {"name": "a/b"}
    # the client takes paths literally: a "%" in a name reaches the handler unchanged
    assert srv.client.call("GET", "/programs/50%2F")[1]["params"] == {"name": "50%2F"}


def test_literal_segment_wins_over_parameter(serve: Any) -> None:
    srv = serve()
    assert srv.client.call("GET", "/programs/all") == (200, {"which": "all"})
    assert srv.client.call("GET", "/programs/web")[1]["params"] == {"name": "web"}


def test_unknown_path_is_404_and_wrong_method_405(serve: Any) -> None:
    srv = serve()
    status, body = srv.client.call("GET", "/nope")
    assert status == 404 and "error" in body
    status, body = srv.client.call("GET", "/programs/web/start")
    assert status == 405 and "POST" in body["error"]
    resp = raw(srv.path, b"PUT /programs/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    status, headers, _ = parse(resp)
    assert status == 405 and headers["allow"] == "DELETE, GET"
    assert headers["content-type"] == "application/json"


def test_router_rejects_bad_and_clashing_patterns() -> None:
    r = Router()
    r.add("GET", "/a/{x}", _status)
    with pytest.raises(ValueError):
        r.add("GET", "/a/{y}", _status)
    with pytest.raises(ValueError):
        r.add("GET", "no-slash", _status)
    with pytest.raises(ValueError):
        r.add("GET", "/a/pre{x}", _status)
    with pytest.raises(ValueError):
        r.add("GET", "/{x}/{x}", _status)


def test_handler_http_error_and_204(serve: Any) -> None:
    srv = serve()
    assert srv.client.call("GET", "/teapot") == (418, {"error": "short and stout"})
    assert srv.client.call("POST", "/nothing") == (204, None)


def test_keep_alive_serves_several_requests_on_one_connection(serve: Any) -> None:
    srv = serve()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(srv.path)
        for _ in range(3):
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            resp = b""
            while b"}" not in resp:
                resp += s.recv(4096)
            assert parse(resp)[::2] == (200, {"ok": True})


# -- socket file --------------------------------------------------------------------------


def test_socket_is_0600_in_a_0700_directory_even_with_umask_0(serve: Any) -> None:
    old = os.umask(0)
    try:
        srv = serve()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(srv.path)).st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(srv.path).st_mode)


def test_close_unlinks_the_socket(loop: Loop, short_dir: str) -> None:
    path = os.path.join(short_dir, "ctl.sock")
    server = ControlServer(path, make_router())
    loop.run(server.start())
    assert os.path.exists(path)
    loop.run(server.close())
    assert not os.path.exists(path)


def test_stale_socket_is_replaced(serve: Any, short_dir: str) -> None:
    path = os.path.join(short_dir, "ctl.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)  # left behind, nobody listening
    srv = serve(path=path)
    assert srv.client.call("GET", "/status")[0] == 200


def test_live_socket_is_not_stolen(serve: Any, loop: Loop, short_dir: str) -> None:
    path = os.path.join(short_dir, "ctl.sock")
    srv = serve(path=path)
    second = ControlServer(path, make_router())
    with pytest.raises(AlreadyRunning) as info:
        loop.run(second.start())
    assert info.value.pid == os.getpid()
    assert srv.client.call("GET", "/status")[0] == 200


def test_non_socket_file_is_not_replaced(loop: Loop, short_dir: str) -> None:
    path = os.path.join(short_dir, "ctl.sock")
    with open(path, "w") as f:
        f.write("precious")
    with pytest.raises(ControlError):
        loop.run(ControlServer(path, make_router()).start())
    with open(path) as f:
        assert f.read() == "precious"


def test_adopted_socket_is_served_and_not_unlinked(loop: Loop, short_dir: str) -> None:
    path = os.path.join(short_dir, "handed.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    server = ControlServer(path, make_router())
    server.adopt_socket(sock)
    loop.run(server.start())
    try:
        assert ControlClient(path).call("GET", "/status") == (200, {"ok": True})
    finally:
        loop.run(server.close())
    assert os.path.exists(path)


# -- hostile and broken clients -----------------------------------------------------------


def test_oversized_body_is_413_and_server_still_answers(serve: Any) -> None:
    srv = serve(max_body=1024)
    status, body = srv.client.call("POST", "/programs/x/start", {"blob": "x" * 100_000})
    assert status == 413 and "error" in body
    # declared too large, body never sent
    resp = raw(
        srv.path,
        b"POST /programs/x/start HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n",
        shut=False,
    )
    assert parse(resp)[0] == 413
    # chunked, grows past the cap
    chunk = b"400\r\n" + b"a" * 0x400 + b"\r\n"
    resp = raw(
        srv.path,
        b"POST /programs/x/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk * 4,
    )
    assert parse(resp)[0] == 413
    assert srv.client.call("GET", "/status") == (200, {"ok": True})


def test_oversized_header_is_431(serve: Any) -> None:
    srv = serve(max_header=1024)
    resp = raw(srv.path, b"GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    status, _, body = parse(resp)
    assert status == 431 and "error" in body
    assert srv.client.call("GET", "/status")[0] == 200


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x01\x02garbage\r\n\r\n",
        b"GET /status HTTP/1.1\r\n\r\n",  # no Host
        b"GET /status HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET \xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /status?a=%ff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /programs/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET status HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_garbage_is_400_with_json_error(serve: Any, garbage: bytes) -> None:
    srv = serve()
    status, headers, body = parse(raw(srv.path, garbage))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert isinstance(body["error"], str)
    assert srv.client.call("GET", "/status")[0] == 200


_DEEP = 10_000


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /programs/x/start HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (2 * _DEEP, b"[" * _DEEP + b"]" * _DEEP),
        b"POST /programs/x/start HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (6 * _DEEP + 1, b'{"a":' * _DEEP + b"1" + b"}" * _DEEP),
        b"GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://[::1/status HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /programs/x/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /programs/x/start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    ],
    ids=["deep-array", "deep-object", "ipv6-target", "ipv6-path", "gzip", "gzip-chunked"],
)
def test_malformed_request_is_a_json_400_without_a_traceback(
    serve: Any, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    """Issue 10 item 10: deep JSON (RecursionError) and an unclosed IPv6 target (ValueError)
    closed the connection with a traceback in the log; a Transfer-Encoding was 501."""
    srv = serve(max_body=256 * 1024)
    with caplog.at_level(logging.DEBUG, logger="twinvisor"):
        status, headers, body = parse(raw(srv.path, request_bytes))
        assert srv.client.call("GET", "/status")[0] == 200
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    assert isinstance(body["error"], str)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_invalid_json_body_is_400(serve: Any) -> None:
    srv = serve()
    body = b"{not json"
    resp = raw(
        srv.path,
        b"POST /programs/x/start HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body),
    )
    status, _, parsed = parse(resp)
    assert status == 400 and "JSON" in parsed["error"]


def test_stalled_client_is_dropped_while_others_are_served(serve: Any) -> None:
    srv = serve(request_timeout=0.3)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
        slow.settimeout(10)
        slow.connect(srv.path)
        slow.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")  # ...and nothing more
        for _ in range(5):
            assert srv.client.call("GET", "/status") == (200, {"ok": True})
        start = time.monotonic()
        resp = read_all(slow)  # returns at EOF: the server hung up
        assert time.monotonic() - start < 10
    status, _, body = parse(resp)
    assert status == 408 and "error" in body
    assert srv.idle() == 0


def test_idle_keep_alive_connection_is_closed_quietly(serve: Any) -> None:
    srv = serve(request_timeout=0.3)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(srv.path)
        assert read_all(s) == b""


def test_handler_exception_is_500_logged_and_server_survives(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    srv = serve()
    with caplog.at_level(logging.ERROR, logger="twinvisor.control"):
        status, body = srv.client.call("GET", "/boom")
    assert status == 500 and "kaboom" in body["error"]
    assert any("kaboom" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert srv.client.call("GET", "/status") == (200, {"ok": True})


def test_unserialisable_response_is_500(serve: Any) -> None:
    async def bad(req: Request) -> Response:
        return Response(200, {"x": object()})

    router = Router()
    router.add("GET", "/bad", bad)
    srv = serve(router=router)
    status, body = srv.client.call("GET", "/bad")
    assert status == 500 and "error" in body


def test_other_uid_is_refused_with_403(serve: Any) -> None:
    srv = serve(allowed_uids=frozenset({12345}))
    status, body = srv.client.call("GET", "/status")
    assert status == 403 and f"uid {os.getuid()}" in body["error"]
    assert srv.idle() == 0


def _kept_alive(path: str) -> socket.socket:
    """A connection that got one answer and now idles (keep-alive)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    resp = b""
    while b"}" not in resp:
        resp += s.recv(4096)
    return s


def test_idle_connections_give_their_slot_to_a_new_request(serve: Any) -> None:
    """Issue 10 item 9: idle connections filling every slot made a new request get 503."""
    srv = serve(max_connections=2)
    held = [_kept_alive(srv.path) for _ in range(2)]
    try:
        assert srv.client.call("GET", "/status") == (200, {"ok": True})
        assert read_all(held[0]) == b""  # the one silent longest was closed for it
    finally:
        for s in held:
            s.close()
    assert srv.idle() == 0


def test_busy_connections_make_a_newcomer_wait_then_503(serve: Any) -> None:
    """Requests being answered are never evicted: a newcomer waits, then gets 503."""
    release = asyncio.Event()
    entered = threading.Semaphore(0)

    async def hang(req: Request) -> Response:
        entered.release()
        await release.wait()
        return Response(200, {"ok": True})

    router = make_router()
    router.add("GET", "/hang", hang)
    srv = serve(router=router, max_connections=2, request_timeout=0.3)
    busy = []
    try:
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(srv.path)
            s.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
            busy.append(s)
        for _ in busy:  # both are in their handler: a third must not evict them
            assert entered.acquire(timeout=10)
        status, body = srv.client.call("GET", "/status")
        assert status == 503 and "error" in body
        srv.loop.loop.call_soon_threadsafe(release.set)
        for s in busy:
            assert parse(read_all(s))[0] == 200
    finally:
        for s in busy:
            s.close()
    assert srv.idle() == 0


def test_garbage_connections_do_not_grow_memory(serve: Any) -> None:
    srv = serve(max_body=1024, max_header=1024, request_timeout=1.0)
    kinds = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200),  # a TLS hello
        b"GET /status HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 4000,
        b"POST /programs/x/start HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"b" * 5000,
        b"POST /programs/x/start HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n{{{",
        b"GET /status HTTP/1.1\r\nHo",  # cut short
    ]

    def hammer(n: int) -> None:
        for i in range(n):
            raw(srv.path, kinds[i % len(kinds)])

    hammer(100)  # warm up caches, lazily created objects
    assert srv.idle() == 0
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        hammer(1000)
        assert srv.idle() == 0
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 256 * 1024, f"grew by {after - before} bytes"
    assert srv.client.call("GET", "/status")[0] == 200


# -- client -------------------------------------------------------------------------------


def test_client_on_missing_socket_raises_daemon_not_running(short_dir: str) -> None:
    path = os.path.join(short_dir, "absent.sock")
    start = time.monotonic()
    with pytest.raises(DaemonNotRunning) as info:
        ControlClient(path).call("GET", "/status")
    assert time.monotonic() - start < 5
    assert str(info.value).startswith(f"no twinvisor daemon is answering on {path}: ")


def test_client_on_dead_socket_raises_daemon_not_running(short_dir: str) -> None:
    path = os.path.join(short_dir, "dead.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)
    start = time.monotonic()
    with pytest.raises(DaemonNotRunning, match="no twinvisor daemon is answering on"):
        ControlClient(path).call("GET", "/status")
    assert time.monotonic() - start < 5


@contextlib.contextmanager
def canned_daemon(path: str, reply: bytes) -> Iterator[None]:
    """A unix socket that answers one request with `reply`, whatever was asked."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lst:
        lst.bind(path)
        lst.listen(1)

        def answer() -> None:
            conn, _ = lst.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

        t = threading.Thread(target=answer)
        t.start()
        try:
            yield
        finally:
            t.join()


def test_client_rejects_a_non_http_answer(short_dir: str) -> None:
    path = os.path.join(short_dir, "liar.sock")
    with (
        canned_daemon(path, b"SSH-2.0-OpenSSH\r\n\r\n"),
        pytest.raises(ControlError, match="malformed"),
    ):
        ControlClient(path, timeout=10).call("GET", "/status")


def test_client_detects_truncated_body(short_dir: str) -> None:
    path = os.path.join(short_dir, "short.sock")
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}"
    with (
        canned_daemon(path, reply),
        pytest.raises(ControlError, match="closed the connection after 2 of 100"),
    ):
        ControlClient(path, timeout=10).call("GET", "/status")


def test_quote() -> None:
    assert quote("a b/c%é", safe="/") == "a%20b/c%25%C3%A9"


def test_curl_works(serve: Any) -> None:
    assert shutil.which("curl"), "curl is not installed (.ci/run installs it)"
    srv = serve()
    out = subprocess.run(
        ["curl", "-sS", "--unix-socket", srv.path, "http://x/status"],
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert json.loads(out.stdout) == {"ok": True}
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--unix-socket",
            srv.path,
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"n": 1}',
            "http://x/programs/web/start?wait=1",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    body = json.loads(out.stdout)
    assert body["params"] == {"name": "web"} and body["query"] == {"wait": "1"}
    assert body["body"] == {"n": 1}


def test_close_ends_open_connections_and_running_handlers(loop: Loop, short_dir: str) -> None:
    entered = threading.Event()

    async def hang(req: Request) -> Response:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    router = Router()
    router.add("GET", "/hang", hang)
    path = os.path.join(short_dir, "ctl.sock")
    server = ControlServer(path, router)
    loop.run(server.start())
    errors: list[BaseException] = []

    def call() -> None:
        try:
            ControlClient(path, timeout=10).call("GET", "/hang")
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=call)
    t.start()
    assert entered.wait(10)
    loop.run(server.close())
    t.join(10)
    assert server.connection_count == 0
    assert len(errors) == 1 and isinstance(errors[0], ControlError)
    assert not os.path.exists(path)
