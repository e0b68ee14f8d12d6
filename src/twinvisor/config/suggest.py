""" "Did you mean ...?": the nearest known name for a mistyped one. Its own module: the
daemon answers `restart wbe` with it, and must not load the config parser to do so."""

from __future__ import annotations


def did_you_mean(word: str, known: list[str] | tuple[str, ...]) -> str:
    import difflib  # only needed when something is wrong

    close = difflib.get_close_matches(word, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def no_such_program(unknown: list[str], known: list[str]) -> str:
    """A command named programs the config does not have (`restart wbe`): each one with the
    nearest known name, else the list of programs. `known`: programs and instance names."""
    parts = []
    for name in unknown:
        hint = did_you_mean(name.removesuffix(":*"), known).removeprefix("; ")
        parts.append(f"{name} ({hint})" if hint else name)
    listing = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    text = f"no such program: {', '.join(parts)}"
    return text if any("did you mean" in p for p in parts) else f"{text}; programs: {listing}"
