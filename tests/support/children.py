"""Tiny child programs for the tests: `python tests/support/children.py MODE [options]`.

Stdlib only (it also runs under /usr/bin/python3 as user nobody). Every mode can report to a
file (`--report PATH`): one JSON line per event, appended with a single write, so a test waits
for a line to appear instead of sleeping.

Modes:
  run          report "ready" (pid, uid, cwd, env), report each SIGHUP/SIGUSR1, wait forever
  ignore-term  like run, but SIGTERM is ignored (only SIGKILL ends it)
  tree         start two grandchildren (one in its own session via setsid), then wait forever
  exit CODE    report "started", exit at once with CODE
  lines N      write N numbered lines to stdout (and stderr with --stderr), report "done", exit 0
  flood N      like lines, then wait forever (stays RUNNING)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys


def report(path: str | None, event: str, **fields: object) -> None:
    if not path:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), **fields}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def ready(args: argparse.Namespace) -> None:
    report(
        args.report,
        "ready",
        role=args.role,
        ppid=os.getppid(),
        uid=os.getuid(),
        euid=os.geteuid(),
        gid=os.getgid(),
        sid=os.getsid(0),
        cwd=os.getcwd(),
        env=dict(os.environ),
    )


def wait_forever() -> None:
    while True:
        signal.pause()


def on_signals(args: argparse.Namespace) -> None:
    def handler(signum: int, frame: object) -> None:
        report(args.report, "signal", signal=signal.Signals(signum).name, role=args.role)

    for sig in (signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, handler)


def write_lines(args: argparse.Namespace) -> None:
    out = sys.stdout.buffer
    for i in range(args.count):
        out.write(b"line %08d\n" % i)
        if args.stderr:
            sys.stderr.buffer.write(b"err %08d\n" % i)
    out.flush()
    sys.stderr.flush()
    report(args.report, "done", count=args.count)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["run", "ignore-term", "tree", "exit", "lines", "flood"])
    p.add_argument("count", nargs="?", type=int, default=0, help="exit code or number of lines")
    p.add_argument("--report")
    p.add_argument("--role", default="child")
    p.add_argument("--setsid", action="store_true")
    p.add_argument("--stderr", action="store_true")
    args = p.parse_args()

    if args.setsid:
        os.setsid()
    if args.mode == "exit":
        report(args.report, "started")
        return int(args.count)
    if args.mode in ("lines", "flood"):
        write_lines(args)
        if args.mode == "lines":
            return 0
        wait_forever()
    if args.mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    on_signals(args)
    if args.mode == "tree":
        me = [sys.executable, os.path.abspath(__file__), "run", "--report", args.report or ""]
        subprocess.Popen([*me, "--role", "grandchild"])
        subprocess.Popen([*me, "--role", "setsid", "--setsid"])
    ready(args)
    wait_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
