"""Kernels before 5.3 have no pidfd: exits are then learnt from SIGCHLD (our own children)
and by polling liveness (adopted processes, which are not our children). The runtime runs
in-process here, on real processes, with pidfd_open made unavailable as on such a kernel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import psutil
import pytest

from twinvisor.config.specs import Config, DaemonSpec, ProgramSpec, RestartPolicy
from twinvisor.core import machine
from twinvisor.linux import kernel
from twinvisor.supervisor.runtime import Runtime

SLEEPER = (sys.executable, "-c", "import time; time.sleep(1000)")


@pytest.fixture
def no_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel, "pidfd_open", lambda pid: None)


@pytest.fixture
def run_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="tvp", dir="/tmp") as d:
        yield d


def config(run_dir: str, find: str | None = None) -> Config:
    program = ProgramSpec(
        name="app", program="app", command=SLEEPER, restart=RestartPolicy(min_uptime=0), find=find
    )
    daemon = DaemonSpec(run_dir=run_dir, log_dir=f"{run_dir}/log", socket=f"{run_dir}/s")
    return Config(path=f"{run_dir}/t.toml", daemon=daemon, programs=(program,))


def replaced(old: int) -> object:
    def outcome(proc: machine.Proc) -> str:
        return "ok" if proc.pid not in (None, old) and proc.state.is_alive else "pending"

    return outcome


def test_own_child_exit_seen_through_sigchld(no_pidfd: None, run_dir: str) -> None:
    async def scenario() -> None:
        rt = Runtime(config(run_dir))
        rt.open()
        try:
            assert await rt.start(["app"], timeout=10) == {"app": "ok"}
            old = rt.core.procs["app"].pid
            assert old is not None
            os.kill(old, signal.SIGKILL)
            got = await rt.wait(["app"], replaced(old), timeout=10)  # type: ignore[arg-type]
            assert got == {"app": "ok"}
            assert rt.core.procs["app"].last_exit is not None
            assert rt.core.procs["app"].last_exit.signal == signal.SIGKILL  # status known
            assert await rt.stop(["app"], timeout=10) == {"app": "ok"}
        finally:
            rt.close()

    asyncio.run(scenario())


def start_orphan() -> int:
    """Start SLEEPER as someone else's child, as a program started by hand is: through a
    shell that exits at once, so it is re-parented away from this process."""
    line = f"{shlex.join(SLEEPER)} </dev/null >/dev/null 2>&1 & echo $!"
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, check=True)
    return int(out.stdout)


def copies() -> list[int]:
    return sorted(
        p.pid
        for p in psutil.process_iter(["cmdline", "status"])
        if tuple(p.info["cmdline"] or ()) == SLEEPER and p.info["status"] != psutil.STATUS_ZOMBIE
    )


def test_adopted_process_exit_seen_by_polling(no_pidfd: None, run_dir: str) -> None:
    """Started by hand, found by `find`, adopted: not our child, so no SIGCHLD and no
    waitpid(); yet its death is seen and the restart policy starts our own copy."""
    orphan = start_orphan()

    async def scenario() -> None:
        rt = Runtime(config(run_dir, find="cmdline"))
        rt.open()
        try:
            assert await rt.start(["app"], timeout=10) == {"app": "ok"}
            assert rt.core.procs["app"].pid == orphan  # adopted, not started again
            for _ in range(20):  # let every callback already scheduled run (no clock involved)
                await asyncio.sleep(0)
            # still adopted, and still the only copy: an adopted process is not declared dead
            # because waitpid() cannot see it
            proc = rt.core.procs["app"]
            assert (proc.pid, proc.last_exit, proc.restarts) == (orphan, None, 0)
            assert copies() == [orphan]
            os.kill(orphan, signal.SIGKILL)
            got = await rt.wait(["app"], replaced(orphan), timeout=10)  # type: ignore[arg-type]
            assert got == {"app": "ok"}
            assert rt.core.procs["app"].last_exit is not None
            assert rt.core.procs["app"].last_exit.exit_code is None  # not ours to know
            assert await rt.stop(["app"], timeout=10) == {"app": "ok"}
        finally:
            rt.close()

    try:
        asyncio.run(scenario())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)
