#!/usr/bin/env python3
"""Core benchmark: twinvisor next to supervisord.

Run from the repository root with the project venv (psutil is needed):

    .venv/bin/python bench/bench_core.py            # defaults: --runs 5, --idle-seconds 20
    .venv/bin/python bench/bench_core.py --runs 3 --idle-seconds 5     # quicker

Figures (every figure is the median of --runs runs unless said otherwise):

"The daemon" is every long-lived process of the tool (found by the config path in its command
line): twinvisor's daemon *and its guard* (`twinvisor up` starts both); supervisord.

1. restart after SIGKILL: the child is ``sh -c 'echo $$ >FIFO; exec sleep infinity'``; the bench
   holds the FIFO open, kill -9s the child and times from the kill() call to the moment the
   *new* child's pid arrives on the FIFO (so the figure includes the new child's exec of sh).
   Between kills the bench waits 1.3 s, so the child has outlived twinvisor's min_uptime and
   supervisord's startsecs (both 1 s, the defaults) and the kill is a crash of a healthy
   program, not a failed start.
2. idle daemon: 10 programs ``sleep infinity``; CPU = delta of on-CPU time of every thread
   (/proc/PID/task/*/schedstat, ns; utime+stime from /proc/PID/stat as a fallback) and
   wake-ups = delta of voluntary+nonvoluntary context switches summed over every thread
   (/proc/PID/task/*/status) over --idle-seconds.  The two daemons are measured in the same
   windows (at the same time; an idle daemon does not wake the other); median of
   --idle-runs windows (default 3) so that the default bench stays within a few minutes.
3. daemon RSS (and USS) with 10 programs (at the end of the idle windows) and with 200,
   summed over the tool's processes (RSS sums count shared pages twice; USS does not); with
   200 programs the main process alone is shown too.
4. 200 programs up: from launching the daemon (``twinvisor up`` / ``supervisord -n -c``)
   until the tool reports all 200 RUNNING (twinvisor: min_uptime = 0, supervisord:
   startsecs = 0, so RUNNING means spawned). The bench polls the tool's own API every 20 ms
   (twinvisor: GET /status on its control socket; supervisord: getAllProcessInfo over its
   XML-RPC unix socket). For twinvisor the time at which ``twinvisor up`` returned is also shown.
5. status latency with 200 programs: wall time of ``twinvisor -c CFG status`` and
   ``supervisorctl -c CFG status`` (output to a pipe), median of --status-calls (10).

Peers: supervisord/supervisorctl come from $SUPERVISORD / $SUPERVISORCTL, else PATH, else the
``bench/.peers`` venv that ``bench/setup_peers.sh`` creates. Without them the supervisord
column says "not installed". twinvisor comes from $TWINVISOR, else the ``twinvisor`` script next
to this interpreter, else PATH.

Every run uses a short temporary dir under /tmp (AF_UNIX paths are limited to 107 bytes) and
every process started is killed at the end, even on error: the bench tags its daemons'
environment with TVBENCH_TAG and sweeps every process carrying the tag.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import http.client
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
import textwrap
import time
import xmlrpc.client
from collections.abc import Callable
from typing import Any

try:
    import psutil
except ImportError:  # pragma: no cover
    sys.exit("bench_core.py needs psutil: run it with the project venv (.venv/bin/python)")

from common import HERE, find_tool, load_average, pid_fifo

TAG = f"tvbench-{os.getpid()}"
POLL = 0.02
NA = None  # a figure that could not be measured

# ---------------------------------------------------------------------------------------------
# locating the tools


def find_twinvisor() -> list[str]:
    env = os.environ.get("TWINVISOR")
    if env:
        return [env]
    local = os.path.join(os.path.dirname(sys.executable), "twinvisor")
    if os.access(local, os.X_OK):
        return [local]
    found = shutil.which("twinvisor")
    return [found] if found else [sys.executable, "-m", "twinvisor"]


# ---------------------------------------------------------------------------------------------
# process bookkeeping and clean-up


PYCACHE: str | None = None  # set by main(): bytecode cache for both tools' CLIs and daemons


def bench_env() -> dict[str, str]:
    env = dict(os.environ, TVBENCH_TAG=TAG)
    if PYCACHE:
        # an editable install run with PYTHONDONTWRITEBYTECODE=1 recompiles every module at
        # every start, while the pip-installed peer has its .pyc: give both a warm cache
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = PYCACHE
    for key in ("TWINVISOR_CONFIG", "TWINVISOR_SOCKET", "TWINVISOR_RUN_DIR"):
        env.pop(key, None)
    return env


def tagged_processes() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        if p.pid == os.getpid():
            continue
        try:
            if p.environ().get("TVBENCH_TAG") == TAG:
                out.append(p)
        except (psutil.Error, OSError):
            pass
    return out


def kill_tree(pids: list[int]) -> None:
    """SIGKILL the processes and their process groups; reap our own children."""
    for pid in pids:
        with contextlib.suppress(OSError):
            pgid = os.getpgid(pid)
            if pgid != os.getpgrp():  # never our own group (a `twinvisor up` client)
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.waitpid(pid, os.WNOHANG)


def sweep() -> int:
    """Kill every process that carries this bench's tag; return how many there were."""
    left = tagged_processes()
    for _ in range(20):
        if not left:
            break
        kill_tree([p.pid for p in left])
        time.sleep(0.05)
        left = tagged_processes()
    return len(left)


# ---------------------------------------------------------------------------------------------
# tiny clients for the two daemons' APIs (so polling does not pay a CLI start each time)


def http_unix_get(path: str, target: str, timeout: float = 5.0) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise OSError(f"HTTP error: {head[:80]!r}")
    return json.loads(body)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.unix_path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.unix_path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self.unix_path)


def supervisor_rpc(sock: str) -> Any:
    return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_UnixTransport(sock))


# ---------------------------------------------------------------------------------------------
# the two tools behind one interface


class Tool(abc.ABC):
    name = ""
    cfg = ""  # the config file the tool is started on

    def __init__(self, workdir: str) -> None:
        self.dir = workdir
        self.daemon_pid: int | None = None
        self.popen: subprocess.Popen[bytes] | None = None

    # config: programs is a list of (name, argv)
    @abc.abstractmethod
    def write_config(self, programs: list[tuple[str, list[str]]], fast: bool) -> None: ...
    @abc.abstractmethod
    def start(self) -> None: ...
    @abc.abstractmethod
    def finish_start(self, timeout: float = 60) -> None: ...
    @abc.abstractmethod
    def states(self) -> dict[str, str]: ...
    @abc.abstractmethod
    def status_cli(self) -> list[str]: ...
    @abc.abstractmethod
    def stop(self) -> None: ...

    def wait_all_running(self, n: int, timeout: float) -> float | None:
        """Poll until n programs are RUNNING; the monotonic time it was seen, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                st = self.states()
            except (OSError, ValueError, xmlrpc.client.Error, http.client.HTTPException):
                st = {}
            if len(st) >= n and all(v == "RUNNING" for v in st.values()):
                return time.monotonic()
            time.sleep(POLL)
        return None

    def supervisor_pids(self) -> list[int]:
        """The tool's own long-lived processes: every tagged process whose command line names
        this config (twinvisor: the daemon and its guard; supervisord: supervisord)."""
        pids = []
        for p in tagged_processes():
            with contextlib.suppress(psutil.Error):
                cmd = p.cmdline()
                if self.cfg in cmd and not {"up", "status", "down"} & set(cmd):
                    pids.append(p.pid)
        if self.daemon_pid and self.daemon_pid not in pids:
            pids.append(self.daemon_pid)
        return sorted(pids)

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        pids = [self.daemon_pid] if self.daemon_pid else []
        if self.popen is not None:
            pids.append(self.popen.pid)
        kill_tree(pids)
        if self.popen is not None:
            with contextlib.suppress(Exception):
                self.popen.wait(5)


class Twinvisor(Tool):
    name = "twinvisor"

    def __init__(self, workdir: str, exe: list[str]) -> None:
        super().__init__(workdir)
        self.exe = exe
        self.cfg = os.path.join(workdir, "tv.toml")
        self.run = os.path.join(workdir, "r")
        self.sock = os.path.join(self.run, "twinvisor.sock")
        self.up_returned: float | None = None

    def write_config(self, programs: list[tuple[str, list[str]]], fast: bool) -> None:
        lines = ["[daemon]", f"run_dir = {json.dumps(self.run)}", ""]
        for name, argv in programs:
            lines += [f"[program.{name}]", f"command = {json.dumps(argv)}"]
            if fast:
                lines.append("min_uptime = 0")
            lines.append("")
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines))

    def start(self) -> None:
        """Launch `twinvisor up` without waiting for it (it returns when all are started)."""
        self.up_returned = None
        self.popen = subprocess.Popen(
            [*self.exe, "-c", self.cfg, "up"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=bench_env(),
        )

    def finish_start(self, timeout: float = 60) -> None:
        assert self.popen is not None
        out, _ = self.popen.communicate(timeout=timeout)
        if self.up_returned is None:
            self.up_returned = time.monotonic()
        if self.popen.returncode != 0:
            logs = ""
            for name in ("twinvisor.out", "twinvisor.log"):
                with contextlib.suppress(OSError), open(os.path.join(self.run, "log", name)) as f:
                    logs += f"\n--- {name} (end):\n" + f.read()[-3000:]
            raise RuntimeError(f"twinvisor up failed: {out.decode(errors='replace')}{logs}")
        with open(os.path.join(self.run, "twinvisor.pid")) as f:
            self.daemon_pid = int(f.read().strip())

    def wait_all_running(self, n: int, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self.up_returned is None
                and self.popen is not None
                and self.popen.poll() is not None
            ):
                self.up_returned = time.monotonic()
            try:
                st = self.states()
            except (OSError, ValueError):
                st = {}
            if len(st) >= n and all(v == "RUNNING" for v in st.values()):
                return time.monotonic()
            time.sleep(POLL)
        return None

    def states(self) -> dict[str, str]:
        rows = http_unix_get(self.sock, "/status")["programs"]
        return {r["name"]: r["state"] for r in rows}

    def status_cli(self) -> list[str]:
        return [*self.exe, "-c", self.cfg, "status"]

    def stop(self) -> None:
        if self.daemon_pid is None and not os.path.exists(self.sock):
            return
        subprocess.run(
            [*self.exe, "-c", self.cfg, "down", "--timeout", "10"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=bench_env(),
            timeout=30,
            check=False,
        )


class Supervisord(Tool):
    name = "supervisord"

    def __init__(self, workdir: str, supervisord: str, supervisorctl: str) -> None:
        super().__init__(workdir)
        self.supervisord = supervisord
        self.supervisorctl = supervisorctl
        self.cfg = os.path.join(workdir, "sv.conf")
        self.run = os.path.join(workdir, "s")
        self.sock = os.path.join(self.run, "sv.sock")

    def write_config(self, programs: list[tuple[str, list[str]]], fast: bool) -> None:
        os.makedirs(self.run, exist_ok=True)
        text = textwrap.dedent(f"""\
            [unix_http_server]
            file = {self.sock}

            [supervisord]
            logfile = {self.run}/supervisord.log
            pidfile = {self.run}/supervisord.pid
            childlogdir = {self.run}
            minfds = 1024

            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

            [supervisorctl]
            serverurl = unix://{self.sock}
            """)
        for name, argv in programs:
            import shlex

            cmd = " ".join(shlex.quote(a) for a in argv).replace("%", "%%")
            text += f"\n[program:{name}]\ncommand = {cmd}\nautorestart = true\n"
            if fast:
                text += "startsecs = 0\n"
        with open(self.cfg, "w") as f:
            f.write(text)

    def start(self) -> None:
        self.popen = subprocess.Popen(
            [self.supervisord, "-n", "-c", self.cfg],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=bench_env(),
            start_new_session=True,
        )
        self.daemon_pid = self.popen.pid

    def finish_start(self, timeout: float = 60) -> None:
        pass

    def states(self) -> dict[str, str]:
        infos = supervisor_rpc(self.sock).supervisor.getAllProcessInfo()
        return {i["name"]: i["statename"] for i in infos}

    def status_cli(self) -> list[str]:
        return [self.supervisorctl, "-c", self.cfg, "status"]

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(20)


# ---------------------------------------------------------------------------------------------
# measurements


def proc_cpu_seconds(pid: int) -> float:
    """CPU time of every thread: /proc/PID/task/*/schedstat (ns), else utime+stime (ticks)."""
    total, ok = 0, False
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
                ok = True
        except (FileNotFoundError, ValueError, IndexError):
            pass
    if ok:
        return total / 1e9
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the ")": state is field 3, utime 14, stime 15 (1-based) -> indices 11, 12
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_ctx_switches(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass  # a thread that just ended
    return total


def memory(pids: list[int]) -> tuple[float, float | None]:
    """(RSS MiB, USS MiB or None), summed over the processes."""
    rss, uss = 0.0, 0.0
    for pid in pids:
        p = psutil.Process(pid)
        rss += p.memory_info().rss / 2**20
        try:
            uss += p.memory_full_info().uss / 2**20
        except (psutil.Error, AttributeError):
            return rss, None
    return rss, uss


def cpu_and_switches(pids: list[int]) -> tuple[float, int]:
    return sum(proc_cpu_seconds(p) for p in pids), sum(proc_ctx_switches(p) for p in pids)


def idle_programs(n: int) -> list[tuple[str, list[str]]]:
    return [(f"p{i:03d}", ["sleep", "infinity"]) for i in range(n)]


def bench_restart(tool: Tool, runs: int, log: Callable[[str], None]) -> list[float]:
    fifo = os.path.join(tool.dir, f"{tool.name[:2]}.fifo")
    samples: list[float] = []
    with pid_fifo(fifo) as next_pid:
        try:
            tool.write_config(
                [("k", ["sh", "-c", f"echo $$ >{fifo}; exec sleep infinity"])], fast=False
            )
            tool.start()
            pid = None
            deadline = time.monotonic() + 30
            while pid is None and time.monotonic() < deadline:
                pid = next_pid(0.2)
                if pid is None and tool.popen is not None and tool.popen.poll() not in (None, 0):
                    break  # `up` failed: finish_start raises with the daemon's logs
            tool.finish_start()
            if pid is None:
                raise RuntimeError(f"{tool.name}: the child never reported")
            for _ in range(runs):
                time.sleep(1.3)  # outlive min_uptime / startsecs (1 s): a crash, not a failed start
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                new = next_pid(15)
                t1 = time.perf_counter()
                if new is None:
                    log(f"  {tool.name}: no replacement within 15 s")
                    break
                if new == pid:
                    raise RuntimeError("the same pid reported twice")
                samples.append((t1 - t0) * 1000)
                pid = new
        finally:
            tool.cleanup()
    return samples


def bench_idle(
    tools: list[Tool], seconds: float, windows: int, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {t.name: {"cpu": [], "wake": []} for t in tools}
    try:
        for t in tools:
            t.write_config(idle_programs(10), fast=False)
            t.start()
            t.finish_start()
        for t in tools:
            if t.wait_all_running(10, 30) is None:
                raise RuntimeError(f"{t.name}: 10 programs not RUNNING")
        time.sleep(2.0)  # let start-up work (min_uptime timers, log opens) finish
        pids = {t.name: t.supervisor_pids() for t in tools}
        for t in tools:
            out[t.name]["procs"] = len(pids[t.name])
            log(f"  {t.name}: supervisor processes {pids[t.name]}")
        for w in range(windows):
            before = {t.name: cpu_and_switches(pids[t.name]) for t in tools}
            time.sleep(seconds)
            for t in tools:
                cpu0, cs0 = before[t.name]
                cpu1, cs1 = cpu_and_switches(pids[t.name])
                cpu, cs = cpu1 - cpu0, cs1 - cs0
                out[t.name]["cpu"].append(cpu * 1000)
                out[t.name]["wake"].append(cs / seconds)
                log(f"  idle window {w + 1}: {t.name}: cpu {cpu * 1000:.0f} ms, {cs} wake-ups")
        for t in tools:
            out[t.name]["mem10"] = memory(pids[t.name])
    finally:
        for t in tools:
            t.cleanup()
    return out


def bench_200(
    tool: Tool, runs: int, status_calls: int, log: Callable[[str], None], first: int = 0
) -> dict[str, Any]:
    up: list[float] = []
    up_returned: list[float] = []
    rss: list[float] = []
    uss: list[float] = []
    status: list[float] = []
    rss_main: list[float] = []
    nprocs: list[int] = []
    for r in range(runs):
        try:
            tool.write_config(idle_programs(200), fast=True)
            t0 = time.monotonic()
            tool.start()
            seen = tool.wait_all_running(200, 60)
            if seen is None:
                try:
                    counts: dict[str, int] = {}
                    for v in tool.states().values():
                        counts[v] = counts.get(v, 0) + 1
                except Exception as e:
                    counts = {f"status failed: {e}": 0}
                log(
                    f"  run {first + r + 1}: {tool.name}: 200 programs not RUNNING within 60 s: {counts}"  # noqa: E501
                )
                continue
            up.append(seen - t0)
            tool.finish_start()
            if isinstance(tool, Twinvisor) and tool.up_returned is not None:
                up_returned.append(tool.up_returned - t0)
            time.sleep(1.0)
            pids = tool.supervisor_pids()
            m = memory(pids)
            assert tool.daemon_pid is not None
            rss_main.append(memory([tool.daemon_pid])[0])
            nprocs.append(len(pids))
            rss.append(m[0])
            if m[1] is not None:
                uss.append(m[1])
            if r == runs - 1 and status_calls:
                cmd = tool.status_cli()
                subprocess.run(cmd, capture_output=True, env=bench_env(), check=False)  # warm-up
                for _ in range(status_calls):
                    s0 = time.perf_counter()
                    subprocess.run(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        env=bench_env(),
                        check=False,
                    )
                    status.append((time.perf_counter() - s0) * 1000)
            log(
                f"  run {first + r + 1}: {tool.name}: all RUNNING after {(seen - t0) * 1000:.0f} ms, rss {m[0]:.1f} MiB in {len(pids)} processes"  # noqa: E501
            )
        finally:
            tool.cleanup()
            tool.daemon_pid = None
            tool.popen = None
    return {
        "up": up,
        "up_returned": up_returned,
        "rss": rss,
        "uss": uss,
        "status": status,
        "rss_main": rss_main,
        "procs200": nprocs,
    }


# ---------------------------------------------------------------------------------------------
# report


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(x: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f} {unit}"


def spread(xs: list[float], digits: int = 1) -> str:
    return "" if len(xs) < 2 else f" ({min(xs):.{digits}f}-{max(xs):.{digits}f})"


def _describe_twinvisor(exe: list[str]) -> str:
    """`twinvisor version` and, in a git checkout, the commit (+ "dirty" if src/ has edits)."""
    try:
        out = subprocess.run(
            [*exe, "version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = "twinvisor ?"
    root = os.path.dirname(HERE)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if head:
            out += f" (commit {head}{', src/ has uncommitted edits' if dirty else ''})"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per figure (median), default 5")
    ap.add_argument("--idle-seconds", type=float, default=20.0, help="length of one idle window")
    ap.add_argument("--idle-runs", type=int, default=3, help="idle windows (median), default 3")
    ap.add_argument("--status-calls", type=int, default=10, help="status CLI calls (median)")
    ap.add_argument(
        "--only",
        choices=["restart", "idle", "200"],
        action="append",
        help="run only these parts (repeatable)",
    )
    ap.add_argument(
        "--cold-bytecode",
        action="store_true",
        help="keep the environment's PYTHONDONTWRITEBYTECODE / bytecode cache as it is "
        "(default: a warm bytecode cache in the run dir for both tools)",
    )
    ap.add_argument("--json", metavar="FILE", help="also write the raw samples as JSON")
    args = ap.parse_args()
    parts = set(args.only or ["restart", "idle", "200"])

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    tv_exe = find_twinvisor()
    sd = find_tool("SUPERVISORD", "supervisord")
    sctl = find_tool("SUPERVISORCTL", "supervisorctl")
    have_peer = bool(sd and sctl)
    if not have_peer:
        log(
            "supervisord/supervisorctl not found (set SUPERVISORD/SUPERVISORCTL or run "
            "bench/setup_peers.sh): the supervisord column is skipped"
        )

    load0 = load_average()
    tv_version = _describe_twinvisor(tv_exe)
    top = tempfile.mkdtemp(prefix="tvb", dir="/tmp")
    global PYCACHE
    if not args.cold_bytecode:
        PYCACHE = os.path.join(top, "pyc")
        warm = [[*tv_exe, "version"], [*tv_exe, "check-config", "-c", "/nonexistent"]]
        if have_peer:
            assert sctl
            warm.append([sctl, "-c", "/dev/null", "version"])
        for cmd in warm:  # fill the bytecode cache (the daemons fill theirs on first start)
            subprocess.run(cmd, capture_output=True, env=bench_env(), check=False)

    def tools(sub: str) -> list[Tool]:
        d = os.path.join(top, sub)
        os.makedirs(d, exist_ok=True)
        out: list[Tool] = [Twinvisor(d, tv_exe)]
        if have_peer:
            assert sd and sctl
            out.append(Supervisord(d, sd, sctl))
        return out

    res: dict[str, dict[str, Any]] = {"twinvisor": {}, "supervisord": {}}
    started = time.monotonic()
    try:
        if "restart" in parts:
            log("1. restart after SIGKILL")
            for t in tools("k"):
                res[t.name]["restart"] = bench_restart(t, args.runs, log)
                log(f"  {t.name}: {[round(x, 1) for x in res[t.name]['restart']]} ms")
        if "idle" in parts:
            log(f"2./3. idle daemons with 10 programs, {args.idle_runs} x {args.idle_seconds:g} s")
            for name, v in bench_idle(tools("i"), args.idle_seconds, args.idle_runs, log).items():
                res[name].update(v)
        if "200" in parts:
            log("3./4./5. 200 programs")
            ts = tools("h")
            for r in range(args.runs):  # alternate the tools run by run
                for t in ts:
                    one = bench_200(
                        t, 1, args.status_calls if r == args.runs - 1 else 0, log, first=r
                    )
                    for k, v in one.items():
                        res[t.name].setdefault(k, []).extend(v)
    finally:
        left = sweep()
        if left:
            log(f"WARNING: {left} tagged processes could not be killed")
        shutil.rmtree(top, ignore_errors=True)
    elapsed = time.monotonic() - started

    names = ["twinvisor", "supervisord"]
    col = {n: res[n] for n in names}

    def cell(name: str, key: str, unit: str, digits: int = 1, scale: float = 1.0) -> str:
        if name == "supervisord" and not have_peer:
            return "not installed"
        xs = [x * scale for x in col[name].get(key, [])]
        return fmt(med(xs), unit, digits) + spread(xs, digits) if xs else "n/a"

    def mem_cell(name: str, idx: int) -> str:
        if name == "supervisord" and not have_peer:
            return "not installed"
        m = col[name].get("mem10")
        if not m or m[idx] is None:
            return "n/a"
        return f"{m[idx]:.1f} MiB"

    rows = []
    if "restart" in parts:
        rows.append(
            (
                "replacement running after SIGKILL (ms)",
                "restart",
                "ms",
                1,
                1.0,
                "< 20 ms (supervisord ~1 s)",
            )
        )
    if "idle" in parts:
        rows.append(
            (f"idle daemon CPU per {args.idle_seconds:g} s, 10 programs", "cpu", "ms", 2, 1.0, "-")
        )
        rows.append(
            ("idle daemon wake-ups per second, 10 programs", "wake", "/s", 2, 1.0, "< 1 /s")
        )
    table = [("figure", "twinvisor", "supervisord", "target")]
    for label, key, unit, digits, scale, target in rows:
        table.append(
            (
                label,
                cell("twinvisor", key, unit, digits, scale),
                cell("supervisord", key, unit, digits, scale),
                target,
            )
        )
    if "idle" in parts:
        table.append(
            ("daemon RSS, 10 programs", mem_cell("twinvisor", 0), mem_cell("supervisord", 0), "-")
        )
        table.append(
            ("daemon USS, 10 programs", mem_cell("twinvisor", 1), mem_cell("supervisord", 1), "-")
        )
    if "200" in parts:
        table.append(
            (
                "daemon RSS, 200 programs (all its processes)",
                cell("twinvisor", "rss", "MiB"),
                cell("supervisord", "rss", "MiB"),
                "below supervisord",
            )
        )
        table.append(
            (
                "  RSS of the main daemon process alone",
                cell("twinvisor", "rss_main", "MiB"),
                cell("supervisord", "rss_main", "MiB"),
                "-",
            )
        )
        table.append(
            (
                "daemon USS, 200 programs",
                cell("twinvisor", "uss", "MiB"),
                cell("supervisord", "uss", "MiB"),
                "-",
            )
        )
        table.append(
            (
                "200 programs up: launch -> all RUNNING (ms)",
                cell("twinvisor", "up", "ms", 0, 1000.0),
                cell("supervisord", "up", "ms", 0, 1000.0),
                "< 2000 ms",
            )
        )
        table.append(
            (
                "  twinvisor: `twinvisor up` returned (ms)",
                cell("twinvisor", "up_returned", "ms", 0, 1000.0),
                "-",
                "-",
            )
        )
        table.append(
            (
                f"status CLI, 200 programs (median of {args.status_calls}, ms)",
                cell("twinvisor", "status", "ms"),
                cell("supervisord", "status", "ms"),
                "< 100 ms",
            )
        )

    procs = {n: max(col[n].get("procs200", []) or [col[n].get("procs", 0)]) for n in names}
    if parts & {"idle", "200"}:
        table.append(
            (
                "supervisor processes measured",
                str(procs["twinvisor"]) + " (daemon + guard)" * (procs["twinvisor"] == 2),
                str(procs["supervisord"]) if have_peer else "not installed",
                "-",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + " |" for r in table
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(
        f"twinvisor bench_core: median of {args.runs} runs (min-max in brackets); "
        f"idle: median of {args.idle_runs} windows of {args.idle_seconds:g} s"
    )
    print(f"load average before / after: {load0} / {load_average()}; twinvisor {tv_version}")
    print(
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    print(
        "200-program runs: twinvisor min_uptime = 0, supervisord startsecs = 0 (RUNNING at spawn); "
        + (
            "bytecode: as the environment has it"
            if args.cold_bytecode
            else "bytecode: warm cache (PYTHONPYCACHEPREFIX)"
        )
    )
    print("\n".join(lines))
    print(f"(bench took {elapsed:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=list)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
