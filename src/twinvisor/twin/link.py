"""The supervisor's side of the twin: hand fds to the guard, heartbeat, replace a dead guard.

See guard.py for the guard itself, protocol.py for what travels between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Callable

from twinvisor.config.specs import DaemonSpec
from twinvisor.linux import kernel
from twinvisor.twin.protocol import (
    HEARTBEAT,
    command,
    daemon_paths_env,
    peer,
    recv_message,
    send_message,
)

log = logging.getLogger("twinvisor")


class GuardLink:
    def __init__(self, path: str, config_path: str, daemon: DaemonSpec | None = None) -> None:
        self.on_replaced: Callable[[int | None], None] | None = None  # events, metrics
        self.console: tuple[int, int] | None = None  # the daemon's stdout/stderr fds
        self.path = path
        self.config_path = config_path
        self.daemon = daemon  # told to a new guard: the config file may have errors by now
        self.sock: socket.socket | None = None
        self.guard_pid: int | None = None
        self.handed: dict[str, int] = {}  # what the guard holds for us: key -> our own fd
        self._pidfd: int | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        # False: the owner calls `beat` from its own periodic timer (one wake-up, not two)
        self.beats_itself = True
        self._closing = False
        self._replacing: asyncio.Task[None] | None = None

    # -- connecting -------------------------------------------------------------------------

    def connect(self, timeout: float = 5.0) -> dict[str, int]:
        """Connect and fetch the fds the guard holds (from a previous supervisor)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        sock.connect(self.path)
        self.guard_pid, _uid = peer(sock)
        self.sock = sock
        send_message(sock, {"op": "hello", "pid": os.getpid()})
        received: dict[str, int] = {}
        while True:
            got = recv_message(sock)
            if got is None:
                raise ConnectionError("the guard closed the connection")
            message, fds = got
            if message.get("op") == "fds":
                for key, fd in zip(message.get("keys", []), fds, strict=False):
                    os.set_inheritable(fd, False)
                    received[str(key)] = fd
            elif message.get("op") == "fds_end":
                return received

    def start(self) -> None:
        """Watch the guard and start the heartbeat (on the running loop)."""
        loop = asyncio.get_running_loop()
        assert self.sock is not None
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self._readable)
        self._watch_guard()
        if self.beats_itself:
            self._heartbeat = loop.call_later(HEARTBEAT, self._beat)

    def _watch_guard(self) -> None:
        if self.guard_pid is None:
            return
        try:
            self._pidfd = kernel.pidfd_open(self.guard_pid)
        except ProcessLookupError:
            self._guard_lost()
            return
        if self._pidfd is not None:
            asyncio.get_running_loop().add_reader(self._pidfd, self._guard_lost)

    # -- handing fds over ----------------------------------------------------------------------

    def hold(self, key: str, fd: int) -> None:
        self.handed[key] = fd
        self._send({"op": "hold", "key": key}, [fd])

    def started(self) -> None:
        """Start-up is over: from now on a death is a crash to recover from, not a failed
        start (which the guard does not retry forever)."""
        self._send({"op": "ready"})

    def release(self, key: str) -> None:
        if self.handed.pop(key, None) is not None:
            self._send({"op": "release", "key": key})

    def _send(self, message: dict[str, object], fds: list[int] | None = None) -> None:
        if self.sock is None:
            return
        try:  # at once, as most are (a seqpacket send is all or nothing)
            send_message(self.sock, message, fds)
            return
        except BlockingIOError:
            pass  # the guard is behind: wait below for room, a while
        except OSError as e:
            log.warning("guard link: %s", e)
            return
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(2.0)
            send_message(self.sock, message, fds)
        except OSError as e:
            log.warning("guard link: %s", e)
        finally:
            with contextlib.suppress(OSError):
                self.sock.setblocking(False)

    # -- heartbeat and loss -----------------------------------------------------------------

    def beat(self) -> None:
        """The periodic look at the guard: a stopped one is replaced. Nothing is sent (it
        would wake the guard): our sign of life is the pid file's mtime (twin/protocol.py)."""
        if self.guard_pid is not None and kernel.is_stopped(self.guard_pid):
            # SIGSTOPped (or traced): it cannot act for us; its pidfd will say it died
            log.warning("guard pid %d is stopped: SIGKILL, a new one replaces it", self.guard_pid)
            kernel.signal_pid(self.guard_pid, signal.SIGKILL)

    def _beat(self) -> None:
        self.beat()
        self._heartbeat = asyncio.get_running_loop().call_later(HEARTBEAT, self._beat)

    def _readable(self) -> None:
        assert self.sock is not None
        try:
            got = recv_message(self.sock)
        except BlockingIOError:
            return
        if got is None:
            self._disconnect()
            return
        _message, fds = got
        for fd in fds:
            os.close(fd)

    def _disconnect(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _guard_lost(self) -> None:
        loop = asyncio.get_running_loop()
        if self._pidfd is not None:
            loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._disconnect()
        if self._closing:
            return
        log.warning("guard pid %s died: starting a new one", self.guard_pid)
        self._replacing = loop.create_task(self._replace_guard())

    def _daemon_env(self) -> dict[str, str]:
        d = self.daemon
        return {} if d is None else daemon_paths_env(d.run_dir, d.log_dir, d.socket)

    async def _replace_guard(self) -> None:
        """Start a guard that watches us, reconnect, and hand it every fd again."""
        out, err = self.console if self.console is not None else (None, None)
        proc = subprocess.Popen(
            command("guard", self.config_path, "--watch", str(os.getpid())),
            env=dict(os.environ, **self._daemon_env()),
            stdin=subprocess.DEVNULL,
            # the console it hands to the next supervisors: the one the dead guard had
            stdout=subprocess.DEVNULL if out is None else out,
            stderr=subprocess.DEVNULL if err is None else err,
            start_new_session=True,
        )
        proc.returncode = 0  # it lives on its own; we watch it by pidfd once connected
        for _ in range(500):  # 10 s: a new interpreter's start on a loaded machine (2 s was
            # not always enough: then a second guard was started beside the first)
            await asyncio.sleep(0.02)  # the guard binds its socket: no other signal to await
            try:
                self.connect()
                break
            except OSError:
                continue
        else:
            log.error("could not reach the new guard; retrying in 5 s")
            asyncio.get_running_loop().call_later(5.0, self._guard_lost)
            return
        handed, self.handed = self.handed, {}
        for key, fd in handed.items():
            self.hold(key, fd)
        self.start()
        log.info("new guard pid %s holds %d fds", self.guard_pid, len(handed))
        if self.on_replaced is not None:
            self.on_replaced(self.guard_pid)

    def shutdown(self, upgrade: bool = False) -> None:
        """Tell the guard we are going on purpose (down: exit too; upgrade: re-exec)."""
        self._closing = True
        self._send({"op": "upgrade" if upgrade else "shutdown"})
        if self._heartbeat is not None:
            self._heartbeat.cancel()
