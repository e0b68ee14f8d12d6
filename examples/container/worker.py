"""The example's background worker: a line every few seconds; stops cleanly on SIGTERM."""

import signal
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
n = 0
while True:
    n += 1
    print(f"tick {n}", flush=True)
    time.sleep(5)
