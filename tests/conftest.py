"""Shared fixtures: every test checks it left no child process behind."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
import pytest


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    me = psutil.Process(os.getpid())
    before = {c.pid for c in me.children(recursive=True)}
    yield
    leaked = [
        c
        for c in me.children(recursive=True)
        if c.pid not in before and c.status() != psutil.STATUS_ZOMBIE
    ]
    for c in leaked:
        c.kill()
    assert not leaked, f"test leaked child processes: {[c.pid for c in leaked]}"
