"""Why a host failed, from what `ssh host twinvisor …` returned: its exit code and stderr.

ssh exits 255 for its own failures (and passes the remote command's code through
otherwise), so 255 is told apart by ssh's message: authentication, the host key, or the
connection. A shell that cannot find or run the remote command exits 127 / 126. The rest is
twinvisor's own code (README: 0 ok, 1 failed, 2 usage or config, 3 no daemon).
"""

from __future__ import annotations

from dataclasses import dataclass

from twinvisor.exitcodes import Exit

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = (
    Exit.OK,
    Exit.FAILED,
    Exit.USAGE,
    Exit.NO_DAEMON,
)
SSH_FAILED = 255

_SSH_REASONS = (  # (what ssh says, lower case) -> the reason shown; the first match wins
    ("permission denied", "permission denied (ssh authentication)"),
    ("too many authentication failures", "permission denied (ssh authentication)"),
    ("host key verification failed", "host key not trusted (see known_hosts)"),
    ("remote host identification has changed", "host key changed (see known_hosts)"),
    ("could not resolve hostname", "unreachable (unknown host name)"),
    ("connection refused", "unreachable (connection refused)"),
    ("timed out", "unreachable (timed out)"),
    ("no route to host", "unreachable (no route)"),
    ("network is unreachable", "unreachable (no route)"),
    ("connection closed", "unreachable (connection closed)"),
    ("connection reset", "unreachable (connection reset)"),
)


@dataclass(frozen=True)
class Outcome:
    code: int  # what this host contributes to the exit code
    reason: str | None  # None: the host did what was asked
    detail: str  # the last thing the host (or ssh) said on stderr


def diagnose(rc: int, stderr: str, command: str) -> Outcome:
    detail = _last_line(stderr)
    if rc == EXIT_OK:
        return Outcome(EXIT_OK, None, detail)
    if rc == SSH_FAILED or rc < 0:  # < 0: our ssh itself was killed by a signal
        return Outcome(EXIT_FAILED, _ssh_reason(stderr), detail)
    if rc == 127:
        return Outcome(
            EXIT_FAILED,
            f"{command.split()[0]!r} not found on the host"
            " (name the right one with --remote-command or TWINVISOR_REMOTE_COMMAND)",
            detail,
        )
    if rc == 126:
        return Outcome(EXIT_FAILED, f"permission denied running {command!r}", detail)
    if rc == EXIT_NOT_RUNNING:
        return Outcome(EXIT_NOT_RUNNING, "no daemon running", detail)
    if rc == EXIT_USAGE:
        return Outcome(EXIT_USAGE, "usage or config error", detail)
    if "permission denied" in stderr.lower():
        return Outcome(EXIT_FAILED, "permission denied", detail)
    return Outcome(EXIT_FAILED, "failed" if rc == EXIT_FAILED else f"failed (exit {rc})", detail)


def _ssh_reason(stderr: str) -> str:
    said = stderr.lower()
    for needle, reason in _SSH_REASONS:
        if needle in said:
            return reason
    return "ssh failed"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1].removeprefix("twinvisor: ")


def exit_code(outcomes: list[Outcome]) -> int:
    """0 if every host succeeded; the failed hosts' code if they agree, else 1."""
    codes = {o.code for o in outcomes if o.code != EXIT_OK}
    if not codes:
        return EXIT_OK
    return codes.pop() if len(codes) == 1 else EXIT_FAILED
