"""Test plumbing: scripts report to the test over a unix socket and live until it answers.

The test listens; a script connects, sends one JSON line, then blocks reading the reply.
The test learns about the script the moment it reports (no sleeps, no file polling), and
ends the script by replying ("exit N") or closing the connection.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any


def report(path: str, obj: dict[str, Any]) -> bytes:
    """Send `obj` to the test and return its reply line (b"" when it closed)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(json.dumps(obj).encode() + b"\n")
    with sock, sock.makefile("rb") as reply:
        return reply.readline()


def obey(reply: bytes) -> None:
    """Act on the test's reply: "exit N" exits with N, anything else exits 0."""
    words = reply.split()
    code = int(words[1]) if len(words) == 2 and words[0] == b"exit" else 0
    sys.stdout.flush()
    os._exit(code)


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def read(self) -> dict[str, Any]:
        line = self.reader.readline()
        if not line:
            raise EOFError("script closed the connection without reporting")
        result: dict[str, Any] = json.loads(line)
        return result

    def reply(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class Server:
    """Listening side, used by the tests."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(128)

    def accept(self, timeout: float = 15.0) -> tuple[Conn, dict[str, Any]]:
        self.sock.settimeout(timeout)
        sock, _ = self.sock.accept()
        sock.settimeout(timeout)
        conn = Conn(sock)
        return conn, conn.read()

    def close(self) -> None:
        self.sock.close()
