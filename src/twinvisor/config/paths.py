"""Where a daemon lives, from the [daemon] table alone (run dir, log dir, control socket).

For the callers that must be light and must work while the rest of the config has errors:
the CLI finding its socket, and the guard. `default_run_dir` is the one rule, which the full
loader (config/load.py) uses too, so both always agree.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from typing import Any, NamedTuple

# a table header line: [daemon] opens the table, any other [...] line ends it
_HEADER = re.compile(rb"^[ \t]*\[")
_DAEMON_HEADER = re.compile(rb"^[ \t]*\[[ \t]*daemon[ \t]*\][ \t]*(#.*)?$")
MAX_READ = 64 * 1024 * 1024  # past this the full loader refuses the file anyway


class DaemonPaths(NamedTuple):
    run_dir: str
    socket: str
    log_dir: str


RUN_DIR_ENV = "TWINVISOR_RUN_DIR"


def default_run_dir(config_path: str, env: dict[str, str] | None = None) -> str:
    """The run dir when [daemon] run_dir is not set: $TWINVISOR_RUN_DIR (relative to the cwd,
    like any env path), else `.twinvisor/<stem>-<hash>` beside the config file. Each config
    file gets its own: a.toml and b.toml in one folder are two daemons, never one. The hash
    (of the absolute path) keeps a.toml and a.conf apart; the stem keeps it readable."""
    from_env = (os.environ if env is None else env).get(RUN_DIR_ENV)
    if from_env:
        return os.path.abspath(from_env)
    path = os.path.abspath(config_path)
    stem = os.path.splitext(os.path.basename(path))[0] or "config"
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:8]
    return os.path.join(os.path.dirname(path), ".twinvisor", f"{stem}-{digest}")


def daemon_table_paths(path: str) -> DaemonPaths | None:
    """None when even the [daemon] table cannot be read (the full loader then says why).

    A syntax error, binary garbage or absurd nesting elsewhere in the file does not matter:
    a running daemon must stay controllable (`status`, `down`) while its config is broken."""
    daemon = _daemon_table(path)
    if daemon is None:
        return None
    keys = ("run_dir", "socket", "log_dir")
    if not isinstance(daemon, dict) or not all(isinstance(daemon.get(k, ""), str) for k in keys):
        return None
    here = os.path.dirname(os.path.abspath(path))

    def resolve(value: str) -> str:
        return os.path.normpath(os.path.join(here, os.path.expanduser(value)))

    run_dir = resolve(daemon["run_dir"]) if "run_dir" in daemon else default_run_dir(path)
    socket = (
        resolve(daemon["socket"]) if "socket" in daemon else os.path.join(run_dir, "twinvisor.sock")
    )
    log_dir = resolve(daemon["log_dir"]) if "log_dir" in daemon else os.path.join(run_dir, "log")
    return DaemonPaths(run_dir, socket, log_dir)


def _daemon_table(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_READ)
    except OSError:
        return None
    try:
        return tomllib.loads(data.decode()).get("daemon", {})
    except (ValueError, RecursionError):
        pass  # broken somewhere: the [daemon] table's own lines may still be fine
    try:
        return tomllib.loads(_daemon_lines(data).decode()).get("daemon", {})
    except (ValueError, RecursionError):
        return None


def _daemon_lines(data: bytes) -> bytes:
    """The [daemon] table's lines alone: from its header to the next table header."""
    out: list[bytes] = []
    inside = False
    for line in data.splitlines():
        if _HEADER.match(line):
            inside = bool(_DAEMON_HEADER.match(line))
        if inside:
            out.append(line)
    return b"\n".join(out)
