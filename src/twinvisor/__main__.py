"""`python -m twinvisor`: the CLI, or one of the twin's own processes.

The supervisor is started with `python -c` (twin/protocol.command: -m would keep runpy in its
memory); `python -m twinvisor daemon -c PATH` by hand goes straight to service/entry.py too:
through the CLI it would keep argparse, json, shutil (bz2, lzma) and the CLI's own modules in
its memory for the life of the process. Any other form of `daemon` still goes through the
CLI's parser (its errors and its -c lookup).
"""

import sys

_argv = sys.argv[1:]
if len(_argv) == 3 and _argv[0] == "daemon" and _argv[1] == "-c" and _argv[2]:
    from twinvisor.service import entry

    raise SystemExit(entry.run(_argv[2], foreground=False))

from twinvisor.cli import main  # noqa: E402  (after the supervisor's own way in)

raise SystemExit(main())
