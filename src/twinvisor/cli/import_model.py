"""What `twinvisor import` builds from any source (Procfile, supervisord.conf): the programs'
keys, the error for a file that cannot be imported, and supervisord's environment syntax.
Shared by importers.py and supervisord.py, so neither imports the other back."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

# what a converted key holds, as toml_value writes it
TomlValue: TypeAlias = bool | int | float | str | Sequence["TomlValue"] | Mapping[str, "TomlValue"]


class ImportErrorText(Exception):
    """The file cannot be imported at all (unreadable, not a config of a known kind)."""


@dataclass
class Program:
    name: str
    keys: dict[str, TomlValue] = field(default_factory=dict)
    comment: str = ""


def parse_supervisor_env(text: str) -> dict[str, str]:
    """supervisord's `KEY="value",KEY2=value2` (quotes optional, commas inside quotes kept)."""
    env: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\n,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise ValueError(f"expected KEY=VALUE at {text[i:]!r}")
        key = text[i:eq].strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise ValueError(f"bad variable name {key!r}")
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "'\"":
            quote = text[i]
            end = text.find(quote, i + 1)
            if end < 0:
                raise ValueError(f"unterminated quote in the value of {key}")
            value = text[i + 1 : end]
            i = end + 1
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        env[key] = value
    return env
