"""A pool worker that writes COUNT lines of 100 bytes as fast as it can, then exits 0."""

from __future__ import annotations

import sys


def main() -> None:
    count = int(sys.argv[1])
    line = b"x" * 99 + b"\n"
    out = sys.stdout.buffer
    for _ in range(count):
        out.write(line)
    out.flush()


if __name__ == "__main__":
    main()
