"""The command line: argument parsing, talking to the daemon, rendering; and the tools
that need no daemon (up/down/upgrade in `launch`, timers and units in `integrate`,
`export`, `import`). Started often, so every command imports only what it needs: a plain
`status` not even argparse (cli/quick.py)."""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    import os
    import sys

    from twinvisor.cli.quick import status_args

    args = status_args(sys.argv[1:] if argv is None else argv, os.environ)
    if args is None:
        from twinvisor.cli.app import main as parse_and_run

        return parse_and_run(argv)
    from twinvisor.cli.common import reported
    from twinvisor.cli.status_verb import cmd_status

    return reported(lambda: cmd_status(args))  # type: ignore[arg-type]  # argparse's fields
