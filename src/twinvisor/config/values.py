"""Checks and parsers of config values, used by config.py.

`check_table` checks the types of a table, key by key, against a msgspec schema and reports each
bad key. Every other function looks at one value that has the right type and either returns
what it means or says why it is wrong, as a message without file, line or key (config.py adds
those). Nothing here reads a file; `parse_env_text` parses the text of an env_file.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from typing import Any
from urllib.parse import urlsplit

import msgspec

from twinvisor.config.locate import Problems, Source
from twinvisor.config.specs import DependCondition, Dependency, HealthKind, ReadyMode, ReadySpec
from twinvisor.config.suggest import did_you_mean as _did_you_mean

__all__ = [
    "MAX_NAME",
    "UNIX_PATH_MAX",
    "account_problem",
    "check_table",
    "dependency_cycles",
    "find_problem",
    "health_probe",
    "held_address",
    "held_socket_problem",
    "host_port_problem",
    "http_url_problem",
    "listen_addr_problem",
    "name_problem",
    "parse_dependency",
    "parse_env_text",
    "parse_ready",
    "parse_size",
    "parse_socket_mode",
    "parse_umask",
    "show",
    "socket_owner_problems",
    "split_command",
    "unknown_key",
    "unknown_program",
]

MAX_NAME = 64
UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL


def show(value: Any) -> str:
    """A value as the user wrote it in TOML, shortened for messages."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        import json  # here: messages only, not every process that loads a config

        text = json.dumps(value)
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------
# types, against a msgspec schema


_CHOICES = {
    "auto_restart": "true, false, 'always', 'unexpected', 'never'",
    "after_give_up": "'fatal', 'slow_retry'",
}


def unknown_key(key: str, known: tuple[str, ...]) -> str:
    """The problem of a key that the table's schema does not have, with the nearest one."""
    import difflib  # only needed when something is wrong

    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key {key!r}{hint}"


def unknown_program(name: str, known: list[str]) -> str:
    """The problem of a depends_on entry naming a program that no file defines."""
    hint = _did_you_mean(name, known)
    if not hint and known:
        hint = f"; programs: {', '.join(known[:20])}{', ...' if len(known) > 20 else ''}"
    return f"depends on {name!r}, but there is no such program{hint}"


_MSGSPEC_ERROR = re.compile(r"^(?P<body>.*?)(?: - at `\$(?P<at>[^`]*)`)?$", re.S)


def _translate(error: str, key: str, value: Any) -> tuple[str, str]:
    """msgspec's message -> (our message, key path suffix such as "[0]")."""
    match = _MSGSPEC_ERROR.match(error)
    body, at = (match["body"], match["at"] or "") if match else (error, "")
    suffix = at.removeprefix(f".{key}")
    body = body.replace("`object`", "`table`").replace("`", "")
    for index in re.findall(r"\[(\d+)\]", suffix):  # show the element, not the whole list
        value = value[int(index)] if isinstance(value, list) else value
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {show(value)}", suffix
    if body.startswith("Invalid enum value"):
        return f"invalid value {show(value)}; expected one of {_CHOICES.get(key, '')}", suffix
    if ", got" in body:
        body += f" ({show(value)})"
    else:  # a constraint such as "Expected int >= 1"
        body += f", got {show(value)}"
    return body[0].lower() + body[1:], suffix


def check_table(
    table: dict[str, Any],
    schema: type[msgspec.Struct],
    src: Source,
    base: tuple[str, ...],
    pr: Problems,
) -> dict[str, Any]:
    """Report unknown keys and badly typed values one by one; return the valid entries."""
    known = schema.__struct_fields__
    valid: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            pr.at(src, (*base, key), unknown_key(key, known))
            continue
        if src.failed_under((*base, key)):
            continue  # its ${VAR} was reported: nothing more to say about it
        if (*base, key) in src.whole_refs:
            value = _coerced(schema, key, value)
        if _type_ok(schema, key, value, src, (*base, key), pr):
            valid[key] = value
    return valid


def _coerced(schema: type[msgspec.Struct], key: str, value: Any) -> Any:
    """A value that came whole from one ${VAR} (always a string) read as the key's type:
    `numprocs = "${WORKERS:-4}"` is the number 4, `autostart = "${ON}"` a flag."""
    if _convert_error(schema, key, value) is None:
        return value
    try:
        return getattr(msgspec.convert({key: value}, type=schema, strict=False), key)
    except msgspec.ValidationError:
        return value  # reported by the type check, with the value as it was expanded


def _type_ok(
    schema: type[msgspec.Struct],
    key: str,
    value: Any,
    src: Source,
    path: tuple[str, ...],
    pr: Problems,
) -> bool:
    error = _convert_error(schema, key, value)
    if error is None:
        return True
    message, suffix = _translate(error, key, value)
    if suffix != "[...]" or not isinstance(value, dict):
        pr.at(src, path, message, suffix)
        return False
    # msgspec does not say which entry of a table is wrong: name each one
    for name, item in value.items():
        if (error := _convert_error(schema, key, {name: item})) is not None:
            pr.at(src, (*path, name), _translate(error, key, item)[0])
    return False


def _convert_error(schema: type[msgspec.Struct], key: str, value: Any) -> str | None:
    try:
        # one key at a time so that every bad key is reported, not only the first
        msgspec.convert({key: value}, type=schema)
    except msgspec.ValidationError as e:
        return str(e)
    return None


# ---------------------------------------------------------------------------------------------
# names, commands, environment


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a program name, or None. Names become file and instance names."""
    if not name:
        return "program name is empty"
    if len(name) > MAX_NAME:
        return f"program name is longer than {MAX_NAME} characters"
    if name in (".", ".."):
        return f"program name {name!r} is not allowed"
    if name.startswith("-"):
        return f"program name {name!r} must not start with '-'"
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_-."))})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"program name {name!r} contains {shown}; use letters, digits, '_', '-' and '.'"
    return None


def split_command(value: str | list[str], what: str = "command") -> tuple[str, ...]:
    """A command string (split like a shell) or list -> argv. ValueError says what is wrong."""
    try:
        argv = tuple(shlex.split(value)) if isinstance(value, str) else tuple(value)
    except ValueError as e:  # unbalanced quotes
        raise ValueError(f"cannot split {what}: {e}") from None
    if not argv or not argv[0]:
        raise ValueError(f"{what} is empty")
    if any("\0" in arg for arg in argv):
        raise ValueError(f"{what} contains a NUL byte")
    return argv


def parse_env_text(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """KEY=VALUE lines with # comments; an optional "export " prefix; quotes removed.

    Returns the variables and the (line number, message) of each line that is not one.
    """
    env: dict[str, str] = {}
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or "\0" in value:
            bad.append((number, f"expected KEY=VALUE, got {show(raw)}"))
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[name] = value
    return env, bad


# ---------------------------------------------------------------------------------------------
# addresses


_HOST = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_PORT = re.compile(r"[0-9]{1,5}")
_LISTEN_FORMS = "expected ':PORT', 'HOST:PORT', '[v6]:PORT' or 'unix:/abs/path'"


def _host_problem(host: str) -> str | None:
    """A host name, an IPv4 address or a bracketed IPv6 address; None when fine."""
    if host.startswith("[") and host.endswith("]"):
        import ipaddress

        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "invalid IPv6 address"
        return None
    if not _HOST.fullmatch(host):
        hint = " (IPv6 addresses need brackets: '[::1]:80')" if ":" in host else ""
        return f"invalid host{hint}"
    return None


def listen_addr_problem(addr: str) -> str | None:
    """Syntax of one listen address: ':PORT', 'HOST:PORT', '[v6]:PORT', 'unix:/abs/path'."""
    if addr.startswith("unix:"):
        path = addr[5:]
        if not path.startswith("/") or "\0" in path:
            return f"{show(addr)}: a unix socket path must be absolute"
        if len(os.fsencode(path)) > UNIX_PATH_MAX:
            return f"{show(addr)}: unix socket path longer than {UNIX_PATH_MAX} bytes"
        return None
    host, sep, port = addr.rpartition(":")
    if not sep:
        return f"{show(addr)}: {_LISTEN_FORMS}"
    if not _PORT.fullmatch(port) or int(port) > 65535:
        return f"{show(addr)}: port must be a number from 0 to 65535"
    if host and (problem := _host_problem(host)):
        if problem.startswith("invalid host"):
            return f"{show(addr)}: {problem}; {_LISTEN_FORMS}"
        return f"{show(addr)}: {problem}"
    return None


def host_port_problem(addr: str) -> str | None:
    """An address to connect to: 'HOST:PORT' or '[v6]:PORT', host required, port 1..65535."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        return f"{show(addr)}: expected 'HOST:PORT' (or '[v6]:PORT') to connect to"
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        return f"{show(addr)}: port must be a number from 1 to 65535"
    if problem := _host_problem(host):
        return f"{show(addr)}: {problem}"
    return None


def http_url_problem(url: str) -> str | None:
    """'http://HOST[:PORT][/PATH]'; https is refused (the probes have no TLS client)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "https":
        return (
            f"{show(url)}: https is not supported (twinvisor's probes have no TLS client); "
            "probe a plain http:// address, such as one on localhost"
        )
    if scheme != "http":
        return f"{show(url)}: expected an 'http://HOST:PORT/PATH' URL"
    if any(c.isspace() or c == "\0" for c in url):
        return f"{show(url)}: URL contains whitespace or a NUL byte"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:  # bad port, bad brackets
        return f"{show(url)}: {e}"
    if parts.username is not None or parts.password is not None:
        return f"{show(url)}: user names and passwords in the URL are not supported"
    host = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    if not host:
        return f"{show(url)}: the URL has no host"
    if port == 0:
        return f"{show(url)}: port must be a number from 1 to 65535"
    if problem := _host_problem(host):
        return f"{show(url)}: {problem}"
    return None


_WILDCARD_HOSTS = {"", "0.0.0.0", "[::]"}
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]"}


def held_address(target: str, listen_addrs: tuple[str, ...] | list[str]) -> str | None:
    """The listen address that a TCP connect to `target` ('HOST:PORT') would reach, if any.

    twinvisor binds listen_addrs itself and hands them to the program, so the kernel accepts
    connections on them even before the program does: a TCP probe there always succeeds.
    """
    host, _, port = target.rpartition(":")
    for addr in listen_addrs:
        if addr.startswith("unix:"):
            continue
        listen_host, _, listen_port = addr.rpartition(":")
        if not listen_port.isdecimal() or int(listen_port) != int(port):
            continue
        a, b = listen_host.lower(), host.lower()
        if a in _WILDCARD_HOSTS or a == b or {a, b} <= _LOOPBACK_HOSTS:
            return addr
    return None


# ---------------------------------------------------------------------------------------------
# sizes, signals, accounts, modes


_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMG]?)(?:I?B)?\s*", re.I)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(value: int | str) -> int:
    """10485760, "10MB", "512KB", "1GB", "1.5M" -> bytes (binary units). ValueError if bad."""
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValueError(f"invalid size {show(value)}; use bytes or a size such as '10MB'")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def account_problem(key: str, name: str) -> str | None:
    """Whether user (key "user") / group (any other key) `name` exists (a name or an id)."""
    import grp
    import pwd

    try:
        if key == "user":
            pwd.getpwuid(int(name)) if name.isdecimal() else pwd.getpwnam(name)
        else:
            grp.getgrgid(int(name)) if name.isdecimal() else grp.getgrnam(name)
    except (KeyError, ValueError, OverflowError):
        return f"{key} {show(name)} does not exist on this system"
    return None


def socket_owner_problems(value: str) -> list[str]:
    """'user' or 'user:group', each of which must exist."""
    user, sep, group = value.partition(":")
    if not user or (sep and not group) or ":" in group:
        return [f"expected 'user' or 'user:group', got {show(value)}"]
    found = [account_problem("user", user)]
    if sep:
        found.append(account_problem("group", group))
    return [p for p in found if p]


_OCTAL = re.compile(r"(?:0o)?([0-7]{1,4})", re.I)


def parse_socket_mode(value: int | str) -> int:
    """Octal digits ("0660", "660", "0o660") or an int (TOML 0o660) -> mode bits, or ValueError."""
    if isinstance(value, str):
        match = _OCTAL.fullmatch(value.strip())
        if not match:
            raise ValueError(f'expected octal digits such as "0660", got {show(value)}')
        mode = int(match.group(1), 8)
    else:
        mode = value
    if not 0 <= mode <= 0o777:
        hint = f' (did you mean "{value:04d}" or 0o{value}?)' if isinstance(value, int) else ""
        raise ValueError(
            f"socket_mode must be permission bits from 0o000 to 0o777, got {show(value)}{hint}"
        )
    if mode & 0o002:
        raise ValueError(
            f"socket_mode {show(value)} (0o{mode:03o}) lets every user write to the socket: "
            'world-writable sockets are refused; use "0660" and socket_owner'
        )
    return mode


def parse_umask(value: int | str) -> int:
    """ "022", "0o027" or an int (TOML 0o022) -> the umask bits, or ValueError."""
    bits = value
    if isinstance(value, str):
        match = _OCTAL.fullmatch(value.strip())
        if not match:
            raise ValueError(f'expected octal digits such as "022", got {show(value)}')
        bits = int(match.group(1), 8)
    if not 0 <= int(bits) <= 0o777:
        raise ValueError(f"umask must be from 0o000 to 0o777, got {show(value)}")
    return int(bits)


# ---------------------------------------------------------------------------------------------
# readiness and dependencies


_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_READY_FORMS = "'spawn', 'notify', 'tcp://HOST:PORT', 'http://HOST:PORT/PATH' or 'delay:SECONDS'"


def held_socket_problem(what: str, addr: str, advice: str) -> str:
    """A TCP probe of an address in listen_addrs: see held_address."""
    return (
        f"{what} would always succeed: twinvisor itself holds the socket {addr!r} "
        "(listen_addrs) and the kernel accepts connections on it before the program does; " + advice
    )


def parse_ready(
    value: str, timeout: float = 30.0, listen_addrs: tuple[str, ...] | list[str] = ()
) -> ReadySpec:
    """The `ready` and `ready_timeout` keys -> ReadySpec. ValueError says why they are wrong."""
    ready = _parse_ready(value, timeout)
    if ready.mode is ReadyMode.DELAY and ready.delay >= timeout:
        raise ValueError(
            f"ready delay of {ready.delay:g}s is not shorter than ready_timeout "
            f"({timeout:g}s): every start would time out"
        )
    if ready.mode is ReadyMode.TCP and (addr := held_address(ready.target, listen_addrs)):
        advice = 'use ready = "notify"'
        raise ValueError(held_socket_problem(f"ready = {show(value)}", addr, advice))
    if ready.mode is ReadyMode.HTTP and (
        addr := held_address(_url_host_port(ready.target), listen_addrs)
    ):
        # during a restart the old generation still serves that socket: it would answer the
        # probe and the new generation would be declared ready without having said a word
        raise ValueError(
            f"ready = {show(value)} cannot tell generations apart: the socket {addr!r} "
            "(listen_addrs) is shared by the old and the new generation during a restart, so "
            'the old one may answer the probe; use ready = "notify" (twinvisor.sd.notify)'
        )
    return ready


def _url_host_port(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return f"[{host}]:{parts.port or 80}" if ":" in host else f"{host}:{parts.port or 80}"


def _parse_ready(value: str, timeout: float) -> ReadySpec:
    if value in ("spawn", "notify"):
        return ReadySpec(ReadyMode(value), timeout=timeout)
    scheme, sep, rest = value.partition("://")
    if sep and scheme.lower() == "tcp":
        if problem := host_port_problem(rest):
            raise ValueError(f"ready = tcp://...: {problem}")
        return ReadySpec(ReadyMode.TCP, target=rest, timeout=timeout)
    if sep and scheme.lower() in ("http", "https"):
        if problem := http_url_problem(value):
            raise ValueError(f"ready: {problem}")
        return ReadySpec(ReadyMode.HTTP, target=value, timeout=timeout)
    if value.startswith("delay:"):
        text = value.removeprefix("delay:").strip()
        delay = float(text) if _SECONDS.fullmatch(text) else math.nan
        if not math.isfinite(delay):
            raise ValueError(
                f"invalid ready {show(value)}; expected 'delay:SECONDS' with SECONDS >= 0, "
                "such as 'delay:2.5'"
            )
        return ReadySpec(ReadyMode.DELAY, delay=delay, timeout=timeout)
    hint = _did_you_mean(value, ("spawn", "notify")) if "://" not in value else ""
    raise ValueError(f"invalid ready {show(value)}; expected {_READY_FORMS}{hint}")


_CONDITIONS = tuple(c.value for c in DependCondition)


FIND_MODES = ("cmdline", "cwd", "exe")


def find_problem(value: str, directory: str | None = None) -> str | None:
    """The `find` key: how to recognise a copy of the program that is already running."""
    if value == "cwd" and directory is None:
        return 'find = "cwd" compares working directories: set the program\'s directory'
    if value in FIND_MODES:
        return None
    shown = ", ".join(repr(m) for m in FIND_MODES)
    return f"invalid find {show(value)}; expected one of {shown}{_did_you_mean(value, FIND_MODES)}"


def parse_dependency(entry: str) -> Dependency:
    """'NAME' or 'NAME:CONDITION' -> Dependency. ValueError with a message if not one."""
    name, sep, condition = entry.partition(":")
    name, condition = name.strip(), condition.strip()
    if not name or (sep and not condition):
        raise ValueError(f"expected 'NAME' or 'NAME:CONDITION', got {show(entry)}")
    if not sep:
        return Dependency(name)
    if condition not in _CONDITIONS:
        raise ValueError(
            f"invalid condition {condition!r} in {show(entry)}; expected one of "
            f"{', '.join(_CONDITIONS)}{_did_you_mean(condition, _CONDITIONS)}"
        )
    return Dependency(name, DependCondition(condition))


def health_probe(
    kind: str, value: str | list[str], listen_addrs: tuple[str, ...] | list[str] = ()
) -> tuple[HealthKind, str, tuple[str, ...]]:
    """One of the health keys http / tcp / command -> (kind, target, argv); else ValueError."""
    if kind == "command":
        return HealthKind.COMMAND, "", split_command(value, "health command")
    if not isinstance(value, str):
        raise ValueError(f"expected str, got {show(value)}")
    if kind == "http":
        if problem := http_url_problem(value):
            raise ValueError(problem)
        return HealthKind.HTTP, value, ()
    if problem := host_port_problem(value):
        raise ValueError(problem)
    if addr := held_address(value, listen_addrs):
        advice = "check it with http:// or a command instead"
        raise ValueError(held_socket_problem(f"health check tcp = {show(value)}", addr, advice))
    return HealthKind.TCP, value, ()


def dependency_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Cycles found by a depth-first walk, each starting at its first program in config order.

    Iterative, so a long chain of programs cannot exhaust the recursion limit.
    """
    order = {name: n for n, name in enumerate(graph)}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: dict[tuple[str, ...], None] = {}
    for root in graph:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        stack = [iter(graph[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif nxt not in graph:
                continue
            elif state.get(nxt) == 1:
                cycle = path[path.index(nxt) :]
                first = min(range(len(cycle)), key=lambda n: order[cycle[n]])
                found[tuple(cycle[first:] + cycle[:first])] = None
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(graph[nxt]))
    return [list(c) for c in found]
