"""Issue 10, hostile local users: what another uid (or a misbehaving client of ours) can do
to the daemon must not take supervision or the control API away."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.faults import kill_both, kill_supervisor
from tests.support.helpers import (
    Daemon,
    child,
    daemon_fixture,  # noqa: F401
    gone,
    read_report,
    wait_report,
    wait_until,
)
from tests.support.paths import SRC
from twinvisor.control.client import ControlClient

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# binds, as uid 65534, every twinvisor name it sees in /proc/net/unix and the name the daemon
# used to derive from its run dir, again and again; prints "bound NAME" for each it got
SQUATTER = r"""
import socket, sys
names = set(sys.argv[1:])
held = []
print("started", flush=True)
while True:
    with open("/proc/net/unix") as f:
        for line in f:
            path = line.split()[-1]
            if path.startswith("@twinvisor/"):
                names.add(path)
    for name in list(names):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.bind("\0" + name[1:])
        except OSError:
            s.close()
            continue
        held.append(s)
        names.discard(name)
        print("bound", name, flush=True)
"""


@contextlib.contextmanager
def squatter(daemon: Daemon) -> Iterator[subprocess.Popen[str]]:
    digest = hashlib.sha256(os.fsencode(daemon.run_dir)).hexdigest()[:24]
    old_name = f"@twinvisor/{digest}/notify"
    proc = subprocess.Popen(
        [*NOBODY, sys.executable, "-c", SQUATTER, old_name],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
        env=daemon.env,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def notify_program(**keys: Any) -> dict[str, Any]:
    """READY=1 as uid 65534 (the other-user case: it cannot enter the 0700 run dir)."""
    code = "import time; from twinvisor import sd; sd.notify('READY=1'); time.sleep(1000)"
    return {
        "command": ["/usr/bin/python3", "-c", code],
        "environment": {"PYTHONPATH": str(SRC)},
        "user": "nobody",
        "ready": "notify",
        "ready_timeout": 10,
        **keys,
    }


def test_notify_name_squatted_before_up(daemon: Daemon) -> None:
    """Item 6: the name was derived from the run dir, so another uid could bind it first:
    `up` failed with "cannot bind"."""
    with squatter(daemon) as sq:
        assert sq.stdout is not None and sq.stdout.readline().startswith("bound ")
        daemon.up({"app": notify_program()})
        row = daemon.wait_state("app", "RUNNING")
        assert psutil.Process(row["pid"]).uids().real == 65534


def test_notify_socket_cannot_be_taken_across_supervisor_restarts(daemon: Daemon) -> None:
    """Item 6: uid 65534 binding the name in a loop made every supervisor restart fail."""
    daemon.up({"app": notify_program()})
    first = daemon.wait_state("app", "RUNNING")["pid"]
    name = psutil.Process(first).environ()["NOTIFY_SOCKET"]
    with squatter(daemon):
        for _ in range(2):
            kill_supervisor(daemon)  # asserts a new supervisor answers
            row = daemon.wait_state("app", "RUNNING")
            assert row["pid"] == first  # adopted
        assert daemon.cli("restart", "app").rc == 0  # a new generation became READY
        second = daemon.wait_state("app", "RUNNING")["pid"]
        assert second != first
        assert psutil.Process(second).environ()["NOTIFY_SOCKET"] == name


def test_notify_flood_from_another_uid_is_logged_at_a_bounded_rate(daemon: Daemon) -> None:
    """Item 7: 20,000 datagrams from uid 65534 grew twinvisor.log by 1.84 MB."""
    daemon.up({"app": notify_program()})
    pid = daemon.wait_state("app", "RUNNING")["pid"]
    name = psutil.Process(pid).environ()["NOTIFY_SOCKET"]
    log = Path(daemon.log_dir, "twinvisor.log")
    before = log.stat().st_size
    flood = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "for i in range(20000):\n"
        "    try: s.sendto(b'READY=1\\nSTATUS=forged', '\\0' + sys.argv[1][1:])\n"
        "    except BlockingIOError: pass\n"
        "print('sent')\n"
    )
    r = subprocess.run(
        [*NOBODY, sys.executable, "-c", flood, name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert r.stdout == "sent\n", r
    wait_until(lambda: "ignored" in log.read_text(), what="the rejects logged")
    # the daemon still works and reads its socket: a datagram of the program still counts
    row = daemon.status()["app"]
    assert row["state"] == "RUNNING" and row["status_text"] != "forged"
    assert log.stat().st_size - before < 4096, log.read_text()[-2000:]


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


def impostor(daemon: Daemon, name: str, report: str) -> subprocess.Popen[bytes]:
    """uid 65534 in its own session, wearing program `name`'s tag (and not the test's tag:
    it is not the daemon's, and teardown must not find it among the daemon's processes)."""
    env = {k: v for k, v in daemon.env.items() if k != "TV_TEST_TAG"}
    env.update(
        TWINVISOR_RUN_DIR=daemon.run_dir,
        TWINVISOR_PROGRAM=name,
        TWINVISOR_GENERATION="00" * 8,
    )
    return subprocess.Popen(
        [*NOBODY, *child("run", "--setsid", "--report", report, "--role", "impostor")],
        env=env,
        cwd="/",
    )


@pytest.mark.parametrize("stopped", [False, True], ids=["running", "stopped-by-user"])
def test_a_process_of_another_uid_wearing_the_tag_is_not_adopted(
    daemon: Daemon, stopped: bool
) -> None:
    """Item 8: kill both twins and `p`; uid 65534 starts a setsid process tagged as `p`;
    `up` adopted it as `p` (even when the user had stopped `p`), and `down` signalled it."""
    report = daemon.path("report")
    os.chmod(daemon.root, 0o777)  # the impostor reports here
    daemon.up({"p": {"command": child("run")}})
    real = daemon.wait_state("p", "RUNNING")["pid"]
    if stopped:
        assert daemon.cli("stop", "p").rc == 0
    kill_both(daemon)
    if not stopped:
        os.kill(real, signal.SIGKILL)
        wait_until(lambda: gone(real), what="p gone")
    fake = impostor(daemon, "p", report)
    try:
        wait_report(report, lambda ev: any(e["event"] == "ready" for e in ev))
        r = daemon.cli("up")
        assert r.rc in (0, 1), r
        row = daemon.status()["p"]
        assert row["pid"] != fake.pid
        assert row["state"] == ("STOPPED" if stopped else "RUNNING"), row
        log = Path(daemon.log_dir, "twinvisor.log").read_text()
        assert f"not adopting pid {fake.pid}" in log
        assert daemon.cli("down").rc == 0
        assert fake.poll() is None  # root never signalled it
        assert not [e for e in read_report(report) if e["event"] == "signal"]
    finally:
        fake.kill()
        fake.wait()


def test_a_look_alike_of_another_uid_is_not_adopted_by_find(daemon: Daemon) -> None:
    """Item 8, same claim by another road: `find = "cmdline"` adopted a copy of the command
    started by uid 65534 (and root would signal it on down)."""
    report = daemon.path("report")
    os.chmod(daemon.root, 0o777)  # the look-alike reports here
    command = child("run", "--report", report, "--role", "look-alike")
    env = {k: v for k, v in daemon.env.items() if k != "TV_TEST_TAG"}
    fake = subprocess.Popen([*NOBODY, *command], env=env, cwd="/", start_new_session=True)
    try:
        wait_report(report, lambda ev: any(e["pid"] == fake.pid for e in ev))
        daemon.up({"p": {"command": command, "find": "cmdline"}})
        assert daemon.wait_state("p", "RUNNING")["pid"] != fake.pid
        log = Path(daemon.log_dir, "twinvisor.log").read_text()
        assert f"not adopting pid {fake.pid}" in log
        assert daemon.cli("down").rc == 0
        assert fake.poll() is None
    finally:
        fake.kill()
        fake.wait()
