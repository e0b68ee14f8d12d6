"""The daemon process: run-dir lock, pid file, logging, control server, signals, shutdown.

`twinvisor up` starts this in the background and waits on a pipe (fd in
TWINVISOR_READY_FD) for one JSON line: the daemon is up with its autostart programs
started, or why it is not. Whether a daemon already runs is decided by an flock on the
run dir's lock file, never by looking at pid files or sockets.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import socket
import sys
from typing import Any

from twinvisor.config.load import load_config
from twinvisor.config.specs import Config, DaemonSpec
from twinvisor.control.server import ControlServer
from twinvisor.errors import AlreadyRunning, ConfigError
from twinvisor.linux import fsutil, kernel
from twinvisor.supervisor.runtime import Runtime

log = logging.getLogger("twinvisor")

READY_FD_ENV = "TWINVISOR_READY_FD"
STARTUP_TIMEOUT = 60.0
EXIT_STARTUP_REPORTED = 4  # start-up failed and the waiting `up` was told why


def acquire_lock(daemon: DaemonSpec) -> int:
    """Hold the run dir's lock for the life of the process (O_CLOEXEC: children don't
    inherit it, so a program that outlives us cannot keep a new daemon out)."""
    fsutil.make_private_dir(daemon.run_dir)
    fd = os.open(daemon.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(
            f"a twinvisor daemon already runs for {daemon.run_dir}",
            fsutil.read_pid(daemon.pid_path),
        ) from None
    return fd


def _setup_logging(daemon: DaemonSpec, foreground: bool) -> None:
    os.makedirs(daemon.log_dir, mode=0o750, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handlers: list[logging.Handler] = [fsutil.ResilientFileHandler(daemon.log_path)]
    if foreground:
        handlers.append(logging.StreamHandler(sys.stderr))
    root = logging.getLogger()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(logging.INFO)


class _Reporter:
    """Tells the waiting `twinvisor up` (and systemd, if it started us) how start-up went."""

    def __init__(self) -> None:
        self.told = False
        raw = os.environ.pop(READY_FD_ENV, None)
        self.fd = int(raw) if raw and raw.isdigit() else None
        if self.fd is not None:
            try:
                os.set_inheritable(self.fd, False)  # programs must not inherit it
            except OSError:
                self.fd = None

    def send(self, message: dict[str, Any]) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, (json.dumps(message) + "\n").encode())
            os.close(self.fd)
            self.told = True
        except OSError:
            pass  # the caller gave up waiting; that must not stop the daemon
        self.fd = None

    def failed(self, message: dict[str, Any]) -> int:
        """Report a start-up failure; the exit status says whether an operator was told.
        A guard does not retry a failure the `up` that started it has already reported:
        it would go on behind the operator's back."""
        self.send({"ok": False, **message})
        return EXIT_STARTUP_REPORTED if self.told else 1


def run(config_path: str, foreground: bool) -> int:
    reporter = _Reporter()
    try:
        config = load_config(config_path)
    except ConfigError as e:
        reporter.send({"ok": False, "error": "config", "problems": [str(p) for p in e.problems]})
        print(str(e), file=sys.stderr)
        return 2
    try:
        lock_fd = acquire_lock(config.daemon)
    except AlreadyRunning as e:
        reporter.send({"ok": False, "error": "running", "message": str(e), "pid": e.pid})
        print(f"twinvisor: {e} (pid {e.pid})", file=sys.stderr)
        return 3
    _setup_logging(config.daemon, foreground)
    fsutil.write_atomic(config.daemon.pid_path, f"{os.getpid()}\n")
    try:
        return asyncio.run(_serve(config, reporter))
    finally:
        fsutil.remove_quietly(config.daemon.pid_path)
        os.close(lock_fd)


def _connect_guard(config: Config) -> tuple[Any, dict[str, int]]:
    """As a twin: reach our guard and take back what it holds for us."""
    from twinvisor.twin.guard import GUARD_ENV
    from twinvisor.twin.link import GuardLink

    path = os.environ.pop(GUARD_ENV, None)
    if not path:
        return None, {}
    link = GuardLink(path, config.path)
    try:
        handed = link.connect()
    except OSError as e:
        log.warning("cannot reach the guard at %s (%s): running without it", path, e)
        return None, {}
    log.info("guard pid %s handed back %d fds", link.guard_pid, len(handed))
    return link, handed


async def _serve(config: Config, reporter: _Reporter) -> int:
    from twinvisor.control.routes import build_router
    from twinvisor.lib.sd import notify
    from twinvisor.linux import statefile

    loop = asyncio.get_running_loop()
    link, handed = _connect_guard(config)
    runtime = Runtime(config)
    runtime.link = link
    try:
        runtime.open(handed)
    except OSError as e:
        log.error("cannot bind: %s", e)
        return reporter.failed({"error": "bind", "message": str(e)})
    stopping = asyncio.Event()
    shutdown_result: dict[str, Any] = {}

    async def shutdown() -> dict[str, Any]:
        if not shutdown_result:
            notify("STOPPING=1")
            log.info("shutting down: stopping all programs")
            outcomes = await runtime.stop_all()
            shutdown_result.update(
                {
                    "ok": not runtime.leftover_pids(),
                    "results": outcomes,
                    "leftover": runtime.leftover_pids(),
                }
            )
            # answer the caller first, then close the server
            loop.call_soon(stopping.set)
        return shutdown_result

    async def upgrade() -> dict[str, Any]:
        """Leave the programs running and let the guard bring up the installed code."""
        if link is None:
            return {"ok": False, "error": "upgrade needs the twin (started without --no-twin)"}
        runtime.detach()
        link.shutdown(upgrade=True)
        loop.call_soon(stopping.set)
        detached.set()
        return {"ok": True, "old_pid": os.getpid()}

    detached = asyncio.Event()
    server = ControlServer(config.daemon.socket, build_router(runtime, shutdown, upgrade))
    control_fd = handed.pop("control", None)
    if control_fd is not None:
        server.adopt_socket(socket.socket(fileno=control_fd))
    await server.start()
    if link is not None and server.listening_socket is not None:
        link.hold("control", server.listening_socket.fileno())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(shutdown()))
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_reload(runtime)))
    loop.add_signal_handler(signal.SIGUSR2, runtime.reopen_logs)  # as supervisord: logrotate
    if link is None and kernel.set_child_subreaper():
        loop.add_signal_handler(signal.SIGCHLD, runtime.reap_orphans)

    saved = statefile.load(runtime.state_path)
    if saved.clean_shutdown or not (saved.children or saved.desired):
        to_start = runtime.autostart_names()
        for fd in handed.values():
            os.close(fd)
        runtime.remove_stale()
    else:
        adopted = runtime.recover(saved, handed)
        to_start = [
            n
            for n in runtime.names()
            if n not in adopted and saved.desired.get(n, runtime.core.procs[n].spec.autostart)
        ]
        log.info(
            "recovered: adopted %s; starting %s", sorted(adopted) or "none", to_start or "none"
        )
    try:
        runtime.claim_sockets()
    except OSError as e:
        log.error("cannot bind: %s", e)
        return reporter.failed({"error": "bind", "message": str(e)})
    if link is not None:
        link.start()
    runtime.freshness_hooks.append(lambda: _restore_socket(server, link))
    runtime.start_freshness(config.daemon.pid_path)
    outcomes = await runtime.start(to_start, timeout=STARTUP_TIMEOUT) if to_start else {}
    failed = sorted(n for n, v in outcomes.items() if v != "ok")
    log.info("twinvisor up: pid %d, socket %s", os.getpid(), config.daemon.socket)
    reporter.send(
        {
            "ok": True,
            "pid": os.getpid(),
            "socket": config.daemon.socket,
            "log_dir": config.daemon.log_dir,
            "failed": failed,
        }
    )
    notify("READY=1")
    await stopping.wait()
    await server.close(unlink=False if detached.is_set() else None)
    runtime.close(keep_sockets=detached.is_set())
    log.info("twinvisor down")
    return 0 if shutdown_result.get("ok") else 1


def _restore_socket(server: ControlServer, link: Any) -> None:
    async def restore() -> None:
        try:
            sock = await server.restore_path()
        except Exception as e:  # a full disk or a vanished run dir: retried next round
            log.error("control socket %s is gone and cannot be re-created: %s", server.path, e)
            return
        if sock is not None:
            log.warning("control socket %s was deleted: re-created", server.path)
            if link is not None:
                link.hold("control", sock.fileno())

    _background.add(asyncio.ensure_future(restore()))
    for task in [t for t in _background if t.done()]:
        _background.discard(task)


_background: set[asyncio.Future[None]] = set()


async def _reload(runtime: Runtime) -> None:
    """SIGHUP = `twinvisor update`, as operators expect from daemons."""
    try:
        new = load_config(runtime.config.path)
    except ConfigError as e:
        log.error("reload refused, the config has errors; nothing changed:\n%s", e)
        return
    changes = await runtime.apply_config(new)
    log.info("reloaded: %s", changes)
