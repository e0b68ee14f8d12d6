#!/usr/bin/env python3
"""Sample web server (seed 001's server + seed 002's hello handler).

GET /            -> {"msg": "running"}
GET /hello?name=X -> hello, X   (name defaults to Jack, as in supergo's example)

Takes its listening socket from the supervisor (fd 3, systemd's LISTEN_FDS protocol) when one
is passed, so restarts refuse no connection; or the listening socket at `--fd N` (circus's
`--fd $(circus.sockets.NAME)`); otherwise binds --port itself. Reports ready
over NOTIFY_SOCKET once it accepts, and on SIGTERM stops accepting, finishes the requests in
flight, and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
try:
    from twinvisor import sd
except ImportError:  # running outside the checkout without twinvisor installed
    sd = None  # type: ignore[assignment]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/":
            self._reply(200, "application/json", json.dumps({"msg": "running"}).encode())
        elif url.path == "/hello":
            name = parse_qs(url.query).get("name", ["Jack"])[0] or "Jack"
            self._reply(200, "text/plain; charset=utf-8", f"hello, {name}".encode())
        elif url.path == "/pid":
            self._reply(200, "text/plain", str(os.getpid()).encode())
        else:
            self._reply(404, "application/json", b'{"error": "not found"}')

    def _reply(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {fmt % args}\n")
        sys.stdout.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # finish requests in flight on shutdown


def make_server(port: int, fd: int | None = None) -> Server:
    passed = sd.listen_sockets() if sd else []
    if not passed and fd is not None:
        passed = [socket.socket(fileno=fd)]
    if passed:
        server = Server(passed[0].getsockname(), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = passed[0]
        print(f"pid {os.getpid()} serving on passed socket {passed[0].getsockname()}", flush=True)
    else:
        server = Server(("127.0.0.1", port), Handler)
        print(f"pid {os.getpid()} serving on 127.0.0.1:{port}", flush=True)
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--fd", type=int, help="a listening socket inherited at this fd")
    args = parser.parse_args()
    server = make_server(args.port, args.fd)

    def on_term(signum: int, frame: object) -> None:
        if sd:
            sd.notify("STOPPING=1")
        # shutdown() blocks until serve_forever returns: call it from another thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if sd:
        sd.notify("READY=1")
    server.serve_forever()
    server.server_close()
    print(f"pid {os.getpid()} stopped", flush=True)


if __name__ == "__main__":
    main()
