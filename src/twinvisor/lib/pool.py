"""Named workers driven over stdin/stdout, with callbacks (seed 004's pagent).

A worker is a command started in its own session. Lines written with `send` go to its stdin;
each line it prints goes to `on_output(name, line)`; its end (exit status, or the error that
stopped it) goes to `on_end(name, end)`. `request` sends a line and returns the next line
printed. An optional RestartPolicy restarts a worker by the supervisor's rules.

Everything runs on one asyncio loop: no thread per worker. The exit of each worker is
watched through a pidfd on the loop (not asyncio's child watcher, which on 3.11 is a thread
per child). Memory stays bounded under a slow consumer: each worker has a bounded queue of
lines waiting for its callback; when it is full the reader stops reading, the StreamReader
pauses the pipe, the pipe fills, and the worker blocks in write() — backpressure reaches the
producer instead of piling up here.

`AsyncPool` is the asyncio API; `Pool` is the same behind plain blocking calls, running the
loop in one background thread (callbacks are called from that thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from twinvisor.config.specs import RestartPolicy
from twinvisor.core.policy import GiveUp, Restart, Stay, decide, run_failed
from twinvisor.errors import SpawnError, TwinvisorError
from twinvisor.linux.kernel import group_alive, pidfd_open, signal_group
from twinvisor.linux.stopping import StopPlan, stop_async

log = logging.getLogger("twinvisor.pool")

__all__ = [
    "AsyncPool",
    "Pool",
    "PoolError",
    "UnknownWorker",
    "WorkerEnd",
    "WorkerExited",
    "WorkerStats",
]

T = TypeVar("T")
OutputCallback = Callable[[str, str], Awaitable[None] | None]
EndCallback = Callable[[str, "WorkerEnd"], Awaitable[None] | None]


class PoolError(TwinvisorError):
    pass


class UnknownWorker(PoolError, KeyError):
    pass


class WorkerExited(PoolError):
    """The worker ended before the operation (a send, a request's reply) completed."""


@dataclass(frozen=True)
class WorkerEnd:
    """How one run of a worker ended."""

    name: str
    pid: int | None  # None: it could not be started
    returncode: int | None  # exit code, or -N when killed by signal N; None: never ran
    error: BaseException | None = None  # what stopped it, when not its own exit
    removed: bool = False  # stopped by remove() / close()
    will_restart: bool = False  # the restart policy starts it again


@dataclass(frozen=True)
class WorkerStats:
    pid: int | None
    lines_read: int
    queued: int  # lines waiting for on_output
    paused: bool  # the reader waits for room in the queue (backpressure is on)
    restarts: int


@dataclass(frozen=True)
class _Spec:
    argv: tuple[str, ...]
    env: Mapping[str, str] | None
    cwd: str | None
    merge_stderr: bool
    restart: RestartPolicy | None
    on_output: OutputCallback | None
    on_end: EndCallback | None


async def _call(callback: Callable[..., Awaitable[None] | None] | None, *args: Any) -> None:
    """Plain and async callbacks alike; a slow async one holds its worker's queue up."""
    if callback is None:
        return
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


class _Worker:
    """One named worker: its current process, reader, dispatcher and restart loop."""

    def __init__(self, name: str, spec: _Spec, limits: tuple[int, int, float]) -> None:
        self.name, self.spec = name, spec
        self.queue_size, self.line_limit, self.stop_timeout = limits
        self.popen: subprocess.Popen[bytes] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reader = asyncio.StreamReader()
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(self.queue_size)
        self.lines_read = 0
        self.paused = False
        self.restarts = 0
        self.error: BaseException | None = None
        self.removing = False
        self.wake = asyncio.Event()  # cuts a restart back-off short on removal
        self.reply: tuple[int, asyncio.Future[str]] | None = None
        self.request_lock = asyncio.Lock()
        self.exited: asyncio.Future[int] | None = None  # resolves with the returncode
        self.stopping: asyncio.Task[bool] | None = None  # TERM, then KILL at the timeout
        self.done: asyncio.Future[WorkerEnd] = asyncio.get_running_loop().create_future()

    # -- one process

    async def spawn(self) -> None:
        """Start the process and hook its pipes to the loop; OSError when exec fails."""
        loop = asyncio.get_running_loop()
        popen = subprocess.Popen(
            self.spec.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if self.spec.merge_stderr else None,
            env=None if self.spec.env is None else dict(self.spec.env),
            cwd=self.spec.cwd,
            start_new_session=True,  # its own group: remove() signals it and its children
            bufsize=0,
        )
        assert popen.stdin is not None and popen.stdout is not None
        self.popen, self.error = popen, None
        self.exited, self.stopping = _exit_future(popen.pid), None
        reader = asyncio.StreamReader(limit=self.line_limit)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, popen.stdin
        )
        self.writer = asyncio.StreamWriter(transport, protocol, None, loop)
        self.reader = reader

    async def run_to_end(self) -> tuple[int | None, float]:
        """Deliver the current process's output until it exits; (returncode, run time)."""
        assert self.popen is not None and self.exited is not None
        started = time.monotonic()
        reading = asyncio.create_task(self._read_lines())
        dispatcher = asyncio.create_task(self._dispatch())
        returncode = await self.exited
        self.popen.returncode = returncode  # reaped by us: keep Popen from reaping again
        run_time = time.monotonic() - started
        # Leftovers of its group die with it; they may hold the stdout pipe open
        if group_alive(self.popen.pid):
            signal_group(self.popen.pid, signal.SIGKILL)
        await reading
        await dispatcher
        if self.stopping is not None:
            await self.stopping  # done: it waited for the same exit
        self._after_exit()
        return returncode, run_time

    def _after_exit(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.reply is not None and not self.reply[1].done():
            self.reply[1].set_exception(WorkerExited(f"worker {self.name!r} exited"))

    async def _read_lines(self) -> None:
        try:
            while line := await self.reader.readline():
                self.lines_read += 1
                self.paused = self.queue.full()
                await self.queue.put((self.lines_read, line))  # waits while full
                self.paused = False
        except ValueError as e:  # a line longer than line_limit
            self.fail(PoolError(f"worker {self.name!r}: {e}"))
            await self._drain_pipe()
        finally:
            await self.queue.put(None)

    async def _drain_pipe(self) -> None:
        # After an error keep reading (and dropping) so the dying worker is not stuck in write
        with contextlib.suppress(Exception):
            while await self.reader.read(65536):
                pass

    async def _dispatch(self) -> None:
        while (item := await self.queue.get()) is not None:
            seq, raw = item
            if self.error is not None:
                continue  # stopping: drop, but keep the queue moving
            text = raw.decode(errors="replace").removesuffix("\n")
            if self._take_reply(seq, text):
                continue
            try:
                await _call(self.spec.on_output, self.name, text)
            except Exception as e:  # pagent: a callback error stops the worker
                self.fail(e)

    def _take_reply(self, seq: int, text: str) -> bool:
        if self.reply is None or seq <= self.reply[0] or self.reply[1].done():
            return False
        self.reply[1].set_result(text)
        return True

    # -- control

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
            self.stop(self.stop_timeout)

    def stop(self, timeout: float) -> None:
        """TERM to the whole group now, KILL at `timeout` if anything is left."""
        popen, exited = self.popen, self.exited
        if popen is None or exited is None or exited.done() or self.stopping is not None:
            return  # not running, or being stopped already
        plan = StopPlan(popen.pid, signal.SIGTERM, timeout)
        self.stopping = asyncio.create_task(stop_async(plan, exited))

    async def write(self, line: str) -> None:
        if self.writer is None or self.popen is None or self.popen.returncode is not None:
            raise WorkerExited(f"worker {self.name!r} is not running")
        self.writer.write(line.encode() + b"\n")
        try:
            await self.writer.drain()
        except (BrokenPipeError, ConnectionResetError) as e:
            raise WorkerExited(f"worker {self.name!r} closed its stdin") from e

    def stats(self) -> WorkerStats:
        pid = None if self.popen is None else self.popen.pid
        return WorkerStats(pid, self.lines_read, self.queue.qsize(), self.paused, self.restarts)


def _exit_future(pid: int) -> asyncio.Future[int]:
    """Resolve with the exit status when `pid` (our child) exits: a pidfd on the loop."""
    loop = asyncio.get_running_loop()
    fd = pidfd_open(pid)
    if fd is None:  # no pidfd (old kernel): a blocking waitpid in the default executor
        return loop.run_in_executor(None, _blocking_reap, pid)
    future: asyncio.Future[int] = loop.create_future()

    def on_exit() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        future.set_result(_blocking_reap(pid))  # readable pidfd: waitpid returns at once

    loop.add_reader(fd, on_exit)
    return future


def _blocking_reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


async def _supervise(worker: _Worker, forget: Callable[[_Worker], None]) -> None:
    """Run the worker to its end, report, and restart it while the policy says so."""
    failures = 0
    end: WorkerEnd | None = None
    try:
        while end is None or end.will_restart:
            run_time: float | None = None
            if end is not None and not await _respawn(worker):
                end = WorkerEnd(worker.name, None, None, worker.error)
            else:
                returncode, run_time = await worker.run_to_end()
                end = WorkerEnd(worker.name, worker.stats().pid, returncode, worker.error)
            failures, end, delay = _judge(worker, end, run_time, failures)
            try:
                await _call(worker.spec.on_end, worker.name, end)
            except Exception:  # the worker is over either way: report, never lose the task
                log.exception("pool: on_end callback of worker %r raised", worker.name)
            if end.will_restart:
                with contextlib.suppress(TimeoutError):  # remove() cuts the back-off short
                    await asyncio.wait_for(worker.wake.wait(), delay)
                end = replace(end, will_restart=not worker.removing, removed=worker.removing)
    finally:
        forget(worker)
        if not worker.done.done():
            worker.done.set_result(end or WorkerEnd(worker.name, None, None, removed=True))


def _judge(
    worker: _Worker, end: WorkerEnd, run_time: float | None, failures: int
) -> tuple[int, WorkerEnd, float]:
    """Count the failure and decide on a restart (and its delay), as the supervisor does."""
    policy = worker.spec.restart
    if worker.removing:
        return failures, replace(end, removed=True), 0.0
    if policy is None:
        return failures, end, 0.0
    failed = end.error is not None or run_failed(policy, run_time)
    failures = failures + 1 if failed else 0
    code = end.returncode if end.returncode is not None and end.returncode >= 0 else None
    match decide(policy, code, failures):
        case Restart(delay=delay):
            return failures, replace(end, will_restart=True), delay
        case GiveUp() | Stay():
            return failures, end, 0.0


async def _respawn(worker: _Worker) -> bool:
    worker.restarts += 1
    try:
        await worker.spawn()
    except OSError as e:
        worker.error = e
        return False
    return True


class AsyncPool:
    """Named workers on the running asyncio loop. Use `async with AsyncPool(...) as pool`."""

    def __init__(
        self,
        on_output: OutputCallback | None = None,
        on_end: EndCallback | None = None,
        *,
        queue_size: int = 256,
        line_limit: int = 64 * 1024,
        stop_timeout: float = 5.0,
    ) -> None:
        self.on_output, self.on_end = on_output, on_end
        self.queue_size, self.line_limit = queue_size, line_limit
        self.stop_timeout = stop_timeout
        self._workers: dict[str, _Worker] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(
        self,
        name: str,
        command: str | Sequence[str],
        *,
        on_output: OutputCallback | None = None,
        on_end: EndCallback | None = None,
        restart: RestartPolicy | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        merge_stderr: bool = False,
    ) -> int:
        """Start worker `name` (a str command is split like a shell would); returns its pid."""
        if name in self._workers:
            raise PoolError(f"worker {name!r} exists already")
        argv = tuple(shlex.split(command) if isinstance(command, str) else command)
        spec = _Spec(argv, env, cwd, merge_stderr, restart, on_output or self.on_output,
                     on_end or self.on_end)  # fmt: skip
        worker = _Worker(name, spec, (self.queue_size, self.line_limit, self.stop_timeout))
        try:
            await worker.spawn()
        except OSError as e:
            raise SpawnError(f"cannot start worker {name!r} ({argv[0]}): {e}") from e
        self._workers[name] = worker
        task = asyncio.create_task(_supervise(worker, self._forget), name=f"pool:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        assert worker.popen is not None
        return worker.popen.pid

    def _forget(self, worker: _Worker) -> None:
        if self._workers.get(worker.name) is worker:
            del self._workers[worker.name]

    def _get(self, name: str) -> _Worker:
        try:
            return self._workers[name]
        except KeyError:
            raise UnknownWorker(name) from None

    async def send(self, name: str, line: str) -> None:
        """Write `line` and a newline to the worker's stdin (waits while its pipe is full)."""
        await self._get(name).write(line)

    async def request(self, name: str, line: str, timeout: float | None = None) -> str:
        """Send `line`, return the next line the worker prints (not given to on_output)."""
        worker = self._get(name)
        async with worker.request_lock:  # one outstanding request per worker
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            worker.reply = (worker.lines_read, future)  # the reply is read after this point
            try:
                await worker.write(line)
                return await asyncio.wait_for(future, timeout)
            finally:
                worker.reply = None

    async def remove(self, name: str) -> WorkerEnd:
        """Stop the worker's whole process group (TERM, KILL after stop_timeout)."""
        worker = self._get(name)
        worker.removing = True
        worker.wake.set()
        worker.stop(self.stop_timeout)
        return await asyncio.shield(worker.done)

    def names(self) -> list[str]:
        return list(self._workers)

    def stats(self, name: str) -> WorkerStats:
        return self._get(name).stats()

    async def close(self) -> None:
        await asyncio.gather(*(self.remove(n) for n in list(self._workers)))

    async def __aenter__(self) -> AsyncPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Pool:
    """The blocking API: an AsyncPool on an event loop in one background thread.

    Callbacks run in that thread and must not call the blocking methods (it would wait on
    itself); `send` is the exception: from a callback it is queued and returns at once.
    """

    def __init__(
        self,
        on_output: OutputCallback | None = None,
        on_end: EndCallback | None = None,
        **options: Any,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="twinvisor-pool")
        self._thread.daemon = True  # never keeps the interpreter alive on its own
        self._thread.start()

        async def make() -> AsyncPool:
            return AsyncPool(on_output, on_end, **options)

        self._pool = self._run(make())

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking Pool methods cannot be called from a callback")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, name: str, command: str | Sequence[str], **options: Any) -> int:
        return self._run(self._pool.start(name, command, **options))

    def send(self, name: str, line: str) -> None:
        if threading.current_thread() is self._thread:
            self._loop.create_task(self._pool.send(name, line))
            return
        self._run(self._pool.send(name, line))

    def request(self, name: str, line: str, timeout: float | None = None) -> str:
        return self._run(self._pool.request(name, line, timeout))

    def remove(self, name: str) -> WorkerEnd:
        return self._run(self._pool.remove(name))

    def names(self) -> list[str]:
        return self._pool.names()

    def stats(self, name: str) -> WorkerStats:
        return self._pool.stats(name)

    def close(self) -> None:
        """Stop every worker, then the loop and its thread."""
        if not self._thread.is_alive():
            return
        self._run(self._pool.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
