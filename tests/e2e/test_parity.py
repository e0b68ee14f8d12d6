"""supervisord's keys with real processes: redirect_stderr, umask, priority, groups, instances
with their own argument and port, and /dev/stdout as the daemon's own stdout (console logs in
the foreground, across a SIGKILL of the supervisor)."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from tests.support.helpers import Daemon, daemon_fixture, http_get, wait_until  # noqa: F401
from tests.support.parity import SH, ask, free_prefix, has_text, status_names, write_server


def state_changes(daemon: Daemon, new_state: str) -> list[str]:
    """Instance names in the order the daemon log shows them entering `new_state`."""
    text = Path(daemon.log_dir, "twinvisor.log").read_text()
    marker = f" -> {new_state}"
    return [line.split(": ")[-2].split()[-1] for line in text.splitlines() if line.endswith(marker)]


def test_redirect_stderr_keeps_the_order(daemon: Daemon) -> None:
    script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done"
    daemon.up(
        {
            "both": {
                "command": [SH, "-c", script],
                "redirect_stderr": True,
                "auto_restart": False,
                "min_uptime": 0,
            }
        }
    )
    daemon.wait_state("both", "EXITED")
    row = daemon.status()["both"]
    assert row["redirect_stderr"] is True and row["stderr_file"] is None
    text = Path(row["stdout_file"]).read_text()
    assert text.split() == [f"{s}{i}" for i in range(1, 6) for s in ("out", "err")]
    assert not os.path.exists(os.path.join(daemon.log_dir, "both.stderr.log"))
    r = daemon.cli("logs", "both", "--stderr")
    assert r.rc == 1 and "redirect_stderr" in r.err


def test_umask(daemon: Daemon) -> None:
    out = daemon.path("made")
    script = f"umask; touch {out}"
    daemon.up(
        {
            "masked": {
                "command": [SH, "-c", script],
                "umask": "027",
                "auto_restart": False,
                "min_uptime": 0,
            }
        }
    )
    daemon.wait_state("masked", "EXITED")
    assert Path(daemon.status()["masked"]["stdout_file"]).read_text().strip() == "0027"
    assert os.stat(out).st_mode & 0o777 == 0o640  # touch asks for 0666


def test_priority_orders_start_and_stop(daemon: Daemon) -> None:
    run = [sys.executable, "-c", "import signal; signal.pause()"]
    daemon.up(
        {
            "last": {"command": run, "priority": 30},
            "first": {"command": run, "priority": 10},
            # depends on `last`, so it cannot go before it whatever its own priority
            "dependent": {"command": run, "priority": 1, "depends_on": ["last"]},
            "middle": {"command": run, "priority": 20},
        }
    )
    for name in ("first", "middle", "last", "dependent"):
        daemon.wait_state(name, "RUNNING")
    assert state_changes(daemon, "STARTING") == ["first", "middle", "last", "dependent"]
    # priority orders, it does not pull in: starting `last` alone starts only `last`
    assert daemon.cli("stop", "all").rc == 0
    assert state_changes(daemon, "STOPPING") == ["dependent", "last", "middle", "first"]
    assert daemon.cli("start", "last").rc == 0
    states = {n: r["state"] for n, r in daemon.status().items()}
    assert states == {
        "last": "RUNNING",
        "first": "STOPPED",
        "dependent": "STOPPED",
        "middle": "STOPPED",
    }


def test_groups_in_verbs_and_status(daemon: Daemon) -> None:
    run = [sys.executable, "-c", "import signal; signal.pause()"]
    daemon.write_config(
        {"a": {"command": run, "numprocs": 2}, "b": {"command": run}, "c": {"command": run}}
    )
    daemon.write_raw(Path(daemon.config).read_text() + '\n[group.workers]\nprograms = ["a", "b"]\n')
    r = daemon.cli("up")
    assert r.rc == 0, r
    before = {n: r["pid"] for n, r in daemon.status().items()}
    r = daemon.cli("restart", "workers:*")
    assert r.rc == 0, r
    assert sorted(line.split(":")[0] for line in r.out.splitlines()) == ["a", "a", "b"]
    after = daemon.status()
    assert all(after[n]["pid"] != before[n] for n in ("a:0", "a:1", "b"))
    assert after["c"]["pid"] == before["c"]
    assert after["a:0"]["group"] == "workers" and after["c"]["group"] is None
    r = daemon.cli("status")
    names = status_names(r.out)
    assert names == ["workers:a:0", "workers:a:1", "workers:b", "c"]
    # what status shows can be typed back
    assert daemon.cli("stop", "workers:a:1").rc == 0
    assert daemon.status()["a:1"]["state"] == "STOPPED"
    assert daemon.cli("status", "workers").out.count("workers:") == 3
    assert daemon.cli("stop", "nosuch:*").rc == 2  # a usage error


def test_every_instance_has_its_own_argument_and_port(daemon: Daemon) -> None:
    server = write_server(daemon.root)
    prefix = free_prefix(3, width=1)
    daemon.up(
        {
            "web": {
                "command": f"{sys.executable} {server} --port {prefix}{{instance}} --name {{name}}",
                "numprocs": 3,
                "instance_name": "{program}_{instance:02}",
                "environment": {"INSTANCE": "{instance}", "DATA": "${TV_DATA:-none}"},
                "directory": daemon.root,
                "stdout_file": daemon.path("{name}.out"),
            }
        }
    )
    for i in range(3):
        got = ask(prefix * 10 + i)
        assert got["argv"] == ["--port", f"{prefix}{i}", "--name", f"web_{i:02}"]
        assert got["env"] == {
            "TWINVISOR_PROGRAM": f"web_{i:02}",
            "INSTANCE": str(i),
            "GREETING": None,
            "APP_ENV": None,
            "DATA": "none",
        }
        log = Path(daemon.path(f"web_{i:02}.out"))
        wait_until(partial(has_text, log, f"listening on {prefix}{i}"), what="its log")


# --- /dev/stdout: the daemon's own stdout -----------------------------------------------------


class Lines:
    """The lines a process writes to a pipe, read with deadlines."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(fd, selectors.EVENT_READ)
        self.buf = b""
        self.lines: list[str] = []

    def until(self, pred: object, timeout: float = 15.0) -> list[str]:
        assert callable(pred)
        deadline = time.monotonic() + timeout
        while not pred(self.lines):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; lines so far: {self.lines[-20:]}"
            if self.sel.select(left):
                chunk = os.read(self.fd, 65536)
                assert chunk, f"EOF; lines so far: {self.lines[-20:]}"
                self.buf += chunk
                *done, self.buf = self.buf.split(b"\n")
                self.lines += [d.decode() for d in done]
        return self.lines

    def close(self) -> None:
        self.sel.close()


def ticks(lines: list[str], who: str, stream: str = "tick") -> list[int]:
    """The numbers of `who`'s console lines ("who | tick who N"), in the order shown."""
    mine = re.compile(rf"{who} *\| {stream} {who} ([0-9]+)")  # names are padded to align
    return [int(m.group(1)) for line in lines if (m := mine.fullmatch(line))]


def whole_run(numbers: list[int]) -> bool:
    """1, 2, ... in order with none missing (a line may repeat after a takeover, never go)."""
    seen = list(dict.fromkeys(numbers))
    return seen == list(range(1, len(seen) + 1)) and numbers == sorted(numbers)


def test_dev_stdout_is_the_foreground_stdout(daemon: Daemon) -> None:
    loop = "i=0; while :; do i=$((i+1)); echo tick $0 $i; echo oops $0 $i >&2; sleep 0.02; done"
    daemon.write_config(
        {
            "out": {"command": [SH, "-c", loop, "out"], "stdout_file": "/dev/stdout"},
            "both": {
                "command": [SH, "-c", loop, "both"],
                "stdout_file": "/dev/stdout",
                "redirect_stderr": True,
            },
            "err": {
                "command": [SH, "-c", loop, "err"],
                "stdout_file": "",
                "stderr_file": "/dev/stderr",
            },
        }
    )
    fg = subprocess.Popen(
        [*daemon.cli_argv(), "up", "--foreground"],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert fg.stdout is not None and fg.stderr is not None
    out, err = Lines(fg.stdout.fileno()), Lines(fg.stderr.fileno())
    try:
        out.until(lambda ls: len(ticks(ls, "out")) >= 5 and len(ticks(ls, "both")) >= 5)
        out.until(lambda ls: len(ticks(ls, "both", "oops")) >= 5)  # redirected: the same pipe
        err.until(lambda ls: len(ticks(ls, "err", "oops")) >= 3)
        status = daemon.status()
        assert status["out"]["stdout_console"] == "stdout" and status["out"]["stdout_file"] is None
        assert status["both"]["redirect_stderr"] and status["both"]["stderr_console"] is None
        r = daemon.cli("logs", "out")
        assert r.rc == 1 and "daemon's own stdout" in r.err
        # kill -9 the supervisor: its replacement gets the console back from the guard
        supervisor = int(Path(daemon.run_dir, "twinvisor.pid").read_text())
        os.kill(supervisor, signal.SIGKILL)
        wait_until(lambda: _answering(daemon, supervisor), what="a new supervisor")
        seen = len(ticks(out.lines, "out"))
        out.until(lambda ls: len(ticks(ls, "out")) >= seen + 5)
        mine = ticks(out.lines, "out")
        assert whole_run(mine), mine  # nothing lost or reordered meanwhile
        # a generation started by the new supervisor writes there too
        assert daemon.cli("restart", "out").rc == 0
        out.until(lambda ls: 1 in ticks(ls, "out")[len(mine) :])
    finally:
        fg.send_signal(signal.SIGTERM)  # docker stop
        code = fg.wait(timeout=30)
        out.close()
        err.close()
        fg.stdout.close()
        fg.stderr.close()
    assert code == 0


def _answering(daemon: Daemon, old: int) -> bool:
    try:
        code, body = daemon.api("GET", "/version")
    except Exception:
        return False
    return code == 200 and int(body["pid"]) != old
