"""A plain `twinvisor status` command line read without argparse.

`status` is the call scripts, probes and `watch -n1` make in a loop, and building argparse's
parser (with gettext, which imports locale when LANG is set) was a sixth of such a call. So
`main` first asks `status_args`: for the command lines it knows for sure (options `-c/--config`,
`--socket`, `--timeout` before or after the verb, NAMEs right after it) it gives the same
namespace argparse gives (tests/unit/test_cli_quick.py compares them on generated command
lines); for anything else (`--json`, `--watch`, `-H`, `--help`, abbreviations, a typo) it
gives None, and argparse reads the line, with its usual errors and help.
"""

from __future__ import annotations

from types import SimpleNamespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

VERB = "status"
_VALUED = {"-c": "config", "--config": "config", "--socket": "socket", "--timeout": "timeout"}
# what argparse's namespace holds besides: the remote options unset (cli/remote.py)
_DEFAULTS: dict[str, object] = {
    "config": None,
    "socket": None,
    "json": False,
    "timeout": 60.0,
    "remote_hosts": None,
    "remote_hosts_file": None,
    "remote_command": None,
    "ssh_command": None,
    "parallel": 10,
    "command": VERB,
    "names": [],
    "watch": False,
}


def status_args(argv: Sequence[str], environ: Mapping[str, str]) -> SimpleNamespace | None:
    """The namespace of a plain local `status` command line; None: let argparse read it."""
    if environ.get("TWINVISOR_HOST", "").strip():
        return None  # to other hosts (cli/remote.py)
    values: dict[str, object] = dict(_DEFAULTS)
    names: list[str] = []
    seen_verb = False
    names_done = False
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("-"):
            if not seen_verb and token == VERB:
                seen_verb = True
            elif seen_verb and not names_done:
                names.append(token)
            else:
                return None  # another verb, or a NAME after an option (argparse refuses it)
            i += 1
            continue
        if seen_verb:
            names_done = True
        key, sep, inline = token.partition("=")
        dest = _VALUED.get(key)
        if dest is None or (sep and key == "-c"):
            return None  # --json, --watch, --help, -H, -cFILE, --conf (abbreviated), ...
        if sep:
            value = inline
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            value = argv[i + 1]
            i += 2
        else:
            return None  # a missing value: argparse says so
        if dest == "timeout":
            try:
                values[dest] = float(value)
            except ValueError:
                return None
        else:
            values[dest] = value
    if not seen_verb:
        return None
    values["names"] = names
    return SimpleNamespace(**values)
