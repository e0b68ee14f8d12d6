"""Signal names <-> numbers, resolved once here so the pure core only sees numbers."""

from __future__ import annotations

import signal


def signal_number(name_or_number: str | int) -> int:
    """'TERM', 'SIGTERM', 'term' or 15 -> 15. Raises ValueError for unknown names."""
    if isinstance(name_or_number, int):
        return int(signal.Signals(name_or_number))
    text = name_or_number.strip().upper()
    if text.isdigit():
        return int(signal.Signals(int(text)))
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise ValueError(f"unknown signal {name_or_number!r}") from None


def signal_name(value: str | int) -> str:
    """A signal name or number -> "TERM", "HUP"... ValueError / OverflowError if unknown."""
    return signal.Signals(signal_number(value)).name.removeprefix("SIG")


def describe_signal(number: int) -> str:
    """15 -> "SIGTERM"; a number the platform does not name -> "signal 99"."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
