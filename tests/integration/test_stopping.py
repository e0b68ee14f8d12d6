"""linux.stopping: the one TERM -> KILL plan, blocking and on asyncio, with real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from twinvisor.linux.stopping import StopPlan, stop, stop_async

# prints "ready" once its SIGTERM disposition is set, then waits for a signal
WAITS = "import signal; print('ready', flush=True); signal.pause()"
IGNORES_TERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + WAITS


def started(code: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    proc.stdout.close()
    return proc


def test_term_ends_a_process_before_the_timeout() -> None:
    proc = started(WAITS)
    assert stop(StopPlan(proc.pid, timeout=30.0))
    assert proc.wait() == -signal.SIGTERM


def test_kill_after_the_timeout_when_term_is_ignored() -> None:
    proc = started(IGNORES_TERM)
    assert stop(StopPlan(proc.pid, timeout=0.2))
    assert proc.wait() == -signal.SIGKILL


def test_a_stopped_process_is_continued_so_it_can_act_on_the_signal() -> None:
    proc = started(WAITS)
    os.kill(proc.pid, signal.SIGSTOP)
    assert stop(StopPlan(proc.pid, signal.SIGINT, timeout=30.0, group=False))
    assert proc.wait() == -signal.SIGINT


def test_async_stop_forces_at_the_timeout_and_waits_for_the_callers_exit_future() -> None:
    async def main() -> int | None:
        proc = started(IGNORES_TERM)
        loop = asyncio.get_running_loop()
        exited = loop.run_in_executor(None, proc.wait)
        assert await stop_async(StopPlan(proc.pid, timeout=0.2), exited)
        return proc.returncode

    assert asyncio.run(main()) == -signal.SIGKILL
