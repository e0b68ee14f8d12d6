"""Which machines to talk to, and the `ssh` command line that reaches each.

A host is `ssh://[user@]host[:port]` or the bare `[user@]host[:port]` (an ssh_config alias
works: it is handed to ssh as written). A hosts file holds one per line, optionally followed
by the remote command for that host (`web1 sudo -n /opt/tv/bin/twinvisor -c /etc/tv.toml`);
`#` starts a comment. Every part is checked before it reaches ssh's argument list: a host
that starts with `-` would otherwise be read by ssh as an option (`-oProxyCommand=...`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

DEFAULT_REMOTE_COMMAND = "twinvisor"
# A fleet run must not stop at a password prompt nobody sees, nor wait two minutes of TCP
# retries for one dead host. ssh keeps the first value it is given for an option, so any
# -o in the user's TWINVISOR_SSH (which comes first on the command line) still wins.
BATCH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")

_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._%-]*")  # a hostname, an IPv4, an ssh alias
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?\]")


@dataclass(frozen=True)
class Target:
    """One remote host: `name` is what the output shows, `destination` what ssh gets."""

    name: str
    destination: str  # [user@]host, with an IPv6 address unbracketed
    port: int | None
    command: str  # shell words run on the host; the verb's arguments are appended quoted


def parse_host(text: str, command: str = DEFAULT_REMOTE_COMMAND) -> Target:
    """A Target from `ssh://[user@]host[:port]` or `[user@]host[:port]`; ValueError if bad."""
    spec = text.strip()
    rest = spec
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        if scheme != "ssh":
            raise ValueError(f"{spec!r}: only ssh:// hosts are supported")
        rest = rest.removesuffix("/")
    user, at, hostport = rest.rpartition("@")
    if at and not _USER.fullmatch(user):
        raise ValueError(f"{spec!r}: bad user name {user!r}")
    host, port = _split_port(spec, hostport)
    if not (_NAME.fullmatch(host) or _IPV6.fullmatch(host)):
        raise ValueError(f"{spec!r}: bad host name {host!r}")
    if not command.strip():
        raise ValueError(f"{spec!r}: the remote command is empty")
    bare = host[1:-1] if host.startswith("[") else host
    name = f"{user}@{host}" if at else host
    if port is not None:
        name += f":{port}"
    return Target(name, f"{user}@{bare}" if at else bare, port, command.strip())


def _split_port(spec: str, hostport: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        host, _, tail = hostport.partition("]")
        host += "]"
        if tail and not tail.startswith(":"):
            raise ValueError(f"{spec!r}: unexpected {tail!r} after the address")
        port_text = tail[1:] if tail else None
    elif hostport.count(":") > 1:
        raise ValueError(f"{spec!r}: write an IPv6 address in brackets: ssh://[::1]:22")
    else:
        host, colon, port_text_ = hostport.partition(":")
        port_text = port_text_ if colon else None
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{spec!r}: bad port {port_text!r}")
    return host, int(port_text)


def read_hosts_file(path: str, command: str) -> list[Target]:
    """The hosts of a file, in order; ValueError naming FILE:LINE for a bad line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"cannot read hosts file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"hosts file {path} is not UTF-8 text") from None
    targets: list[Target] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        host, *own_command = text.split(None, 1)
        try:
            targets.append(parse_host(host, own_command[0] if own_command else command))
        except ValueError as e:
            raise ValueError(f"{path}:{number}: {e}") from None
    if not targets:
        raise ValueError(f"hosts file {path} names no host")
    return targets


def ssh_argv(ssh: list[str], target: Target, args: list[str], batch: bool) -> list[str]:
    """`ssh [batch options] [-p PORT] -- DESTINATION 'COMMAND ARGS…'`.

    The remote side runs its own `twinvisor` (rather than us forwarding its control socket)
    because several verbs need the host itself, not only its daemon: `logs` reads the log
    files the daemon names, `up`/`down` take the run dir's lock and stop marker, `check-config`
    and `find` read the host's config and processes. So every verb works unchanged, with
    the host's own config lookup and exit codes, and ssh stays the only thing that
    authenticates (keys, agents, jump hosts, known_hosts, ssh_config are OpenSSH's).
    """
    remote = " ".join([target.command, *(shlex.quote(a) for a in args)])
    port = ["-p", str(target.port)] if target.port is not None else []
    return [*ssh, *(BATCH_OPTIONS if batch else ()), *port, "--", target.destination, remote]
