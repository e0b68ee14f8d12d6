"""Exit codes, one home for the CLI, the daemon and the guard."""
