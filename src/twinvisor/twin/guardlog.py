"""The guard's lines in the daemon's log (twinvisor.log), in the supervisor's format, without
the logging module: logging (with its threading, traceback, string templates) is 2.4 MiB of
the guard's memory, for a process that writes a handful of lines in its life.

    2026-12-02 14:02:45,123 WARNING guard[PID]: message
"""

from __future__ import annotations

import os
import sys
import time

from twinvisor.linux import fsutil
from twinvisor.linux.quiet import suppress


class GuardLog:
    def __init__(self) -> None:
        self.path: str | None = None  # None: not set up yet, lines go to stderr
        self.foreground = False
        self.failed_lines = 0  # write errors (ENOSPC, a deleted dir): counted, never raised
        self._fd: int | None = None

    def setup(self, path: str, foreground: bool) -> None:
        self.path, self.foreground = path, foreground

    def info(self, message: str) -> None:
        self._line("INFO", message)

    def warning(self, message: str) -> None:
        self._line("WARNING", message)

    def error(self, message: str) -> None:
        self._line("ERROR", message)

    def _line(self, level: str, message: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        line = f"{stamp},{int(now % 1 * 1000):03d} {level} guard[{os.getpid()}]: {message}\n"
        data = line.encode("utf-8", "backslashreplace")
        if self.path is None or self.foreground:
            self._write_stderr(data)
        if self.path is not None:
            self._write_file(data)

    def _write_file(self, data: bytes) -> None:
        assert self.path is not None
        try:
            if self._fd is None:  # opened on first use, reopened after an error
                self._fd = fsutil.open_log(self.path)
            os.write(self._fd, data)
        except OSError:
            self.failed_lines += 1
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    @staticmethod
    def _write_stderr(data: bytes) -> None:
        # no stderr (closed, or None): the file has the line
        with suppress(OSError, ValueError, AttributeError):
            os.write(sys.stderr.fileno(), data)


log = GuardLog()
