"""The names the guard holds our fds under, built and parsed here only.

The guard keeps them as opaque strings: a new supervisor gets them back with their fds and
reads here which is which.

  control                 the control socket's listener
  notify                  the NOTIFY_SOCKET datagram socket (its name is random: bound once)
  inflight                the memfd holding a chunk of output between pipe and log file
  listen:ADDR             a listening socket (one per address, whoever names it)
  pipe:NAME:PID:out|err   the read end of one program generation's stdout or stderr pipe

They live in the supervisor layer, not in twin/, because the supervisor must not import the
twin (it only sees the guard as an FdKeeper).
"""

from __future__ import annotations

CONTROL = "control"
NOTIFY = "notify"
INFLIGHT = "inflight"
_LISTEN = "listen:"


def listen(addr: str) -> str:
    return f"{_LISTEN}{addr}"


def listen_addr(key: str) -> str | None:
    """The address of a `listen:` key; None for any other key."""
    return key.removeprefix(_LISTEN) if key.startswith(_LISTEN) else None


_PIPE = "pipe:"


def pipe(name: str, pid: int, stream: str) -> str:
    """`stream`: "out" or "err"."""
    return f"{_PIPE}{name}:{pid}:{stream}"


def pipe_of(key: str) -> tuple[str, int, str] | None:
    """(instance, pid, stream) of a `pipe:` key; None for any other key (or a malformed one:
    the guard hands back what it was given, but a key is read as untrusted all the same)."""
    if not key.startswith(_PIPE):
        return None
    name, _, rest = key.removeprefix(_PIPE).rpartition(":")
    name, _, pid = name.rpartition(":")
    if not name or not pid.isdigit() or rest not in ("out", "err"):
        return None
    return name, int(pid), rest
