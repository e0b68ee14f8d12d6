#!/usr/bin/env python3
"""`status` under hostile load on the control socket, and the log cost of a notify flood.

Run from the repository root with the project venv (as root for the flood, which is sent as
uid 65534 through setpriv):

    .venv/bin/python bench/bench_hostile.py               # about 30 s
    .venv/bin/python bench/bench_hostile.py --calls 50

One daemon (one program, `ready = "notify"`), then for each load: open the load, call
GET /status `--calls` times on a fresh connection each (the CLI's client), and report the
p50 / p99 / max time of an answer and how many calls failed (anything but 200):

- baseline: nothing else;
- 64 idle: 64 connections that never send a byte (the old limit was 64: status got 503);
- 200 slowloris: 200 connections sending a request head one byte every 0.5 s;
- 1000 connects: 1000 connections opened at once, then idle (the old backlog was 100-128).

Flood: 20,000 READY=1 datagrams on the program's NOTIFY_SOCKET from uid 65534 (not a
process of any program); reported: how many bytes twinvisor.log grew by, and whether the
daemon still answers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import psutil
from common import find_tool, tagged_env

from twinvisor.control.client import ControlClient
from twinvisor.errors import ControlError

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
NOTIFY_APP = "import time; from twinvisor import sd; sd.notify('READY=1'); time.sleep(100000)"


def write_config(root: str) -> str:
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    path = os.path.join(root, "twinvisor.toml")
    with open(path, "w") as f:
        f.write(
            f'[daemon]\nrun_dir = "{root}/run"\n\n[program.app]\n'
            f"command = [{sys.executable!r}, '-c', {NOTIFY_APP!r}]\n"
            f'environment = {{ PYTHONPATH = "{src}" }}\nready = "notify"\n'
        )
    return path


def timed_calls(sock: str, calls: int) -> tuple[list[float], int]:
    times, failed = [], 0
    for _ in range(calls):
        t0 = time.perf_counter()
        try:
            code, _ = ControlClient(sock, timeout=10).call("GET", "/status")
        except ControlError:
            code = 0
        times.append(time.perf_counter() - t0)
        failed += code != 200
    return times, failed


@contextlib.contextmanager
def held(sock: str, count: int, head: bytes = b"") -> Iterator[list[socket.socket]]:
    conns: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conns.append(s)
            s.connect(sock)
            if head:
                s.sendall(head)
        yield conns
    finally:
        for s in conns:
            s.close()


@contextlib.contextmanager
def dribbling(conns: list[socket.socket]) -> Iterator[None]:
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.5):
            for s in conns:
                with contextlib.suppress(OSError):
                    s.send(b"X")

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def row(name: str, times: list[float], failed: int) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{name:<16} {statistics.median(ms):8.1f} {p99:8.1f} {ms[-1]:8.1f} {failed:>6}/{len(ms)}"


def flood(config: str, sock: str, log: str) -> str:
    _, body = ControlClient(sock).call("GET", "/status")
    pid = body["programs"][0]["pid"]
    name = psutil.Process(pid).environ()["NOTIFY_SOCKET"]
    before = os.path.getsize(log)
    sender = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "for i in range(20000):\n"
        "    try: s.sendto(b'READY=1', '\\0' + sys.argv[1][1:])\n"
        "    except BlockingIOError: pass\n"
    )
    subprocess.run([*NOBODY, sys.executable, "-c", sender, name], check=True, cwd="/")
    time.sleep(1.0)  # let the daemon drain its socket before measuring the log
    grew = os.path.getsize(log) - before
    answers = ControlClient(sock).call("GET", "/status")[0] == 200
    state = "answers" if answers else "FAILS"
    return (
        f"notify flood, 20000 datagrams from uid 65534: twinvisor.log +{grew} bytes; status {state}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=30)
    args = p.parse_args()
    twinvisor = find_tool("TWINVISOR", "twinvisor")
    if twinvisor is None:
        sys.exit("twinvisor not found")
    root = tempfile.mkdtemp(prefix="tvhost", dir="/tmp")
    config = write_config(root)
    env = tagged_env(root)
    sock = f"{root}/run/twinvisor.sock"
    subprocess.run([twinvisor, "-c", config, "up"], env=env, check=True, capture_output=True)
    try:
        print(f"{'load':<16} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'failed':>9}")
        print(row("baseline", *timed_calls(sock, args.calls)))
        with held(sock, 64):
            print(row("64 idle", *timed_calls(sock, args.calls)))
        with held(sock, 200, b"GET /status HTTP/1.1\r\n") as conns, dribbling(conns):
            print(row("200 slowloris", *timed_calls(sock, args.calls)))
        with held(sock, 1000):
            print(row("1000 connects", *timed_calls(sock, args.calls)))
        if os.geteuid() == 0 and shutil.which("setpriv"):
            print(flood(config, sock, f"{root}/run/log/twinvisor.log"))
    finally:
        subprocess.run([twinvisor, "-c", config, "down"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
