"""A running supervisor loads only what its config uses (issue 16: every MiB counts).

Checked on the process itself, through the shared objects it has mapped (/proc/PID/maps):
no size is asserted here (bench/ measures memory), only which extension modules are there.
"""

from __future__ import annotations

import os

from tests.support.helpers import Daemon, child, daemon_fixture  # noqa: F401


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
