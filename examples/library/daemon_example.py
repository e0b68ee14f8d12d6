"""Run this program as a worker under a background watcher that restarts it.

    python examples/library/daemon_example.py          # detaches; see the log
    python examples/library/daemon_example.py --fg     # watcher stays in the foreground
    tail -f /tmp/twinvisor-daemon.log
    kill "$(cat /tmp/twinvisor-daemon.pid)"            # SIGTERM: forwarded, then both exit

The worker below crashes after a few seconds; the watcher logs each exit (pid, run time,
status) and restarts it, at most 5 times, giving up after 3 runs in a row shorter than 2 s.
"""

from __future__ import annotations

import os
import random
import sys
import time

from twinvisor.daemon import Daemon

LOG = "/tmp/twinvisor-daemon.log"


def main() -> None:
    Daemon(
        LOG,
        max_count=5,
        max_error=3,
        min_exit_time=2,
        background="--fg" not in sys.argv,
        pid_file="/tmp/twinvisor-daemon.pid",
    ).run()
    # Only the worker gets here; the watcher never returns from run()
    print(f"worker pid {os.getpid()} started (watcher {os.getppid()})")
    time.sleep(random.uniform(1, 5))
    print(f"worker pid {os.getpid()} crashing")
    sys.exit(1)


if __name__ == "__main__":
    main()
