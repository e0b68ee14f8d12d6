"""Where a daemon lives, from the [daemon] table alone (run dir, log dir, control socket).

For the callers that must be light and must work while the rest of the config has errors:
the CLI finding its socket, and the guard. Resolves exactly as config.py does.
"""

from __future__ import annotations

import os
import tomllib
from typing import NamedTuple


class DaemonPaths(NamedTuple):
    run_dir: str
    socket: str
    log_dir: str


def daemon_table_paths(path: str) -> DaemonPaths | None:
    """None when even the [daemon] table cannot be read (the full loader then says why)."""
    try:
        with open(path, "rb") as f:
            daemon = tomllib.load(f).get("daemon", {})
    except (OSError, ValueError):
        return None
    keys = ("run_dir", "socket", "log_dir")
    if not isinstance(daemon, dict) or not all(isinstance(daemon.get(k, ""), str) for k in keys):
        return None
    here = os.path.dirname(os.path.abspath(path))

    def resolve(value: str) -> str:
        return os.path.normpath(os.path.join(here, os.path.expanduser(value)))

    env_run_dir = os.environ.get("TWINVISOR_RUN_DIR")
    if "run_dir" in daemon:
        run_dir = resolve(daemon["run_dir"])
    elif env_run_dir:
        run_dir = os.path.abspath(env_run_dir)
    else:
        run_dir = os.path.join(here, ".twinvisor")
    socket = (
        resolve(daemon["socket"]) if "socket" in daemon else os.path.join(run_dir, "twinvisor.sock")
    )
    log_dir = resolve(daemon["log_dir"]) if "log_dir" in daemon else os.path.join(run_dir, "log")
    return DaemonPaths(run_dir, socket, log_dir)
