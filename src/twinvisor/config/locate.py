"""Map a TOML key path to the line that defines it.

tomllib returns plain dicts without positions, so config errors would have no line numbers.
This scans the source text for table headers (`[program.web]`), key/value lines (`command =`,
`program.web.command =`) and records the first line of every full key path. Keys inside inline
tables and arrays are not recorded: `line()` falls back to the nearest enclosing key, which is
the line the user has to look at anyway. It is a locator, not a parser: tomllib has already
accepted the file when this runs.

Also here: `Source` (one parsed file with its locator) and `Problems`, which turns a key path
into a ConfigProblem naming file, line and key; and `read_regular`, which reads config and env
files safely.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twinvisor.errors import ConfigProblem

MAX_FILE_BYTES = 1 << 20  # config and env files: a guard against pointing at a huge file
MAX_NESTING = 32  # arrays and inline tables: tomllib recurses per level (RecursionError)

_BARE = r"[A-Za-z0-9_-]+"
_BASIC = r'"(?:[^"\\]|\\.)*"'
_LITERAL = r"'[^']*'"
_PART = rf"(?:{_BARE}|{_BASIC}|{_LITERAL})"
_DOTTED = rf"{_PART}(?:[ \t]*\.[ \t]*{_PART})*"
_HEADER = re.compile(rf"[ \t]*\[\[?[ \t]*({_DOTTED})[ \t]*\]")
_KEYVAL = re.compile(rf"[ \t]*({_DOTTED})[ \t]*=")
_PART_RE = re.compile(_PART)
_TOML_ERROR_LINE = re.compile(r"\(at line (\d+), column \d+\)")
# what can hold a bracket that does not nest: strings and comments; and what counts: brackets
_TOKEN = re.compile(
    r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]',
    re.S,
)


def split_key(dotted: str) -> tuple[str, ...]:
    """`program."web.v2" . command` -> ("program", "web.v2", "command")."""
    return tuple(_unquote(m.group(0)) for m in _PART_RE.finditer(dotted))


def _unquote(part: str) -> str:
    if part.startswith("'"):
        return part[1:-1]
    if part.startswith('"'):
        import json  # here: only quoted keys in error paths need it, not the supervisor

        try:
            # TOML basic-string escapes are JSON's plus \UXXXXXXXX; good enough for key names
            value = json.loads(part)
        except ValueError:
            return part[1:-1]
        return value if isinstance(value, str) else part[1:-1]
    return part


class Locator:
    """Line numbers (1-based) of the key paths defined in one TOML text."""

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        in_string: str | None = None  # the delimiter of an open multi-line string
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            header = _HEADER.match(line)
            if header:
                table = split_key(header.group(1))
                self._record(table, number)
                continue
            keyval = _KEYVAL.match(line)
            if keyval:
                self._record((*table, *split_key(keyval.group(1))), number)
            in_string = _opens_multiline_string(line)

    def _record(self, path: tuple[str, ...], number: int) -> None:
        # every prefix too: `[program.web.environment]` alone also defines program.web
        for end in range(1, len(path) + 1):
            self._lines.setdefault(path[:end], number)

    def key_at(self, number: int) -> tuple[str, ...]:
        """The innermost key path defined on or before line `number` (() if none)."""
        best: tuple[str, ...] = ()
        best_line = 0
        for path, line in self._lines.items():
            if best_line <= line <= number and (line > best_line or len(path) > len(best)):
                best, best_line = path, line
        return best

    def line(self, path: Sequence[str]) -> int | None:
        """The line of `path`, or of its nearest enclosing key found; None if none is."""
        key = tuple(path)
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key[:-1]
        return None


def _opens_multiline_string(line: str) -> str | None:
    """The delimiter of a multi-line string left open at the end of `line`, if any."""
    for delimiter in ('"""', "'''"):
        if line.count(delimiter) % 2 == 1:
            return delimiter
    return None


def nesting_line(text: str, limit: int = MAX_NESTING) -> int | None:
    """The line where arrays and inline tables nest deeper than `limit`, or None. Checked
    before parsing: tomllib would recurse into a 20,000-deep value until RecursionError."""
    depth = 0
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in "[{":
            depth += 1
            if depth > limit:
                return text.count("\n", 0, match.start()) + 1
        elif token in "]}":
            depth = max(0, depth - 1)
    return None


def byte_line(data: bytes, offset: int) -> int:
    """The 1-based line of byte `offset`."""
    return data.count(b"\n", 0, offset) + 1


def toml_error_line(message: str) -> int | None:
    """The line number in a TOMLDecodeError message ("... (at line 3, column 7)")."""
    match = _TOML_ERROR_LINE.search(message)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------------------
# files and located problems


class TooLarge(OSError):
    """A file past MAX_FILE_BYTES; `line` is where the limit is crossed."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def read_regular(path: str) -> bytes:
    """Read a regular file; refuse devices and FIFOs, which could block or never end."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"not a regular file: {path}")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise TooLarge(
            f"file larger than {MAX_FILE_BYTES} bytes: {path}", byte_line(data, MAX_FILE_BYTES)
        )
    return data


@dataclass
class Source:
    """One parsed config file."""

    path: str  # absolute
    data: dict[str, Any]
    locator: Locator
    # key paths whose string was a single ${VAR}: a number or flag may come from it
    whole_refs: set[tuple[str, ...]] = field(default_factory=set)
    # key paths whose ${VAR} could not be expanded: reported once, then not checked again
    unexpanded: set[tuple[str, ...]] = field(default_factory=set)

    def failed_under(self, path: tuple[str, ...]) -> bool:
        return bool(self.unexpanded) and any(f[: len(path)] == path for f in self.unexpanded)

    def where(self, path: tuple[str, ...]) -> str:
        line = self.locator.line(path)
        return self.path if line is None else f"{self.path}:{line}"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass
class Problems:
    """Every problem found so far, located."""

    items: list[ConfigProblem] = field(default_factory=list)

    def at(self, src: Source, path: tuple[str, ...], message: str, suffix: str = "") -> None:
        import json

        key = ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p) for p in path) + suffix
        self.items.append(ConfigProblem(src.path, src.locator.line(path), key, message))

    def raw(self, file: str, line: int | None, key: str, message: str) -> None:
        self.items.append(ConfigProblem(file, line, key, message))
