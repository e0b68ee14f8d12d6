"""Run by tests/integration/test_daemon_lib.py: exercises twinvisor.daemon.background().

usage: lib_background.py SOCKET LOG MODE [extra args kept for the argv check]
MODE: chain:N (N generations in a row), siblings (the xdaemon pitfall), pidfile:PATH,
steps:CWD (umask 027 and chdir CWD).
"""

from __future__ import annotations

import os
import sys

from lib_report import obey, report

from twinvisor.daemon import background
from twinvisor.errors import AlreadyRunning


def facts(role: str) -> dict[str, object]:
    umask = os.umask(0)
    os.umask(umask)
    return {
        "role": role,
        "pid": os.getpid(),
        "sid": os.getsid(0),
        "argv": sys.argv,
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "umask": umask,
        "stdin": os.readlink("/proc/self/fd/0"),
    }


def main() -> None:
    sock, log, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    kind, _, arg = mode.partition(":")
    role = "final"
    if kind == "chain":
        for gen in range(int(arg)):
            background(log)
            print(f"generation {gen + 1} pid {os.getpid()}", flush=True)
    elif kind == "siblings":
        role = siblings(log)
    elif kind == "pidfile":
        try:
            background(log, pid_file=arg)
        except AlreadyRunning as e:
            print(f"already running {e.pid}", flush=True)
            sys.exit(3)
    elif kind == "steps":
        background(log, umask=0o027, cwd=arg)
    print(f"final {role} pid {os.getpid()}", flush=True)
    obey(report(sock, facts(role)))


def siblings(log: str) -> str:
    """A parent that starts two children: each must follow its own branch (seed pitfall)."""
    first = background(log, exit_parent=False)
    if first is not None:  # the original parent and, replaying it, the second child
        background(log, exit_parent=True)
        return "second-child"
    background(log, exit_parent=True)  # the first child starts a generation of its own
    return "grandchild"


if __name__ == "__main__":
    main()
