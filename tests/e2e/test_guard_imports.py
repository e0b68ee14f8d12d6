"""The guard stays light (issue 16): the running guard process has not imported what only the
supervisor or the CLI needs. Every module it loads stays in its memory for the daemon's whole
life, and it runs beside the supervisor on every machine, so this pins what it imports, on a
real daemon, before and after it has revived a supervisor (its rarely-run paths load too).

Two views of the same process: its own list of sys.modules (the debug file MODULES_ENV names),
and /proc/PID/maps, where an extension module shows as a mapped .so whoever imported it.
The memory it saves is measured in bench/, not asserted here.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.support.faults import kill_supervisor, read_pid
from tests.support.helpers import Daemon, daemon_fixture, wait_until  # noqa: F401
from twinvisor.config.specs import DaemonSpec
from twinvisor.errors import ControlError
from twinvisor.linux import console
from twinvisor.supervisor import console as supervisor_console
from twinvisor.twin import guard

# what the supervisor and the CLI need, and the guard must never carry
FORBIDDEN = (
    "asyncio",
    "ssl",
    "logging",
    "subprocess",
    "tomllib",
    "argparse",
    "dataclasses",
    "typing",
    "inspect",
    "tempfile",
    "runpy",
    "psutil",
    "msgspec",
    "twinvisor.cli",
    "twinvisor.config",
    "twinvisor.core",
    "twinvisor.supervisor",
    "twinvisor.control",
    # the pure-Python layers over the C modules the guard uses instead (issue 16): enum
    # (signal.py, socket.py, IntEnum), re (json), collections (array), site (-S: the .pth
    # files of every package installed beside us)
    "enum",
    "re",
    "json",
    "signal",
    "socket",
    "selectors",
    "contextlib",
    "collections",
    "site",
    "importlib",
    # ctypes/__init__ for one prctl: linux/kernel.libc_call uses _ctypes itself
    "ctypes",
)
FORBIDDEN_SO = ("_ssl", "_asyncio", "_posixsubprocess", "_hashlib", "_datetime")


def guard_modules(path: Path, supervisor: int) -> set[str] | None:
    """The guard's sys.modules, once its file says it watches `supervisor`."""
    try:
        first, *names = path.read_text().splitlines()
    except (OSError, ValueError):
        return None
    return set(names) if first == str(supervisor) else None


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules for f in FORBIDDEN if m == f or m.startswith(f + "."))


def mapped_extensions(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({so for so in FORBIDDEN_SO if f"/{so}.cpython" in maps})


def test_running_guard_imports_nothing_heavy(daemon: Daemon) -> None:
    listing = Path(daemon.path("guard-modules"))
    daemon.env[guard.MODULES_ENV] = str(listing)
    r = daemon.up({"sleeper": {"command": ["sleep", "infinity"]}})
    assert r.rc == 0, r
    pid = read_pid(os.path.join(daemon.run_dir, "guard.pid"))
    supervisor = read_pid(os.path.join(daemon.run_dir, "twinvisor.pid"))
    assert pid is not None and supervisor is not None
    modules = wait_until(lambda: guard_modules(listing, supervisor), what="the guard's modules")
    assert "twinvisor.twin.guard" in modules
    assert heavy(modules) == []
    assert mapped_extensions(pid) == []

    # reviving a supervisor runs the guard's other paths (reap, log, restart, spawn)
    _old, new, _took = kill_supervisor(daemon)
    modules = wait_until(lambda: guard_modules(listing, new), what="the guard's modules again")
    assert heavy(modules) == []
    assert mapped_extensions(pid) == []


def test_guard_names_match_their_homes() -> None:
    """The guard copies a few names instead of importing their modules: they must agree."""
    spec = DaemonSpec(run_dir="/r", log_dir="/l", socket="/r/s")
    files = guard.DaemonFiles.of(spec)
    for name in (
        "pid_path",
        "log_path",
        "out_path",
        "stop_marker",
        "guard_socket",
        "guard_lock_path",
        "guard_pid_path",
    ):
        assert getattr(files, name) == getattr(spec, name), name
    assert guard.CONSOLE_ENV == console.CONSOLE_ENV
    assert guard.FOREGROUND_ENV == supervisor_console.FOREGROUND_ENV


def test_a_foreground_guard_is_the_light_guard_in_the_same_process(daemon: Daemon) -> None:
    """`up --foreground` (a container's PID 1, a systemd unit) execs the guard's own entry
    in place: the same pid, and none of the CLI's imports for the container's whole life."""
    listing = Path(daemon.path("guard-modules"))
    daemon.write_config({"sleeper": {"command": ["sleep", "infinity"]}})
    env = dict(daemon.env, **{guard.MODULES_ENV: str(listing)})
    fg = subprocess.Popen(
        [*daemon.cli_argv(), "up", "--foreground"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        supervisor = wait_until(
            lambda: read_pid(os.path.join(daemon.run_dir, "twinvisor.pid")), what="a supervisor"
        )
        modules = wait_until(lambda: guard_modules(listing, supervisor), what="its modules")
        assert read_pid(os.path.join(daemon.run_dir, "guard.pid")) == fg.pid
        assert "twinvisor.twin.guard" in modules
        assert heavy(modules) == [] and mapped_extensions(fg.pid) == []
        wait_until(lambda: _running(daemon, "sleeper"), what="the program running")
    finally:
        fg.send_signal(signal.SIGTERM)  # docker stop
        assert fg.wait(30) == 0


def _running(daemon: Daemon, name: str) -> bool:
    try:
        return bool(daemon.status()[name]["state"] == "RUNNING")
    except ControlError:  # the socket is not there yet: a foreground start is not waited for
        return False
