"""A pool worker for tests/integration/test_pool.py: answers each stdin line with one stdout line.

"exit N" exits with N; "spawn-sleep" starts a `sleep` grandchild and prints its pid;
"burst N" prints N lines; anything else is echoed as "echo: <line>".
"""

from __future__ import annotations

import subprocess
import sys


def main() -> None:
    for raw in sys.stdin:
        line = raw.rstrip("\n")
        words = line.split()
        if words[:1] == ["exit"]:
            sys.exit(int(words[1]))
        if line == "spawn-sleep":
            child = subprocess.Popen(["sleep", "1000"])
            print(child.pid, flush=True)
        elif words[:1] == ["burst"]:
            for i in range(int(words[1])):
                print(f"line {i}")
            sys.stdout.flush()
        else:
            print(f"echo: {line}", flush=True)


if __name__ == "__main__":
    main()
