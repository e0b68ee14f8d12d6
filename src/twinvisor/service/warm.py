"""The warm child of `twinvisor up` (twin/bytecode.py): writes the supervisor's optimized
bytecode, so the supervisor can start with -OO. Run as `python -OO -P -c WARM_BOOT` by `up`,
or as `python -OO -m twinvisor.service.warm` where `up` cannot write (an image's build step)."""

from __future__ import annotations

import os
import sys

from twinvisor.twin.bytecode import LEVEL, is_fresh, package_root


def warm() -> int:
    """In the warm child (under -OO): import what a supervisor imports at start, writing
    their bytecode as they load; compile the rest of our package (what a supervisor imports
    later, on demand); then whatever had loaded before writing was allowed (`site` and the
    modules its .pth files import, such as setuptools' _distutils_hack): a supervisor should
    compile nothing from source (a bare `python -OO` that had to compile _distutils_hack
    kept 0.6 MiB more)."""
    sys.dont_write_bytecode = False
    import compileall

    import h11  # noqa: F401
    import msgspec  # noqa: F401

    import twinvisor.service.entry
    import twinvisor.service.process  # noqa: F401

    ok = compileall.compile_dir(os.path.join(package_root(), "twinvisor"), quiet=2, optimize=LEVEL)
    for module in list(sys.modules.values()):
        spec = getattr(module, "__spec__", None)
        source, cached = getattr(spec, "origin", None), getattr(spec, "cached", None)
        if not (isinstance(source, str) and source.endswith(".py") and cached):
            continue
        if not is_fresh(source):
            ok = compileall.compile_file(source, quiet=2, optimize=LEVEL) and ok
    return 0 if ok else 1


if __name__ == "__main__":  # an image's build step: `python -OO -m twinvisor.service.warm`
    raise SystemExit(warm())
