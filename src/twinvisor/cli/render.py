"""How the CLI shows the daemon's answers: the status table and a verb's outcome per instance.
Shared by the verbs of one machine (app) and the fleet report (remote_report)."""

from __future__ import annotations

from twinvisor.core.states import Outcome

TYPE_CHECKING = False
if TYPE_CHECKING:  # the structs come with msgspec, which the callers have imported already
    from collections.abc import Sequence

    from twinvisor.cli.status_lines import StatusLine
    from twinvisor.control import messages

    # a row as `status` reads it (json) or as the other verbs and the fleet report do (msgspec)
    StatusRow = messages.StatusRow | StatusLine


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{days}d " if days else "") + f"{h}:{m:02d}:{s:02d}"


def status_table(rows: Sequence[StatusRow]) -> str:
    header = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT / STATUS")
    lines = [header]
    for r in rows:
        lines.append(
            (
                f"{r.group}:{r.name}" if r.group else r.name,  # as supervisorctl shows it
                _state_text(r),
                str(r.pid or "-"),
                _uptime(r.uptime),
                str(r.restarts),
                _notes(r),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(col.ljust(w) for col, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        for line in lines
    )


def _state_text(r: StatusRow) -> str:
    state = r.state.value
    if r.given_up and state == "BACKOFF":
        return state + " (gave up, slow retry)"
    if r.completed:
        return state + " (completed)"  # a oneshot that did its job
    if r.previous_pid:
        return f"{state} (pid {r.previous_pid} still serving)"  # a restart in progress
    if r.healthy is False:
        return state + " (unhealthy)"
    return state


def _notes(r: StatusRow) -> str:
    """Last exit, the last error, and the program's own sd_notify STATUS= text. Beside a
    live generation the last exit is the previous one's, and says so."""
    last = r.last_exit
    if last and r.state.is_alive:
        last = f"previous run: {last}"
    parts = [p for p in (last, r.error) if p]
    if r.status_text:
        parts.append(f'"{r.status_text}"')
    return "; ".join(parts) or "-"


def outcome_text(verb: str, outcome: Outcome, row: StatusRow | None, already: bool = False) -> str:
    """One instance's line after start/stop/restart; `already`: it had nothing to do."""
    done = {"start": "started", "restart": "restarted", "stop": "stopped"}[verb]
    if outcome is Outcome.OK:
        if already:  # nothing was done: say so, not "started"
            done = "already running" if verb == "start" else "already stopped"
        return done + (f" (pid {row.pid})" if row and row.pid else "")
    why = (row.error or row.last_exit or "") if row else ""
    state = row.state.value if row else "?"
    if outcome is Outcome.TIMEOUT:
        return f"not {done} yet after the timeout (state {state})"
    return f"ERROR: not {done}: state {state}" + (f" ({why})" if why else "")
