"""twinvisor: a process supervisor for Linux that survives its own death.

The public library API is listed in `__all__` (pinned by a test). Submodules load lazily so
that `import twinvisor` stays cheap for the CLI, which is started often.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself costs the guard 1 MiB: `import twinvisor` must not load it
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

__all__ = ["AsyncPool", "Daemon", "Pool", "__version__", "background", "listen_sockets", "notify"]

_LAZY = {
    "background": "twinvisor.daemon",
    "Daemon": "twinvisor.daemon",
    "Pool": "twinvisor.pool",
    "AsyncPool": "twinvisor.pool",
    "listen_sockets": "twinvisor.sd",
    "notify": "twinvisor.sd",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'twinvisor' has no attribute {name!r}")
    __import__(module)  # not importlib: the guard imports this package, and needs no more
    return getattr(sys.modules[module], name)
