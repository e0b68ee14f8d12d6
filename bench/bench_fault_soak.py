#!/usr/bin/env python3
"""Fault-injection soak: damage the run dir and the config between kills of the twins, under
HTTP load, then count the damage (issue 10's "Must show").

Run from the repository root with the project venv (bounded by --rounds and --max-seconds):

    .venv/bin/python bench/bench_fault_soak.py                    # 40 rounds
    .venv/bin/python bench/bench_fault_soak.py --rounds 12        # quick

Two programs: `web` (examples/webserver.py on a passed socket, ready = "notify", GET /pid
answers its pid) and `worker` (examples/worker.py --interval 0.01: numbered lines `worker line
N` on stdout, 100 a second). `twinvisor up` runs under a subreaper process, as under `systemd
--user` or a container's init: programs left by a killed pair are reparented to it, not PID 1.

Each round injects one fault, in turn:
  state:<how>  SIGKILL both twins, damage run/state.json (empty, truncated, garbage, 20 MB of
               garbage, deleted, a directory, nested 100k deep, a pid of 1e400, a wrong
               version, wrong types, clean_shutdown = true while the programs live), `up`
  config       append a typo to the config (no update), SIGKILL the supervisor; the guard
               brings one up on the last applied config; the file is repaired after the round
  config+guard the same, then SIGKILL the guard (the supervisor starts a new one)
  sock-file    SIGKILL both twins, a regular file at run/twinvisor.sock, `up`
  pipes        SIGKILL both twins, remove run/pipes, `up`
  supervisor   SIGKILL the supervisor alone (the guard revives it)
  guard        SIGKILL the guard alone (the supervisor starts a new one)

After each round (status answering again, with the same web and worker pids):
- duplicates: programs with more than one live process (tag scan), summed over the rounds;
- unsupervised: live program processes that `status` does not list, summed over the rounds;
- failed requests: errors, resets, timeouts, non-200 replies and refused connections;
- lost lines: worker numbers missing from 1..max in its log at the end (after `down`);
- status back: from the fault's kill to the first `status` that answers (exit 0), p50/p99.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from common import (
    WEBSERVER,
    WORKER,
    Load,
    await_exit,
    find_tool,
    free_port,
    load_average,
    ms,
    percentile,
    tagged_env,
    twinvisor_web,
    wait_until,
)
from common import run as run_tagged
from common import sweep as sweep_tagged

TAG = f"tvfs-{os.getpid()}"
REQUEST = b"GET /pid HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

# runs its argv (`twinvisor up`), then reaps whatever is reparented to it until SIGTERM
SUBREAPER = """
import ctypes, os, signal, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
rc = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
open(sys.argv[1], "w").write(str(rc.returncode))
while True:
    try:
        os.wait()
    except ChildProcessError:
        signal.pause()
"""


def _rewrite(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _make_a_directory(p: Path) -> None:
    p.unlink()
    p.mkdir()


STATE_DAMAGE: dict[str, Callable[[Path], object]] = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "garbage": lambda p: p.write_bytes(b"\xff\xfe{not json\x00"),
    "garbage-20mb": lambda p: p.write_bytes(os.urandom(1 << 20) * 20),
    "deleted": lambda p: p.unlink(),
    "directory": _make_a_directory,
    "nested-100k": lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
    "pid-1e400": lambda p: p.write_text(
        p.read_text().replace('"children":[[', '"children":[["x",1e400,1,1],[', 1)
    ),
    "wrong-version": lambda p: _rewrite(p, lambda d: d.update(version=99)),
    "wrong-types": lambda p: p.write_text('{"version":1,"desired":[1],"children":{"a":1}}'),
    "clean-shutdown": lambda p: _rewrite(p, lambda d: d.update(clean_shutdown=True)),
}
FAULTS = [
    *(f"state:{k}" for k in STATE_DAMAGE),
    "config",
    "supervisor",
    "sock-file",
    "guard",
    "pipes",
    "config+guard",
]


def read_pid(path: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(Path(path).read_text().split()[0])
    return None


class Daemon:
    def __init__(self, workdir: str, exe: str, port: int) -> None:
        self.dir, self.exe, self.port = workdir, exe, port
        self.config = os.path.join(workdir, "twinvisor.toml")
        self.run_dir = os.path.join(workdir, "run")
        self.socket = os.path.join(self.run_dir, "twinvisor.sock")
        worker = ", ".join(json.dumps(a) for a in [sys.executable, WORKER, "--interval", "0.01"])
        self.good_config = (
            twinvisor_web(self.run_dir, [sys.executable, WEBSERVER], port)
            + f"\n[program.worker]\ncommand = [{worker}]\nstop_timeout = 10\n"
        )
        Path(self.config).write_text(self.good_config)
        self.catcher: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_tagged([self.exe, "-c", self.config, *args], TAG, timeout)

    def up_under_subreaper(self) -> None:
        rc = os.path.join(self.dir, "up.rc")
        self.catcher = subprocess.Popen(
            [sys.executable, "-c", SUBREAPER, rc, self.exe, "-c", self.config, "up", "--quiet"],
            env=tagged_env(TAG),
            stdin=subprocess.DEVNULL,
        )
        code = wait_until(lambda: Path(rc).exists() and Path(rc).read_text(), 120, "up")
        if code != "0":
            raise RuntimeError(f"twinvisor up under the subreaper: exit {code}")

    def status(self) -> dict[str, int] | None:
        """Program -> pid, from GET /status on the control socket (what `status` asks; the
        CLI's own start-up, 0.1-0.3 s, is left out of the figure)."""
        from twinvisor.control.client import ControlClient
        from twinvisor.errors import ControlError

        try:
            code, body = ControlClient(self.socket, timeout=10).call("GET", "/status")
        except (ControlError, OSError, ValueError):
            return None
        if code != 200:
            return None
        return {r["name"]: int(r["pid"]) for r in body["programs"] if r.get("pid")}

    def twins(self) -> list[int]:
        pids = (read_pid(f"{self.run_dir}/{n}.pid") for n in ("guard", "twinvisor"))
        return [p for p in pids if p is not None]

    def kill(self, pids: list[int]) -> None:
        for sig in (signal.SIGSTOP, signal.SIGKILL):  # frozen first: no one revives the other
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        for pid in pids:
            await_exit(pid)

    def programs(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for proc in psutil.process_iter(["pid", "status"]):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            with contextlib.suppress(psutil.Error, OSError):
                env = proc.environ()
                if env.get("TWINVISOR_RUN_DIR") == self.run_dir and "TWINVISOR_PROGRAM" in env:
                    found.setdefault(env["TWINVISOR_PROGRAM"], []).append(proc.pid)
        return found


def inject(d: Daemon, fault: str) -> float:
    """Carry out one fault; returns the monotonic time of its kill."""
    guard, supervisor = read_pid(f"{d.run_dir}/guard.pid"), read_pid(f"{d.run_dir}/twinvisor.pid")
    if fault.startswith("config"):
        with open(d.config, "a") as f:
            f.write("\n[program.worker]\nautorestrat = 1\n")  # duplicate table + typo
    t0 = time.monotonic()
    if fault in ("supervisor", "config", "config+guard"):
        assert supervisor is not None
        d.kill([supervisor])
        if fault == "config+guard":
            wait_until(lambda: d.status() is not None, 30, "the supervisor back")
            assert guard is not None
            d.kill([guard])
        return t0
    if fault == "guard":
        assert guard is not None
        d.kill([guard])
        return t0
    d.kill(d.twins())
    if fault.startswith("state:"):
        STATE_DAMAGE[fault.split(":", 1)[1]](Path(d.run_dir, "state.json"))
    elif fault == "sock-file":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(d.socket)
        Path(d.socket).write_text("not a socket")
    elif fault == "pipes":
        shutil.rmtree(os.path.join(d.run_dir, "pipes"), ignore_errors=True)
    d.cli("up", "--quiet")  # what the timer runs
    return t0


def soak(d: Daemon, args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.monotonic()
    d.up_under_subreaper()
    first = wait_until(lambda: (s := d.status()) and len(s) == 2 and s, 60, "both programs")
    load = Load(d.port, args.threads, REQUEST, max_seconds=args.max_seconds)
    back: list[float] = []
    by_fault: dict[str, list[float]] = {}
    duplicates = unsupervised = changed = 0
    notes: list[str] = []
    load.start()
    rounds = 0
    try:
        wait_until(lambda: load.ok > 0 or load.failed or load.refused, 10, "the first reply")
        for i in range(args.rounds):
            if time.monotonic() - t_start > args.max_seconds:
                notes.append(f"stopped at --max-seconds after {rounds} rounds")
                break
            fault = FAULTS[i % len(FAULTS)]
            t0 = inject(d, fault)
            rounds += 1
            try:
                status = wait_until(d.status, 30, "status again")
                back.append(time.monotonic() - t0)
                by_fault.setdefault(fault.split(":")[0], []).append(back[-1])
            except RuntimeError:
                notes.append(f"{fault}: status never answered again")
                break
            wait_until(lambda: d.status() == first, 10, "the same pids")
            now, status = d.programs(), d.status() or {}
            duplicates += sum(len(p) > 1 for p in now.values())
            unsupervised += sum(1 for ps in now.values() for p in ps if p not in status.values())
            changed += sum(1 for n, p in status.items() if first.get(n) != p)
            if fault.startswith("config"):
                Path(d.config).write_text(d.good_config)
            time.sleep(args.settle)  # the guard counts a supervisor dead within 2 s as failed
    finally:
        load.finish()
        d.cli("down", "--timeout", "20")
        left = sum(len(p) for p in d.programs().values())
        if d.catcher is not None:
            d.catcher.terminate()
            d.catcher.wait(10)
        sweep_tagged(TAG)
    numbers = line_numbers(os.path.join(d.run_dir, "log", "worker.stdout.log"))
    return {
        "rounds": rounds,
        "requests": load.ok + load.failed + load.refused,
        "failed requests": load.failed + load.refused,
        "duplicates": duplicates,
        "unsupervised": unsupervised,
        "pids changed": changed,
        "left after down": left,
        "worker lines": len(numbers),
        "lost lines": max(numbers) - len(set(numbers)) if numbers else None,
        "status back p50 (ms)": ms(percentile(back, 0.5)),
        "status back p99 (ms)": ms(percentile(back, 0.99)),
        "status back max (ms)": ms(max(back) if back else None),
        "wall (s)": round(time.monotonic() - t_start, 1),
        "status back p50 by fault (ms)": {f: ms(percentile(v, 0.5)) for f, v in by_fault.items()},
        "errors": load.errors,
        "notes": notes,
    }


def line_numbers(path: str) -> list[int]:
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        return [int(n) for n in re.findall(r"^worker line (\d+)$", f.read(), re.M)]
    return []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--settle", type=float, default=2.1)
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--json", help="write the raw results here")
    args = p.parse_args()
    exe = find_tool("TWINVISOR", "twinvisor")
    if exe is None:
        sys.exit("twinvisor not found: run with the project venv")
    load0 = load_average()
    workdir = tempfile.mkdtemp(prefix="tvfs", dir="/tmp")
    try:
        result = soak(Daemon(workdir, exe, free_port()), args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"fault soak: {result['rounds']} rounds over {len(FAULTS)} faults, {args.threads} client "
        f"threads, settle {args.settle:g} s; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; load average before / after: {load0} / {load_average()}"
    )
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"  {key.ljust(width)}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
