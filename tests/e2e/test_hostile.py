"""Issue 10, hostile local users: what another uid (or a misbehaving client of ours) can do
to the daemon must not take supervision or the control API away."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from tests.support.helpers import (
    Daemon,
    child,
    daemon_fixture,  # noqa: F401
)
from twinvisor.control.client import ControlClient


@contextlib.contextmanager
def connections(path: str, count: int, first_bytes: bytes = b"") -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            socks.append(s)
            s.connect(path)
            if first_bytes:
                s.sendall(first_bytes)
        yield socks
    finally:
        for s in socks:
            s.close()


def test_idle_and_slow_connections_do_not_lock_out_status(daemon: Daemon) -> None:
    """Item 9: 64 idle connections (or 200 sending a byte at a time) made `status` get 503."""
    daemon.up({"app": {"command": child("run")}})
    daemon.wait_state("app", "RUNNING")
    with connections(daemon.socket, 64):
        for _ in range(3):
            assert daemon.cli("status").rc == 0
    stop = threading.Event()
    with connections(daemon.socket, 200, b"GET /status HTTP/1.1\r\n") as slow:

        def dribble() -> None:  # a byte per connection per round, never a whole request
            while not stop.is_set():
                for s in slow:
                    with contextlib.suppress(OSError):
                        s.send(b"X")
                stop.wait(0.5)

        t = threading.Thread(target=dribble)
        t.start()
        try:
            for _ in range(3):
                r = daemon.cli("status")
                assert r.rc == 0 and "RUNNING" in r.out, r
        finally:
            stop.set()
            t.join()


def test_a_burst_of_connects_fits_the_backlog(daemon: Daemon) -> None:
    """Item 9: 1000 simultaneous connects overflowed the backlog (EAGAIN for the client)."""
    daemon.up({"app": {"command": child("run")}})
    daemon.wait_state("app", "RUNNING")
    with connections(daemon.socket, 1000):  # a blocking connect fails only on a full backlog
        code, body = ControlClient(daemon.socket, timeout=30).call("GET", "/status")
        assert code == 200, body
