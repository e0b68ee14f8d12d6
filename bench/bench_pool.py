"""twinvisor.pool figures: round-trip throughput and memory per worker.

    .venv/bin/python bench/bench_pool.py

Throughput: lines sent to N echo workers and echoed back to the on_output callback,
pipelined (a writer per worker) and as sequential request/response; median of 5 runs.
Memory: RSS of this process with 0 and with 100 workers started, and one worker's RSS.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import psutil

from twinvisor.pool import AsyncPool

PY_ECHO = [sys.executable, "-u", "-c", "import sys\nfor l in sys.stdin: sys.stdout.write(l)"]
CAT = ["cat"]
RUNS = 5


async def pipelined(command: list[str], workers: int, lines: int) -> float:
    """Lines per second through `workers` workers, each sent `lines` lines."""
    done = asyncio.Event()
    received = 0
    total = workers * lines

    def on_output(name: str, line: str) -> None:
        nonlocal received
        received += 1
        if received == total:
            done.set()

    async with AsyncPool(on_output, queue_size=1024) as pool:
        await asyncio.gather(*(pool.start(f"w{i}", command) for i in range(workers)))
        start = time.perf_counter()

        async def feed(name: str) -> None:
            for i in range(lines):
                await pool.send(name, f"line {i}")

        await asyncio.gather(*(feed(f"w{i}") for i in range(workers)))
        await done.wait()
        return total / (time.perf_counter() - start)


async def requests(command: list[str], workers: int, count: int) -> float:
    """Request/response pairs per second, one outstanding request per worker."""
    async with AsyncPool() as pool:
        await asyncio.gather(*(pool.start(f"w{i}", command) for i in range(workers)))
        start = time.perf_counter()

        async def ask(name: str) -> None:
            for i in range(count):
                await pool.request(name, f"req {i}")

        await asyncio.gather(*(ask(f"w{i}") for i in range(workers)))
        return workers * count / (time.perf_counter() - start)


def median(make: Callable[[], Coroutine[Any, Any, float]]) -> float:
    return statistics.median(asyncio.run(make()) for _ in range(RUNS))


async def memory(command: list[str], workers: int) -> tuple[float, float, float]:
    """(parent RSS with 0 workers, with `workers` workers, one worker's RSS) in MiB."""
    me = psutil.Process()
    async with AsyncPool() as pool:
        base = me.memory_info().rss
        pids = await asyncio.gather(*(pool.start(f"w{i}", command) for i in range(workers)))
        await asyncio.gather(*(pool.request(f"w{i}", "warm") for i in range(workers)))
        loaded = me.memory_info().rss
        worker = statistics.median(psutil.Process(p).memory_info().rss for p in pids)
    mib = 1024 * 1024
    return base / mib, loaded / mib, worker / mib


def memory_fresh(label: str) -> tuple[float, float, float]:
    """Measure in a new interpreter: RSS never shrinks, so earlier runs would hide growth."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory", label], capture_output=True, text=True, check=True
    )
    base, loaded, worker = json.loads(out.stdout)
    return base, loaded, worker


def main() -> None:
    if sys.argv[1:2] == ["--memory"]:
        command = PY_ECHO if sys.argv[2] == "python" else CAT
        print(json.dumps(asyncio.run(memory(command, 100))))
        return
    print(f"twinvisor.pool benchmark (median of {RUNS} runs), python {sys.version.split()[0]}")
    print(f"{'worker':<10}{'workers':>8}{'pipelined lines/s':>20}{'request/response /s':>22}")
    for label, command in (("python", PY_ECHO), ("cat", CAT)):
        for workers in (1, 16):
            lines = 20000 // workers * 2
            flow = median(partial(pipelined, command, workers, lines))
            rr = median(partial(requests, command, workers, 2000 // workers))
            print(f"{label:<10}{workers:>8}{flow:>20,.0f}{rr:>22,.0f}")
    print()
    print(f"{'worker':<10}{'parent RSS 0 workers':>22}{'100 workers':>14}"
          f"{'per worker':>12}{'worker RSS':>12}")  # fmt: skip
    for label in ("python", "cat"):
        base, loaded, worker = memory_fresh(label)
        per = (loaded - base) / 100 * 1024
        print(f"{label:<10}{base:>20.1f}MB{loaded:>12.1f}MB{per:>9.0f} KB{worker:>10.1f}MB")


if __name__ == "__main__":
    main()
