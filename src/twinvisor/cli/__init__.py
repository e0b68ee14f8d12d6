"""The command line: argument parsing, talking to the daemon, rendering; and the tools
that need no daemon (up/down/upgrade in `launch`, timers and units in `integrate`,
`export`, `import`). Started often, so every command imports only what it needs."""

from twinvisor.cli.app import main

__all__ = ["main"]
