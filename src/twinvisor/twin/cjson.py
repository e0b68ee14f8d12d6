"""JSON for the guard: the stdlib's own C codec (`_json`, what `json` runs on) without the
`json` package around it.

`import json` brings `re` and its compiler into the process (json.decoder's whitespace and
number patterns, used only by the pure-Python fallback): with enum that is the largest part
of what the guard would keep in memory for the life of the daemon, for a few small messages.
The C scanner and encoder take the same settings json.loads/json.dumps give them; where
`_json` is missing (another Python implementation) this is `json` itself.

Untrusted text is handled as json.loads handles it: a ValueError for anything that is not
one JSON document (the C scanner imports json.decoder only to raise that error), NaN and
Infinity refused both ways (they are not JSON).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]

_WHITESPACE = " \t\n\r"


class _Settings:
    """What _json.make_scanner reads off a json.JSONDecoder, as json.loads sets it."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")


def _not_serializable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


if _json is not None:
    _scan = _json.make_scanner(_Settings())  # type: ignore[arg-type]  # reads these fields
    # json.dumps's defaults, compact separators: markers (circular check) off, as our
    # messages are trees we build; allow_nan False: NaN is not JSON
    _encode = _json.make_encoder(
        None,
        _not_serializable,
        _json.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        False,
    )


def dumps(value: Any) -> str:
    """json.dumps(value, separators=(",", ":"), allow_nan=False)."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    return "".join(_encode(value, 0))


def loads(text: str | bytes) -> Any:
    """json.loads(text) without NaN/Infinity; ValueError for anything else that is not JSON."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if _json is None:  # pragma: no cover
        import json

        return json.loads(text, parse_constant=_Settings.parse_constant)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as e:
        raise ValueError(f"not JSON at character {e.value}") from None
    except RecursionError:  # "[[[[..." deeper than the C scanner recurses
        raise ValueError("nested too deeply") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"extra data at character {end}")
    return value
