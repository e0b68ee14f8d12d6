#!/usr/bin/env python3
"""What `-H ssh://` and `--hosts` cost on top of a local `status`: a real sshd on loopback
(the tests' throwaway one: tests/support/sshd.py), one daemon with 10 programs.

Run from the repository root with the project venv (openssh-server installed):

    .venv/bin/python bench/bench_remote.py            # --runs 10

Figures (medians of --runs wall times, output to a pipe):
  local `twinvisor status`; a bare `ssh host true` (the floor any ssh-based tool pays);
  `twinvisor -H ssh://… status`; `--hosts` with 1, 4 and 16 entries naming that host
  (all in parallel: the fleet runner is one selector loop, so 16 hosts cost about one
  handshake's wall time when the machine has the cores for 16 ssh handshakes).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.helpers import Daemon  # noqa: E402
from tests.support.sshd import start_sshd  # noqa: E402

REMOTE = f"{shlex.quote(sys.executable)} -m twinvisor"


def timed(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    runs = p.parse_args().runs
    daemon = Daemon(tempfile.mkdtemp(prefix="tvb", dir="/tmp"))
    sshd = start_sshd(tempfile.mkdtemp(prefix="tvbssh", dir="/tmp"))
    try:
        daemon.up({f"p{i}": {"command": ["sleep", "infinity"]} for i in range(10)})
        tv = [sys.executable, "-m", "twinvisor"]
        ssh = ["--ssh", sshd.ssh, "--remote-command", f"{REMOTE} -c {daemon.config}"]
        rows = [
            ("local status", timed([*tv, "-c", daemon.config, "status"], runs)),
            ("ssh host true", timed([*shlex.split(sshd.ssh), "tv-good", "true"], runs)),
            ("-H ssh://… status", timed([*tv, "-H", sshd.url, *ssh, "status"], runs)),
        ]
        for n in (1, 4, 16):
            hosts = Path(daemon.path(f"hosts{n}"))
            hosts.write_text(f"{sshd.url}\n" * n)
            rows.append((f"--hosts ({n}) status", timed([*tv, "--hosts", str(hosts), *ssh,
                                                        "status"], runs)))  # fmt: skip
        print(f"{'command':<24} median ms (runs={runs})")
        for name, ms in rows:
            print(f"{name:<24} {ms:8.1f}")
    finally:
        sshd.stop()
        daemon.teardown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
