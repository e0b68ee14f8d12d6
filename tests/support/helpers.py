"""Test utilities for end-to-end runs of the real `twinvisor` command.

`daemon` (fixture, import `daemon_fixture` from here) gives a `Daemon`: a config in a short
temporary directory (AF_UNIX paths are limited to 107 bytes), a `cli(*args)` runner and
wait-until helpers. Teardown always runs `twinvisor down`, then checks that no process of the
test survived (every process started by the test carries TV_TEST_TAG=<its dir> in its
environment), kills any survivor and fails the test.

Nothing here sleeps to synchronise: `wait_until` polls a condition in a bounded loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from tests.support.paths import CHILDREN
from twinvisor.control.client import ControlClient

T = TypeVar("T")

POLL = 0.02
TAG = "TV_TEST_TAG"


def child(mode: str, *args: str | int, python: str = sys.executable) -> list[str]:
    """argv running tests/support/children.py in `mode`."""
    return [python, CHILDREN, mode, *(str(a) for a in args)]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    raise TypeError(f"no TOML for {value!r}")


# quick by default: a run counts as healthy after 0.2 s, backoff starts at 0.05 s
FAST = {"min_uptime": 0.2, "backoff_initial": 0.05, "stop_timeout": 5}


def config_text(run_dir: str, programs: dict[str, dict[str, Any]], daemon_extra: str = "") -> str:
    lines = ["[daemon]", f"run_dir = {toml_value(run_dir)}", daemon_extra, ""]
    for name, keys in programs.items():
        lines.append(f"[program.{name}]")
        for key, value in {**FAST, **keys}.items():
            lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def wait_until(
    condition: Callable[[], T | None], timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll `condition` until it returns something truthy (and returns that); fail after `timeout`
    seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)


@dataclass
class Result:
    rc: int
    out: str
    err: str


def read_report(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


def wait_report(
    path: str | os.PathLike[str],
    pred: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 10.0,
    what: str = "report",
) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        events = read_report(path)
        return events if pred(events) else None

    return wait_until(check, timeout, what)


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie waiting for init counts as gone)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


class Daemon:
    def __init__(self, root: str) -> None:
        self.root = root
        self.config = os.path.join(root, "twinvisor.toml")
        self.run_dir = os.path.join(root, "run")
        self.log_dir = os.path.join(self.run_dir, "log")
        self.socket = os.path.join(self.run_dir, "twinvisor.sock")
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("TWINVISOR_CONFIG", "TWINVISOR_SOCKET", "TWINVISOR_RUN_DIR")
        }
        self.env[TAG] = root
        self.env["PYTHONUNBUFFERED"] = "1"
        self.mounts: list[str] = []

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # -- config and command line ------------------------------------------------------------

    def write_config(self, programs: dict[str, dict[str, Any]], daemon_extra: str = "") -> None:
        self.write_raw(config_text(self.run_dir, programs, daemon_extra))

    def write_raw(self, text: str) -> None:
        tmp = self.config + ".tmp"
        Path(tmp).write_text(text)
        os.replace(tmp, self.config)

    def cli_argv(self) -> list[str]:
        return [sys.executable, "-m", "twinvisor", "-c", self.config]

    def cli(self, *args: str, timeout: float = 60.0) -> Result:
        p = subprocess.run(
            [*self.cli_argv(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(p.returncode, p.stdout, p.stderr)

    def up(self, programs: dict[str, dict[str, Any]], daemon_extra: str = "") -> Result:
        """Write the config and run `twinvisor up`; asserts the daemon is up."""
        self.write_config(programs, daemon_extra)
        r = self.cli("up")
        assert r.rc in (0, 1), r
        assert "supervisor pid:" in r.out, r
        return r

    # -- state --------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        return ControlClient(self.socket, timeout=30).call(method, path, **kw)

    def status(self) -> dict[str, dict[str, Any]]:
        code, body = self.api("GET", "/status")
        assert code == 200, body
        return {row["name"]: row for row in body["programs"]}

    def wait_state(
        self,
        name: str,
        *states: str,
        timeout: float = 10.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            row = self.status().get(name)  # a program being added (a reload) is not there yet
            if row is None:
                return None
            ok = row["state"] in states and (where is None or where(row))
            return row if ok else None

        return wait_until(check, timeout, f"{name} in {states}")

    def pid(self, name: str) -> int:
        pid = self.status()[name]["pid"]
        assert pid, name
        return int(pid)

    # -- teardown -----------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        """The end of the daemon's own log, for an assertion's message."""
        try:
            text = Path(self.log_dir, "twinvisor.log").read_text(errors="replace")
        except OSError as e:
            return f"(no daemon log: {e.strerror})"
        return "\n".join(text.splitlines()[-lines:])

    def survivors(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["pid", "cmdline", "status"]):
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            try:
                env = proc.environ()
            except (psutil.Error, OSError):
                env = {}
            cmdline = " ".join(proc.info["cmdline"] or ())
            if env.get(TAG) == self.root or self.root in cmdline:
                found.append(proc)
        return found

    def _remove_cgroup(self) -> None:
        """A daemon killed outright (both twins) never removes its cgroup directory: do it."""
        import hashlib

        from twinvisor.linux import kernel

        tag = hashlib.sha256(os.fsencode(self.run_dir)).hexdigest()[:12]
        base = kernel.cgroup2_path(tag)
        if base is None or not os.path.isdir(base):
            return
        for entry in os.scandir(base):
            if entry.is_dir(follow_symlinks=False):
                kernel.cgroup_remove(entry.path)
        kernel.cgroup_remove(base)

    def teardown(self) -> None:
        problems = []
        if os.path.exists(self.config):
            r = self.cli("down", "--timeout", "20")
            if r.rc not in (0, 3):
                problems.append(f"`twinvisor down` failed: {r}")
        # SIGKILLed processes take a moment to disappear: wait (bounded) before judging
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not self.survivors(), timeout=3.0)
        left = self.survivors()
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if left:
            problems.append(
                "processes survived the test: "
                + ", ".join(f"{p.pid} {p.info['cmdline']}" for p in left)
            )
        for mount in reversed(self.mounts):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        self._remove_cgroup()
        shutil.rmtree(self.root, ignore_errors=True)
        assert not problems, "\n".join(problems)


@pytest.fixture(name="daemon")
def daemon_fixture() -> Iterator[Daemon]:
    root = tempfile.mkdtemp(prefix="tv", dir="/tmp")
    d = Daemon(root)
    try:
        yield d
    finally:
        d.teardown()


# ---- HTTP, for programs that serve through a passed socket ------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
    """One HTTP/1.0 request on a fresh connection: (status, body). Raises OSError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def pid_body(body: bytes) -> bool:
    return body.isdigit()


class Load(threading.Thread):
    """GET `path` on a fresh connection, again and again, until stopped (bounded by `limit`).
    A reply counts as good when its status is 200 and `good(body)`; with the default path
    (examples/webserver.py's /pid) the pids that answered are collected too."""

    def __init__(
        self,
        port: int,
        path: str = "/pid",
        good: Callable[[bytes], bool] = pid_body,
        limit: int = 500_000,
    ) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.good, self.limit = port, path, good, limit
        self.done = threading.Event()
        self.ok = self.failed = self.refused = 0
        self.errors: list[str] = []
        self.pids: set[int] = set()

    def run(self) -> None:
        while not self.done.is_set() and self.ok + self.failed + self.refused < self.limit:
            try:
                status, body = http_get(self.port, self.path)
            except ConnectionRefusedError:
                self.refused += 1
                continue
            except OSError as e:
                self.failed += 1
                self.errors.append(repr(e))
                continue
            if status == 200 and self.good(body):
                self.ok += 1
                if body.isdigit():
                    self.pids.add(int(body))
            else:
                self.failed += 1
                self.errors.append(f"{status} {body[:80]!r}")

    def wait_more(self) -> None:
        before = self.ok
        wait_until(lambda: self.ok > before or self.failed, what="another reply under load")

    def finish(self) -> None:
        self.done.set()
        self.join(timeout=30)

    def assert_clean(self) -> None:
        assert (self.failed, self.refused) == (0, 0), self.errors[:5]
        assert self.ok > 0
