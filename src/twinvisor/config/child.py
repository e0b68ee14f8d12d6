"""`python -m twinvisor.config.child PATH`: load a config file and write it to stdout as JSON,
for the supervisor (supervisor/configload.py), which never imports the loader itself.

The loader — tomllib, the schema, the value checks, includes and env files — is 1.3 MiB of
modules that a long-lived daemon would carry for its whole life to read a file at start and
at each `update`. Here it lives for one load. The answer is one JSON object:

  {"config": {...}}                               the resolved Config (as config/applied.py)
  {"problems": [[file, line, key, message], ...]}  the file has errors (exit status 0 too)

Anything else (a traceback, a non-zero exit with no answer) is the supervisor's to report.
"""

from __future__ import annotations

import sys

import msgspec

from twinvisor.config.load import load_config
from twinvisor.errors import ConfigError


def answer(path: str) -> bytes:
    """The answer for the config file at `path` (also run in a fork: supervisor/configload)."""
    try:
        config = load_config(path)
    except ConfigError as e:
        problems = [(p.file, p.line, p.key, p.message) for p in e.problems]
        return msgspec.json.encode({"problems": problems}) + b"\n"
    return b'{"config":' + msgspec.json.encode(config) + b"}\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m twinvisor.config.child CONFIG", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(answer(argv[0]))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
