"""`logs -f` ends when nobody reads it any more, as GNU `tail -f` does.

Without this, a follow whose reader went away lives on until the log next grows (the write
then fails): `twinvisor -H host logs -f` stopped with Ctrl-C would leave a `logs -f` running
on the host, because sshd closes the session's pipes but sends no signal when there is no
terminal. The write end of a pipe reports POLLERR once its read end is closed (a terminal:
POLLHUP on hang-up), so a thread blocked in poll() with no events asked learns it at once,
without polling.
"""

from __future__ import annotations

import select
import threading


def stop_when_closed(fd: int) -> threading.Event:
    """An Event set when the reader of `fd` (a pipe, socket or terminal) has gone away."""
    gone = threading.Event()

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, 0)  # no event asked: only POLLERR / POLLHUP / POLLNVAL wake us
        while not poller.poll():
            pass
        gone.set()

    threading.Thread(target=watch, name="output-watch", daemon=True).start()
    return gone
