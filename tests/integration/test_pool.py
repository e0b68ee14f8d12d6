"""twinvisor.pool with real worker processes (tests/support/scripts/lib_echo.py, lib_flood.py).

Waits are on events only: replies, callbacks feeding queues, pidfds. The one exception is
the slow-consumer test, which waits (with a deadline) for the worker to block in write():
nothing can send an event from inside a blocked write.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading

import psutil
import pytest

from tests.support.paths import SCRIPTS
from twinvisor.config.specs import RestartPolicy
from twinvisor.errors import SpawnError
from twinvisor.linux import kernel
from twinvisor.pool import AsyncPool, Pool, WorkerEnd, WorkerExited

ECHO = [sys.executable, str(SCRIPTS / "lib_echo.py")]
FLOOD = [sys.executable, str(SCRIPTS / "lib_flood.py")]


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Event-driven wait for a process that is not our child (its pidfd turns readable)."""
    assert kernel.wait_gone(pid, timeout), f"pid {pid} still alive after {timeout}s"


class Collector:
    """Callbacks that feed thread-safe queues the test reads with a timeout."""

    def __init__(self) -> None:
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.ends: queue.Queue[WorkerEnd] = queue.Queue()

    def on_output(self, name: str, line: str) -> None:
        self.lines.put((name, line))

    def on_end(self, name: str, end: WorkerEnd) -> None:
        self.ends.put(end)

    def line(self) -> tuple[str, str]:
        return self.lines.get(timeout=10)

    def end(self) -> WorkerEnd:
        return self.ends.get(timeout=10)


def test_interactive_bash_worker() -> None:
    got = Collector()
    with Pool(got.on_output, got.on_end) as pool:
        pool.start("sh", "bash")
        pool.send("sh", "echo hello; echo $((2 + 3))")
        assert got.line() == ("sh", "hello")
        assert got.line() == ("sh", "5")
        assert pool.request("sh", "echo $0", timeout=10) == "bash"
        end = pool.remove("sh")
        assert end.removed and end.returncode is not None
        assert got.end() == end
        assert pool.names() == []


def test_crashing_worker_reports_exit_status() -> None:
    got = Collector()
    with Pool(got.on_output, got.on_end) as pool:
        pool.start("crash", [sys.executable, "-c", "print('bye'); raise SystemExit(7)"])
        assert got.line() == ("crash", "bye")  # output is delivered before the end
        end = got.end()
        assert (end.name, end.returncode, end.error, end.removed) == ("crash", 7, None, False)
        assert pool.names() == []


def test_exec_failure_raises() -> None:
    with Pool() as pool, pytest.raises(SpawnError):
        pool.start("nope", ["/nonexistent/program"])


def test_callback_error_stops_worker() -> None:
    got = Collector()

    def explode(name: str, line: str) -> None:
        raise RuntimeError(f"bad line {line}")

    with Pool(explode, got.on_end) as pool:
        pool.start("w", ECHO)
        pool.send("w", "hi")
        end = got.end()
        assert isinstance(end.error, RuntimeError) and str(end.error) == "bad line echo: hi"


def test_request_response() -> None:
    with Pool() as pool:
        pool.start("echo", ECHO)
        for word in ("ping", "ünïcode", "a b c"):
            assert pool.request("echo", word, timeout=10) == f"echo: {word}"
        with pytest.raises(WorkerExited):
            pool.request("echo", "exit 4", timeout=10)


def test_restart_policy_restarts_then_gives_up() -> None:
    got = Collector()
    policy = RestartPolicy(max_retry=1, min_uptime=1000, backoff_initial=0.01)
    with Pool(None, got.on_end) as pool:
        pool.start("w", [sys.executable, "-c", "raise SystemExit(2)"], restart=policy)
        first, second = got.end(), got.end()
        assert first.returncode == second.returncode == 2
        assert first.will_restart and not second.will_restart  # 2 failures > max_retry 1
        assert first.pid != second.pid


def test_remove_kills_process_group_children_included() -> None:
    with Pool() as pool:
        worker_pid = pool.start("w", ECHO)
        grandchild = int(pool.request("w", "spawn-sleep", timeout=10))
        assert psutil.Process(grandchild).ppid() == worker_pid
        end = pool.remove("w")
        assert end.removed and end.returncode == -15
        wait_gone(grandchild)
        assert not psutil.pid_exists(grandchild) or (
            psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
        )


def test_remove_kills_a_worker_that_ignores_term_at_stop_timeout() -> None:
    ignores = (
        "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); signal.pause()"
    )
    got = Collector()
    with Pool(got.on_output, stop_timeout=0.2) as pool:
        pool.start("w", [sys.executable, "-c", ignores])
        assert got.line() == ("w", "ready")
        end = pool.remove("w")
        assert end.removed and end.returncode == -9


def test_hundred_workers_without_a_thread_each() -> None:
    async def main() -> None:
        threads = threading.active_count()
        async with AsyncPool() as pool:
            await asyncio.gather(*(pool.start(f"w{i}", ECHO) for i in range(100)))
            assert threading.active_count() == threads
            replies = await asyncio.gather(
                *(pool.request(f"w{i}", f"hi {i}", timeout=30) for i in range(100))
            )
            assert replies == [f"echo: hi {i}" for i in range(100)]
            assert len(pool.names()) == 100
        assert pool.names() == []

    asyncio.run(main())


def blocked_in_write(pid: int) -> bool:
    with open(f"/proc/{pid}/wchan") as f:
        return "pipe_write" in f.read()


def bytes_written(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return int(next(line for line in f if line.startswith("wchar")).split()[1])


def test_slow_consumer_keeps_memory_bounded() -> None:
    count = 200_000  # 20 MB of output if nothing held the worker back

    async def main() -> None:
        release = asyncio.Event()
        delivered = 0
        ended: asyncio.Future[WorkerEnd] = asyncio.get_running_loop().create_future()

        async def slow(name: str, line: str) -> None:
            nonlocal delivered
            await release.wait()
            delivered += 1

        def on_end(name: str, end: WorkerEnd) -> None:
            ended.set_result(end)

        async with AsyncPool(slow, on_end, queue_size=50) as pool:
            pid = await pool.start("flood", [*FLOOD, str(count)])
            async with asyncio.timeout(15):  # no event comes out of a blocked write()
                while not (blocked_in_write(pid) and pool.stats("flood").paused):
                    await asyncio.sleep(0.01)
            stats = pool.stats("flood")
            assert stats.queued == 50
            assert bytes_written(pid) < 2 * 1024 * 1024  # held back, far from 20 MB
            release.set()
            end = await asyncio.wait_for(ended, 30)
            assert end.returncode == 0 and delivered == count

    asyncio.run(main())
