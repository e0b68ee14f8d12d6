"""Shared fixtures: every test checks it left no child process, zombie or fd behind."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import psutil
import pytest


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    me = psutil.Process(os.getpid())
    before = {c.pid for c in me.children(recursive=True)}
    yield
    mine = [c for c in me.children(recursive=True) if c.pid not in before]
    zombies = [c.pid for c in mine if c.status() == psutil.STATUS_ZOMBIE]
    leaked = [c for c in mine if c.pid not in zombies]
    for c in leaked:
        c.kill()
    for pid in zombies:  # reap, so one test's zombie is not blamed on the next
        os.waitpid(pid, os.WNOHANG)
    assert not leaked, f"test leaked child processes: {[c.pid for c in leaked]}"
    assert not zombies, f"test left zombies (never waited for): {zombies}"


def _open_fds() -> dict[int, str]:
    fds = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            fds[int(entry)] = os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            continue  # the listdir's own fd, closed meanwhile
    return fds


@pytest.fixture(autouse=True)
def no_leaked_fds() -> Iterator[None]:
    before = _open_fds()
    yield
    gc.collect()  # objects that own an fd and are merely unreferenced close it here
    leaked = {fd: target for fd, target in _open_fds().items() if before.get(fd) != target}
    assert not leaked, f"test leaked file descriptors: {leaked}"
