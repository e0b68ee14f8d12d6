"""`twinvisor up` / `down` from the CLI side: start the daemon detached and wait for its word;
ask it to stop and make sure nothing it started is left."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

from twinvisor.cli.common import Fail
from twinvisor.config.specs import DaemonSpec
from twinvisor.exitcodes import Exit
from twinvisor.linux import fsutil, kernel
from twinvisor.twin import bytecode, protocol, startup_report
from twinvisor.twin.startup_report import Report


def start_background(
    config_path: str, daemon: DaemonSpec, timeout: float, twin: bool = True
) -> int:
    """Start the daemon detached: the guard (which starts the supervisor), or with
    twin=False the supervisor alone. An explicit `up` lifts a previous `down`'s stop marker."""
    fsutil.make_private_dir(daemon.run_dir)
    fsutil.remove_quietly(daemon.stop_marker)
    os.makedirs(daemon.log_dir, mode=0o750, exist_ok=True)
    prepare_bytecode()
    read_end, write_end = os.pipe()
    try:
        proc = _spawn_detached(config_path, daemon, "guard" if twin else "daemon", write_end)
    finally:
        os.close(write_end)
    try:
        message = startup_report.read(read_end, timeout)
    finally:
        os.close(read_end)
    if message is None:
        proc.wait()
        print(
            f"twinvisor: the daemon exited during start-up (status {proc.returncode}); "
            f"see {daemon.out_path} and {daemon.log_path}",
            file=sys.stderr,
        )
        return Exit.FAILED
    proc.returncode = 0  # detached: it is not ours to wait for
    if message.get("ok"):
        return _render_up(message, proc.pid if twin else None)
    return _render_refusal(message, daemon)


WARM_TIMEOUT = 120.0


def prepare_bytecode() -> None:
    """Write the supervisor's optimized bytecode if it is not there yet (twin/bytecode.py),
    so the supervisor about to start runs with -OO. Once per install: later calls only look.
    Where this user cannot write, the supervisor starts plain and its log says why."""
    if not bytecode.enabled() or bytecode.ready():
        return
    # a failure leaves it not ready: the supervisor starts plain, and its log says why
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            bytecode.warm_command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=WARM_TIMEOUT,
            check=False,
        )


def _spawn_detached(
    config_path: str, daemon: DaemonSpec, verb: str, report_fd: int
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if verb == "guard":  # told its paths, the guard loads no config (and stays small)
        env.update(protocol.daemon_paths_env(daemon.run_dir, daemon.log_dir, daemon.socket))
    pass_fds = startup_report.hand_down(env, report_fd)
    # the daemon's own stdout/stderr (tracebacks before logging is set up) go to a file
    with os.fdopen(fsutil.open_log(daemon.out_path), "ab") as out:
        return subprocess.Popen(
            protocol.command(verb, os.path.abspath(config_path)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            pass_fds=pass_fds,
            env=env,
        )


def _render_up(message: Report, guard_pid: int | None) -> int:
    print("twinvisor up")
    print(f"  supervisor pid: {message['pid']}")
    print(f"  guard pid:      {guard_pid if guard_pid is not None else '- (--no-twin)'}")
    print(f"  control socket: {message['socket']}")
    print(f"  logs:           {message['log_dir']}")
    return _render_failed(message)


def _render_failed(message: Report) -> int:
    """Programs that did not start: the daemon runs on with the others (exit 1)."""
    failed = message.get("failed") or []
    why = message.get("why") or {}
    for name in failed:
        reason = f" ({why[name]})" if why.get(name) else ""
        print(f"  not started:    {name}{reason}", file=sys.stderr)
    if failed:
        print(
            "  the daemon keeps running the others: `twinvisor status`; "
            "fix and `twinvisor start NAME`, or `twinvisor down`",
            file=sys.stderr,
        )
    return Exit.FAILED if failed else Exit.OK


def _render_refusal(message: Report, daemon: DaemonSpec) -> int:
    error = message.get("error")
    if error == "bind":
        print(
            f"twinvisor: cannot bind a listening socket: {message.get('message')}", file=sys.stderr
        )
        return Exit.FAILED
    if error == "running":
        from twinvisor.cli.liveness import pids_text

        print("twinvisor: already running; nothing started")
        for line in pids_text(daemon.run_dir) or [f"  pid:            {message.get('pid')}"]:
            print(line)
        return Exit.OK
    if error == "config":  # as the CLI's own load says it (app.load_config): exit 2
        problems = [str(p) for p in message.get("problems", [])]
        raise Fail("\n".join(problems) or "the config has errors", Exit.USAGE, problems)
    if error in ("control", "startup"):
        print(
            f"twinvisor: the daemon could not start: {message.get('message')}; "
            f"see {daemon.log_path}",
            file=sys.stderr,
        )
        return Exit.FAILED
    print(
        f"twinvisor: the daemon did not report ready in time; see {daemon.out_path}",
        file=sys.stderr,
    )
    return Exit.FAILED


def stop_daemon(socket_path: str, timeout: float, daemon: DaemonSpec | None = None) -> int:
    from twinvisor.control.client import ControlClient
    from twinvisor.errors import ControlError, DaemonNotRunning

    guard_pid = None
    if daemon is not None:
        # seed 000's stop file, first: from now on nothing revives the supervisor
        if os.path.isdir(daemon.run_dir):
            fsutil.write_atomic(daemon.stop_marker, f"{os.getpid()}\n")
        guard_pid = fsutil.read_pid(daemon.guard_pid_path)
    client = ControlClient(socket_path, timeout=timeout + 5)
    try:
        code, result = client.call("GET", "/version")
        if code == 200:
            daemon_pid = int(result["pid"])
            code, result = client.call("POST", "/shutdown", query={"timeout": str(timeout)})
        if code != 200:  # refused (403): say what the daemon said
            error = result.get("error") if isinstance(result, dict) else None
            print(f"twinvisor: {error or f'the daemon answered HTTP {code}'}", file=sys.stderr)
            return Exit.FAILED
    except DaemonNotRunning as e:
        from twinvisor.cli.liveness import clean_stale, not_running_text

        removed = clean_stale(daemon.run_dir, socket_path) if daemon is not None else []
        print(f"twinvisor: {not_running_text(socket_path, e, removed)}", file=sys.stderr)
        return Exit.NO_DAEMON
    except ControlError as e:
        print(f"twinvisor: {e}", file=sys.stderr)
        return Exit.FAILED
    leftover = [p for p in result.get("leftover", []) if kernel.signal_pid(p, 0)]
    return _report_down(_wait_daemon_gone(daemon_pid, guard_pid, timeout), daemon_pid, leftover)


def _wait_daemon_gone(daemon_pid: int, guard_pid: int | None, timeout: float) -> bool:
    """The supervisor exits once its programs are stopped, its guard right after it. No
    SIGKILL here: a daemon that hangs in its stop is reported, not hidden."""
    gone = kernel.wait_gone(daemon_pid, timeout)
    if guard_pid is not None and guard_pid != daemon_pid:
        gone = kernel.wait_gone(guard_pid, timeout) and gone
    return gone


def _report_down(daemon_gone: bool, daemon_pid: int, leftover: list[int]) -> int:
    if leftover:
        print(f"twinvisor: still running after down: pids {leftover}", file=sys.stderr)
    if not daemon_gone:
        print(f"twinvisor: the daemon (pid {daemon_pid}) has not exited", file=sys.stderr)
    if leftover or not daemon_gone:
        return Exit.FAILED
    print("twinvisor down: all programs stopped")
    return Exit.OK


def upgrade_daemon(socket_path: str, timeout: float) -> int:
    """Ask the supervisor to hand over to the installed code; wait for the new one to answer."""
    from twinvisor.control.client import ControlClient
    from twinvisor.errors import ControlError, DaemonNotRunning

    client = ControlClient(socket_path, timeout=timeout + 5)
    prepare_bytecode()  # the installed code's, for the new supervisor
    try:
        code, result = client.call("POST", "/upgrade")
    except DaemonNotRunning as e:
        from twinvisor.cli.liveness import not_running_text

        print(f"twinvisor: {not_running_text(socket_path, e)}", file=sys.stderr)
        return Exit.NO_DAEMON
    except ControlError as e:
        print(f"twinvisor: {e}", file=sys.stderr)
        return Exit.FAILED
    if code != 200:
        print(f"twinvisor: upgrade refused: {result.get('error')}", file=sys.stderr)
        return Exit.FAILED
    old = int(result["old_pid"])
    kernel.wait_gone(old, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # the new supervisor comes up behind the same socket
        try:
            _, version = client.call("GET", "/version")
        except ControlError:
            continue
        if int(version["pid"]) != old:
            new, release = version["pid"], version["version"]
            print(f"twinvisor upgraded: supervisor pid {old} -> {new} ({release})")
            return Exit.OK
    print("twinvisor: the new supervisor did not answer in time", file=sys.stderr)
    return Exit.FAILED
