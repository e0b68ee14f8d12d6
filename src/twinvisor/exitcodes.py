"""Exit codes, one home for the CLI, the daemon and the guard.

The daemon's and the guard's codes matter to whoever started them: the guard stops reviving
a supervisor that exited with one of `FINAL_AT_STARTUP`, since a retry cannot fix it and would
only hide it from the operator.
"""

from __future__ import annotations


class Exit:
    """Plain ints, not an IntEnum: the guard imports this, and enum would cost it 0.8 MiB."""

    OK = 0
    FAILED = 1
    USAGE = 2  # a bad command line, or a config with errors
    NO_DAEMON = 3  # the CLI found no daemon to talk to
    ALREADY_RUNNING = 3  # the daemon or guard found another one holding the lock (an alias)
    STARTUP_REPORTED = 4  # start-up failed and the waiting `twinvisor up` was told why


FINAL_AT_STARTUP = frozenset({Exit.USAGE, Exit.ALREADY_RUNNING, Exit.STARTUP_REPORTED})
