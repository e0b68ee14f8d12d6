"""Restart policy: pure functions of the attempt history (policy.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinvisor.config.specs import AfterGiveUp, AutoRestart, RestartPolicy
from twinvisor.core import policy

P = RestartPolicy(
    max_retry=3, min_uptime=1.0, backoff_initial=0.1, backoff_factor=2.0, backoff_max=0.5
)


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.0), (-1, 0.0), (1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (40, 0.5)],
)
def test_backoff_delay(failures: int, delay: float) -> None:
    assert policy.backoff_delay(P, failures) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("run_time", "failed"), [(None, True), (0.0, True), (0.999, True), (1.0, False), (5, False)]
)
def test_run_failed(run_time: float | None, failed: bool) -> None:
    assert policy.run_failed(P, run_time) is failed


@pytest.mark.parametrize(("code", "expected"), [(0, True), (1, False), (None, False)])
def test_exit_expected(code: int | None, expected: bool) -> None:
    assert policy.exit_expected(P, code) is expected


UNEXPECTED = RestartPolicy(auto_restart=AutoRestart.UNEXPECTED, exit_codes=(0, 2), max_retry=1)
NEVER = RestartPolicy(auto_restart=AutoRestart.NEVER)
SLOW = RestartPolicy(max_retry=1, after_give_up=AfterGiveUp.SLOW_RETRY, slow_retry_interval=7.0)


@pytest.mark.parametrize(
    ("pol", "code", "failures", "decision"),
    [
        (P, 0, 0, policy.Restart(0.0)),  # always: even a clean exit after a healthy run
        (P, 1, 1, policy.Restart(0.1)),
        (P, None, 3, policy.Restart(0.4)),  # exactly max_retry failures: still retried
        (P, 1, 4, policy.GiveUp()),  # more than max_retry: give up
        (UNEXPECTED, 0, 0, policy.Stay()),
        (UNEXPECTED, 2, 5, policy.Stay()),  # an expected exit never gives up
        (UNEXPECTED, 1, 1, policy.Restart(0.1)),
        (UNEXPECTED, None, 2, policy.GiveUp()),  # killed by a signal: never expected
        (NEVER, 1, 10, policy.Stay()),
        (SLOW, 1, 1, policy.Restart(0.1)),
        (SLOW, 1, 2, policy.Restart(7.0)),
        (SLOW, 1, 50, policy.Restart(7.0)),
    ],
)
def test_decide_table(
    pol: RestartPolicy, code: int | None, failures: int, decision: policy.Decision
) -> None:
    assert policy.decide(pol, code, failures) == decision


@given(
    max_retry=st.integers(0, 10),
    failures=st.integers(0, 30),
    code=st.none() | st.integers(0, 255),
    slow=st.booleans(),
)
def test_decide_gives_up_exactly_after_max_retry(
    max_retry: int, failures: int, code: int | None, slow: bool
) -> None:
    pol = RestartPolicy(
        max_retry=max_retry,
        after_give_up=AfterGiveUp.SLOW_RETRY if slow else AfterGiveUp.FATAL,
        slow_retry_interval=99.0,
        backoff_max=30.0,
    )
    d = policy.decide(pol, code, failures)
    if failures > max_retry:
        assert d == (policy.Restart(99.0) if slow else policy.GiveUp())
    else:
        assert isinstance(d, policy.Restart)
        assert 0 <= d.delay <= pol.backoff_max


@given(st.integers(1, 60))
def test_backoff_is_monotonic_and_capped(n: int) -> None:
    assert policy.backoff_delay(P, n) <= policy.backoff_delay(P, n + 1) <= P.backoff_max


def test_crash_rate_backs_off_from_flap_exits_within_flap_window() -> None:
    p = RestartPolicy(flap_exits=3, flap_window=10.0, backoff_initial=1.0, backoff_max=8.0)
    assert policy.recent_exits(p, (0.0, 5.0, 9.0, 12.0), now=12.0) == (5.0, 9.0, 12.0)
    assert [policy.flap_delay(p, n) for n in range(7)] == [0, 0, 0, 1.0, 2.0, 4.0, 8.0]
    # healthy runs (no failures), but the third exit within the window: a delay, flagged
    assert policy.decide(p, 1, 0, recent=2) == policy.Restart(0.0)
    assert policy.decide(p, 1, 0, recent=3) == policy.Restart(1.0, flapping=True)
    assert policy.flap_delay(RestartPolicy(flap_exits=0), 100) == 0.0  # off
