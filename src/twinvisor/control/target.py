"""A request target's path and query, percent-decoded: what urllib.parse's unquote,
parse_qsl and urlsplit give the control server, without urllib.parse in the supervisor.

urllib.parse imports `ipaddress` (for bracketed hosts) and the two are the largest modules a
plain supervisor would hold for the life of the daemon only to read `/programs/a%2Fb?wait=1`
(0.8 MiB of heap, more than the whole control server). These three functions are the parts
the server uses, with the same results: tests/unit/test_target.py checks them against
urllib.parse itself on generated input.
"""

from __future__ import annotations

_HEX = frozenset("0123456789abcdefABCDEF")
_SCHEME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")


def unquote(text: str, errors: str = "replace") -> str:
    """urllib.parse.unquote: each %XX is a byte, the bytes are UTF-8; a `%` that is not
    followed by two hex digits stays as it is. UnicodeDecodeError with errors="strict"."""
    if "%" not in text:
        return text
    first, *rest = text.split("%")
    out = bytearray(first.encode("utf-8", "surrogatepass"))
    for part in rest:
        if len(part) >= 2 and part[0] in _HEX and part[1] in _HEX:
            out.append(int(part[:2], 16))
            out += part[2:].encode("utf-8", "surrogatepass")
        else:
            out += b"%" + part.encode("utf-8", "surrogatepass")
    return out.decode("utf-8", errors)


def parse_qsl(text: str, max_fields: int, errors: str = "replace") -> list[tuple[str, str]]:
    """urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=max_fields):
    `&`-separated `name=value` pairs, `+` a space; a name without `=` has the value "".
    ValueError for more than `max_fields` fields."""
    if text.count("&") + 1 > max_fields:
        raise ValueError("Max number of fields exceeded")
    pairs: list[tuple[str, str]] = []
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        pairs.append(
            (unquote(name.replace("+", " "), errors), unquote(value.replace("+", " "), errors))
        )
    return pairs


def absolute_to_origin(text: str) -> str:
    """The `path?query` of an absolute-form target ("http://host/status?x" -> "/status?x",
    "http://host" -> "/"), as urlsplit splits it. ValueError without a scheme, or for a host
    with one IPv6 bracket and not the other. What is inside the brackets is not checked (urlsplit
    asks ipaddress): on a unix socket the host names nothing, only the path is served."""
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme or not scheme[0].isalpha() or not _SCHEME.issuperset(scheme):
        raise ValueError(f"no scheme: {text[:100]}")
    if rest.startswith("//"):
        end = len(rest)
        for stop in "/?#":
            at = rest.find(stop, 2)
            if at >= 0:
                end = min(end, at)
        host, rest = rest[2:end], rest[end:]
        if ("[" in host) != ("]" in host):
            raise ValueError(f"invalid IPv6 host: {text[:100]}")
    path, _, query = rest.partition("#")[0].partition("?")
    return (path or "/") + ("?" + query if query else "")
