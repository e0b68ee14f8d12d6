"""Is the program ready, is it healthy: the NOTIFY_SOCKET server and the active probes.

The notify server is one datagram socket for the whole daemon. The kernel attaches the
sender's credentials (SO_PASSCRED), so a message is attributed to a program by the sender's
pid — which must be the program's own process or one of its descendants — never by what the
message claims.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import socket
import struct
import subprocess
from collections.abc import Callable

from twinvisor.linux import fsutil, kernel

log = logging.getLogger("twinvisor")

MAX_DATAGRAM = 4096
_UCRED = struct.Struct("3i")


def parse_notify(data: bytes) -> tuple[tuple[str, str], ...]:
    """'READY=1\\nSTATUS=x' -> (("READY", "1"), ("STATUS", "x")); malformed lines dropped."""
    fields = []
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key.replace("_", "").isalnum() and key.upper() == key:
            fields.append((key, value))
    return tuple(fields)


_NAME = re.compile(r"@twinvisor/[0-9a-f]{32}/notify")


def new_notify_name() -> str:
    """An abstract NOTIFY_SOCKET name nobody can guess in advance. The abstract namespace has
    no permissions (so a program running as another user reaches it without opening up the
    0700 run dir), which is also why the name must not be predictable: another uid could
    bind it first and block the daemon (and /proc/net/unix shows names once they are bound,
    so it is never released while a twin lives: the guard holds the bound socket)."""
    # secrets.token_hex reads os.urandom too; secrets would bring hmac, hashlib and random
    return f"@twinvisor/{os.urandom(16).hex()}/notify"


class NotifyServer:
    """Receives sd_notify datagrams; calls on_message(sender_pid, fields).

    The socket outlives supervisors: taken back from the guard after a restart. When both
    twins died, the name the programs were given (remembered in `name_file`, in the private
    run dir) is bound again if it is still free, else a fresh one is used."""

    def __init__(
        self, name_file: str, on_message: Callable[[int, tuple[tuple[str, str], ...]], None]
    ) -> None:
        self.name_file = name_file
        self.path = ""
        self._on_message = on_message
        self._sock: socket.socket | None = None

    @property
    def fileno(self) -> int | None:
        return None if self._sock is None else self._sock.fileno()

    def start(self, handed: int | None = None) -> None:
        sock = self._adopt(handed) if handed is not None else self._bind()
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _adopt(self, fd: int) -> socket.socket:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        name = sock.getsockname()
        self.path = "@" + (name[1:].decode() if isinstance(name, bytes) else name[1:])
        return sock

    def _bind(self) -> socket.socket:
        previous = _read_name(self.name_file)
        for name in ([previous] if previous else []) + [new_notify_name() for _ in range(3)]:
            sock = socket.socket(
                socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            )
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            try:
                sock.bind("\0" + name[1:])
            except OSError as e:
                sock.close()
                if e.errno != errno.EADDRINUSE:
                    raise
                if name == previous:
                    log.warning(
                        "NOTIFY_SOCKET %s is taken by another process: using a new name "
                        "(programs already running cannot notify until restarted)",
                        name,
                    )
                continue
            self.path = name
            if name != previous:
                fsutil.write_atomic(self.name_file, name + "\n", mode=0o600)
            return sock
        raise OSError(errno.EADDRINUSE, "cannot bind a NOTIFY_SOCKET name")

    def _readable(self) -> None:
        assert self._sock is not None
        for _ in range(64):  # bounded per wake-up: a flood cannot starve the loop
            try:
                data, ancdata, _flags, _addr = self._sock.recvmsg(
                    MAX_DATAGRAM, socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(16 * 4)
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            pid = _sender_pid(ancdata)
            if pid is not None and data:
                self._on_message(pid, parse_notify(data))

    def close(self, forget: bool = True) -> None:
        """`forget`: the daemon is going down, the next one gets a new name."""
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if forget:
            fsutil.remove_quietly(self.name_file)


def _read_name(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            text = f.read(128).decode("ascii", "replace").strip()
    except OSError:
        return None
    return text if _NAME.fullmatch(text) else None


def _sender_pid(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    pid = None
    for level, kind, payload in ancdata:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
            pid = _UCRED.unpack_from(payload)[0]
        elif kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            for fd in fds:  # nobody may push fds into the daemon through this socket
                with contextlib.suppress(OSError):
                    os.close(fd)
    return pid


# ---- probes ------------------------------------------------------------------------------------


def split_host_port(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def probe_tcp(target: str, timeout: float) -> tuple[bool, str]:
    host, port = split_host_port(target)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as e:
        return False, f"tcp {target}: {e or 'timeout'}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


async def probe_http(url: str, timeout: float) -> tuple[bool, str]:
    """GET url; 2xx and 3xx count as healthy. Plain HTTP/1.0 keeps the probe tiny."""
    from urllib.parse import urlsplit  # here: with ipaddress, only where a program has HTTP checks

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        return await asyncio.wait_for(_http_get(host, port, path), timeout)
    except (OSError, TimeoutError) as e:
        return False, f"GET {url}: {e or 'timeout'}"


async def _http_get(host: str, port: int, path: str) -> tuple[bool, str]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: twinvisor-probe\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    parts = status_line.split()
    if len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400:
        return True, ""
    return (
        False,
        f"GET http://{host}:{port}{path}: {status_line.decode('latin-1').strip() or 'no answer'}",
    )


async def probe_command(argv: tuple[str, ...], timeout: float, cwd: str | None) -> tuple[bool, str]:
    """Run a health command in its own group; exit 0 is healthy. Awaited through a pidfd
    (asyncio's own child watcher would start a thread per command on Python 3.11)."""
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as e:
        return False, f"health command {argv[0]!r}: {e.strerror}"
    try:
        code = await asyncio.wait_for(wait_exit(proc), timeout)
    except TimeoutError:
        kernel.signal_group(proc.pid, signal.SIGKILL)
        await wait_exit(proc)
        return False, f"health command timed out after {timeout}s"
    return code == 0, "" if code == 0 else f"health command exited {code}"


async def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """Await the exit of our child `proc` without a thread (pidfd readable = exited)."""
    loop = asyncio.get_running_loop()
    try:
        fd = kernel.pidfd_open(proc.pid)
    except ProcessLookupError:
        fd = None
    if fd is None:
        return await loop.run_in_executor(None, proc.wait)
    done: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, on_exit)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return proc.wait()
