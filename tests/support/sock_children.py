"""Child programs for the socket-passing and zero-downtime tests: `python sock_children.py MODE`.

Every event goes to a shared JSON-lines file (`--events PATH`, one `os.write` per line, with
`time.monotonic_ns()`, which is the same clock in every process), so a test compares the start
and exit of different generations without sleeping.

Modes:
  fds OUT    dump what the process sees (fds in /proc/self/fd, LISTEN_*, NOTIFY_SOCKET, the
             address of every passed socket) to OUT as JSON, send READY=1, wait for SIGTERM
  serve      an HTTP/1.0 server on the passed socket (fd 3), if any. Options:
               --behaviour FILE  read at start: "hang" = never send READY=1, "crash" = exit 3,
                                 "deaf" = never send READY=1 nor accept a connection
               --gate FIFO       send STATUS=waiting for gate, read a line from FIFO, then
                                 STATUS=serving and READY=1
               --watchdog        send WATCHDOG=1 every WATCHDOG_USEC/4; SIGUSR1 stops it (hung)
               --repeat-ready S  once ready, send READY=1 with a new STATUS= every S seconds
                                 (some apps do: systemd accepts READY=1 again at any time)
             GET / -> the pid; GET /health -> 200 (the first one is reported as
             "health-ok"), or 500 after SIGUSR2. SIGTERM: stop
             accepting, finish the requests in flight, exit 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))
from twinvisor import sd

EVENTS: str | None = None
NAME = "child"


def event(kind: str, **fields: object) -> None:
    if not EVENTS:
        return
    line = {"event": kind, "pid": os.getpid(), "name": NAME, "ns": time.monotonic_ns(), **fields}
    fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


def open_fds() -> list[int]:
    listed = [int(n) for n in os.listdir("/proc/self/fd")]
    found = []
    for fd in listed:  # the directory fd listdir used is closed again by now
        try:
            os.fstat(fd)
        except OSError:
            continue
        found.append(fd)
    return sorted(found)


def dump_fds(out: str) -> None:
    fds = open_fds()
    env = {
        k: os.environ.get(k)
        for k in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "NOTIFY_SOCKET")
    }
    passed = {}
    for fd in fds:
        if fd < 3:
            continue
        s = socket.socket(fileno=os.dup(fd))
        try:
            passed[str(fd)] = {
                "family": int(s.family),
                "type": int(s.type),
                "name": s.getsockname(),
                "listening": s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1,
                "inheritable": os.get_inheritable(fd),
            }
        finally:
            s.close()
    data = {"pid": os.getpid(), "fds": fds, "env": env, "sockets": passed}
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, out)
    sd.notify("READY=1")
    signal.sigwait({signal.SIGTERM})


class Handler(BaseHTTPRequestHandler):
    healthy = True
    answered_health = False

    def do_GET(self) -> None:
        if self.path == "/health":
            code = 200 if Handler.healthy else 500
            body = b"ok" if code == 200 else b"failing"
            if code == 200 and not Handler.answered_health:
                Handler.answered_health = True
                event("health-ok")
        else:
            code, body = 200, str(os.getpid()).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True


def serve(args: argparse.Namespace) -> int:
    behaviour = ""
    if args.behaviour and os.path.exists(args.behaviour):
        with open(args.behaviour) as f:
            behaviour = f.read().strip()
    event("start", behaviour=behaviour)
    if behaviour == "crash":
        event("exit", code=3)
        return 3

    passed = sd.listen_sockets()
    server = None
    if passed and behaviour != "deaf":
        server = Server(passed[0].getsockname(), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = passed[0]
    done = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        event("stopping")
        done.set()
        if server is not None:
            threading.Thread(target=server.shutdown, daemon=True).start()

    def on_usr1(signum: int, frame: object) -> None:
        event("hung")
        pinging.clear()

    def on_usr2(signum: int, frame: object) -> None:
        event("unhealthy")
        Handler.healthy = False

    pinging = threading.Event()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGUSR2, on_usr2)

    if args.watchdog:
        pinging.set()
        period = int(os.environ["WATCHDOG_USEC"]) / 4e6

        def ping() -> None:
            while pinging.is_set() and not done.is_set():
                sd.notify("WATCHDOG=1")
                time.sleep(period)  # the ping period itself, not a synchronisation

        threading.Thread(target=ping, daemon=True).start()

    if behaviour not in ("hang", "deaf"):
        if args.gate:
            sd.notify("STATUS=waiting for gate")
            event("gate-waiting")
            with open(args.gate) as f:
                f.readline()
            sd.notify("STATUS=serving")
        event("ready")
        sd.notify("READY=1")
        if args.repeat_ready:

            def repeat() -> None:
                n = 0
                while not done.wait(args.repeat_ready):  # the app's own period
                    n += 1
                    sd.notify(f"READY=1\nSTATUS=served {n} periods")

            threading.Thread(target=repeat, daemon=True).start()
    if server is not None:
        server.serve_forever(poll_interval=0.05)
        server.server_close()
    else:
        done.wait()
    event("exit", code=0)
    return 0


def main() -> int:
    global EVENTS, NAME
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["fds", "serve"])
    p.add_argument("out", nargs="?")
    p.add_argument("--events")
    p.add_argument("--name", default="child")
    p.add_argument("--behaviour")
    p.add_argument("--gate")
    p.add_argument("--watchdog", action="store_true")
    p.add_argument("--repeat-ready", type=float, default=0.0)
    args = p.parse_args()
    EVENTS, NAME = args.events, args.name
    if args.mode == "fds":
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        dump_fds(args.out)
        return 0
    return serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
