#!/usr/bin/env python3
"""twinvisor beside supervisord, circus and pm2: the same workloads in one run (issue 16).

    bench/setup_peers.sh HEAD before                  # once: peers + a non-editable twinvisor
    .venv/bin/python bench/bench_peers.py --json /tmp/peers.json   # every .peers/twinvisor-*

`--twinvisor LABEL=PATH` is repeatable (before and after side by side, each against the peers);
without it, every bench/.peers/twinvisor-*/bin/twinvisor. Measure on those non-editable
installs: an editable one under PYTHONDONTWRITEBYTECODE=1 compiles every module at every call.

Method. Every tool runs its programs with its defaults except where said; every process a tool
starts carries TVBENCH_TAG=<tag of that tool and phase> in its environment (circus: copy_env),
so "the tool's long-lived processes" are the tagged processes that are not programs (twinvisor:
supervisor + guard; supervisord; circusd and any daemon it starts; pm2's God daemon; the CLIs
have exited when memory is read), and "its programs" the tagged `sleep` processes.

- memory: RSS and PSS (psutil, /proc/PID/smaps_rollup) summed over the long-lived processes,
  with 10 programs (after the idle windows), 200 and 1000 (1 s after all are up).
- idle: 10 `sleep infinity` programs per tool, all tools at once (an idle daemon does not wake
  another); over each --idle-seconds window, voluntary + involuntary context switches summed over
  every thread of every long-lived process (wake-ups) and their CPU time (schedstat).
- SIGKILL -> new pid: child `sh -c 'echo $$ >FIFO; exec sleep infinity'`; from kill() until the
  new pid arrives on the FIFO. 1.3 s between kills (outlives min_uptime / startsecs / pm2's
  min_uptime of 1 s: a crash, not a failed start).
- SIGKILL -> port accepts: a Python child that binds 127.0.0.1:PORT itself (no socket passing),
  then reports its pid; from kill() until a connect() to PORT succeeds (tried every 1 ms).
- N programs up: from launching the tool (`twinvisor up`, `supervisord -n`, `circusd`,
  `pm2 start ecosystem.json`, daemon start included) until N `sleep infinity` of the tool exist
  (polled every 20 ms). twinvisor min_uptime = 0, supervisord startsecs = 0.
- status: wall time of `twinvisor status`, `supervisorctl status`, `circusctl status`,
  `pm2 jlist` with the programs up (one warm-up call, then median of --status-calls).
- shutdown: `twinvisor down`, SIGTERM to supervisord / circusd, `pm2 kill`; until the command has
  returned and every process of the tool (programs and daemons) is gone.
- RSS growth per program: least-squares slope of RSS over 10/200/1000 programs, and the slopes
  10->200 and 200->1000 (equal if the growth is linear).

Each figure: median of --runs (min-max shown); 1000 programs: --runs-1000 (default 1).
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import glob
import json
import os
import platform
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import psutil
from common import HERE, TAG_KEY, find_tool, load_average, pid_fifo, tagged, tagged_env

Program = tuple[str, list[str]]
SLEEP = shutil.which("sleep") or "/bin/sleep"
SH = shutil.which("sh") or "/bin/sh"
PYTHON = shutil.which("python3") or sys.executable
PORT_CHILD = """\
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
with open(sys.argv[2], "w") as f:
    f.write(f"{os.getpid()}\\n")
while True:
    s.accept()[0].close()
"""
POLL = 0.02


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- processes -------------------------------------------------------------------------------


def is_program(cmd: list[str]) -> bool:
    """A program the bench gave a tool (not one of the tool's own processes)."""
    if not cmd:
        return False
    return os.path.basename(cmd[0]) in ("sleep", "sh") or any(
        a.endswith("port_child.py") for a in cmd
    )


class ProgramCounter:
    """Counts a tool's `sleep` programs: sleep processes whose environment has its tag.

    Cheap to call every 50 ms while a tool starts 1000 programs on 2 CPUs: a pid already
    judged is not read again (a `sleep` does not exec anything else, and these never exit
    while a start is measured), so each look reads /proc only for the processes that are new
    or were not a `sleep` yet (one still between its fork and its exec). Reading every
    process's stat at every look (over 1000 reads) took CPU from the tool being measured:
    twinvisor's 1000 up read 2.45 s that way, 1.61 s this way (docs/benchmarks.md)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.known: dict[int, bool] = {}

    def count(self) -> int:
        n = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            verdict = self.known.get(pid)
            if verdict is None:
                verdict = self._judge(pid)
                if verdict is None:
                    continue
                self.known[pid] = verdict
            n += verdict
        return n

    def _judge(self, pid: int) -> bool | None:
        """True: a tagged sleep; False: a sleep of someone else; None: not (yet) a sleep."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                head = f.read(64)
            if head.split(" ", 2)[1] != "(sleep)" or " Z " in head:
                return None
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except (OSError, IndexError):
            return None
        if not env:  # just exec'd: its environment is not readable yet
            return None
        return f"{TAG_KEY}={self.tag}".encode() in env.split(b"\0")


def daemons(tag: str) -> list[psutil.Process]:
    out = []
    for p in tagged(tag):
        with contextlib.suppress(psutil.Error):
            if not is_program(p.cmdline()):
                out.append(p)
    return out


def memory(procs: list[psutil.Process]) -> tuple[float, float]:
    """(RSS, PSS) in MiB, summed over the processes."""
    rss = pss = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            full = p.memory_full_info()
            rss += full.rss / 2**20
            pss += full.pss / 2**20
    return rss, pss


def cpu_and_switches(procs: list[psutil.Process]) -> tuple[float, int]:
    """(CPU seconds, context switches) summed over every thread of the processes."""
    cpu, switches = 0.0, 0
    for p in procs:
        for tid in os.listdir(f"/proc/{p.pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{p.pid}/task/{tid}/schedstat") as f:
                    cpu += int(f.read().split()[0]) / 1e9
                with open(f"/proc/{p.pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                            switches += int(line.split()[1])
    return cpu, switches


def gone(pids: list[int]) -> bool:
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return False
    return True


def sweep(tag: str) -> None:
    """SIGKILL every process with the tag, again until none is left (a twin revived)."""
    for _ in range(20):
        found = tagged(tag)
        if not found:
            return
        for p in found:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(found, timeout=5)
    log(f"WARNING: processes tagged {tag} are left")


# ---- the tools -------------------------------------------------------------------------------


class Tool(abc.ABC):
    """One supervisor, started on a config of `programs` in its own directory."""

    kind = ""

    def __init__(self, label: str, workdir: str) -> None:
        self.label = label
        self.dir = workdir
        self.tag = ""
        self.popen: subprocess.Popen[bytes] | None = None

    def begin(self, phase: str, programs: list[Program], fast: bool) -> None:
        """Write the config into a fresh directory and launch the tool (not waiting for it)."""
        self.tag = f"tvb{os.getpid()}-{self.label}-{phase}"
        self.run = os.path.join(self.dir, phase)
        os.makedirs(self.run, exist_ok=True)
        self.write(programs, fast)
        self.popen = subprocess.Popen(
            self.launch_argv(),
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def env(self) -> dict[str, str]:
        return tagged_env(self.tag)

    def cli(self, argv: list[str], timeout: float = 60) -> None:
        subprocess.run(
            argv,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def settled(self, timeout: float = 60) -> None:  # noqa: B027 (most tools: nothing to do)
        """For tools launched by a command that returns (`up`, `pm2 start`): wait for it."""

    def end(self) -> None:
        """Kill everything of this phase, whatever state it is in (SIGKILL to every tagged
        process: a graceful `pm2 kill` of 1000 programs alone takes a minute). twinvisor is
        asked to go down first: its twins revive each other between two SIGKILLs."""
        if self.kind == "twinvisor":
            with contextlib.suppress(Exception):
                self.shutdown()
        if self.popen is not None:
            with contextlib.suppress(Exception):
                self.popen.kill()
                self.popen.wait(5)
        sweep(self.tag)
        self.popen = None

    @abc.abstractmethod
    def write(self, programs: list[Program], fast: bool) -> None: ...
    @abc.abstractmethod
    def launch_argv(self) -> list[str]: ...
    @abc.abstractmethod
    def status_argv(self) -> list[str]: ...
    @abc.abstractmethod
    def shutdown(self) -> None:
        """Ask the tool to stop its programs and exit (returns when the command returned)."""


class Twinvisor(Tool):
    kind = "twinvisor"

    def __init__(self, label: str, workdir: str, exe: str) -> None:
        super().__init__(label, workdir)
        self.exe = exe

    def write(self, programs: list[Program], fast: bool) -> None:
        self.cfg = os.path.join(self.run, "tv.toml")
        lines = ["[daemon]", f"run_dir = {json.dumps(os.path.join(self.run, 'r'))}", ""]
        for name, argv in programs:
            lines += [f"[program.{name}]", f"command = {json.dumps(argv)}"]
            lines += ["min_uptime = 0"] if fast else []
            lines.append("")
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines))

    def launch_argv(self) -> list[str]:
        return [self.exe, "-c", self.cfg, "up"]

    def settled(self, timeout: float = 60) -> None:
        if self.popen is not None:
            self.popen.wait(timeout)

    def status_argv(self) -> list[str]:
        return [self.exe, "-c", self.cfg, "status"]

    def shutdown(self) -> None:
        self.cli([self.exe, "-c", self.cfg, "down", "--timeout", "30"])


class Supervisord(Tool):
    kind = "supervisord"

    def __init__(self, label: str, workdir: str, supervisord: str, supervisorctl: str) -> None:
        super().__init__(label, workdir)
        self.supervisord, self.supervisorctl = supervisord, supervisorctl

    def write(self, programs: list[Program], fast: bool) -> None:
        d = self.run
        self.cfg = os.path.join(d, "sv.conf")
        text = (
            f"[unix_http_server]\nfile = {d}/sv.sock\n\n"
            f"[supervisord]\nlogfile = {d}/supervisord.log\npidfile = {d}/supervisord.pid\n"
            f"childlogdir = {d}\nnodaemon = true\nminfds = 8192\n\n"
            "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
            "supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl = unix://{d}/sv.sock\n"
        )
        for name, argv in programs:
            cmd = " ".join(shlex.quote(a) for a in argv).replace("%", "%%")
            text += f"\n[program:{name}]\ncommand = {cmd}\nautorestart = true\n"
            text += "startsecs = 0\n" if fast else ""
        with open(self.cfg, "w") as f:
            f.write(text)

    def launch_argv(self) -> list[str]:
        return [self.supervisord, "-n", "-c", self.cfg]

    def status_argv(self) -> list[str]:
        return [self.supervisorctl, "-c", self.cfg, "status"]

    def shutdown(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)


class Circus(Tool):
    kind = "circus"

    def __init__(self, label: str, workdir: str, circusd: str, circusctl: str) -> None:
        super().__init__(label, workdir)
        self.circusd, self.circusctl = circusd, circusctl

    def write(self, programs: list[Program], fast: bool) -> None:
        d = self.run
        self.cfg = os.path.join(d, "circus.ini")
        self.endpoint = f"ipc://{d}/ctl.sock"
        text = (
            f"[circus]\nendpoint = {self.endpoint}\npubsub_endpoint = ipc://{d}/pubsub.sock\n"
            f"stats_endpoint = ipc://{d}/stats.sock\nstatsd = False\n\n"
        )
        for name, argv in programs:
            text += (
                f"[watcher:{name}]\ncmd = {shlex.quote(argv[0])}\n"
                f"args = {' '.join(shlex.quote(a) for a in argv[1:])}\n"
                "numprocesses = 1\ncopy_env = True\n\n"
            )
        with open(self.cfg, "w") as f:
            f.write(text)

    def launch_argv(self) -> list[str]:
        return [self.circusd, self.cfg]

    def status_argv(self) -> list[str]:
        return [self.circusctl, "--endpoint", self.endpoint, "status"]

    def shutdown(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)


class PM2(Tool):
    kind = "pm2"

    def __init__(self, label: str, workdir: str, pm2: str) -> None:
        super().__init__(label, workdir)
        self.pm2 = pm2

    def env(self) -> dict[str, str]:
        # its own PM2_HOME: never ~/.pm2, and the God daemon dies with the phase
        env = super().env()
        env["PM2_HOME"] = os.path.join(self.run, "pm2")
        return env

    def write(self, programs: list[Program], fast: bool) -> None:
        self.cfg = os.path.join(self.run, "ecosystem.json")
        apps = [
            {
                "name": name,
                "script": argv[0],
                "args": argv[1:],
                "interpreter": "none",
                "autorestart": True,
            }
            for name, argv in programs
        ]
        with open(self.cfg, "w") as f:
            json.dump({"apps": apps}, f)

    def launch_argv(self) -> list[str]:
        return [self.pm2, "start", self.cfg]

    def settled(self, timeout: float = 60) -> None:
        if self.popen is not None:
            self.popen.wait(timeout)

    def status_argv(self) -> list[str]:
        return [self.pm2, "jlist"]

    def shutdown(self) -> None:
        self.cli([self.pm2, "kill"])


# ---- the workloads ---------------------------------------------------------------------------


def sleepers(n: int) -> list[Program]:
    return [(f"p{i:04d}", [SLEEP, "infinity"]) for i in range(n)]


def wait_for(cond: Callable[[], bool], timeout: float, poll: float = POLL) -> float | None:
    """Monotonic time at which `cond` was first seen true, None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(poll)
    return None


def up_with(tool: Tool, phase: str, n: int, timeout: float) -> float | None:
    """Launch with n sleepers; seconds until all n exist (None: not within timeout)."""
    counter = ProgramCounter("")
    t0 = time.monotonic()
    tool.begin(phase, sleepers(n), fast=True)
    counter.tag = tool.tag
    seen = wait_for(lambda: counter.count() >= n, timeout, poll=0.05 if n > 200 else POLL)
    return None if seen is None else seen - t0


def status_times(tool: Tool, calls: int) -> list[float]:
    tool.cli(tool.status_argv())  # warm-up
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        tool.cli(tool.status_argv())
        out.append((time.perf_counter() - t0) * 1000)
    return out


def shutdown_time(tool: Tool) -> float | None:
    pids = [p.pid for p in tagged(tool.tag)]
    t0 = time.monotonic()
    tool.shutdown()
    if tool.popen is not None and tool.popen.poll() is None and tool.kind != "twinvisor":
        with contextlib.suppress(subprocess.TimeoutExpired):
            tool.popen.wait(30)
    seen = wait_for(lambda: gone(pids), 30, poll=0.005)
    return None if seen is None else seen - t0


def bench_scale(
    tool: Tool, n: int, runs: int, calls: int, res: dict[str, list[float]], shut: bool
) -> None:
    """n programs up, memory, status, shutdown; `runs` times; samples appended to res."""
    for r in range(runs):
        try:
            took = up_with(tool, f"n{n}-{r}", n, timeout=120)
            if took is None:
                log(f"  {tool.label}: {n} programs not up within 120 s")
                continue
            tool.settled()
            res[f"up{n}"].append(took)
            time.sleep(1.0)
            rss, pss = memory(daemons(tool.tag))
            res[f"rss{n}"].append(rss)
            res[f"pss{n}"].append(pss)
            if calls:
                res[f"status{n}"] += [statistics.median(status_times(tool, calls))]
            if shut:
                s = shutdown_time(tool)
                if s is not None:
                    res[f"down{n}"].append(s)
            log(f"  {tool.label}: {n} up {took * 1000:.0f} ms, RSS {rss:.1f} PSS {pss:.1f} MiB")
        finally:
            tool.end()


def connects(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
    return True


def bench_kill(tool: Tool, kind: str, runs: int) -> list[float]:
    """kind "pid": kill -> new pid on the FIFO; "port": kill -> the child's port accepts."""
    samples: list[float] = []
    d = os.path.join(tool.dir, f"kill-{kind}")
    os.makedirs(d, exist_ok=True)
    port = 0
    fifo = os.path.join(d, "pid.fifo")
    with pid_fifo(fifo) as next_pid:
        if kind == "pid":
            argv = [SH, "-c", f"echo $$ >{fifo}; exec {SLEEP} infinity"]
        else:
            child = os.path.join(d, "port_child.py")
            with open(child, "w") as f:
                f.write(PORT_CHILD)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            argv = [PYTHON, child, str(port), fifo]
        try:
            tool.begin(f"kill-{kind}", [("k", argv)], fast=False)
            pid = next_pid(30)
            tool.settled()
            if pid is None:
                log(f"  {tool.label}: the child never reported")
                return samples
            for _ in range(runs):
                time.sleep(1.3)  # outlive min_uptime / startsecs: a crash, not a failed start
                try:
                    pidfd = os.pidfd_open(pid)
                except ProcessLookupError:  # replaced already (not by us): take the new one
                    log(f"  {tool.label}: pid {pid} had gone before the kill")
                    pid = next_pid(15) or pid
                    continue
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                if kind == "pid":
                    os.close(pidfd)
                    new = next_pid(15)
                    t1 = time.perf_counter()
                else:
                    # the dying child still holds its socket until it has exited
                    select.select([pidfd], [], [], 5)
                    os.close(pidfd)
                    ok = wait_for(lambda: connects(port), 15, poll=0.001)
                    t1 = time.perf_counter()
                    new = next_pid(5) if ok else None
                if new is None or new == pid:
                    log(f"  {tool.label}: no replacement within 15 s")
                    break
                samples.append((t1 - t0) * 1000)
                pid = new
        finally:
            tool.end()
    return samples


def bench_idle(tools: list[Tool], seconds: float, windows: int, res: Results) -> None:
    try:
        for t in tools:
            t.begin("idle", sleepers(10), fast=False)
        for t in tools:
            t.settled()
            counter = ProgramCounter(t.tag)
            if wait_for(lambda c=counter: c.count() >= 10, 60) is None:  # type: ignore[misc]
                raise RuntimeError(f"{t.label}: 10 programs not up")
        time.sleep(3.0)  # start-up work (min_uptime timers, log opens) done
        procs = {t.label: daemons(t.tag) for t in tools}
        for t in tools:
            log(f"  {t.label}: long-lived processes {[p.pid for p in procs[t.label]]}")
            res[t.label]["procs"].append(len(procs[t.label]))
        for w in range(windows):
            before = {t.label: cpu_and_switches(procs[t.label]) for t in tools}
            time.sleep(seconds)
            for t in tools:
                cpu1, cs1 = cpu_and_switches(procs[t.label])
                cpu0, cs0 = before[t.label]
                res[t.label]["idle_cpu"].append((cpu1 - cpu0) * 1000)
                res[t.label]["idle_wake"].append(float(cs1 - cs0))
                log(
                    f"  window {w + 1}: {t.label}: {cs1 - cs0} wake-ups, "
                    f"{(cpu1 - cpu0) * 1000:.1f} ms"
                )
        for t in tools:
            rss, pss = memory(procs[t.label])
            res[t.label]["rss10"].append(rss)
            res[t.label]["pss10"].append(pss)
    finally:
        for t in tools:
            t.end()


# ---- the report ------------------------------------------------------------------------------

Results = dict[str, dict[str, list[float]]]


def slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else None


def growth(res: dict[str, list[float]]) -> dict[str, list[float]]:
    """KiB per program: least-squares over 10/200/1000, and the two segments."""
    pts = [(float(n), statistics.median(res[f"rss{n}"])) for n in (10, 200, 1000) if res[f"rss{n}"]]
    out: dict[str, list[float]] = {}
    fit = slope(pts)
    if fit is not None and len(pts) == 3:
        out["kib_fit"] = [fit * 1024]
        out["kib_10_200"] = [(pts[1][1] - pts[0][1]) / 190 * 1024]
        out["kib_200_1000"] = [(pts[2][1] - pts[1][1]) / 800 * 1024]
    return out


FIGURES = [  # key, label, unit, digits, scale
    ("rss10", "daemon RSS, 10 programs", "MiB", 1, 1.0),
    ("pss10", "daemon PSS, 10 programs", "MiB", 1, 1.0),
    ("rss200", "daemon RSS, 200 programs", "MiB", 1, 1.0),
    ("pss200", "daemon PSS, 200 programs", "MiB", 1, 1.0),
    ("idle_wake", "idle wake-ups per window, 10 programs", "", 0, 1.0),
    ("idle_cpu", "idle CPU per window, 10 programs", "ms", 2, 1.0),
    ("kill_pid", "SIGKILL -> new pid", "ms", 1, 1.0),
    ("kill_port", "SIGKILL -> own port accepts (Python child)", "ms", 1, 1.0),
    ("up200", "200 programs up", "s", 2, 1.0),
    ("status200", "status CLI, 200 programs", "ms", 1, 1.0),
    ("down200", "shutdown of 200 programs", "s", 2, 1.0),
    ("up1000", "1000 programs up", "s", 2, 1.0),
    ("status1000", "status CLI, 1000 programs", "ms", 1, 1.0),
    ("rss1000", "daemon RSS, 1000 programs", "MiB", 1, 1.0),
    ("pss1000", "daemon PSS, 1000 programs", "MiB", 1, 1.0),
    ("kib_fit", "RSS growth per program (fit 10/200/1000)", "KiB", 1, 1.0),
    ("kib_10_200", "  RSS growth per program 10->200", "KiB", 1, 1.0),
    ("kib_200_1000", "  RSS growth per program 200->1000", "KiB", 1, 1.0),
    ("procs", "long-lived processes counted", "", 0, 1.0),
]


def cell(xs: list[float], unit: str, digits: int) -> str:
    if not xs:
        return "n/a"
    s = f"{statistics.median(xs):.{digits}f}{' ' + unit if unit else ''}"
    if len(xs) > 1 and min(xs) != max(xs):
        s += f" ({min(xs):.{digits}f}-{max(xs):.{digits}f})"
    return s


def table(res: Results, tvs: list[str], peers: list[str]) -> str:
    head = ["figure", *tvs, *peers, "best peer"] + [f"{t} / best" for t in tvs]
    rows = [head]
    for key, label, unit, digits, _ in FIGURES:
        cols = [cell(res[n].get(key, []), unit, digits) for n in tvs + peers]
        meds = {p: statistics.median(res[p][key]) for p in peers if res[p].get(key)}
        best = min(meds, key=lambda p: meds[p]) if meds else None
        if best is None or key == "procs":
            extra = ["-"] + ["-" for _ in tvs]
        else:
            ratios = []
            for t in tvs:
                xs = res[t].get(key)
                ok = xs and meds[best] > 0
                ratios.append(f"{statistics.median(xs) / meds[best]:.2f}" if ok and xs else "n/a")
            extra = [f"{best} {meds[best]:.{digits}f}", *ratios]
        rows.append([label, *cols, *extra])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# ---- main ------------------------------------------------------------------------------------


def twinvisors(given: list[str] | None) -> list[tuple[str, str]]:
    if given:
        out = []
        for g in given:
            label, sep, path = g.partition("=")
            out.append((f"twinvisor-{label}", path) if sep else ("twinvisor", label))
        return out
    found = sorted(glob.glob(os.path.join(HERE, ".peers", "twinvisor-*", "bin", "twinvisor")))
    if not found:
        sys.exit("no twinvisor: run bench/setup_peers.sh, or give --twinvisor LABEL=PATH")
    return [(p.split(os.sep)[-3], p) for p in found]


def describe(exe: str) -> str:
    ref = os.path.join(os.path.dirname(os.path.dirname(exe)), "twinvisor-ref")
    out = subprocess.run([exe, "version"], capture_output=True, text=True, check=False).stdout
    with contextlib.suppress(OSError), open(ref) as f:
        return f"{out.strip()} (installed from {f.read().strip()})"
    return out.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--twinvisor", action="append", metavar="LABEL=PATH", help="repeatable")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median), default 3")
    ap.add_argument("--kills", type=int, default=5, help="kills per kill figure, default 5")
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--idle-runs", type=int, default=3, help="idle windows, default 3")
    ap.add_argument("--status-calls", type=int, default=5, help="status calls per run")
    ap.add_argument("--runs-1000", type=int, default=1, help="runs with 1000 programs")
    ap.add_argument("--no-peers-1000", action="store_true", help="1000 programs: twinvisor only")
    ap.add_argument("--quick", action="store_true", help="1 run, 3 kills, one 10 s idle window")
    ap.add_argument("--only", action="append", choices=["idle", "kill", "200", "1000"])
    ap.add_argument("--json", metavar="FILE", help="also write the raw samples")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.kills, args.idle_seconds, args.idle_runs = 1, 3, 10.0, 1
        args.status_calls = 3
    parts = set(args.only or ["idle", "kill", "200", "1000"])

    top = tempfile.mkdtemp(prefix="tvp", dir="/tmp")
    tools: list[Tool] = []
    for label, exe in twinvisors(args.twinvisor):
        tools.append(Twinvisor(label, os.path.join(top, label), exe))
    sd, sctl = find_tool("SUPERVISORD", "supervisord"), find_tool("SUPERVISORCTL", "supervisorctl")
    cd, cctl = find_tool("CIRCUSD", "circusd"), find_tool("CIRCUSCTL", "circusctl")
    pm2 = os.environ.get("PM2") or os.path.join(
        HERE, ".peers", "node", "node_modules", ".bin", "pm2"
    )
    if sd and sctl:
        tools.append(Supervisord("supervisord", os.path.join(top, "sd"), sd, sctl))
    if cd and cctl:
        tools.append(Circus("circus", os.path.join(top, "ci"), cd, cctl))
    if os.access(pm2, os.X_OK):
        tools.append(PM2("pm2", os.path.join(top, "pm2"), pm2))
    tvs = [t.label for t in tools if t.kind == "twinvisor"]
    peers = [t.label for t in tools if t.kind != "twinvisor"]
    log(f"tools: {', '.join(tvs + peers)}")
    for t in tools:
        os.makedirs(t.dir, exist_ok=True)
    res: Results = {t.label: {k: [] for k, *_ in FIGURES} for t in tools}
    load0, started = load_average(), time.monotonic()
    try:
        if "idle" in parts:
            log(f"idle, 10 programs, {args.idle_runs} x {args.idle_seconds:g} s, all tools at once")
            bench_idle(tools, args.idle_seconds, args.idle_runs, res)
        if "kill" in parts:
            for kind in ("pid", "port"):
                log(f"SIGKILL -> {kind}, {args.kills} kills")
                for t in tools:
                    try:
                        res[t.label][f"kill_{kind}"] = bench_kill(t, kind, args.kills)
                    except (OSError, ValueError, OverflowError, RuntimeError) as e:
                        log(f"  {t.label}: failed: {e!r}")
                    log(f"  {t.label}: {[round(x, 1) for x in res[t.label][f'kill_{kind}']]} ms")
        if "200" in parts:
            log(f"200 programs, {args.runs} runs, tools alternating")
            for _ in range(args.runs):
                for t in tools:
                    bench_scale(t, 200, 1, args.status_calls, res[t.label], shut=True)
        if "1000" in parts:
            log(f"1000 programs, {args.runs_1000} runs")
            for t in tools:
                if t.kind == "twinvisor" or not args.no_peers_1000:
                    bench_scale(t, 1000, args.runs_1000, args.status_calls, res[t.label], False)
    finally:
        for t in tools:
            t.end()
        shutil.rmtree(top, ignore_errors=True)
    for t in tools:
        res[t.label].update(growth(res[t.label]))
    print(
        f"bench_peers: median of {args.runs} runs ({args.kills} kills; idle: {args.idle_runs} "
        f"windows of {args.idle_seconds:g} s; 1000 programs: {args.runs_1000} run), "
        "min-max in brackets"
    )
    print(
        f"load average at start / end: {load0} / {load_average()}; "
        f"took {time.monotonic() - started:.0f} s"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    for t in tools:
        if isinstance(t, Twinvisor):
            print(f"{t.label}: {t.exe}: {describe(t.exe)}")
    print(table(res, tvs, peers))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
