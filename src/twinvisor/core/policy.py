"""Restart policy as pure functions of the attempt history and `now`.

Shared by the supervisor core and the `twinvisor.daemon.Daemon` library so that both
restart, back off and give up by the same rules.
"""

from __future__ import annotations

import msgspec

from twinvisor.config.specs import AfterGiveUp, AutoRestart, RestartPolicy


class Restart(msgspec.Struct, frozen=True):
    delay: float  # seconds to wait before the next start
    flapping: bool = False  # the delay comes from the crash rate (see flap_delay)


class Stay(msgspec.Struct, frozen=True):
    """Do not restart: the exit was expected (or auto restart is off)."""


class GiveUp(msgspec.Struct, frozen=True):
    """Too many consecutive failures: stop trying (FATAL)."""


Decision = Restart | Stay | GiveUp


def run_failed(policy: RestartPolicy, run_time: float | None) -> bool:
    """A run that never started (None) or ended before min_uptime counts as a failure."""
    return run_time is None or run_time < policy.min_uptime


def exit_expected(policy: RestartPolicy, exit_code: int | None) -> bool:
    """exit_code None means killed by a signal or unknown: never expected."""
    return exit_code is not None and exit_code in policy.exit_codes


def backoff_delay(policy: RestartPolicy, consecutive_failures: int) -> float:
    """No delay after a healthy run: a crash of a long-running program is replaced at once."""
    if consecutive_failures <= 0:
        return 0.0
    delay = policy.backoff_initial * policy.backoff_factor ** (consecutive_failures - 1)
    return min(delay, policy.backoff_max)


def recent_exits(
    policy: RestartPolicy, exit_times: tuple[float, ...], now: float
) -> tuple[float, ...]:
    """The exit times (monotonic) that fall within the last flap_window seconds."""
    return tuple(t for t in exit_times if now - t < policy.flap_window)


def flap_delay(policy: RestartPolicy, recent: int) -> float:
    """Back off on a crash rate: from flap_exits exits within flap_window on, each further
    exit doubles the delay as a failed run would (0 below the rate, or with flap_exits 0)."""
    if policy.flap_exits <= 0 or recent < policy.flap_exits:
        return 0.0
    return backoff_delay(policy, recent - policy.flap_exits + 1)


def decide(
    policy: RestartPolicy, exit_code: int | None, consecutive_failures: int, recent: int = 0
) -> Decision:
    """What to do after a run ended.

    `consecutive_failures` already counts the run that just ended if it failed; `recent` is
    how many exits (this one included) fell within flap_window (see recent_exits).
    """
    if policy.auto_restart is AutoRestart.NEVER:
        return Stay()
    if policy.auto_restart is AutoRestart.UNEXPECTED and exit_expected(policy, exit_code):
        return Stay()
    if consecutive_failures > policy.max_retry:
        if policy.after_give_up is AfterGiveUp.SLOW_RETRY:
            return Restart(policy.slow_retry_interval)
        return GiveUp()
    failed, flap = backoff_delay(policy, consecutive_failures), flap_delay(policy, recent)
    return Restart(max(failed, flap), flapping=flap > failed)


def decide_oneshot(
    policy: RestartPolicy, exit_code: int | None, consecutive_failures: int, recent: int = 0
) -> Decision:
    """A run-to-completion program: an exit in exit_codes is its success (it stays EXITED,
    however short the run); any other exit is a failed run, retried up to max_retry."""
    if exit_expected(policy, exit_code):
        return Stay()
    return decide(policy, exit_code, consecutive_failures, recent)


EXIT_NOT_STARTED = 127  # a program that could not be started at all (as a shell says it)
EXIT_ABANDONED = 1  # killed by us: hung (not ready in time, watchdog)


def exit_status(exit_code: int | None, signal: int | None) -> int:
    """The code `up --foreground` exits with when a program's exit stops the daemon: its own
    exit code, 128+N when signal N killed it (as shells and tini report it)."""
    if signal is not None:
        return 128 + signal
    if exit_code is not None:
        return exit_code
    return EXIT_ABANDONED
