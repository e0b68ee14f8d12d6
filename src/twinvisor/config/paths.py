"""Where a daemon lives: the one place that decides the run dir, log dir and control socket.

`daemon_spec` applies the defaults (`default_run_dir`, and the socket and logs inside the run
dir) to what a [daemon] table sets; the full loader (config/load.py) calls it after validating
the table, and `daemon_table_paths` reads the [daemon] table alone for the callers that must
be light and must work while the rest of the config has errors: the CLI finding its socket,
and the guard. So both always agree (${VAR} is expanded in both).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing, msgspec, the specs: not for the CLI's socket lookup (`status` is hot)
    from collections.abc import Callable
    from typing import Any

    from twinvisor.config.specs import DaemonSpec

# The quick read's line classes, by hand rather than with `re`: the CLI's `status` reads them on
# every call, and importing re (with enum) was 7 ms of such a call (tests/unit/test_paths_lines.py
# holds each against the regular expression it replaces, on generated lines).
_BLANKS = b" \t"
_KEY_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_CONTROL = frozenset([*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])  # not tab


def _is_header(line: bytes) -> bool:
    """A table header line (`^[ \t]*\\[`): [daemon] opens the table, any other ends it."""
    return line.lstrip(_BLANKS).startswith(b"[")


def _is_daemon_header(line: bytes) -> bool:
    """`^[ \t]*\\[[ \t]*daemon[ \t]*\\][ \t]*(#.*)?$`: the [daemon] header itself."""
    rest = line.lstrip(_BLANKS)
    for part in (b"[", b"daemon", b"]"):
        if not rest.startswith(part):
            return False
        rest = rest[len(part) :].lstrip(_BLANKS)
    return not rest or rest.startswith(b"#")


def _may_name_daemon(line: bytes) -> bool:
    """`^[ \t]*\\[.*(daemon|\\)`: a header that may name the daemon table or one under it:
    ["daemon"], [daemon.http], or an escape that could spell it; the quick read keeps these
    tables and drops the others."""
    rest = line.lstrip(_BLANKS)
    return rest.startswith(b"[") and (b"daemon" in rest or b"\\" in rest)


def _no_control(text: bytes) -> bool:
    return _CONTROL.isdisjoint(text)


def _plain_line(line: bytes) -> tuple[bytes, bytes] | tuple[None, None] | None:
    """Blank or a comment: (None, None); a bare key set to a string without escapes or
    control characters (`key = "text"`, `key = 'text'`, a comment may follow): (key, text);
    anything else: None."""
    rest = line.lstrip(_BLANKS)
    if not rest or rest.startswith(b"#"):
        return (None, None) if _no_control(rest[1:]) else None
    end = 0
    while end < len(rest) and rest[end] in _KEY_BYTES:
        end += 1
    key, rest = rest[:end], rest[end:].lstrip(_BLANKS)
    if not key or not rest.startswith(b"="):
        return None
    rest = rest[1:].lstrip(_BLANKS)
    quote = rest[:1]
    if quote not in (b'"', b"'"):
        return None
    close = rest.find(quote, 1)
    if close < 0:
        return None
    value, tail = rest[1:close], rest[close + 1 :].lstrip(_BLANKS)
    if not _no_control(value) or (quote == b'"' and b"\\" in value):
        return None
    if tail and not (tail.startswith(b"#") and _no_control(tail[1:])):
        return None
    return key, value


MAX_READ = 64 * 1024 * 1024  # past this the full loader refuses the file anyway


RUN_DIR_ENV = "TWINVISOR_RUN_DIR"

try:  # CPython's own sha256: hashlib loads OpenSSL first, a tenth of a `status` call
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:  # a build without them: the same digest through hashlib
        from hashlib import sha256 as _sha256  # type: ignore[assignment,no-redef,unused-ignore]


def sha256_hex(data: bytes) -> str:
    """hashlib.sha256(data).hexdigest() without loading OpenSSL where CPython has its own
    (the supervisor's cgroup tag too: libcrypto is 1 MiB of its PSS, 3.7 MiB of its RSS)."""
    return str(_sha256(data).hexdigest())


def default_run_dir(config_path: str, env: dict[str, str] | None = None) -> str:
    """The run dir when [daemon] run_dir is not set: $TWINVISOR_RUN_DIR (relative to the cwd,
    like any env path), else `.twinvisor/<stem>-<hash>` beside the config file. Each config
    file gets its own: a.toml and b.toml in one folder are two daemons, never one. The hash
    (of the absolute path) keeps a.toml and a.conf apart; the stem keeps it readable."""
    from_env = (os.environ if env is None else env).get(RUN_DIR_ENV)
    if from_env:
        return os.path.abspath(from_env)
    path = os.path.abspath(config_path)
    stem = os.path.splitext(os.path.basename(path))[0] or "config"
    digest = _sha256(os.fsencode(path)).hexdigest()[:8]
    return os.path.join(os.path.dirname(path), ".twinvisor", f"{stem}-{digest}")


class DaemonDirs:
    """A daemon's paths as plain strings: what DaemonSpec holds, without importing msgspec
    (nor typing, which a NamedTuple would import on every `status`)."""

    __slots__ = ("log_dir", "run_dir", "socket")

    def __init__(self, run_dir: str, log_dir: str, socket: str) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.socket = socket

    def spec(self) -> DaemonSpec:
        from twinvisor.config.specs import DaemonSpec

        return DaemonSpec(run_dir=self.run_dir, log_dir=self.log_dir, socket=self.socket)


def daemon_dirs(
    config_path: str, run_dir: str | None, socket: str | None, log_dir: str | None
) -> DaemonDirs:
    """The paths a [daemon] table sets (already absolute; None: unset) with the defaults."""
    run_dir = default_run_dir(config_path) if run_dir is None else run_dir
    return DaemonDirs(
        run_dir=run_dir,
        log_dir=os.path.join(run_dir, "log") if log_dir is None else log_dir,
        socket=os.path.join(run_dir, "twinvisor.sock") if socket is None else socket,
    )


def daemon_spec(
    config_path: str, run_dir: str | None, socket: str | None, log_dir: str | None
) -> DaemonSpec:
    """daemon_dirs as the DaemonSpec the loader and the guard use."""
    return daemon_dirs(config_path, run_dir, socket, log_dir).spec()


def daemon_table_paths(path: str) -> DaemonSpec | None:
    """daemon_table_dirs as a DaemonSpec."""
    dirs = daemon_table_dirs(path)
    return None if dirs is None else dirs.spec()


def daemon_table_dirs(path: str) -> DaemonDirs | None:
    """None when even the [daemon] table cannot be read (the full loader then says why).

    A syntax error, binary garbage or absurd nesting elsewhere in the file does not matter:
    a running daemon must stay controllable (`status`, `down`) while its config is broken."""
    daemon = _daemon_table(path)
    if daemon is None:
        return None
    keys = ("run_dir", "socket", "log_dir")
    if not isinstance(daemon, dict) or not all(isinstance(daemon.get(k, ""), str) for k in keys):
        return None
    daemon = dict(daemon)
    for key in keys:
        if "${" in daemon.get(key, ""):
            from twinvisor.config.expand import expand_env  # (dataclasses) only when needed

            daemon[key], problem = expand_env(daemon[key], os.environ)
            if problem is not None:
                return None
    here = os.path.dirname(os.path.abspath(path))

    def given(key: str) -> str | None:
        if key not in daemon:
            return None
        return os.path.normpath(os.path.join(here, os.path.expanduser(daemon[key])))

    return daemon_dirs(path, given("run_dir"), given("socket"), given("log_dir"))


def _daemon_table(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_READ)
    except OSError:
        return None
    quick = _quick_read(data)
    if quick is not None and b"daemon" not in quick and b"\\" not in quick:
        return {}  # nothing there can name the daemon table: the defaults, without tomllib
    simple = None if quick is None else _plain_daemon_table(quick)
    if simple is not None:
        return simple
    import tomllib  # here, not at the top: the lines above answer most `status` calls

    if quick is not None:
        try:
            return tomllib.loads(quick.decode()).get("daemon", {})
        except (ValueError, RecursionError):
            pass  # the quick read cut a value: read the whole file
    try:
        return tomllib.loads(data.decode()).get("daemon", {})
    except (ValueError, RecursionError):
        pass  # broken somewhere: the [daemon] table's own lines may still be fine
    try:
        return tomllib.loads(_daemon_lines(data).decode()).get("daemon", {})
    except (ValueError, RecursionError):
        return None


def _quick_read(data: bytes) -> bytes | None:
    """The lines that can set [daemon] keys: those before the first table header (dotted
    `daemon.socket = ...` or an inline table) and the tables whose header may name daemon.

    Parsing these instead of a config of 1000 programs is what keeps `status` quick. Only
    without multi-line strings, where every line starting with "[" is a header or inside an
    array: a cut array leaves a bracket open, which tomllib refuses (the caller then reads the
    whole file), so a quick read that parses gives the table the whole file would."""
    if b'"""' in data or b"'''" in data:
        return None
    return _lines_of_tables(data, _may_name_daemon, top_level=True)


def _plain_daemon_table(quick: bytes) -> dict[str, str] | None:
    """The [daemon] table of a quick read that holds only that header, blank lines, comments
    and `key = "text"` / `key = 'text'` lines (bare keys, no escapes): what a table of paths
    usually is. None for anything else, which tomllib then reads: it imports typing, and was
    7 ms of a 45 ms `status` call. These forms mean the same in every TOML reader."""
    table: dict[str, str] = {}
    header = False
    for line in quick.splitlines():
        if _is_daemon_header(line):
            if header:
                return None  # [daemon] twice: tomllib says what is wrong
            header = True
            continue
        plain = _plain_line(line)
        if plain is None:
            return None
        key, text = plain
        if key is None or text is None:
            continue  # blank or a comment
        name = key.decode()  # ASCII: _KEY_BYTES
        if not header or name in table:
            return None  # a top-level key (dotted daemon keys are tomllib's), or a duplicate
        try:
            table[name] = text.decode()
        except UnicodeDecodeError:
            return None
    return table


def _daemon_lines(data: bytes) -> bytes:
    """The [daemon] table's lines alone: from its header to the next table header."""
    return _lines_of_tables(data, _is_daemon_header, top_level=False)


def _lines_of_tables(data: bytes, header: Callable[[bytes], bool], top_level: bool) -> bytes:
    """The lines of the tables whose header matches `header` (and of the top-level keys
    before any header, with `top_level`)."""
    out: list[bytes] = []
    inside = top_level
    for line in data.splitlines():
        if _is_header(line):
            inside = header(line)
        if inside:
            out.append(line)
    return b"\n".join(out)
