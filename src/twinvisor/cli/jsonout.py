"""`--json`: whatever happens, stdout carries exactly one JSON document (or JSON lines).

Shapes (README, "JSON output"):
- a verb with an answer of its own (status, start/stop/restart, reread/update, check-config,
  find, kill) prints that document, unchanged;
- any error, for every verb: `{"ok": false, "exit_code": N, "error": "why"}`, plus `"problems"`
  (each "file:line: [key] message") for a config with errors;
- every other verb (up, down, upgrade, signal, version, install-*, export, import):
  `{"ok": bool, "exit_code": N, "output": [lines it printed], "error": "what it said on stderr"
  or null}`.
Streams (`logs`, `events -f`, `up --foreground`) are not wrapped: their output is the stream.
"""

from __future__ import annotations

import argparse
import io
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every CLI call ~2 ms; annotations only
    from collections.abc import Callable
    from typing import Any

NATIVE = frozenset(
    {"status", "start", "stop", "restart", "reread", "update", "check-config", "find", "kill"}
)
STREAMS = frozenset({"logs", "events"})


def wrapped(args: argparse.Namespace) -> bool:
    """Whether this call's output goes through `run` (--json, and not a stream)."""
    if not getattr(args, "json", False) or args.command in STREAMS:
        return False
    return not (args.command == "up" and getattr(args, "foreground", False))


def error_document(code: int, message: str, problems: list[str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"ok": False, "exit_code": code, "error": message}
    if problems:
        doc["problems"] = problems
    return doc


def run(
    func: Callable[[argparse.Namespace], int],
    args: argparse.Namespace,
    failure: type[Exception],
) -> int:
    """Run a verb with its stdout and stderr captured, then print one JSON document.
    `failure`: the CLI's exception carrying an exit code (`code`) and a message."""
    import contextlib  # here: most calls are not --json

    out, err = io.StringIO(), io.StringIO()
    failed: Exception | None = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = int(func(args))
        except failure as e:
            failed, rc = e, int(getattr(e, "code", 1))
    printed = out.getvalue()
    said = "\n".join(
        line.removeprefix("twinvisor: ") for line in err.getvalue().strip().splitlines()
    )
    if failed is not None:
        doc = error_document(rc, str(failed), getattr(failed, "problems", None))
    elif args.command in NATIVE and printed.strip():
        sys.stdout.write(printed)  # the verb's own document
        if said:
            print(said, file=sys.stderr)
        return rc
    elif rc != 0 and not printed.strip():
        doc = error_document(rc, said or f"exit status {rc}")
    else:
        doc = {
            "ok": rc == 0,
            "exit_code": rc,
            "output": printed.splitlines(),
            "error": said or None,
        }
    import json  # only under --json: its regexes cost every other call 2 ms

    print(json.dumps(doc, indent=2, sort_keys=True))
    return rc
