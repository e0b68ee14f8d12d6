"""The supervisor process's entry: config, run-dir lock, pid file, logging; then the loop.

`twinvisor up` starts this in the background and waits for its start-up report (see
twin/startup_report.py): the daemon is up with its autostart programs started, or why not.
Whether a daemon already runs is decided by an flock on the run dir's lock file, never by
looking at pid files or sockets.

This half imports no asyncio: the config decides how asyncio is imported (without ssl unless
[daemon.http] serves TLS), and process.py, which needs asyncio, comes after.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys

from twinvisor.config.specs import Config, DaemonSpec
from twinvisor.errors import AlreadyRunning, ConfigError
from twinvisor.exitcodes import Exit
from twinvisor.linux import daemonlog, fsutil, rundir
from twinvisor.supervisor.configload import load_config
from twinvisor.twin import bytecode, startup_report

log = logging.getLogger("twinvisor")


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


def main() -> int:
    """The supervisor's process entry, as its guard starts it (twin/protocol.command):
    `python -P -c DAEMON_BOOT twinvisor daemon -c CONFIG`."""
    args = sys.argv[1:]
    if len(args) == 4 and args[:3] == ["twinvisor", "daemon", "-c"] and args[3]:
        return run(args[3], foreground=False)
    print(f"twinvisor daemon: unexpected arguments {args!r}", file=sys.stderr)
    return Exit.USAGE


def run(config_path: str, foreground: bool) -> int:
    """Config, run-dir lock, logging and pid file, then the event loop until down/upgrade."""
    reporter = startup_report.Reporter()
    problems: list[str] = []
    try:
        config = load_config(config_path)
    except ConfigError as e:
        problems = [str(p) for p in e.problems]
        last = None if reporter.fd is not None else _last_applied(config_path)
        if last is None:  # an operator waits for the answer (`up`), or nothing to go back to
            reporter.send(startup_report.config_errors(problems))
            print(str(e), file=sys.stderr)
            return Exit.USAGE
        config = last
    daemon = config.daemon
    moved = rundir.clear_wrong_kinds(daemon.run_dir, rundir.extra(daemon.socket, daemon.log_dir))
    try:
        lock_fd = acquire_lock(config.daemon)
    except AlreadyRunning as e:
        reporter.send(startup_report.already_running(str(e), e.pid))
        print(f"twinvisor: {e} (pid {e.pid})", file=sys.stderr)
        return Exit.ALREADY_RUNNING
    daemonlog.setup(config.daemon, foreground)
    for message in moved:
        log.warning("run dir: %s", message)
    if sys.flags.optimize < bytecode.LEVEL:  # nothing happens silently: 0.6 MiB more
        log.info("running on plain bytecode, not -OO: %s", bytecode.why_plain())
    if problems:
        log.error(
            "the config file %s has errors; running on the last applied config until it is "
            "fixed and applied (`twinvisor update`):\n%s",
            config_path,
            "\n".join(problems),
        )
    fsutil.write_atomic(config.daemon.pid_path, f"{os.getpid()}\n")
    _import_asyncio(tls=config.daemon.http is not None and bool(config.daemon.http.tls_cert))
    from twinvisor.service import process  # the event loop's half: asyncio and everything on it

    try:
        return process.serve(config, reporter, problems)
    finally:
        fsutil.remove_quietly(config.daemon.pid_path)
        os.close(lock_fd)


def _last_applied(config_path: str) -> Config | None:
    """A supervisor restarted by its guard (nobody waiting on `up`) while the file has
    errors: the config that was running, saved in the run dir (the guard's socket is there)."""
    from twinvisor.config import applied
    from twinvisor.twin.protocol import GUARD_ENV

    guard_sock = os.environ.get(GUARD_ENV)
    if not guard_sock:
        return None
    run_dir = os.path.dirname(guard_sock)
    path = applied.path(run_dir)
    try:
        raw = fsutil.read_untrusted(path, applied.MAX_BYTES)
        return None if raw is None else applied.decode(raw, os.path.abspath(config_path), run_dir)
    except (OSError, ValueError, fsutil.Untrusted) as e:
        print(f"twinvisor: the last applied config {path} is unusable: {e}", file=sys.stderr)
        return None


def _import_asyncio(tls: bool) -> None:
    """Import asyncio, without ssl when nothing will serve TLS.

    asyncio imports ssl when it is itself imported (base_events, selector_events and sslproto
    each do `try: import ssl except ImportError: ssl = None`) and works without it for plain
    sockets; ssl and its _ssl/libssl/libcrypto cost the supervisor about 4.4 MiB of its own
    memory. A None in sys.modules makes that import raise ImportError (the import system's
    documented way to block a module), so asyncio binds ssl = None. The block is lifted at
    once: only asyncio's binding stays None. Whether TLS is served is known only here, at
    start-up ([daemon.http] is not re-read by `update`), so this choice holds for the
    process's life; with TLS configured asyncio imports ssl as usual.
    """
    if tls or "asyncio" in sys.modules:
        import asyncio

        return
    blocked = "ssl" not in sys.modules
    if blocked:
        sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        import asyncio  # noqa: F401
    finally:
        if blocked:
            del sys.modules["ssl"]
