"""Continue this program in the background, keeping its argv and environment.

    python examples/library/background_example.py --name demo
    tail -f /tmp/twinvisor-background.log
    kill "$(cat /tmp/twinvisor-background.pid)"

A second run while the first is alive is refused: the background copy holds the pid lock.
"""

from __future__ import annotations

import os
import sys
import time

from twinvisor.daemon import background
from twinvisor.errors import AlreadyRunning

LOG = "/tmp/twinvisor-background.log"
PID = "/tmp/twinvisor-background.pid"


def main() -> None:
    print(f"foreground pid {os.getpid()}: going to the background, log in {LOG}")
    try:
        background(LOG, pid_file=PID)  # the parent exits here once the child is up
    except AlreadyRunning as e:
        sys.exit(f"not started: {e}")
    # Only the background copy gets here: new session, stdin /dev/null, output in LOG
    print(f"background pid {os.getpid()} sid {os.getsid(0)} argv {sys.argv[1:]}")
    for i in range(60):
        print(f"tick {i}")
        time.sleep(1)


if __name__ == "__main__":
    main()
