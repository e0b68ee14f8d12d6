"""What a fleet run prints: one status table with a HOST column, one JSON document, and a
line per failed host saying which host and why."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from twinvisor.cli.remote_fleet import HostRun
from twinvisor.cli.remote_outcome import Outcome, diagnose

TYPE_CHECKING = False
if TYPE_CHECKING:
    from twinvisor.control.messages import StatusRow


def outcome(run: HostRun) -> Outcome:
    return diagnose(-1 if run.rc is None else run.rc, _text(run.err), run.target.command)


def _text(data: bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")


def _parsed(run: HostRun) -> Any:  # Any: a host's JSON output, passed on as it is
    try:
        return json.loads(bytes(run.out))
    except ValueError:
        return None


def status_table(runs: list[HostRun], render: Callable[[list[StatusRow]], str]) -> str | None:
    """`render` is the CLI's own status table (rows -> text): its lines get the HOST column
    in front, so a fleet's table reads like one machine's. None when no host answered."""
    rows: list[StatusRow] = []
    hosts: list[str] = []
    for run in runs:
        answer = _rows(run)
        rows.extend(answer)
        hosts.extend(run.target.name for _ in answer)
    if not rows:
        return None
    lines = render(rows).splitlines()
    width = max(len(h) for h in ["HOST", *hosts])
    return "\n".join(
        f"{host.ljust(width)}  {line}" for host, line in zip(["HOST", *hosts], lines, strict=True)
    )


def _rows(run: HostRun) -> list[StatusRow]:
    """The rows a host's `status --json` printed (a list, or an object with its rows in
    "programs"); none if it printed something else."""
    import msgspec

    from twinvisor.control.messages import StatusReply, StatusRow

    try:
        answer = msgspec.json.decode(bytes(run.out), type=list[StatusRow] | StatusReply)
    except msgspec.DecodeError:
        return []
    return answer if isinstance(answer, list) else answer.programs


def json_document(runs: list[HostRun]) -> str:
    """{"ok": all hosts ok, "hosts": [{host, ok, exit, reason, error, result | output}]}."""
    hosts = []
    for run in runs:
        o = outcome(run)
        entry: dict[str, object] = {
            "host": run.target.name,
            "ok": o.reason is None,
            "exit": o.code,
            "reason": o.reason,
            "error": o.detail if o.reason else None,
        }
        answer = _parsed(run)
        if answer is not None:
            entry["result"] = answer
        elif run.out:
            entry["output"] = _text(run.out)
        hosts.append(entry)
    return json.dumps({"ok": all(h["ok"] for h in hosts), "hosts": hosts}, indent=2)


def failure_line(name: str, o: Outcome) -> str:
    return f"twinvisor: {name}: {o.reason}" + (f": {o.detail}" if o.detail else "")


def report_failures(runs: list[HostRun], quiet_details: bool) -> None:
    """A line per failed host (unless its own stderr was already shown), then a summary."""
    failed = [(run, outcome(run)) for run in runs]
    failed = [(run, o) for run, o in failed if o.reason is not None]
    if not failed:
        return
    for run, o in failed:
        if quiet_details:
            print(f"twinvisor: {run.target.name}: {o.reason}", file=sys.stderr)
        else:
            print(failure_line(run.target.name, o), file=sys.stderr)
    names = ", ".join(f"{run.target.name} ({o.reason})" for run, o in failed)
    print(f"twinvisor: {len(failed)} of {len(runs)} hosts failed: {names}", file=sys.stderr)
