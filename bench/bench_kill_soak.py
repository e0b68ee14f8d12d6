#!/usr/bin/env python3
"""Supervisor kill soak: SIGKILL the supervisor N times under HTTP load, then count the damage.

Run from the repository root with the project venv:

    bench/setup_peers.sh                                   # once: circus and supervisor
    .venv/bin/python bench/bench_kill_soak.py              # --kills 100 for every tool
    .venv/bin/python bench/bench_kill_soak.py --kills 5 --only twinvisor       # quick

Two programs under every tool, started with the project's Python: `web` (examples/webserver.py,
GET /pid answers its pid and logs one line per request to stdout) and `worker`
(examples/worker.py --interval 0.01: numbered lines `worker line N` on stdout, 100 a second).

- twinvisor: `listen_addrs` + `ready = "notify"` (the socket is held by the daemon and its
  guard, passed at fd 3). The guard restarts the supervisor by itself: the bench only kills.
- circus: `[socket:web]` + `use_sockets`, the app gets `--fd $(circus.sockets.web)`; output
  streamed to files by circusd. After the kill the operator starts circusd again.
- supervisord: the app binds the port itself (no socket passing); output to files by
  supervisord. After the kill the operator starts supervisord again.

One kill: wait until the daemon has run `--settle` seconds (2.1 s by default: twinvisor's guard
counts a supervisor that dies within 2 s of its start as a failed start and backs off, then
gives up after 5 in a row, like any crash-loop guard), SIGKILL the daemon process, wait for
its exit (pidfd), start it again where the operator has to, then poll the tool's status
command until it answers (that command's exit status 0). The time from the SIGKILL to that
answer is the "status again" figure (the command's own start-up included, for every tool).

Load: --threads client threads, GET /pid on a fresh connection (HTTP/1.1, Connection: close,
5 s timeout), from before the first kill until after the last.

Counted per tool over the whole soak:
- failed requests (error, reset, timeout, not 200) and refused connections (ECONNREFUSED);
- duplicates: after each kill, programs with more than one live process (psutil scan of the
  processes carrying the bench tag, by script name), summed over the kills;
- orphans: after each kill, live program processes the daemon does not list as its own
  (after the last kill, plus whatever survives the tool's own stop at the end);
- restarted children: program processes seen beyond the first two (a new pid for a program);
- lost / repeated lines: from the worker's log file(s), numbers missing from 1..max, and
  numbers written more than once (a new worker starts again at 1);
- status again: p50 and p99 over the kills.

Bounded: the soak stops by itself after the kills, or at --max-seconds per tool. Every process
the bench starts carries TVBENCH_TAG in its environment and is killed at the end, even on error.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import glob
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
from functools import partial
from typing import Any

import psutil
from common import (
    WEBSERVER,
    WORKER,
    Load,
    await_exit,
    circus_header,
    find_tool,
    free_port,
    load_average,
    ms,
    percentile,
    reap,
    spawn,
    supervisord_header,
    tagged,
    terminate,
    twinvisor_web,
    wait_until,
)
from common import run as run_tagged
from common import sweep as sweep_tagged

TAG = f"tvks-{os.getpid()}"
REQUEST = b"GET /pid HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
SCRIPTS = {"web": "webserver.py", "worker": "worker.py"}


def sweep() -> int:
    return sweep_tagged(TAG)


def programs() -> dict[str, list[int]]:
    """Live program processes of the bench, by program (script name in the command line)."""
    found: dict[str, list[int]] = {"web": [], "worker": []}
    for proc in tagged(TAG):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(proc.cmdline())
            for name, script in SCRIPTS.items():
                if script in cmd:
                    found[name].append(proc.pid)
    return found


def run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return run_tagged(argv, TAG, timeout)


def settled(since: float, settle: float) -> bool:
    return time.monotonic() - since >= settle


def back_after_kill(tool: Tool, old: int) -> bool:
    """A new daemon (not `old`) answers status."""
    return tool.daemon_pid() not in (None, old) and tool.status_ok()


# ---- the tools -------------------------------------------------------------------------------


class Tool(abc.ABC):
    name = ""

    def __init__(self, workdir: str, port: int) -> None:
        self.dir, self.port = workdir, port

    @abc.abstractmethod
    def start(self) -> None: ...
    @abc.abstractmethod
    def daemon_pid(self) -> int | None: ...
    @abc.abstractmethod
    def restart_after_kill(self) -> None: ...
    @abc.abstractmethod
    def status_ok(self) -> bool: ...
    @abc.abstractmethod
    def own_pids(self) -> set[int]: ...
    @abc.abstractmethod
    def worker_logs(self) -> list[str]: ...
    @abc.abstractmethod
    def stop(self) -> None: ...

    def why(self) -> str:
        """The daemon's last error line (why it did not come back)."""
        for name in ("circusd.out", "supervisord.log"):
            with contextlib.suppress(OSError), open(os.path.join(self.dir, name)) as f:
                lines = [line.strip() for line in f if "ERROR" in line or "CRIT" in line]
                return lines[-1][:200] if lines else ""
        return ""


class Twinvisor(Tool):
    name = "twinvisor"

    def __init__(self, workdir: str, port: int, exe: str) -> None:
        super().__init__(workdir, port)
        self.exe = exe
        self.config = os.path.join(workdir, "twinvisor.toml")
        self.run_dir = os.path.join(workdir, "run")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([self.exe, "-c", self.config, *args])

    def start(self) -> None:
        worker = ", ".join(json.dumps(a) for a in [sys.executable, WORKER, "--interval", "0.01"])
        with open(self.config, "w") as f:
            f.write(
                twinvisor_web(self.run_dir, [sys.executable, WEBSERVER], self.port)
                + f"\n[program.worker]\ncommand = [{worker}]\nstop_timeout = 10\n"
            )
        p = self.cli("up")
        if p.returncode != 0:
            raise RuntimeError(f"twinvisor up: {p.stdout} {p.stderr}")

    def daemon_pid(self) -> int | None:
        with (
            contextlib.suppress(OSError, ValueError),
            open(os.path.join(self.run_dir, "twinvisor.pid")) as f,
        ):
            return int(f.read().strip())
        return None

    def restart_after_kill(self) -> None:
        pass  # the guard does it

    def status_ok(self) -> bool:
        return self.cli("status").returncode == 0

    def own_pids(self) -> set[int]:
        p = self.cli("status", "--json")
        if p.returncode != 0:
            return set()
        return {int(r["pid"]) for r in json.loads(p.stdout) if r.get("pid")}

    def restarts(self) -> int:
        p = self.cli("status", "--json")
        return sum(int(r["restarts"]) for r in json.loads(p.stdout)) if p.returncode == 0 else -1

    def worker_logs(self) -> list[str]:
        return [os.path.join(self.run_dir, "log", "worker.stdout.log")]

    def stop(self) -> None:
        self.cli("down", "--timeout", "20")


class Spawned(Tool):
    """A peer daemon the bench starts itself (in the foreground) and starts again after a kill,
    as an operator would."""

    out: str | None = None  # the daemon's own output, appended here (None: dropped)

    def __init__(self, workdir: str, port: int) -> None:
        super().__init__(workdir, port)
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def _spawn(self) -> None:
        self.proc = spawn(self.argv(), TAG, self.out)

    def daemon_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def restart_after_kill(self) -> None:
        if self.proc is not None:
            self.proc.wait()
        self._spawn()


class Supervisord(Spawned):
    name = "supervisord"

    def __init__(self, workdir: str, port: int, supervisord: str, supervisorctl: str) -> None:
        super().__init__(workdir, port)
        self.supervisord, self.supervisorctl = supervisord, supervisorctl
        self.config = os.path.join(workdir, "supervisord.conf")

    def argv(self) -> list[str]:
        return [self.supervisord, "-c", self.config]

    def start(self) -> None:
        d = self.dir
        with open(self.config, "w") as f:
            f.write(
                supervisord_header(d)
                + f"[program:web]\ncommand = {sys.executable} {WEBSERVER} --port {self.port}\n"
                f"startsecs = 1\nstopwaitsecs = 10\nstdout_logfile = {d}/web.log\n\n"
                f"[program:worker]\ncommand = {sys.executable} {WORKER} --interval 0.01\n"
                f"startsecs = 1\nstopwaitsecs = 10\nstdout_logfile = {d}/worker.log\n"
                "stdout_logfile_maxbytes = 0\n"
            )
        self._spawn()

    def status_ok(self) -> bool:
        p = run([self.supervisorctl, "-c", self.config, "status"])
        return "web" in p.stdout and "refused" not in p.stdout and "no such" not in p.stdout

    def own_pids(self) -> set[int]:
        p = run([self.supervisorctl, "-c", self.config, "status"])
        return {int(m) for m in re.findall(r"pid (\d+)", p.stdout)}

    def worker_logs(self) -> list[str]:
        return [os.path.join(self.dir, "worker.log")]

    def stop(self) -> None:
        terminate(self.proc, 20)


class Circus(Spawned):
    name = "circus"

    def __init__(self, workdir: str, port: int, circusd: str, circusctl: str) -> None:
        super().__init__(workdir, port)
        self.circusd, self.circusctl = circusd, circusctl
        self.endpoint = f"ipc://{workdir}/circus.sock"
        self.config = os.path.join(workdir, "circus.ini")
        self.out = os.path.join(workdir, "circusd.out")

    def argv(self) -> list[str]:
        return [self.circusd, self.config]

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([self.circusctl, "--endpoint", self.endpoint, "--timeout", "5", *args])

    def start(self) -> None:
        d = self.dir
        stream = "stdout_stream.class = FileStream\nstdout_stream.filename = "
        with open(self.config, "w") as f:
            f.write(
                circus_header(self.endpoint, d)
                + f"[watcher:web]\ncmd = {sys.executable} {WEBSERVER} --fd $(circus.sockets.web)\n"
                "use_sockets = True\nnumprocesses = 1\nwarmup_delay = 0\ngraceful_timeout = 10\n"
                f"copy_env = True\n{stream}{d}/web.log\n\n"
                f"[watcher:worker]\ncmd = {sys.executable} {WORKER} --interval 0.01\n"
                f"numprocesses = 1\ncopy_env = True\n{stream}{d}/worker.log\n\n"
                f"[socket:web]\nhost = 127.0.0.1\nport = {self.port}\n"
            )
        self._spawn()

    def status_ok(self) -> bool:
        p = self.ctl("status")
        return p.returncode == 0 and "web" in p.stdout

    def own_pids(self) -> set[int]:
        pids: set[int] = set()
        for name in SCRIPTS:
            p = self.ctl("list", name)
            pids |= {int(x) for x in re.findall(r"\d+", p.stdout)}
        return pids

    def worker_logs(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.dir, "worker.log*")))

    def stop(self) -> None:
        self.ctl("quit")
        reap(self.proc, 20)


# ---- one soak --------------------------------------------------------------------------------


def line_numbers(paths: list[str]) -> list[int]:
    numbers: list[int] = []
    for path in paths:
        with contextlib.suppress(OSError), open(path, errors="replace") as f:
            numbers += [int(n) for n in re.findall(r"^worker line (\d+)$", f.read(), re.M)]
    return numbers


def soak(tool: Tool, kills: int, args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.monotonic()
    tool.start()
    seen: dict[str, set[int]] = {"web": set(), "worker": set()}
    duplicates = orphans_seen = 0
    answer: list[float] = []
    load = Load(tool.port, args.threads, REQUEST, max_seconds=args.max_seconds)
    note = ""
    try:
        wait_until(tool.status_ok, 30, f"{tool.name} status")
        wait_until(lambda: all(programs().values()), 30, "both programs")
        restarts0 = tool.restarts() if isinstance(tool, Twinvisor) else 0
        for name, pids in programs().items():
            seen[name] |= set(pids)
        load.start()
        wait_until(lambda: load.ok > 0 or load.failed or load.refused, 10, "the first reply")
        since = time.monotonic()
        done = 0
        for _ in range(kills):
            if time.monotonic() - t_start > args.max_seconds:
                note = f"stopped at --max-seconds after {done} kills"
                break
            wait_until(partial(settled, since, args.settle), args.settle + 1, "settle")
            pid = tool.daemon_pid()
            if pid is None:
                note = f"no daemon pid after {done} kills"
                break
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            await_exit(pid)
            tool.restart_after_kill()
            done += 1
            try:
                wait_until(
                    partial(back_after_kill, tool, pid),
                    30,
                    "status again",
                )
                answer.append(time.monotonic() - t0)
            except RuntimeError:
                note = f"status never answered again after kill {done}: {tool.why()}"
            since = time.monotonic()
            now = programs()
            for name, pids in now.items():
                seen[name] |= set(pids)
                duplicates += len(pids) > 1
            own = tool.own_pids()
            orphans_seen = sum(1 for pids in now.values() for p in pids if p not in own)
            if note:
                break
        restarts = tool.restarts() - restarts0 if isinstance(tool, Twinvisor) else None
    finally:
        load.finish()
        tool.stop()
        left = sum(len(p) for p in programs().values())
        swept = sweep()
    numbers = line_numbers(tool.worker_logs())
    distinct = set(numbers)
    lost = (max(distinct) - len(distinct)) if distinct else None
    return {
        "tool": tool.name,
        "kills": done,
        "requests": load.ok + load.failed + load.refused,
        "failed": load.failed,
        "refused": load.refused,
        "errors": load.errors,
        "duplicates": duplicates,
        "orphans_last_kill": orphans_seen,
        "left_after_stop": left,
        "swept": swept,
        "restarted_children": sum(len(s) for s in seen.values()) - 2,
        "restarts_counter": restarts,
        "lines": len(numbers),
        "lost_lines": lost,
        "repeated_lines": len(numbers) - len(distinct),
        "status_p50_ms": ms(percentile(answer, 0.5)),
        "status_p99_ms": ms(percentile(answer, 0.99)),
        "status_max_ms": ms(max(answer) if answer else None),
        "status_never": done - len(answer),
        "wall_s": round(time.monotonic() - t_start, 1),
        "note": note,
    }


ROWS = [
    ("kills", "kills"),
    ("requests", "requests"),
    ("failed requests", "failed"),
    ("refused connections", "refused"),
    ("duplicates (sum over kills)", "duplicates"),
    ("orphans after the last kill", "orphans_last_kill"),
    ("left after the tool's stop", "left_after_stop"),
    ("restarted children", "restarted_children"),
    ("worker lines", "lines"),
    ("lost lines", "lost_lines"),
    ("repeated lines", "repeated_lines"),
    ("status again p50 (ms)", "status_p50_ms"),
    ("status again p99 (ms)", "status_p99_ms"),
    ("status again max (ms)", "status_max_ms"),
    ("status never answered (30 s)", "status_never"),
    ("wall time (s)", "wall_s"),
]


def table(results: list[dict[str, Any]]) -> str:
    head = ["", *[r["tool"] for r in results]]
    rows = [head] + [[label, *[str(r.get(key, "")) for r in results]] for label, key in ROWS]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--peer-kills", type=int, help="kills for circus/supervisord (default --kills)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--settle", type=float, default=2.1)
    p.add_argument("--max-seconds", type=float, default=900.0, help="per tool")
    p.add_argument("--only", action="append", choices=["twinvisor", "circus", "supervisord"])
    p.add_argument("--json", help="write the raw results here")
    args = p.parse_args()
    only = set(args.only or ["twinvisor", "circus", "supervisord"])
    peer_kills = args.peer_kills if args.peer_kills is not None else args.kills
    load0 = load_average()
    results: list[dict[str, Any]] = []
    makers: list[tuple[str, Callable[[str, int], Tool | None], int]] = []
    tv = find_tool("TWINVISOR", "twinvisor")
    makers.append(("twinvisor", lambda d, port: Twinvisor(d, port, tv) if tv else None, args.kills))
    cd, cc = find_tool("CIRCUSD", "circusd"), find_tool("CIRCUSCTL", "circusctl")
    makers.append(
        ("circus", lambda d, port: Circus(d, port, cd, cc) if cd and cc else None, peer_kills)
    )
    sd, sc = find_tool("SUPERVISORD", "supervisord"), find_tool("SUPERVISORCTL", "supervisorctl")
    makers.append(
        (
            "supervisord",
            lambda d, port: Supervisord(d, port, sd, sc) if sd and sc else None,
            peer_kills,
        )
    )
    try:
        for name, make, kills in makers:
            if name not in only:
                continue
            workdir = tempfile.mkdtemp(prefix="tvks", dir="/tmp")
            tool = make(workdir, free_port())
            if tool is None:
                results.append({"tool": name, "note": "not installed"})
                continue
            print(f"{name}: {kills} kills ...", file=sys.stderr, flush=True)
            try:
                results.append(soak(tool, kills, args))
            except Exception as e:  # one tool's failure must not hide the others' figures
                results.append({"tool": name, "note": f"error: {e}"})
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    finally:
        sweep()
    print(
        f"kill soak: {args.kills} kills (peers {peer_kills}), {args.threads} client threads, "
        f"settle {args.settle:g} s; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}; load average before / after: {load0} / {load_average()}"
    )
    print(table(results))
    for r in results:
        if r.get("note") or r.get("errors"):
            print(f"{r['tool']}: {r.get('note', '')} {r.get('errors', '')}".rstrip())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
