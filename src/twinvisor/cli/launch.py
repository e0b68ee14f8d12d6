"""`twinvisor up` / `down` from the CLI side: start the daemon detached and wait for its word;
ask it to stop and make sure nothing it started is left."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any

from twinvisor.config.specs import Config
from twinvisor.linux import fsutil, kernel

READY_FD_ENV = "TWINVISOR_READY_FD"


def start_background(config: Config, timeout: float, twin: bool = True) -> int:
    """Start the daemon detached: the guard (which starts the supervisor), or with
    twin=False the supervisor alone. An explicit `up` lifts a previous `down`'s stop marker."""
    from twinvisor.twin.guard import stop_marker

    daemon = config.daemon
    fsutil.make_private_dir(daemon.run_dir)
    fsutil.remove_quietly(stop_marker(daemon))
    os.makedirs(daemon.log_dir, mode=0o750, exist_ok=True)
    read_end, write_end = os.pipe()
    env = dict(os.environ, **{READY_FD_ENV: str(write_end)})
    # the daemon's own stdout/stderr (tracebacks before logging is set up) go to a file
    with os.fdopen(fsutil.open_log(os.path.join(daemon.log_dir, "twinvisor.out")), "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "twinvisor", "guard" if twin else "daemon", "-c", config.path],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            pass_fds=(write_end,),
            env=env,
        )
    os.close(write_end)
    try:
        message = _read_report(read_end, timeout)
    finally:
        os.close(read_end)
    return _render_report(message, daemon.log_dir, proc, daemon.run_dir, twin)


def _read_report(fd: int, timeout: float) -> dict[str, Any] | None:
    """One JSON line from the daemon, or None if it died (EOF) or stayed silent too long."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return {"ok": False, "error": "timeout"}
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        data += chunk
    try:
        parsed: dict[str, Any] = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return None
    return parsed


def _render_report(
    message: dict[str, Any] | None,
    log_dir: str,
    proc: subprocess.Popen[bytes],
    run_dir: str = "",
    twin: bool = True,
) -> int:
    out_file = os.path.join(log_dir, "twinvisor.out")
    if message is None:
        proc.wait()
        print(
            f"twinvisor: the daemon exited during start-up (status {proc.returncode}); "
            f"see {out_file} and {log_dir}/twinvisor.log",
            file=sys.stderr,
        )
        return 1
    proc.returncode = 0  # detached: it is not ours to wait for
    if message.get("ok"):
        print("twinvisor up")
        print(f"  supervisor pid: {message['pid']}")
        print(f"  guard pid:      {proc.pid if twin else '- (--no-twin)'}")
        print(f"  control socket: {message['socket']}")
        print(f"  logs:           {message['log_dir']}")
        return _render_failed(message)
    error = message.get("error")
    if error == "bind":
        print(
            f"twinvisor: cannot bind a listening socket: {message.get('message')}", file=sys.stderr
        )
        return 1
    if error == "running":
        from twinvisor.cli.liveness import pids_text

        print("twinvisor: already running; nothing started")
        for line in pids_text(run_dir) or [f"  pid:            {message.get('pid')}"]:
            print(line)
        return 0
    if error == "config":
        print("twinvisor: the config has errors:", file=sys.stderr)
        for p in message.get("problems", []):
            print(f"  {p}", file=sys.stderr)
        return 2
    print(f"twinvisor: the daemon did not report ready in time; see {out_file}", file=sys.stderr)
    return 1


def _render_failed(message: dict[str, Any]) -> int:
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
    return 1 if failed else 0


def stop_daemon(socket_path: str, timeout: float, run_dir: str | None = None) -> int:
    from twinvisor.control.client import ControlClient
    from twinvisor.errors import ControlError, DaemonNotRunning

    guard_pid = None
    if run_dir is not None:
        # seed 000's stop file, first: from now on nothing revives the supervisor
        if os.path.isdir(run_dir):
            fsutil.write_atomic(os.path.join(run_dir, "stop"), f"{os.getpid()}\n")
        guard_pid = fsutil.read_pid(os.path.join(run_dir, "guard.pid"))
    client = ControlClient(socket_path, timeout=timeout + 5)
    try:
        code, result = client.call("GET", "/version")
        if code == 200:
            daemon_pid = int(result["pid"])
            code, result = client.call("POST", "/shutdown", query={"timeout": str(timeout)})
        if code != 200:  # refused (403): say what the daemon said
            error = result.get("error") if isinstance(result, dict) else None
            print(f"twinvisor: {error or f'the daemon answered HTTP {code}'}", file=sys.stderr)
            return 1
    except DaemonNotRunning as e:
        from twinvisor.cli.liveness import clean_stale, not_running_text

        removed = clean_stale(run_dir, socket_path) if run_dir is not None else []
        print(f"twinvisor: {not_running_text(socket_path, e, removed)}", file=sys.stderr)
        return 3
    except ControlError as e:
        print(f"twinvisor: {e}", file=sys.stderr)
        return 1
    daemon_gone = kernel.wait_gone(daemon_pid, timeout)
    if guard_pid is not None and guard_pid != daemon_pid:
        daemon_gone = kernel.wait_gone(guard_pid, timeout) and daemon_gone
    leftover = [p for p in result.get("leftover", []) if kernel.signal_pid(p, 0)]
    if leftover:
        print(f"twinvisor: still running after down: pids {leftover}", file=sys.stderr)
    if not daemon_gone:
        print(f"twinvisor: the daemon (pid {daemon_pid}) has not exited", file=sys.stderr)
    if leftover or not daemon_gone:
        return 1
    print("twinvisor down: all programs stopped")
    return 0


def upgrade_daemon(socket_path: str, timeout: float) -> int:
    """Ask the supervisor to hand over to the installed code; wait for the new one to answer."""
    from twinvisor.control.client import ControlClient
    from twinvisor.errors import ControlError, DaemonNotRunning

    client = ControlClient(socket_path, timeout=timeout + 5)
    try:
        code, result = client.call("POST", "/upgrade")
    except DaemonNotRunning as e:
        from twinvisor.cli.liveness import not_running_text

        print(f"twinvisor: {not_running_text(socket_path, e)}", file=sys.stderr)
        return 3
    except ControlError as e:
        print(f"twinvisor: {e}", file=sys.stderr)
        return 1
    if code != 200:
        print(f"twinvisor: upgrade refused: {result.get('error')}", file=sys.stderr)
        return 1
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
            return 0
    print("twinvisor: the new supervisor did not answer in time", file=sys.stderr)
    return 1
