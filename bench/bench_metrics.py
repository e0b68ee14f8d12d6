"""What a /metrics scrape costs, by number of programs: the daemon runs N sleeping programs and
the bench times GET /metrics on the control socket (median and p90 of 30 scrapes), and the
Prometheus text size. Target: about 1 ms per 100 programs.

    .venv/bin/python bench/bench_metrics.py [N ...]      # default: 10 100 500
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SCRAPES = 30


def scrape(path: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    return time.perf_counter() - t0, len(data)


def run(n: int) -> tuple[float, float, int]:
    root = tempfile.mkdtemp(prefix="tvbm", dir="/tmp")
    config = os.path.join(root, "twinvisor.toml")
    with open(config, "w") as f:
        f.write(f'[daemon]\nrun_dir = "{root}/run"\n\n[program.p]\ncommand = "sleep 3600"\n')
        f.write(f"numprocs = {n}\nmin_uptime = 0\nstdout_file = ''\nstderr_file = ''\n")
    cli = [sys.executable, "-m", "twinvisor", "-c", config]
    try:
        subprocess.run([*cli, "up", "--quiet"], check=True, timeout=120)
        sock = os.path.join(root, "run", "twinvisor.sock")
        scrape(sock)  # warm: the worker thread and imports
        times, size = [], 0
        for _ in range(SCRAPES):
            took, size = scrape(sock)
            times.append(took)
        times.sort()
        return statistics.median(times), times[int(len(times) * 0.9)], size
    finally:
        subprocess.run([*cli, "down"], timeout=120, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [10, 100, 500]
    print(f"{'programs':>8} {'median ms':>10} {'p90 ms':>8} {'ms/100':>7} {'bytes':>8}")
    for n in counts:
        med, p90, size = run(n)
        print(
            f"{n:>8} {med * 1000:>10.2f} {p90 * 1000:>8.2f} {med * 1000 * 100 / n:>7.2f} {size:>8}"
        )


if __name__ == "__main__":
    main()
