"""The two expansions of config values: `${VAR}` from the environment at load time, and
`{instance}`-style placeholders, once per instance of a program.

Environment: `${NAME}` is the variable's value, `${NAME:-default}` the default when it is unset
or empty, `${NAME-default}` only when it is unset; an unknown variable without a default is a
config error. `$${` writes a literal `${`. A lone `$` (`$HOME`, `$$`, `$1` in a `sh -c`
command) is left alone: only the braced form is ours, so shell lines keep working.

Placeholders: exactly `{instance}` (the instance number, `{instance:02}` zero-padded),
`{name}` (the instance name), `{program}`, `{group}` (the group, else the program) and
`{numprocs}`. Every other brace is left as written, so shell brace expansion (`{a,b}`), awk
programs (`{print $1}`) and JSON keep their meaning; `{{instance}}` writes `{instance}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PLACEHOLDERS", "Instance", "expand_env", "expand_instance", "has_placeholder"]

_ENV = re.compile(r"\$\$\{|\$\{([^}]*)(\})?")
_ENV_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)(.*))?", re.S)

PLACEHOLDERS = ("instance", "name", "program", "group", "numprocs")
_WORDS = "|".join(PLACEHOLDERS)
_PLACEHOLDER = re.compile(
    rf"\{{\{{(?:{_WORDS})(?::[^{{}}]*)?\}}\}}|\{{({_WORDS})(?::([^{{}}]*))?\}}"
)
_NUMBER_FORMAT = re.compile(r"0?[0-9]{1,2}d?")


def expand_env(value: str, environ: Mapping[str, str]) -> tuple[str, str | None]:
    """`value` with `${...}` replaced; (result, None) or (value, the problem)."""
    if "${" not in value:
        return value, None
    problems: list[str] = []

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        if m.group(2) is None:
            problems.append(f"unclosed '${{' in {value!r}; write '$${{' for a literal '${{'")
            return m.group(0)
        ref = _ENV_NAME.fullmatch(m.group(1))
        if ref is None:
            problems.append(
                f"invalid variable reference '${{{m.group(1)}}}'; expected ${{NAME}} or "
                "${NAME:-default}"
            )
            return m.group(0)
        name, op, default = ref.groups()
        found = environ.get(name)
        if op == ":-" and not found:
            return str(default)
        if op == "-" and found is None:
            return str(default)
        if found is None:
            problems.append(
                f"environment variable {name!r} is not set (write ${{{name}:-default}} "
                "to give a default)"
            )
            return m.group(0)
        return found

    out = _ENV.sub(one, value)
    return (value, problems[0]) if problems else (out, None)


def is_whole_reference(value: str) -> bool:
    """The value is one `${...}` and nothing else (a number or flag may come from it)."""
    return value.startswith("${") and value.endswith("}") and value.count("${") == 1


@dataclass(frozen=True)
class Instance:
    """What the placeholders of one instance stand for."""

    number: int
    name: str
    program: str
    group: str
    numprocs: int

    def value(self, word: str) -> str | int:
        values: dict[str, str | int] = {
            "instance": self.number,
            "name": self.name,
            "program": self.program,
            "group": self.group,
            "numprocs": self.numprocs,
        }
        return values[word]


def has_placeholder(value: str) -> bool:
    return "{" in value and _PLACEHOLDER.search(value) is not None


def expand_instance(value: str, inst: Instance) -> str:
    """`value` with the placeholders of `inst` replaced. ValueError for a bad format."""
    if "{" not in value:
        return value

    def one(m: re.Match[str]) -> str:
        word, spec = m.group(1), m.group(2)
        if word is None:  # {{...}}: the literal placeholder
            return m.group(0)[1:-1]
        found = inst.value(word)
        if spec is None:
            return str(found)
        if not isinstance(found, int) or not _NUMBER_FORMAT.fullmatch(spec):
            raise ValueError(
                f"invalid placeholder {m.group(0)!r}: only {{instance}} and {{numprocs}} take a "
                "width, such as {instance:02}"
            )
        return format(found, spec.rstrip("d") + "d")

    return _PLACEHOLDER.sub(one, value)


def placeholders_in(value: str) -> set[str]:
    """The placeholder words used in `value` (not counting escaped ones)."""
    return {m.group(1) for m in _PLACEHOLDER.finditer(value) if m.group(1)}
