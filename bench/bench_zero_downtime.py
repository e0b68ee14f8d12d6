#!/usr/bin/env python3
"""Zero-downtime restarts: HTTP load on 127.0.0.1 while the web program is restarted N times.

Run from the repository root with the project venv:

    bench/setup_peers.sh                                       # once: circus and supervisor
    .venv/bin/python bench/bench_zero_downtime.py              # --restarts 50, 4 client threads
    .venv/bin/python bench/bench_zero_downtime.py --restarts 5 --only twinvisor     # quick

The program is examples/webserver.py (GET / -> {"msg": "running"}), the same file under every
tool, started with the project's Python:

- twinvisor: `listen_addrs = ["127.0.0.1:PORT"]`, `ready = "notify"`; the socket is bound once by
  the daemon and passed at fd 3 (LISTEN_FDS); `twinvisor restart web` starts the new generation,
  waits for its READY=1, then stops the old one.
- circus: `[socket:web]` + `use_sockets = True`, the app gets `--fd $(circus.sockets.web)`; the
  socket stays in circusd. Measured twice: `circusctl restart web` (stop, then start) and
  `circusctl reload web` (graceful: start the new process, then stop the old one).
- supervisord: no socket passing; `supervisorctl restart web` stops the process and starts a new
  one that binds the port again (`startsecs = 0`, so the command returns at the spawn).

Load: --threads client threads, each sending `GET /` on a fresh connection (HTTP/1.1,
`Connection: close`), one after the other, with a 5 s timeout per request. The load starts
before the first restart and stops by itself once the restarts are done, or at --max-requests
requests, or after --max-seconds, whichever comes first. After each restart command returns,
the bench waits (bounded) for one successful reply before the next restart, so every restart
is a real hand-over under load.

Figures per tool: requests, failed requests (error, timeout, reset, or anything but 200 with
the expected body), refused connections (ECONNREFUSED; counted apart from failures), the longest
gap between two consecutive successful replies (all threads together, over the whole run), the
median time of one successful request, and the wall time of the run.

Peers come from $CIRCUSD/$CIRCUSCTL and $SUPERVISORD/$SUPERVISORCTL, else PATH, else the
bench/.peers venv. A tool that is not installed gets "not installed". Every process the bench
starts carries TVBENCH_TAG in its environment and is killed at the end, even on error.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

try:
    import psutil
except ImportError:  # pragma: no cover
    sys.exit("bench_zero_downtime.py needs psutil: run it with the project venv (.venv/bin/python)")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WEBSERVER = os.path.join(ROOT, "examples", "webserver.py")
TAG_KEY = "TVBENCH_TAG"
TAG = f"tvzd-{os.getpid()}"
POLL = 0.01
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
EXPECTED = b'{"msg": "running"}'


# ---- locating the tools ----------------------------------------------------------------------


def find_tool(env: str, name: str) -> str | None:
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


def tagged_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINVISOR_", "NOTIFY_"))}
    env[TAG_KEY] = TAG
    env["PYTHONUNBUFFERED"] = "1"
    return env


def sweep() -> int:
    """Kill every process carrying our tag; returns how many there were."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get(TAG_KEY) == TAG:
                found.append(proc)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(found, timeout=5)
    return len(found)


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=tagged_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)


def get_once(port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(REQUEST)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return False
    return data.startswith(b"HTTP/1.") and b" 200 " in data[:16] and data.endswith(EXPECTED)


# ---- the tools -------------------------------------------------------------------------------


class Tool:
    name = ""

    def __init__(self, workdir: str, port: int) -> None:
        self.dir, self.port = workdir, port

    def app(self, *extra: str) -> list[str]:
        return [sys.executable, WEBSERVER, *extra]

    def start(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def check(p: subprocess.CompletedProcess[str], what: str) -> None:
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({p.returncode}): {p.stdout.strip()} {p.stderr.strip()}")


class Twinvisor(Tool):
    name = "twinvisor"

    def __init__(self, workdir: str, port: int, exe: str) -> None:
        super().__init__(workdir, port)
        self.exe = exe
        self.config = os.path.join(workdir, "twinvisor.toml")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([self.exe, "-c", self.config, *args])

    def start(self) -> None:
        argv = ", ".join(json.dumps(a) for a in self.app())
        with open(self.config, "w") as f:
            f.write(
                f"[daemon]\nrun_dir = {json.dumps(os.path.join(self.dir, 'run'))}\n\n"
                f"[program.web]\ncommand = [{argv}]\n"
                f'listen_addrs = ["127.0.0.1:{self.port}"]\n'
                'ready = "notify"\nready_timeout = 10\nstop_timeout = 10\n'
            )
        check(self.cli("up"), "twinvisor up")

    def restart(self) -> None:
        check(self.cli("restart", "web"), "twinvisor restart web")

    def stop(self) -> None:
        self.cli("down")


class Circus(Tool):
    def __init__(self, workdir: str, port: int, circusd: str, circusctl: str, verb: str) -> None:
        super().__init__(workdir, port)
        self.circusd, self.circusctl, self.verb = circusd, circusctl, verb
        self.name = f"circus {verb}"
        self.endpoint = f"ipc://{workdir}/circus.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = os.path.join(self.dir, "circus.ini")
        app = " ".join(self.app("--fd", "$(circus.sockets.web)"))
        with open(config, "w") as f:
            f.write(
                f"[circus]\nendpoint = {self.endpoint}\n"
                f"pubsub_endpoint = ipc://{self.dir}/pubsub.sock\n"
                f"stats_endpoint = ipc://{self.dir}/stats.sock\n"
                "statsd = False\ncheck_delay = 5\n\n"
                f"[watcher:web]\ncmd = {app}\nuse_sockets = True\nnumprocesses = 1\n"
                "warmup_delay = 0\ngraceful_timeout = 10\ncopy_env = True\n\n"
                f"[socket:web]\nhost = 127.0.0.1\nport = {self.port}\n"
            )
        with open(os.path.join(self.dir, "circusd.out"), "ab") as out:
            self.proc = subprocess.Popen(
                [self.circusd, config],
                env=tagged_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def restart(self) -> None:
        argv = [self.circusctl, "--endpoint", self.endpoint, "--timeout", "30", self.verb, "web"]
        check(run(argv), f"circusctl {self.verb} web")

    def stop(self) -> None:
        run([self.circusctl, "--endpoint", self.endpoint, "quit"])
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Supervisord(Tool):
    name = "supervisord"

    def __init__(self, workdir: str, port: int, supervisord: str, supervisorctl: str) -> None:
        super().__init__(workdir, port)
        self.supervisord, self.supervisorctl = supervisord, supervisorctl
        self.config = os.path.join(workdir, "supervisord.conf")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        d = self.dir
        with open(self.config, "w") as f:
            f.write(
                f"[unix_http_server]\nfile = {d}/supervisor.sock\n\n"
                f"[supervisord]\nlogfile = {d}/supervisord.log\npidfile = {d}/supervisord.pid\n"
                f"childlogdir = {d}\nnodaemon = true\n\n"
                "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
                "supervisor.rpcinterface:make_main_rpcinterface\n\n"
                f"[supervisorctl]\nserverurl = unix://{d}/supervisor.sock\n\n"
                f"[program:web]\ncommand = {' '.join(self.app('--port', str(self.port)))}\n"
                "startsecs = 0\nstopwaitsecs = 10\n"
            )
        self.proc = subprocess.Popen(
            [self.supervisord, "-c", self.config],
            env=tagged_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def restart(self) -> None:
        check(run([self.supervisorctl, "-c", self.config, "restart", "web"]), "supervisorctl")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- the load --------------------------------------------------------------------------------


@dataclass
class Load:
    port: int
    threads: int
    max_requests: int
    max_seconds: float
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    failed: int = 0
    refused: int = 0
    successes: list[tuple[float, float]] = field(default_factory=list)  # (done at, duration)
    errors: dict[str, int] = field(default_factory=dict)

    def worker(self, deadline: float) -> None:
        while not self.stop.is_set() and time.monotonic() < deadline:
            with self.lock:
                if self.requests >= self.max_requests:
                    break
                self.requests += 1
            t0 = time.monotonic()
            outcome = self.one()
            t1 = time.monotonic()
            if outcome == "ok":
                with self.lock:
                    self.successes.append((t1, t1 - t0))
                continue
            with self.lock:
                if outcome == "refused":
                    self.refused += 1
                else:
                    self.failed += 1
                    self.errors[outcome] = self.errors.get(outcome, 0) + 1

    def one(self) -> str:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(REQUEST)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except ConnectionRefusedError:
            return "refused"
        except OSError as e:
            return type(e).__name__
        if data.startswith(b"HTTP/1.") and b" 200 " in data[:16] and data.endswith(EXPECTED):
            return "ok"
        return "bad reply: " + data[:40].decode("latin-1")

    def ok_count(self) -> int:
        with self.lock:
            return len(self.successes)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        deadline = time.monotonic() + self.max_seconds
        workers = [
            threading.Thread(target=self.worker, args=(deadline,), daemon=True)
            for _ in range(self.threads)
        ]
        for w in workers:
            w.start()
        try:
            yield self
        finally:
            self.stop.set()
            for w in workers:
                w.join(timeout=15)


def measure(tool: Tool, args: argparse.Namespace) -> dict[str, Any]:
    tool.start()
    try:
        wait_until(lambda: get_once(tool.port), 30, f"{tool.name} to serve")
        load = Load(tool.port, args.threads, args.max_requests, args.max_seconds)
        t0 = time.monotonic()
        restarts = 0
        with load.running():
            wait_until(lambda: load.ok_count() > 0, 10, "the first reply under load")
            for _ in range(args.restarts):
                if load.stop.is_set() or time.monotonic() - t0 > args.max_seconds:
                    break
                tool.restart()
                restarts += 1
                n = load.ok_count()
                wait_until(lambda n=n: load.ok_count() > n, 30, "a reply after the restart")
        wall = time.monotonic() - t0
    finally:
        tool.stop()
    times = sorted(t for t, _ in load.successes)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return {
        "tool": tool.name,
        "restarts": restarts,
        "requests": load.requests,
        "ok": len(load.successes),
        "failed": load.failed,
        "refused": load.refused,
        "longest_gap_ms": round(max(gaps) * 1000, 1) if gaps else None,
        "median_request_ms": round(statistics.median(d for _, d in load.successes) * 1000, 2)
        if load.successes
        else None,
        "wall_s": round(wall, 1),
        "errors": load.errors,
    }


# ---- main ------------------------------------------------------------------------------------


def tools(only: list[str] | None) -> list[tuple[str, Callable[[str, int], Tool]]]:
    tv = find_tool("TWINVISOR", "twinvisor")
    circusd, circusctl = find_tool("CIRCUSD", "circusd"), find_tool("CIRCUSCTL", "circusctl")
    sup = find_tool("SUPERVISORD", "supervisord")
    supctl = find_tool("SUPERVISORCTL", "supervisorctl")
    found: list[tuple[str, Callable[[str, int], Tool] | None]] = [
        ("twinvisor", (lambda d, p: Twinvisor(d, p, tv)) if tv else None),
        (
            "circus restart",
            (lambda d, p: Circus(d, p, circusd, circusctl, "restart"))
            if circusd and circusctl
            else None,
        ),
        (
            "circus reload",
            (lambda d, p: Circus(d, p, circusd, circusctl, "reload"))
            if circusd and circusctl
            else None,
        ),
        (
            "supervisord",
            (lambda d, p: Supervisord(d, p, sup, supctl)) if sup and supctl else None,
        ),
    ]
    return [
        (name, make)  # type: ignore[misc]
        for name, make in found
        if not only or name.split()[0] in only or name in only
    ]


ROWS = [
    ("restarts", "restarts done"),
    ("requests", "requests"),
    ("failed", "failed requests"),
    ("refused", "refused connections"),
    ("longest_gap_ms", "longest gap between replies (ms)"),
    ("median_request_ms", "median request (ms)"),
    ("wall_s", "wall time (s)"),
]


def table(results: list[dict[str, Any]]) -> str:
    header = ["", *(r["tool"] for r in results)]
    lines = [header]
    for key, label in ROWS:
        lines.append(
            [
                label,
                *(
                    "not installed"
                    if r.get("missing")
                    else ("error" if r.get("error") else str(r.get(key)))
                    for r in results
                ),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        rest = zip(line[1:], widths[1:], strict=True)
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in rest]
        out.append(" | ".join(cells))
        if n == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--restarts", type=int, default=50)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--max-requests", type=int, default=1_000_000)
    p.add_argument("--max-seconds", type=float, default=300.0, help="per tool")
    p.add_argument(
        "--only",
        action="append",
        choices=["twinvisor", "circus", "supervisord"],
        help="repeatable; default: every installed tool",
    )
    p.add_argument("--json", help="write the raw figures to this file")
    args = p.parse_args()

    print(
        f"zero-downtime bench: {args.restarts} restarts under load from {args.threads} threads; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    for name, make in tools(args.only):
        workdir = tempfile.mkdtemp(prefix="tvzd", dir="/tmp")  # short: AF_UNIX paths
        try:
            if make is None:
                results.append({"tool": name, "missing": True})
                continue
            print(f"  {name} ...", end="", flush=True)
            res = measure(make(workdir, free_port()), args)
            results.append(res)
            print(
                f" {res['requests']} requests, {res['failed']} failed, {res['refused']} refused",
                flush=True,
            )
        except Exception as e:  # a peer failing must not hide the other figures
            print(f" error: {e}", flush=True)
            results.append({"tool": name, "error": str(e)})
        finally:
            left = sweep()
            if left:
                print(f"    (killed {left} leftover processes)", flush=True)
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(results))
    for r in results:
        if r.get("errors"):
            print(f"{r['tool']} failures: {r['errors']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
