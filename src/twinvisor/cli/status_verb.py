"""`twinvisor status`: the state of programs, as the daemon reports it.

Its own module, free of argparse, because `status` is the call scripts and probes make in a
loop: cli/quick.py reads a plain `status` command line itself and comes straight here.
"""

from __future__ import annotations

import sys

from twinvisor.cli.common import EXIT_FAILED, EXIT_OK, print_json, request_status
from twinvisor.cli.render import status_table

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def cmd_status(args: argparse.Namespace) -> int:
    if getattr(args, "watch", False):
        from twinvisor.cli import observe

        return observe.cmd_watch(args)
    from twinvisor.core.states import ProcessState

    query = {"names": ",".join(args.names)} if args.names else None
    reply = request_status(args, query)  # read with json: msgspec is most of a call's time
    rows = reply.programs
    if args.json:
        print_json([row.as_json() for row in rows])
    else:
        if reply.config:  # which config this daemon runs (several may share a folder)
            print(f"config {reply.config} (supervisor pid {reply.pid})")
        print(status_table(rows))
    problems = reply.config_problems
    if problems:
        print(
            "twinvisor: the config file has errors; the daemon runs on the last applied config:",
            *(f"  {p}" for p in problems),
            sep="\n",
            file=sys.stderr,
        )
    # like `systemctl is-active`: non-zero when something is not running as asked
    bad = [r for r in rows if r.state in (ProcessState.FATAL, ProcessState.BACKOFF)]
    return EXIT_FAILED if bad else EXIT_OK
