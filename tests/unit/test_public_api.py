"""The library's public surface is exactly this: a change here is a deliberate API change."""

from __future__ import annotations

import subprocess
import sys

import twinvisor


def test_all_is_pinned() -> None:
    assert sorted(twinvisor.__all__) == sorted(
        ["__version__", "background", "Daemon", "Pool", "AsyncPool", "listen_sockets", "notify"]
    )
    for name in twinvisor.__all__:
        assert getattr(twinvisor, name) is not None


def test_importing_the_package_stays_light() -> None:
    """The CLI imports `twinvisor` on every call: no daemon machinery may come with it."""
    code = "import sys, twinvisor.cli; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.check_output([sys.executable, "-c", code], text=True).split())
    heavy = {"asyncio", "msgspec", "h11", "psutil", "twinvisor.runtime", "twinvisor.config"}
    assert not heavy & loaded, heavy & loaded
