"""The start-up report: one JSON line from a starting daemon to the `twinvisor up` waiting for it.

`up` makes a pipe, passes its write end down (fd number in TWINVISOR_READY_FD) to the guard,
which hands it on to the supervisor it starts; whichever of them knows first how start-up went
writes the line and closes the pipe:

  {"ok": true, "pid": P, "socket": S, "log_dir": L, "failed": [names not started]}
  {"ok": false, "error": "config", "problems": [...]}        the config has errors
  {"ok": false, "error": "running", "message": M, "pid": P}  a daemon already runs
  {"ok": false, "error": "bind", "message": M}                a listening socket is taken

EOF without a line means the daemon died on the way.
"""

from __future__ import annotations

import os
import select
import time

from twinvisor.exitcodes import Exit
from twinvisor.linux.quiet import suppress
from twinvisor.twin import cjson

TYPE_CHECKING = False  # the guard imports this: typing stays out of it
if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from typing import Any

    # Any: the report is JSON for the CLI to render; its shapes are listed above
    Report = dict[str, Any]
else:
    Report = dict

READY_FD_ENV = "TWINVISOR_READY_FD"


def config_errors(problems: list[str]) -> Report:
    return {"ok": False, "error": "config", "problems": problems}


def already_running(message: str, pid: int | None) -> Report:
    return {"ok": False, "error": "running", "message": message, "pid": pid}


def hand_down(env: MutableMapping[str, str], fd: int | None) -> tuple[int, ...]:
    """Point a child's environment at the report pipe (or at none); the fds to pass it."""
    env.pop(READY_FD_ENV, None)
    if fd is None:
        return ()
    env[READY_FD_ENV] = str(fd)
    return (fd,)


class Reporter:
    """The writing end, taken out of our environment: what we start must not inherit it."""

    def __init__(self) -> None:
        self.told = False  # the line was written: an operator knows how start-up went
        raw = os.environ.pop(READY_FD_ENV, None)
        self.fd = int(raw) if raw and raw.isdigit() else None
        if self.fd is not None:
            try:
                os.set_inheritable(self.fd, False)
            except OSError:  # not open: nobody waits
                self.fd = None

    def send(self, message: Report) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, (cjson.dumps(message) + "\n").encode())
            self.told = True
        except OSError:
            pass  # the caller gave up waiting; that must not stop the daemon
        self.close()

    def close(self) -> None:
        """Done with it without a word (the guard, once its supervisor has the pipe)."""
        if self.fd is not None:
            with suppress(OSError):
                os.close(self.fd)
            self.fd = None

    def failed(self, message: Report) -> int:
        """Report a start-up failure; the exit status says whether an operator was told.
        A guard does not retry a failure the `up` that started it has already reported:
        it would go on behind the operator's back."""
        self.send({"ok": False, **message})
        return Exit.STARTUP_REPORTED if self.told else Exit.FAILED


def read(fd: int, timeout: float) -> Report | None:
    """The reading end (`up`): the report, a timeout error, or None if the daemon died (EOF
    or a line that is not a JSON object)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return {"ok": False, "error": "timeout"}
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        data += chunk
    try:
        parsed = cjson.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
