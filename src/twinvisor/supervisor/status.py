"""What the supervisor reports about each instance: one status row.

The row is a msgspec Struct because three layers share it: the runtime builds it, the control
API encodes it (`GET /status` and every verb's answer), and the CLI decodes the answer back into
it. It lives here, in the layer that produces it: control and cli sit above and may import it,
while the core (which would make the runtime import it from below) knows neither log files nor
wall-clock time. The JSON field names and order are the wire format (docs/api.md).
"""

from __future__ import annotations

import msgspec

from twinvisor.core.states import ProcessState

TYPE_CHECKING = False
if TYPE_CHECKING:  # the CLI imports this module: keep typing and the core's machine out of it
    from twinvisor.core.machine import ProcView


class StatusRow(msgspec.Struct, frozen=True, kw_only=True):
    """One instance, as `twinvisor status` shows it. Past the first three, every field has a
    default so that a CLI can still read an older daemon's answer."""

    name: str  # the instance, e.g. "web:0"
    program: str
    state: ProcessState
    group: str | None = None  # its [group.NAME], if any
    pid: int | None = None
    uptime: float | None = None  # seconds, while alive
    started: float | None = None  # unix time of the spawn, while alive
    restarts: int = 0
    failures: int = 0  # consecutive failed runs
    given_up: bool = False
    type: str = "service"  # or "oneshot": runs once to completion
    completed: bool = False  # a oneshot that ran to completion
    last_exit: str | None = None  # "exit 1", "killed by SIGKILL"
    exit_code: int | None = None
    error: str | None = None
    stdout_file: str | None = None
    stderr_file: str | None = None
    # "stdout"/"stderr" when that stream goes to the daemon's own (/dev/stdout, console)
    stdout_console: str | None = None
    stderr_console: str | None = None
    redirect_stderr: bool = False  # stderr goes into the stdout pipe
    dropped_bytes: int = 0  # log bytes lost to a full disk
    status_text: str | None = None  # last sd_notify STATUS=
    healthy: bool | None = None
    previous_pid: int | None = None  # the generation still serving during a restart
    reloading: bool = False  # sd_notify RELOADING=1 until the next READY=1
    main_pid: int | None = None  # sd_notify MAINPID=, as the program reports it
    listen_addrs: list[str] = []


def status_row(
    proc: ProcView, *, now: float, wall: float, dropped_bytes: int, group: str | None = None
) -> StatusRow:
    """The row of `proc`; `now` is the runtime's (monotonic) clock, `wall` the unix time."""
    alive = proc.state.is_alive and proc.started_at is not None
    uptime = now - proc.started_at if alive and proc.started_at is not None else None
    return StatusRow(
        name=proc.spec.name,
        program=proc.spec.program,
        state=proc.state,
        group=group,
        pid=proc.pid,
        uptime=round(uptime, 3) if uptime is not None else None,
        started=round(wall - uptime, 3) if uptime is not None else None,
        restarts=proc.restarts,
        failures=proc.failures,
        given_up=proc.given_up,
        type=proc.spec.type.value,
        completed=proc.completed,
        last_exit=proc.last_exit.describe() if proc.last_exit else None,
        exit_code=proc.last_exit.exit_code if proc.last_exit else None,
        error=proc.last_error,
        stdout_file=proc.spec.stdout.path,
        stderr_file=proc.spec.stderr.path,
        stdout_console=proc.spec.stdout.console,
        stderr_console=proc.spec.stderr.console,
        redirect_stderr=proc.spec.redirect_stderr,
        dropped_bytes=dropped_bytes,
        status_text=proc.status_text,
        healthy=proc.healthy,
        previous_pid=proc.old_pid,
        reloading=proc.reloading,
        main_pid=proc.main_pid,
        listen_addrs=list(proc.spec.listen_addrs),
    )
