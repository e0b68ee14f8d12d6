"""The supervisor runs on optimized bytecode (`python -OO`) when that bytecode is there.

Why (issue 16): `-OO` leaves docstrings out of every module the supervisor imports. Measured on
the running supervisor with 10 programs (smaps_rollup), that is 0.6 MiB of its 12 MiB of
anonymous memory: asyncio and the stdlib it pulls in carry about 0.5 MiB of docstrings, our
own modules 0.09, h11 0.01. It also drops `assert` statements: ours only narrow types, and the
core's invariant checks raise explicitly.

But `-OO` reads `.opt-2.pyc` files, which `pip install` does not write (it compiles the plain
`.pyc` only). Without them Python compiles every module from source at each start and the
compiler's garbage costs more than the docstrings save (+1 MiB measured). So:

- `ready()` tells whether the optimized bytecode of what the supervisor imports is there and
  fresh (a few sentinel modules: the stdlib's and ours; checked as importlib checks a .pyc,
  by the source's mtime and size, or its hash);
- `twinvisor up` (and `upgrade`) prepare it once when it is not: `warm_command()` runs a short
  child that writes it next to the sources, as Python itself does on import (and as pip does at
  install, whatever PYTHONDONTWRITEBYTECODE says), where this user may write;
- the supervisor is started with -OO only when `ready()`; otherwise as before, plain.
  A read-only install (a container's image, a system Python a service user cannot write)
  keeps the plain start; `python -OO -m twinvisor.service.warm` at image build prepares it.

`TWINVISOR_OPTIMIZE=0` turns it off (a plain supervisor, no bytecode written).

The guard imports this module (it decides how to start the supervisor): os and sys only.
"""

from __future__ import annotations

import _frozen_importlib_external as _bootstrap
import _imp
import os
import sys

OPTIMIZE_ENV = "TWINVISOR_OPTIMIZE"
FLAG = "-OO"
LEVEL = 2
HEADER = 16  # magic, flags, then mtime + size or the source's hash (PEP 552)
_RAW_MAGIC = int.from_bytes(_bootstrap.MAGIC_NUMBER, "little")  # the key of a .pyc's hash

# Modules whose optimized bytecode stands for the rest: what the supervisor imports first and
# most of (a warm writes them together). Relative to the stdlib and to our package's parent.
STDLIB_SENTINELS = ("asyncio/base_events.py", "inspect.py", "typing.py", "logging/__init__.py")
OWN_SENTINELS = (
    "twinvisor/service/process.py",
    "twinvisor/supervisor/runtime.py",
    "twinvisor/control/server.py",
)

# the warm child's code (service/warm.py): its imports are written as it loads them
WARM_BOOT = "from twinvisor.service.warm import warm; raise SystemExit(warm())"


def enabled() -> bool:
    return os.environ.get(OPTIMIZE_ENV, "1") != "0"


def package_root() -> str:
    """The directory the running twinvisor package is imported from (its parent)."""
    here = os.path.dirname(os.path.abspath(__file__))  # .../twinvisor/twin
    return os.path.dirname(os.path.dirname(here))


def sentinels() -> list[str]:
    stdlib = os.path.dirname(os.__file__)
    own = package_root()
    return [os.path.join(stdlib, s) for s in STDLIB_SENTINELS] + [
        os.path.join(own, s) for s in OWN_SENTINELS
    ]


def ready() -> bool:
    """The supervisor may start with -OO: turned on, and the bytecode is there and fresh."""
    return enabled() and all(is_fresh(source) for source in sentinels())


def cached_path(source: str) -> str:
    """Where importlib looks for `source`'s bytecode at optimization level 2."""
    return _bootstrap.cache_from_source(source, optimization=LEVEL)


def is_fresh(source: str) -> bool:
    """True when `source` has an optimized .pyc that importlib would use as it is."""
    try:
        with open(cached_path(source), "rb") as f:
            header = f.read(HEADER)
        st = os.stat(source)
    except (OSError, ValueError, NotImplementedError):
        return False
    if len(header) < HEADER or header[:4] != _bootstrap.MAGIC_NUMBER:
        return False
    flags = int.from_bytes(header[4:8], "little")
    if flags & 0b1:  # hash-based (PEP 552): unchecked is used as it is, checked by the hash
        if not flags & 0b10:
            return True
        try:
            with open(source, "rb") as f:
                digest = _imp.source_hash(_RAW_MAGIC, f.read())
        except OSError:
            return False
        return digest == header[8:16]
    mtime = int.from_bytes(header[8:12], "little")
    size = int.from_bytes(header[12:16], "little")
    return mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size & 0xFFFFFFFF


def why_plain() -> str:
    """Why a supervisor runs on plain bytecode (for its log)."""
    if not enabled():
        return f"{OPTIMIZE_ENV}=0"
    for source in sentinels():
        if not is_fresh(source):
            return (
                f"no fresh optimized bytecode beside {source} (`twinvisor up` writes it where "
                "its user may write; `python -OO -m twinvisor.service.warm` does it for an image)"
            )
    return "not started with -OO (by an older twinvisor, or `up --foreground --no-twin`)"


def interpreter_flags() -> list[str]:
    """The supervisor's optimization flag, when its bytecode is ready."""
    return [FLAG] if ready() else []


def warm_command() -> list[str]:
    """A child that writes the supervisor's optimized bytecode where this user may write.
    Its sys.path is the caller's (the CLI's: site-packages with h11 and msgspec), minus the
    current directory (-P), plus our package's parent (an install run from a checkout)."""
    boot = f"import sys; sys.path[:0] = {[package_root()]!r}; {WARM_BOOT}"
    return [sys.executable, FLAG, "-P", "-c", boot]
