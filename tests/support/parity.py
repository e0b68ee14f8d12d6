"""What the supervisord-parity tests share: a tiny HTTP server that reports its argv and
environment, a free block of ports, and readers of the status table."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path
from typing import Any

from tests.support.helpers import http_get, wait_until

SH = "/bin/sh"
# a tiny HTTP server that answers with what it was started with (argv, env, port)
SERVER = """\
import http.server, json, os, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        keys = ("TWINVISOR_PROGRAM", "INSTANCE", "GREETING", "APP_ENV", "DATA")
        body = json.dumps({"argv": sys.argv[1:], "port": port, "cwd": os.getcwd(),
                           "env": {k: os.environ.get(k) for k in keys}}).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Handler)
print(f"listening on {port}", flush=True)
print(f"stderr of {port}", file=sys.stderr, flush=True)
server.serve_forever()
"""


def write_server(directory: str) -> str:
    path = os.path.join(directory, "server.py")
    Path(path).write_text(SERVER)
    return path


def free_prefix(count: int, width: int = 2) -> int:
    """A number P such that the ports P*10**width + 0 .. count-1 are all free."""
    for _ in range(200):
        prefix = random.randrange(200, 600) if width == 2 else random.randrange(2000, 6000)
        ports = [prefix * 10**width + i for i in range(count)]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return prefix
    raise AssertionError("no free block of ports")


def has_text(path: Path, text: str) -> bool:
    return path.is_file() and text in path.read_text()


def ask(port: int) -> dict[str, Any]:
    def answer() -> dict[str, Any] | None:
        try:
            status, body = http_get(port, timeout=5)
        except OSError:
            return None
        return json.loads(body) if status == 200 else None

    got: dict[str, Any] = wait_until(answer, what=f"an answer on port {port}")
    return got


def status_names(table: str) -> list[str]:
    """The NAME column of `twinvisor status` (below its header line)."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("NAME"))
    return [line.split()[0] for line in lines[start + 1 :]]
