"""The daemon's own log (twinvisor.log in the log dir), written by the supervisor and the guard.

Both log through the root logger into the same file, told apart by a tag; in the foreground
(containers, systemd) the lines go to stderr too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from twinvisor.config.specs import DaemonSpec
from twinvisor.linux import fsutil


class ResilientFileHandler(logging.FileHandler):
    """A FileHandler whose write errors (ENOSPC, deleted dir) are counted, not printed:
    the daemon's own log must never be the thing that takes it down."""

    def __init__(self, filename: str) -> None:
        super().__init__(filename, delay=True)
        self.failed_records = 0

    def _open(self):  # type: ignore[no-untyped-def]  # typeshed: -> TextIOWrapper
        return os.fdopen(fsutil.open_log(self.baseFilename), "a", encoding=self.encoding)

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed_records += 1
        if self.stream is not None:
            with contextlib.suppress(OSError):
                self.stream.close()
            self.stream = None  # reopened by the next emit


def setup(daemon: DaemonSpec, foreground: bool, tag: str = "") -> None:
    """Log INFO and up to the daemon's log file (and stderr in the foreground); `tag` names
    the writer in each line ("guard": `guard[PID]: ...`; empty for the supervisor)."""
    os.makedirs(daemon.log_dir, mode=0o750, exist_ok=True)
    who = f"{tag}[%(process)d]: " if tag else ""
    fmt = logging.Formatter(f"%(asctime)s %(levelname)s {who}%(message)s")
    handlers: list[logging.Handler] = [ResilientFileHandler(daemon.log_path)]
    if foreground:
        handlers.append(logging.StreamHandler(sys.stderr))
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
