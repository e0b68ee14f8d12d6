"""Shared helpers of the benches: locating the tools, tagged processes, an HTTP load generator.

Every process a bench starts carries TAG_KEY=<the bench's tag> in its environment
(`tagged_env`), so that `sweep` can find and kill all of them at the end, even on error.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

try:
    import psutil
except ImportError:  # pragma: no cover
    sys.exit("the benches need psutil: run them with the project venv (.venv/bin/python)")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WEBSERVER = os.path.join(ROOT, "examples", "webserver.py")
WORKER = os.path.join(ROOT, "examples", "worker.py")
TAG_KEY = "TVBENCH_TAG"
POLL = 0.01


# ---- locating the tools ----------------------------------------------------------------------


def find_tool(env: str, name: str) -> str | None:
    """$env, else (twinvisor only) the script next to this interpreter, else PATH, else the
    bench/.peers venv that bench/setup_peers.sh creates; None if none of them has it."""
    if os.environ.get(env):
        return os.environ[env]
    here = os.path.join(os.path.dirname(sys.executable), name)
    if name == "twinvisor" and os.path.exists(here):
        return here
    found = shutil.which(name)
    if found:
        return found
    peer = os.path.join(HERE, ".peers", "bin", name)
    return peer if os.path.exists(peer) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- tagged processes ------------------------------------------------------------------------


def tagged_env(tag: str) -> dict[str, str]:
    """This environment without twinvisor's own variables, tagged, Python unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINVISOR_", "NOTIFY_"))}
    env[TAG_KEY] = tag
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tagged(tag: str) -> list[psutil.Process]:
    """Live (not zombie) processes carrying the tag, this one excepted."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get(TAG_KEY) == tag:
                found.append(proc)
    return found


def sweep(tag: str) -> int:
    """Kill every process carrying the tag; returns how many there were."""
    found = tagged(tag)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(found, timeout=5)
    return len(found)


def run(argv: list[str], tag: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a command to its end in the tagged environment, output captured."""
    return subprocess.run(
        argv,
        env=tagged_env(tag),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def spawn(argv: list[str], tag: str, out: str | None = None) -> subprocess.Popen[bytes]:
    """Start a daemon in its own session, tagged; its output appended to `out` (or dropped)."""
    with open(out, "ab") if out else open(os.devnull, "wb") as sink:
        return subprocess.Popen(
            argv,
            env=tagged_env(tag),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )


def reap(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Wait up to `timeout` for a daemon the bench asked to stop, then SIGKILL it."""
    if proc is None:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a daemon still running, then `reap` it."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        reap(proc, timeout)


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `cond` every POLL seconds; its first true value, or RuntimeError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)
    return value


# ---- the tools' configs ----------------------------------------------------------------------


def twinvisor_web(run_dir: str, argv: list[str], port: int) -> str:
    """twinvisor.toml with the web program: socket 127.0.0.1:port passed by the daemon (fd 3),
    ready when it sends READY=1."""
    command = ", ".join(json.dumps(a) for a in argv)
    return (
        f"[daemon]\nrun_dir = {json.dumps(run_dir)}\n\n"
        f"[program.web]\ncommand = [{command}]\n"
        f'listen_addrs = ["127.0.0.1:{port}"]\n'
        'ready = "notify"\nready_timeout = 10\nstop_timeout = 10\n'
    )


def supervisord_header(d: str) -> str:
    """supervisord.conf up to the programs: socket, logs and pid file in `d`, foreground."""
    return (
        f"[unix_http_server]\nfile = {d}/supervisor.sock\n\n"
        f"[supervisord]\nlogfile = {d}/supervisord.log\npidfile = {d}/supervisord.pid\n"
        f"childlogdir = {d}\nnodaemon = true\n\n"
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
        "supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[supervisorctl]\nserverurl = unix://{d}/supervisor.sock\n\n"
    )


def circus_header(endpoint: str, d: str) -> str:
    """circus.ini up to the watchers: control, pubsub and stats sockets in `d`, no statsd."""
    return (
        f"[circus]\nendpoint = {endpoint}\n"
        f"pubsub_endpoint = ipc://{d}/pubsub.sock\n"
        f"stats_endpoint = ipc://{d}/stats.sock\nstatsd = False\ncheck_delay = 5\n\n"
    )


# ---- the HTTP load ---------------------------------------------------------------------------


def http_request(port: int, request: bytes, expected: bytes = b"", timeout: float = 5.0) -> str:
    """One request on a fresh connection to 127.0.0.1:port: "ok" (200, body ends with
    `expected`), "refused" (ECONNREFUSED), the error's class name, or "bad reply: ..."."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return type(e).__name__
    if data.startswith(b"HTTP/1.") and b" 200 " in data[:16] and data.endswith(expected):
        return "ok"
    return "bad reply: " + data[:40].decode("latin-1")


class Load:
    """`threads` client threads, each sending `request` on a fresh connection (5 s timeout),
    one after the other, until `stop` is set, `max_seconds` have passed or `max_requests`
    requests were sent. Counts requests, ok, failed and refused; failures by kind in `errors`;
    with `keep_times`, every success as (monotonic time it ended, duration) in `successes`."""

    def __init__(
        self,
        port: int,
        threads: int,
        request: bytes,
        expected: bytes = b"",
        max_seconds: float = 300.0,
        max_requests: int | None = None,
        keep_times: bool = False,
    ) -> None:
        self.port, self.threads, self.request, self.expected = port, threads, request, expected
        self.max_seconds, self.max_requests, self.keep_times = (
            max_seconds,
            max_requests,
            keep_times,
        )
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests = self.ok = self.failed = self.refused = 0
        self.successes: list[tuple[float, float]] = []
        self.errors: dict[str, int] = {}
        self.workers: list[threading.Thread] = []

    def worker(self, deadline: float) -> None:
        while not self.stop.is_set() and time.monotonic() < deadline:
            with self.lock:
                if self.max_requests is not None and self.requests >= self.max_requests:
                    break
                self.requests += 1
            t0 = time.monotonic()
            outcome = http_request(self.port, self.request, self.expected)
            t1 = time.monotonic()
            with self.lock:
                if outcome == "ok":
                    self.ok += 1
                    if self.keep_times:
                        self.successes.append((t1, t1 - t0))
                elif outcome == "refused":
                    self.refused += 1
                else:
                    self.failed += 1
                    self.errors[outcome] = self.errors.get(outcome, 0) + 1

    def ok_count(self) -> int:
        with self.lock:
            return self.ok

    def start(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        self.workers = [
            threading.Thread(target=self.worker, args=(deadline,), daemon=True)
            for _ in range(self.threads)
        ]
        for w in self.workers:
            w.start()

    def finish(self) -> None:
        self.stop.set()
        for w in self.workers:
            w.join(timeout=15)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        self.start()
        try:
            yield self
        finally:
            self.finish()


def await_exit(pid: int, timeout: float = 10) -> None:
    """Until `pid` (not necessarily our child) has exited: its pidfd turns readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float | None) -> int | str:
    return round(seconds * 1000) if seconds is not None else "never"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextlib.contextmanager
def pid_fifo(path: str) -> Iterator[Callable[[float], int | None]]:
    """A FIFO at `path` that children write their pid to (`echo $$ >FIFO`), and a reader
    of the next pid written, or None after `timeout` seconds."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # RDWR: never EOF, writers never block
    buf = b""

    def next_pid(timeout: float) -> int | None:
        nonlocal buf
        deadline = time.monotonic() + timeout
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if select.select([fd], [], [], left)[0]:
                with contextlib.suppress(BlockingIOError):
                    buf += os.read(fd, 4096)
        line, buf = buf.split(b"\n", 1)
        return int(line)

    try:
        yield next_pid
    finally:
        os.close(fd)
