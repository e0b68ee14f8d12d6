"""linux/kernel.libc_call: libc's functions through _ctypes itself, without ctypes/__init__
(issue 16: 0.4 MiB of the guard's memory). Checked on real calls: a pid, a missing symbol,
and the subreaper a guard becomes, which an orphaned grandchild then reports as its parent."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from twinvisor.linux import kernel


def test_a_libc_call_returns_its_int() -> None:
    assert kernel.libc_call("getpid") == os.getpid()
    assert kernel.libc_call("getppid") == os.getppid()


def test_a_missing_function_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        kernel.libc_call("twinvisor_no_such_function")


SUBREAPER = textwrap.dedent(
    """
    import os, sys
    from twinvisor.linux import kernel
    assert kernel.set_child_subreaper()
    go_r, go_w = os.pipe()
    said_r, said_w = os.pipe()
    child = os.fork()
    if child == 0:
        if os.fork() == 0:  # the grandchild: orphaned when its parent exits
            os.read(go_r, 1)
            os.write(said_w, str(os.getppid()).encode())
            os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)  # its parent gone and reaped: the orphan is ours by now
    os.write(go_w, b"x")
    print(os.getpid(), os.read(said_r, 32).decode(), "ctypes" in sys.modules)
    os.wait()  # the grandchild, reaped by us, its subreaper
    """
)


def test_the_subreaper_adopts_an_orphan_without_ctypes() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SUBREAPER], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    me, orphans_parent, ctypes_loaded = out
    assert orphans_parent == me
    assert ctypes_loaded == "False"
