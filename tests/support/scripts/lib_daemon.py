"""Run by tests/integration/test_daemon_lib.py: a program running itself under
twinvisor.daemon.Daemon.

usage: lib_daemon.py SOCKET LOG MAX_COUNT MAX_ERROR MIN_EXIT_TIME [--foreground] [--ignore-term]
Each worker reports {pid, ppid} and exits with the code the test replies ("exit N").
--ignore-term: workers ignore SIGTERM, and the watcher's stop_timeout is 0.2 s.
"""

from __future__ import annotations

import os
import signal
import sys

from lib_report import obey, report

from twinvisor.daemon import Daemon


def main() -> None:
    sock, log = sys.argv[1], sys.argv[2]
    max_count, max_error, min_exit_time = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    daemon = Daemon(
        log,
        max_count=max_count,
        max_error=max_error,
        min_exit_time=min_exit_time,
        background="--foreground" not in sys.argv,
        backoff_initial=0.01,
        stop_timeout=0.2 if "--ignore-term" in sys.argv else 10.0,
    )
    daemon.run()  # returns only in the worker
    if "--ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"worker {os.getpid()} running", flush=True)
    obey(report(sock, {"pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0)}))


if __name__ == "__main__":
    main()
