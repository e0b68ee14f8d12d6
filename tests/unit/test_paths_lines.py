"""config/paths.py classifies the quick read's lines by hand (no `re` on the CLI's `status`
path): each function is held against the regular expression it replaced, on generated lines
made of the characters those expressions look at."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from twinvisor.config import paths

HEADER = re.compile(rb"^[ \t]*\[")
DAEMON_HEADER = re.compile(rb"^[ \t]*\[[ \t]*daemon[ \t]*\][ \t]*(#.*)?$")
MAYBE_DAEMON_HEADER = re.compile(rb"^[ \t]*\[.*(daemon|\\)")
PLAIN_LINE = re.compile(
    rb"^[ \t]*(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?$"
    rb"|^[ \t]*([A-Za-z0-9_-]+)[ \t]*=[ \t]*"
    rb"(?:\"([^\"\\\x00-\x08\x0a-\x1f\x7f]*)\"|'([^'\x00-\x08\x0a-\x1f\x7f]*)')"
    rb"[ \t]*(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?$"
)

# pieces a line of a [daemon] table is made of, and the bytes that break it
PIECES = [
    b" ", b"\t", b"[", b"]", b"daemon", b"daemon.http", b"#", b"=", b'"', b"'", b"\\",
    b"run_dir", b"socket", b"a-b_1", b".", b"/tmp/x", b"\x00", b"\x01", b"\x1f", b"\x7f",
    b"\xc3\xa9", b"\xff", b"\x0b", b"\x0c",
]  # fmt: skip
LINES = st.lists(st.sampled_from(PIECES), max_size=12).map(b"".join)


def _regex_plain(line: bytes) -> tuple[bytes, bytes] | tuple[None, None] | None:
    m = PLAIN_LINE.match(line)
    if m is None:
        return None
    key, basic, literal = m.groups()
    if key is None:
        return None, None
    return key, basic if basic is not None else literal


@settings(max_examples=3000, deadline=None)
@given(LINES)
def test_each_class_as_its_regular_expression(line: bytes) -> None:
    assert paths._is_header(line) == bool(HEADER.match(line))
    assert paths._is_daemon_header(line) == bool(DAEMON_HEADER.match(line))
    assert paths._may_name_daemon(line) == bool(MAYBE_DAEMON_HEADER.match(line))
    assert paths._plain_line(line) == _regex_plain(line)


def test_the_usual_lines() -> None:
    assert paths._is_daemon_header(b"  [ daemon ]  # the daemon")
    assert not paths._is_daemon_header(b"[daemon.http]")
    assert paths._may_name_daemon(b'["daemon"]') and paths._may_name_daemon(b"[daemon.http]")
    assert not paths._may_name_daemon(b"[program.web]")
    assert paths._plain_line(b'run_dir = "/run/tv"  # here') == (b"run_dir", b"/run/tv")
    assert paths._plain_line(b"socket='C:\\x'") == (b"socket", b"C:\\x")
    assert paths._plain_line(b'socket = "a\\"b"') is None  # an escape: tomllib reads it
    assert paths._plain_line(b"   # a comment") == (None, None)
    assert paths._plain_line(b"log_dir = 3") is None
