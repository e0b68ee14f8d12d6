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
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from common import (
    WEBSERVER,
    Load,
    circus_header,
    find_tool,
    free_port,
    http_request,
    load_average,
    reap,
    spawn,
    supervisord_header,
    terminate,
    twinvisor_web,
    wait_until,
)
from common import run as run_tagged
from common import sweep as sweep_tagged

TAG = f"tvzd-{os.getpid()}"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
EXPECTED = b'{"msg": "running"}'


def sweep() -> int:
    return sweep_tagged(TAG)


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_tagged(argv, TAG, timeout)


def get_once(port: int, timeout: float = 2.0) -> bool:
    return http_request(port, REQUEST, EXPECTED, timeout) == "ok"


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
        with open(self.config, "w") as f:
            f.write(twinvisor_web(os.path.join(self.dir, "run"), self.app(), self.port))
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
                circus_header(self.endpoint, self.dir)
                + f"[watcher:web]\ncmd = {app}\nuse_sockets = True\nnumprocesses = 1\n"
                "warmup_delay = 0\ngraceful_timeout = 10\ncopy_env = True\n\n"
                f"[socket:web]\nhost = 127.0.0.1\nport = {self.port}\n"
            )
        self.proc = spawn([self.circusd, config], TAG, os.path.join(self.dir, "circusd.out"))

    def restart(self) -> None:
        argv = [self.circusctl, "--endpoint", self.endpoint, "--timeout", "30", self.verb, "web"]
        check(run(argv), f"circusctl {self.verb} web")

    def stop(self) -> None:
        run([self.circusctl, "--endpoint", self.endpoint, "quit"])
        reap(self.proc, 15)


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
                supervisord_header(d)
                + f"[program:web]\ncommand = {' '.join(self.app('--port', str(self.port)))}\n"
                "startsecs = 0\nstopwaitsecs = 10\n"
            )
        self.proc = spawn([self.supervisord, "-c", self.config], TAG)

    def restart(self) -> None:
        check(run([self.supervisorctl, "-c", self.config, "restart", "web"]), "supervisorctl")

    def stop(self) -> None:
        terminate(self.proc, 15)


def more_replies(load: Load, before: int) -> bool:
    return load.ok_count() > before


def measure(tool: Tool, args: argparse.Namespace) -> dict[str, Any]:
    tool.start()
    try:
        wait_until(lambda: get_once(tool.port), 30, f"{tool.name} to serve")
        load = Load(
            tool.port,
            args.threads,
            REQUEST,
            EXPECTED,
            max_seconds=args.max_seconds,
            max_requests=args.max_requests,
            keep_times=True,
        )
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
                wait_until(partial(more_replies, load, n), 30, "a reply after the restart")
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
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}; "
        f"load average {load_average()}",
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
    print(f"\nload average after: {load_average()}")
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
