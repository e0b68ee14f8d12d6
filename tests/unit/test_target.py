"""control/target.py gives the control server what urllib.parse would: checked against
urllib.parse itself, on generated targets and on the cases that matter."""

from __future__ import annotations

import http
import urllib.parse

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from twinvisor.control import server, target

# what a request target holds: ASCII (the server refuses anything else first), with the
# characters that mean something to the parsers over-represented
_PIECES = st.sampled_from(
    ["%", "%2", "%2F", "%2f", "%zz", "%C3%A9", "%E2%82", "%FF", "+", "&", "=", "?", "#", "/"]
)
_ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=6)
TARGETS = st.lists(st.one_of(_PIECES, _ASCII), max_size=12).map("".join)


def _outcome(f: object, *args: object, **kw: object) -> object:
    try:
        return f(*args, **kw)  # type: ignore[operator]
    except (UnicodeDecodeError, ValueError) as e:
        return type(e)


@given(TARGETS)
def test_unquote_is_urllib_unquote(text: str) -> None:
    for errors in ("strict", "replace"):
        ours = _outcome(target.unquote, text, errors=errors)
        assert ours == _outcome(urllib.parse.unquote, text, errors=errors)


@given(TARGETS)
def test_parse_qsl_is_urllib_parse_qsl(text: str) -> None:
    for errors in ("strict", "replace"):
        ours = _outcome(target.parse_qsl, text, 5, errors=errors)
        assert ours == _outcome(
            urllib.parse.parse_qsl, text, keep_blank_values=True, errors=errors, max_num_fields=5
        )


def _urlsplit_origin(text: str) -> str | type[ValueError]:
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return ValueError
    if not parts.scheme:
        return ValueError
    return (parts.path or "/") + ("?" + parts.query if parts.query else "")


@given(st.sampled_from(["http://", "https://", "x:", "1x://", "://", "", "h t://"]), TARGETS)
def test_absolute_form_is_split_as_urlsplit_splits_it(scheme: str, rest: str) -> None:
    text = scheme + rest
    assume(not ("[" in text and "]" in text))  # urlsplit asks ipaddress what is inside: we do not
    assert _outcome(target.absolute_to_origin, text) == _urlsplit_origin(text)


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("http://x/status", "/status"),
        ("http://x", "/"),
        ("http://x?wait=1#top", "/?wait=1"),
        ("http://u@[::1]:80/a?b", "/a?b"),
    ],
)
def test_absolute_form_examples(text: str, origin: str) -> None:
    assert target.absolute_to_origin(text) == origin


def test_an_unclosed_ipv6_host_is_refused() -> None:
    with pytest.raises(ValueError):
        target.absolute_to_origin("http://[::1/status")


def test_too_many_fields_are_refused() -> None:
    with pytest.raises(ValueError):
        target.parse_qsl("a&b&c", 2)


def test_reason_phrases_are_the_stdlib_ones() -> None:
    for status, phrase in server._REASONS.items():
        assert phrase == http.HTTPStatus(status).phrase.encode("ascii")
    assert server._reason(418) == b"I'm a Teapot"  # the rest come from http.HTTPStatus
    assert server._reason(599) == b""
