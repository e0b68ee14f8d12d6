"""twinvisor as PID 1 of a real PID namespace (`unshare --pid --fork --mount-proc`), as a
container runtime starts it: the command is the example Dockerfile's ENTRYPOINT + CMD, the
config comes from $TWINVISOR_CONFIG and the one writable directory from $TWINVISOR_RUN_DIR.

The console (the namespace's stdout and stderr) is read line by line by two threads. Closing
a `Pid1` SIGKILLs the namespace's init if it is still there: the kernel then kills everything
else in the namespace, so nothing a test started can survive it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.helpers import wait_until
from twinvisor.control.client import ControlClient
from twinvisor.errors import ControlError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "container"

# only a developer without root skips these; as root (CI) a missing unshare is a failure
needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0, reason="PID and mount namespaces need root (CI runs as root)"
)
assert os.geteuid() != 0 or shutil.which("unshare"), "unshare is missing (util-linux; .ci/run)"


def dockerfile_command(path: Path = EXAMPLE / "Dockerfile") -> list[str]:
    """ENTRYPOINT + CMD of the Dockerfile (exec form, as JSON arrays)."""
    argv: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*(ENTRYPOINT|CMD)\s+(\[.*\])\s*$", line)
        if m:
            argv[m.group(1)] = json.loads(m.group(2))
    return argv.get("ENTRYPOINT", []) + argv.get("CMD", [])


def container_argv() -> list[str]:
    """The Dockerfile's command with `twinvisor` as this interpreter's module."""
    argv = dockerfile_command()
    assert argv[0] == "twinvisor", argv
    return [sys.executable, "-m", "twinvisor", *argv[1:]]


def dockerfile_env(path: Path = EXAMPLE / "Dockerfile") -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*ENV\s+(\w+)=(\S+)\s*$", line)
        if m:
            env[m.group(1)] = m.group(2)
    return env


class Pid1:
    def __init__(
        self,
        config: Path,
        run_dir: Path,
        inside: Sequence[str] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """`inside`: a command that runs before the container's (in the new namespaces) and
        ends by executing its arguments (e.g. a script remounting / read-only, setpriv)."""
        self.config, self.run_dir = config, run_dir
        self._own_mounts = bool(inside)  # then its files are seen through /proc/PID/root
        env = dict(os.environ, TWINVISOR_CONFIG=str(config), TWINVISOR_RUN_DIR=str(run_dir))
        env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '/usr/bin:/bin')}"
        env.pop("TWINVISOR_GUARD", None)
        env.update(extra_env or {})
        self.env = env
        unshare = ["unshare", "--pid", "--fork", "--mount-proc"]
        if inside:
            unshare.insert(1, "--mount")
        self.proc = subprocess.Popen(
            [*unshare, *inside, *container_argv()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=_collect, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=_collect, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    # -- the namespace ----------------------------------------------------------------------

    def init(self) -> psutil.Process:
        """The namespace's PID 1 (the guard), seen from outside."""

        def find() -> psutil.Process | None:
            kids = psutil.Process(self.proc.pid).children()
            return kids[0] if kids else None

        return wait_until(find, 30, "the namespace's init")

    def processes(self) -> list[psutil.Process]:
        """Everything in the namespace but its init (all of it descends from PID 1)."""
        try:
            found: list[psutil.Process] = self.init().children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return found

    def zombies(self) -> list[int]:
        out = []
        for p in self.processes():
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    out.append(p.pid)
            except psutil.NoSuchProcess:
                continue
        return out

    def signal(self, sig: int) -> None:
        self.init().send_signal(sig)

    def supervisor(self) -> psutil.Process:
        def find() -> psutil.Process | None:
            for p in self.init().children():
                try:
                    if "daemon" in p.cmdline():
                        return p
                except psutil.Error:  # a supervisor just killed: a zombie until PID 1 reaps it
                    continue
            return None

        return wait_until(find, 30, "the supervisor")

    # -- the daemon -------------------------------------------------------------------------

    def cli(self, *args: str) -> str:
        """`twinvisor ARGS` from outside, as an operator would (`docker exec`): its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "twinvisor", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout

    def seen(self, path: Path) -> Path:
        """`path` inside the namespace, as the test (outside its mounts) reaches it."""
        if not self._own_mounts:
            return path
        return Path(f"/proc/{self.init().pid}/root{path}")

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        client = ControlClient(str(self.seen(self.run_dir / "twinvisor.sock")), timeout=10)
        return client.call(method, path, body=body)

    def status(self) -> dict[str, dict[str, Any]]:
        code, body = self.api("GET", "/status")
        assert code == 200, body
        return {row["name"]: row for row in body["programs"]}

    def wait_state(self, name: str, *states: str, timeout: float = 30) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            try:
                row = self.status().get(name)
            except (OSError, ControlError):
                return None  # not up yet, or between supervisors
            return row if row is not None and row["state"] in states else None

        return wait_until(check, timeout, f"{name} in {states}")

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout)
        for t in self._readers:
            t.join(10)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.init().send_signal(signal.SIGKILL)  # the kernel kills the rest
            except (psutil.NoSuchProcess, AssertionError):
                self.proc.kill()
        self.wait(30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Pid1:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _collect(stream: Any, into: list[str]) -> None:
    for raw in iter(stream.readline, b""):
        into.append(raw.decode(errors="replace"))
