"""The daemon process's event loop: control server, signals, programs, shutdown.

entry.py comes first (config, run-dir lock, pid file, logging) and decides how asyncio is
imported; `serve` runs from there until down or upgrade.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from twinvisor.config.specs import Config
from twinvisor.control.messages import ShutdownReply, UpgradeReply
from twinvisor.control.server import ControlServer
from twinvisor.errors import ConfigError, TwinvisorError
from twinvisor.exitcodes import Exit
from twinvisor.linux import fsutil, kernel
from twinvisor.supervisor import console as terminal  # not the programs' console fds
from twinvisor.supervisor import fdkeys, persistence
from twinvisor.supervisor.configload import load_config_async
from twinvisor.supervisor.runtime import Runtime
from twinvisor.twin import startup_report

if TYPE_CHECKING:  # imported when needed: a guard to connect to, a listener configured
    from twinvisor.control.tcp import TcpListener
    from twinvisor.twin.link import GuardLink

log = logging.getLogger("twinvisor")

STARTUP_TIMEOUT = 60.0
# debug: a file the supervisor lists its sys.modules in as it answers each control request
# (tests/e2e/test_import_hygiene.py keeps what a plain supervisor imports small)
MODULES_ENV = "TWINVISOR_SUPERVISOR_MODULES"


def serve(config: Config, reporter: startup_report.Reporter, problems: list[str]) -> int:
    """The supervisor's event loop, from start-up to down or upgrade (entry.py gets here)."""
    return asyncio.run(_serve(config, reporter, problems))


def _console_fds() -> tuple[int, int]:
    """Where `console` programs write: the guard's stdout and stderr when it handed them
    down (the container's, the same for every supervisor it starts), else our own."""
    from twinvisor.linux.console import CONSOLE_ENV

    raw = os.environ.pop(CONSOLE_ENV, "")
    out, _, err = raw.partition(",")
    if out.isdigit() and err.isdigit():
        for fd in (int(out), int(err)):
            try:
                os.set_inheritable(fd, False)  # programs must not inherit them
            except OSError:
                return 1, 2
        return int(out), int(err)
    return 1, 2


def _connect_guard(config: Config) -> tuple[GuardLink | None, dict[str, int]]:
    """As a twin: reach our guard and take back what it holds for us."""
    from twinvisor.twin.link import GuardLink
    from twinvisor.twin.protocol import GUARD_ENV

    path = os.environ.pop(GUARD_ENV, None)
    if not path:
        return None, {}
    link = GuardLink(path, config.path, config.daemon)
    try:
        handed = link.connect()
    except OSError as e:
        log.warning("cannot reach the guard at %s (%s): running without it", path, e)
        return None, {}
    log.info("guard pid %s handed back %d fds", link.guard_pid, len(handed))
    return link, handed


async def _serve(config: Config, reporter: startup_report.Reporter, problems: list[str]) -> int:
    service = _Service(config, reporter)
    service.runtime.config_problems = problems
    return await service.serve()


class _Service:
    """One supervisor process's life: take the guard's fds back, bind, answer the control
    socket, adopt or start the programs, report to `up`, then serve until down or upgrade."""

    def __init__(self, config: Config, reporter: startup_report.Reporter) -> None:
        self.config = config
        self.reporter = reporter
        self.loop = asyncio.get_running_loop()
        self.link, self.handed = _connect_guard(config)
        console = _console_fds()
        self.runtime = Runtime(config, console_fds=console)
        self.runtime.link = self.link
        self.runtime.on_shutdown = self._exit_policy
        self.exit_code: int | None = None  # set by a program's exit policy
        if terminal.wanted():  # under a foreground guard: state changes on the terminal
            terminal.attach(self.runtime.journal)
        if self.link is not None:
            self.link.on_replaced = self._guard_replaced
            self.link.console = console
        self.server: ControlServer | None = None
        self.http: TcpListener | None = None  # [daemon.http], when configured
        self.stopping = asyncio.Event()
        self.detached = asyncio.Event()  # upgrade: programs and sockets stay for the next one
        self.shutdown_result: ShutdownReply | None = None  # the one answer, once stopped

    async def serve(self) -> int:
        try:
            started = await self._start_up()
        except Exception as e:  # unforeseen: reported and final, never a silent crash loop
            log.exception("start-up failed")
            message = f"{type(e).__name__}: {e}"
            return self.reporter.failed({"error": "startup", "message": message})
        if isinstance(started, int):
            return started
        server = started
        await self.stopping.wait()
        if self.http is not None:
            await self.http.close()
        await server.close(unlink=False if self.detached.is_set() else None)
        self.runtime.close(keep_sockets=self.detached.is_set())
        log.info("twinvisor down")
        if self.exit_code is not None:
            return self.exit_code
        return (
            Exit.OK if self.shutdown_result is not None and self.shutdown_result.ok else Exit.FAILED
        )

    async def _start_up(self) -> ControlServer | int:
        """Every step up to the report to `up`; an exit status when one of them failed."""
        try:
            self.runtime.open(self.handed)
        except OSError as e:
            return self._bind_failed(e)
        try:
            server = await self._open_control()
        except (TwinvisorError, OSError) as e:
            log.error("cannot serve the control socket: %s", e)
            return self.reporter.failed({"error": "control", "message": str(e)})
        try:
            await self._open_http()
        except TwinvisorError as e:  # [daemon.http] as configured cannot be served (TLS files)
            log.error("%s", e)
            return self.reporter.failed({"error": "startup", "message": str(e)})
        except OSError as e:
            return self._bind_failed(e)
        self._install_signals()
        to_start = self._take_over()
        persistence.save_applied(self.config)
        try:
            self.runtime.claim_sockets()
        except OSError as e:
            return self._bind_failed(e)
        if self.link is not None:
            self.link.beats_itself = False  # on the pid-file refresh's timer: one wake-up
            self.runtime.freshness_hooks.append(self.link.beat)
            self.link.start()
        self.runtime.freshness_hooks.append(lambda: _restore_socket(server, self.link))
        self.runtime.start_freshness(self.config.daemon.pid_path)
        await self._start_programs(to_start)
        if self.link is not None:
            self.link.started()  # the guard counts start-ups that never got this far
        return server

    def _guard_replaced(self, guard_pid: int | None) -> None:
        count = self.runtime.counters.count("guard_restarts")
        self.runtime.journal.emit("guard", pid=guard_pid, message=f"guard restart {count}")

    def _bind_failed(self, e: OSError) -> int:
        log.error("cannot bind: %s", e)
        return self.reporter.failed({"error": "bind", "message": str(e)})

    async def _open_control(self) -> ControlServer:
        from twinvisor.control.routes import build_router

        router = build_router(self.runtime, self.shutdown, self.upgrade)
        listing = os.environ.get(MODULES_ENV)
        if listing:
            router.answered = lambda: _tell_modules(listing)
        server = ControlServer(self.config.daemon.socket, router)
        control_fd = self.handed.pop(fdkeys.CONTROL, None)
        if control_fd is not None:  # the guard kept it: no connection was ever refused
            server.adopt_socket(socket.socket(fileno=control_fd))
        await server.start()
        if self.link is not None and server.listening_socket is not None:
            self.link.hold(fdkeys.CONTROL, server.listening_socket.fileno())
        self.server = server
        return server

    async def _open_http(self) -> None:
        """The optional TCP listener; the guard keeps its socket across takeovers."""
        spec = self.config.daemon.http
        kept = self.handed.pop("http", None)
        if spec is None:
            if kept is not None:
                os.close(kept)  # the listener was configured away
                if self.link is not None:
                    self.link.release("http")
            return
        from twinvisor.control.public import build_public_router
        from twinvisor.control.tcp import TcpListener, tls_context

        tls = None
        if spec.tls_cert and spec.tls_key:
            try:
                tls = tls_context(spec.tls_cert, spec.tls_key)
            except OSError as e:  # ssl.SSLError is one: a bad PEM, a key that does not match
                raise TwinvisorError(
                    f"[daemon.http] cannot load tls_cert {spec.tls_cert} and tls_key "
                    f"{spec.tls_key}: {e}; check both are PEM files of one certificate and key"
                ) from None
        if spec.dashboard and not os.path.exists(spec.users_file):
            log.warning(
                "dashboard: no users file at %s, so nobody can log in yet: "
                "run `twinvisor passwd NAME` to add one",
                spec.users_file,
            )
        listener = TcpListener(spec.listen, build_public_router(self.runtime, spec), tls)
        if kept is not None:
            listener.adopt_tcp(socket.socket(fileno=kept))
        else:
            listener.bind_socket()
        await listener.start()
        if self.link is not None and listener.listening_socket is not None:
            self.link.hold("http", listener.listening_socket.fileno())
        self.http = listener
        log.info(
            "HTTP listener on %s (health%s)", spec.listen, ", metrics" if spec.open_metrics else ""
        )

    def _install_signals(self) -> None:
        loop, runtime = self.loop, self.runtime
        # SIGQUIT too: images that set STOPSIGNAL SIGQUIT (nginx's) mean a graceful stop by it
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            kernel.add_signal_handler(loop, sig, lambda: _background_task(self.shutdown()))
        kernel.add_signal_handler(loop, signal.SIGHUP, lambda: _background_task(_reload(runtime)))
        kernel.add_signal_handler(loop, signal.SIGUSR1, lambda: _log_status(runtime))
        # as supervisord: logrotate
        kernel.add_signal_handler(loop, signal.SIGUSR2, runtime.reopen_logs)
        if self.link is None and kernel.set_child_subreaper():
            kernel.add_signal_handler(loop, signal.SIGCHLD, runtime.reap_orphans)

    def _take_over(self) -> list[str]:
        """Adopt what a previous supervisor left running; the names still to start. Runs at
        every start, whatever the state file says: it can be lost, corrupt or wrong (a clean
        shutdown recorded while programs live), and the tag scan finds our programs anyway."""
        from twinvisor.linux import statefile

        runtime = self.runtime
        saved = statefile.load(runtime.state_path)
        if saved.clean_shutdown:  # `down` finished: what the user wanted then is over
            saved = statefile.PersistedState()
        adopted = runtime.recover(saved, self.handed)
        to_start = [
            n
            for n in runtime.names()
            if n not in adopted and saved.desired.get(n, runtime.procs[n].spec.autostart)
        ]
        if adopted or saved.children or saved.desired:  # there was something to take over
            count = runtime.counters.count("takeovers")
            runtime.journal.emit(
                "takeover", pid=os.getpid(), message=f"takeover {count}: adopted {len(adopted)}"
            )
            log.info(
                "recovered: adopted %s; starting %s", sorted(adopted) or "none", to_start or "none"
            )
        return to_start

    async def _start_programs(self, to_start: list[str]) -> None:
        from twinvisor.lib.sd import notify

        runtime, daemon = self.runtime, self.config.daemon
        outcomes = await runtime.start(to_start, timeout=STARTUP_TIMEOUT) if to_start else {}
        failed = sorted(n for n, v in outcomes.items() if v != "ok")
        log.info("twinvisor up: pid %d, socket %s", os.getpid(), daemon.socket)
        self.reporter.send(
            {
                "ok": True,
                "pid": os.getpid(),
                "socket": daemon.socket,
                "log_dir": daemon.log_dir,
                "failed": failed,
                "why": {n: runtime.procs[n].last_error for n in failed},  # shown by `up`
            }
        )
        notify("READY=1")

    async def shutdown(self) -> ShutdownReply:
        """`down`, SIGTERM, SIGINT: stop every program, answer, then end."""
        from twinvisor.lib.sd import notify

        self.runtime.closing = True
        if self.shutdown_result is None:
            notify("STOPPING=1")
            log.info("shutting down: stopping all programs")
            outcomes = await self.runtime.stop_all()
            leftover = self.runtime.leftover_pids()
            self.runtime.state_file.reset_counters()  # the next `up` is a fresh start
            self.shutdown_result = ShutdownReply(
                ok=not leftover, results=outcomes, leftover=leftover
            )
            # answer the caller first, then close the server
            self.loop.call_soon(self.stopping.set)
        return self.shutdown_result

    def _exit_policy(self, name: str, code: int, reason: str) -> None:
        """A program's exit policy stops the daemon: the first one names the exit code,
        written into the stop marker so that the guard ends with it too."""
        if self.exit_code is not None or self.runtime.closing:
            return
        self.exit_code = code
        log.error("%s: stopping every program; the daemon exits with %d", reason, code)
        if self.link is not None:
            from twinvisor.twin import stopmark

            try:
                stopmark.write(self.config.daemon.stop_marker, code)
            except OSError as e:
                log.error("cannot write the stop marker: %s", e)
        _background_task(self.shutdown())

    async def upgrade(self) -> UpgradeReply:
        """Leave the programs running and let the guard bring up the installed code."""
        if self.link is None:
            return UpgradeReply(
                ok=False, error="upgrade needs the twin (started without --no-twin)"
            )
        self.runtime.detach()
        self.link.shutdown(upgrade=True)
        self.loop.call_soon(self.stopping.set)
        self.detached.set()
        return UpgradeReply(ok=True, old_pid=os.getpid())


def _restore_socket(server: ControlServer, link: GuardLink | None) -> None:
    async def restore() -> None:
        try:
            sock = await server.restore_path()
        except Exception as e:  # a full disk or a vanished run dir: retried next round
            log.error("control socket %s is gone and cannot be re-created: %s", server.path, e)
            return
        if sock is not None:
            log.warning("control socket %s was deleted: re-created", server.path)
            if link is not None:
                link.hold(fdkeys.CONTROL, sock.fileno())

    _background.add(asyncio.ensure_future(restore()))
    for task in [t for t in _background if t.done()]:
        _background.discard(task)


_background: set[asyncio.Future[Any]] = set()


def _background_task(coro: Coroutine[Any, Any, Any]) -> None:
    """Run `coro` on the loop, referenced until done (the loop holds tasks only weakly)."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _log_status(runtime: Runtime) -> None:
    """SIGUSR1: every program's state in the log (and the console in the foreground)."""
    for row in runtime.status():
        log.info(
            "status: %s %s pid=%s restarts=%s%s",
            row.name,
            row.state.value,
            row.pid,
            row.restarts,
            f" error={row.error}" if row.error else "",
        )


async def _reload(runtime: Runtime) -> None:
    """SIGHUP = `twinvisor update`, as operators expect from daemons."""
    try:
        new = await load_config_async(runtime.config.path)
    except ConfigError as e:
        log.error("reload refused, the config has errors; nothing changed:\n%s", e)
        return
    changes = await runtime.apply_config(new)
    log.info("reloaded: %s", changes)


def _tell_modules(path: str) -> None:
    fsutil.write_atomic(path, "\n".join(sorted(sys.modules)) + "\n", fsync=False)
