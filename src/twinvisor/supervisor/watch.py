"""Watching live children: their exits (pidfd, or SIGCHLD where pidfds are missing) and their
output pipes, which go to the log files and are held by the guard while they are open.

`ChildWatcher` belongs to one Runtime. It is told about each child once (`watch`), reports an
exit through `on_exit` after draining what the child already wrote, and owns the bookkeeping of
the pipes: the key each is held under by the guard and its FIFO in the run dir, both given up at
EOF. It reaps a child only by its pid, never by a wildcard wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping

import msgspec

from twinvisor.linux import children, fsutil, kernel
from twinvisor.linux.children import Child
from twinvisor.linux.console import ConsoleStream, PipePeek
from twinvisor.linux.inflight import InFlight
from twinvisor.linux.logs import LogFile
from twinvisor.supervisor import fdkeys
from twinvisor.supervisor.seams import FdKeeper

log = logging.getLogger("twinvisor")

OnExit = Callable[[str, int, int | None, int | None], None]  # (instance, pid, exit code, signal)


class Streams(msgspec.Struct):
    """Where one instance's output goes."""

    stdout: LogFile | ConsoleStream
    stderr: LogFile | ConsoleStream


ADOPTED_POLL = 1.0  # seconds; only without pidfds, only for processes we did not start


class ChildWatcher:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_exit: OnExit,
        sinks: Mapping[str, Streams],
        link: Callable[[], FdKeeper | None],
        fifo_dir: str,
        children: Mapping[int, tuple[str, Child]],
    ) -> None:
        """`sinks`: instance -> its log files; `link`: the GuardLink when running as a twin
        (set after start-up, hence asked each time); `children`: the runtime's pid ->
        (instance, child), every one of which the SIGCHLD fallback polls."""
        self.loop = loop
        self._on_exit = on_exit
        self._sinks = sinks
        self._link = link
        self._fifo_dir = fifo_dir
        self._children = children
        # pipe fd -> (instance, pid, "out" | "err"): whose output it carries, the key the guard
        # holds it under (fdkeys.pipe), and what a chunk in flight is noted as
        self._pipes: dict[int, tuple[str, int, str]] = {}
        self._fifo_paths: dict[int, str] = {}  # pipe fd -> its FIFO in the run dir
        # pipe fd -> the child whose output it carries, while we read it: the fd is closed at
        # its end, and its number may then name anything we open next (a control connection)
        self._reading: dict[int, Child] = {}
        self._sigchld_fallback = False
        self._peek: PipePeek | None = None  # made for the first console stream
        self.inflight: InFlight | None = None  # set by the runtime (held by the guard)

    def watch(self, name: str, child: Child) -> None:
        """Hand the child's pipes to the guard, log its output, report its exit."""
        self._hold_pipes(name, child)
        self._watch_output(name, child)
        self.watch_exit(name, child)

    def detach(self) -> None:
        """Upgrade: stop reading the pipes; the next supervisor reads them from the guard."""
        for fd in list(self._pipes):
            self.loop.remove_reader(fd)

    def live_fifos(self) -> set[str]:
        return set(self._fifo_paths.values())

    # -- exits --------------------------------------------------------------------------------

    def watch_exit(self, name: str, child: Child) -> None:
        try:
            pidfd = kernel.pidfd_open(child.pid)
        except ProcessLookupError:
            pidfd = None
        if pidfd is None:
            self._enable_sigchld_fallback()
            if child.popen is None:
                # adopted, not our child: no SIGCHLD will tell us; without a pidfd (kernels
                # before 5.3) polling its liveness is the only way left
                self._poll_adopted(name, child)
            else:
                self.loop.call_soon(self._poll_exit, name, child)
            return

        def on_exit() -> None:
            if self._poll_exit(name, child):
                self.loop.remove_reader(pidfd)
                os.close(pidfd)

        self.loop.add_reader(pidfd, on_exit)

    def _poll_exit(self, name: str, child: Child) -> bool:
        status = children.reap(child)
        if status is None:
            return False
        self._drain_output(name, child)
        self._on_exit(name, child.pid, status[0], status[1])
        return True

    def _poll_adopted(self, name: str, child: Child) -> None:
        if not self._poll_exit(name, child):
            self.loop.call_later(ADOPTED_POLL, self._poll_adopted, name, child)

    def _enable_sigchld_fallback(self) -> None:
        """Without pidfds, SIGCHLD tells us that *some* child exited; we then reap ours by pid."""
        if self._sigchld_fallback:
            return
        self._sigchld_fallback = True

        def on_sigchld() -> None:
            for name, child in list(self._children.values()):
                if child.popen is not None:  # adopted ones are polled on their own
                    self._poll_exit(name, child)

        kernel.add_signal_handler(self.loop, signal.SIGCHLD, on_sigchld)

    # -- output -------------------------------------------------------------------------------

    def _hold_pipes(self, name: str, child: Child) -> None:
        link = self._link()
        for stream, fd in (("out", child.stdout_fd), ("err", child.stderr_fd)):
            if fd is not None:
                self._pipes[fd] = (name, child.pid, stream)
                if child.named_fifos:  # removed from the run dir once read to the end
                    self._fifo_paths[fd] = children.fifo_path(
                        self._fifo_dir, f"{name}.{stream}", child.pid
                    )
                if link is not None:
                    link.hold(fdkeys.pipe(name, child.pid, stream), fd)

    def _watch_output(self, name: str, child: Child) -> None:
        streams = self._sinks[name]
        for fd, sink in ((child.stdout_fd, streams.stdout), (child.stderr_fd, streams.stderr)):
            if fd is not None:
                self._reading[fd] = child
                self.loop.add_reader(fd, self._read_pipe, fd, sink)

    def _read_pipe(self, fd: int, sink: LogFile | ConsoleStream) -> None:
        try:
            data = self._take(fd, sink)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return
        if isinstance(sink, ConsoleStream):
            sink.end(fd)
        self.loop.remove_reader(fd)
        self._reading.pop(fd, None)
        os.close(fd)
        pipe = self._pipes.pop(fd, None)
        link = self._link()
        if pipe is not None and link is not None:
            link.release(fdkeys.pipe(*pipe))
        fifo = self._fifo_paths.pop(fd, None)
        if fifo is not None:  # every writer is gone: nothing will ever wait in it again
            fsutil.remove_quietly(fifo)

    def _take(self, fd: int, sink: LogFile | ConsoleStream) -> bytes:
        """Read a chunk and hand it to the sink; b"" at the end of the pipe.

        For the console, whole lines are first peeked at, written out, and only then
        consumed: a supervisor killed in between leaves them for the next one to write."""
        if isinstance(sink, ConsoleStream):
            if self._peek is None:
                self._peek = PipePeek()
            seen = self._peek.peek(fd)
            if seen:
                end = seen.rfind(b"\n") + 1 or len(seen)  # no newline yet: the sink keeps it
                sink.write(seen[:end], fd)
                return os.read(fd, end)
            data = os.read(fd, 65536)
            sink.write(data, fd)
            return data
        data = os.read(fd, 65536)
        self._write_kept(fd, sink, data)
        return data

    def _write_kept(self, fd: int, sink: LogFile, data: bytes) -> None:
        """Write a chunk just taken out of a pipe, noted in flight meanwhile: a supervisor
        killed between the read and the write leaves it to the next one (linux/inflight.py)."""
        pipe = self._pipes.get(fd)
        note = self.inflight if pipe is not None and data and sink.path is not None else None
        if note is not None and pipe is not None:
            name, _pid, stream = pipe
            if not note.put(name, stream, sink.position(), data):
                note = None  # too big to note (a read takes at most inflight.MAX_DATA)
        sink.write(data)
        if note is not None:
            note.clear()

    def write_leftover(self, name: str, pid: int, stream: str, fd: int) -> None:
        """The pipe of a generation that ended while no supervisor read it (killed, and its
        guard held the pipe): what it wrote last (often why it ended) goes to its log, then
        the pipe is closed. Bounded by what a pipe holds (children.FIFO_BUFFER)."""
        sink = self._log_file(name, stream)
        taken = 0
        try:
            os.set_blocking(fd, False)
            while sink is not None and taken <= children.FIFO_BUFFER:
                data = os.read(fd, 65536)  # its writers are gone: EOF after the data
                if not data:
                    break
                sink.write(data)
                taken += len(data)
        except OSError:
            pass  # BlockingIOError: a descendant still holds it open; nothing more now
        finally:
            os.close(fd)
        if taken:
            log.info(
                "%s: wrote %d bytes of std%s that pid %d wrote before it ended, while no "
                "supervisor read them",
                name,
                taken,
                stream,
                pid,
            )

    def _log_file(self, name: str, stream: str) -> LogFile | None:
        """Where instance `name`'s "out" or "err" is written, if to a file."""
        streams = self._sinks.get(name)
        if streams is None:
            return None
        sink = streams.stdout if stream == "out" else streams.stderr
        return sink if isinstance(sink, LogFile) and sink.path is not None else None

    def write_pending(self) -> None:
        """After a takeover, before any pipe is read again: write the chunk the previous
        supervisor had read and not written, so the log keeps the program's order."""
        if self.inflight is None:
            return
        pending = self.inflight.pending()
        self.inflight.clear()
        sink = None if pending is None else self._log_file(pending.name, pending.stream)
        if pending is None or sink is None or pending.written(sink.path or ""):
            return
        sink.write(pending.data)
        log.info(
            "wrote %d bytes of %s's std%s that the previous supervisor had read and not "
            "written (it was killed in between)",
            len(pending.data),
            pending.name,
            pending.stream,
        )

    def close(self) -> None:
        if self._peek is not None:
            self._peek.close()
            self._peek = None
        if self.inflight is not None:  # the guard keeps its own copy (upgrade, takeover)
            self.inflight.close()
            self.inflight = None

    def _drain_output(self, name: str, child: Child) -> None:
        """Read what is already in the pipes, so output lands before the exit is logged.
        The pipes stay watched: a grandchild may still hold them open."""
        streams = self._sinks.get(name)
        if streams is None:
            return
        for fd, sink in ((child.stdout_fd, streams.stdout), (child.stderr_fd, streams.stderr)):
            if fd is None or self._reading.get(fd) is not child:
                # already read to its end and closed (the pipe's EOF can come before the
                # exit): the number may be a control connection's by now, whose request
                # bytes were once read here into the program's log (test_kill, 1 in 14)
                continue
            for _ in range(64):  # bounded: a grandchild writing endlessly must not stall us
                try:
                    data = self._take(fd, sink)
                except OSError:
                    break
                if not data:
                    break
