#!/usr/bin/env python3
"""A worker that writes numbered log lines: one to stdout per interval, an error line to
stderr every tenth. Numbered so that a lost or repeated line is easy to spot."""

import argparse
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--interval", type=float, default=1.0)
parser.add_argument("--name", default="worker")
args = parser.parse_args()

n = 0
while True:
    n += 1
    print(f"{args.name} line {n}", flush=True)
    if n % 10 == 0:
        print(f"{args.name} line {n}: a warning on stderr", file=sys.stderr, flush=True)
    time.sleep(args.interval)  # the worker's own pace, not a synchronisation
