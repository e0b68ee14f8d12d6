"""A running supervisor loads only what its config uses (issue 16: every MiB counts).

Checked on the process itself, through the shared objects it has mapped (/proc/PID/maps):
no size is asserted here (bench/ measures memory), only which extension modules are there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.helpers import Daemon, child, daemon_fixture  # noqa: F401
from twinvisor.service.process import MODULES_ENV


def _mapped(daemon: Daemon) -> set[str]:
    with open(os.path.join(daemon.run_dir, "twinvisor.pid")) as f:
        pid = int(f.read())
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[-1].rsplit("/", 1)[-1] for line in f if ".so" in line}


def _loaded(mapped: set[str], prefix: str) -> list[str]:
    return sorted(name for name in mapped if name.startswith(prefix))


def test_a_plain_config_loads_no_tls(daemon: Daemon) -> None:
    """ssl is imported by asyncio only when [daemon.http] serves TLS (service/entry.py)."""
    daemon.up({"a": {"command": child("run")}})
    assert daemon.status()["a"]["state"] == "RUNNING"  # a control request was served
    mapped = _mapped(daemon)
    assert _loaded(mapped, "_ssl.") == [], mapped


def test_a_plain_config_loads_no_ctypes_or_compression(daemon: Daemon) -> None:
    """ctypes only for console programs (tee, linux/console.py); bz2/lzma came with tempfile
    (linux/fsutil.py makes its own temporary files); psutil only for `find`, the metrics and
    a supervisor without its guard (the tag scan of every start reads /proc itself); hashlib
    (OpenSSL's libcrypto) not for the run dir's or the cgroup's digest (config/paths.py)."""
    daemon.up({"a": {"command": child("run")}})
    daemon.cli("restart", "a")  # state written again, a new generation tagged
    mapped = _mapped(daemon)
    for prefix in ("_ctypes.", "_bz2.", "_lzma.", "_psutil_linux.", "_hashlib."):
        assert _loaded(mapped, prefix) == [], mapped


# pure-Python modules a plain supervisor (no [daemon.http], no HTTP checks, no console
# programs) does without for its whole life: the dashboard is built on its first request,
# the control server decodes targets itself (control/target.py), the console's JSON lines
# are msgspec's
NOT_IN_A_PLAIN_SUPERVISOR = (
    "json",
    "urllib",
    "ipaddress",
    "http",
    "twinvisor.control.dashboard",
    "twinvisor.control.auth",
    "twinvisor.cli",
)


def _supervisor_modules(listing: Path) -> set[str]:
    return set(listing.read_text().split())


def _heavy(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules for f in NOT_IN_A_PLAIN_SUPERVISOR if m == f or m.startswith(f + ".")
    )


def test_a_plain_supervisor_serves_requests_without_the_dashboard(daemon: Daemon) -> None:
    listing = Path(daemon.path("supervisor-modules"))
    daemon.env[MODULES_ENV] = str(listing)
    daemon.up({"a": {"command": child("run")}})
    # a query string with percent-escapes, decoded without urllib.parse
    code, body = daemon.api("POST", "/programs/a/restart", query={"wait": "1", "why": "a b/c"})
    assert code == 200, body
    assert daemon.status()["a"]["state"] == "RUNNING"
    modules = _supervisor_modules(listing)
    assert "twinvisor.service.process" in modules  # the supervisor's list, current
    assert _heavy(modules) == []

    # the first dashboard request builds it, and it guards at once: the client's
    # "Host: twinvisor" is no loopback name, so the DNS-rebinding check refuses it
    code, page = daemon.api("GET", "/ui/status")
    assert (code, page) == (403, {"error": "unexpected Host header"})
    assert "twinvisor.control.dashboard" in _supervisor_modules(listing)


# what `status` (the call scripts and probes make in a loop) does without: argparse and gettext
# (cli/quick.py reads its command line), socket.py's enum conversions and the json package's
# regexes (the client talks through _socket and _json), and msgspec and asyncio, which only
# other verbs need
NOT_IN_STATUS = ("argparse", "gettext", "socket", "json", "struct", "msgspec", "asyncio", "typing")


def test_the_status_command_loads_no_socket_or_json_module(daemon: Daemon) -> None:
    daemon.up({"a": {"command": child("run")}})
    listing = Path(daemon.path("cli-modules"))
    code = (
        "import sys\nfrom twinvisor.cli import main\n"
        "try:\n    rc = main(sys.argv[2:])\n"
        "finally:\n    open(sys.argv[1], 'w').write(' '.join(sorted(sys.modules)))\n"
        "raise SystemExit(rc)\n"
    )
    argv = [sys.executable, "-c", code, str(listing), "-c", daemon.config, "status"]
    p = subprocess.run(argv, env=daemon.env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p
    assert p.stdout.split("\n")[-2].split()[:2] == ["a", "RUNNING"], p.stdout
    loaded = set(listing.read_text().split())
    assert "twinvisor.control.client" in loaded  # this listing is the status call's own
    assert sorted(set(NOT_IN_STATUS) & loaded) == []
