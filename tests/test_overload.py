"""The overload policy, sans-IO: fed with timestamps, no clock, no sockets."""

from __future__ import annotations

import pytest

from vidim.overload import OverloadGuard, OverloadPolicy

POLICY = OverloadPolicy(enter=0.9, leave=0.5, window=0.1, hold=1.0, max_lag=0.2, retry_after=7)


def _work(
    guard: OverloadGuard, start: float, end: float, fraction: float, step: float = 0.01
) -> None:
    """Busy ``fraction`` of every ``step`` from ``start`` to ``end``."""
    t = start
    while t < end - 1e-9:
        guard.busy(t, t + step * fraction)
        t += step


def test_enters_above_the_threshold_at_the_end_of_a_window() -> None:
    guard = OverloadGuard(POLICY)
    _work(guard, 0.0, 0.09, 0.95)
    assert not guard.overloaded(0.09)  # the window is not over yet
    _work(guard, 0.09, 0.12, 0.95)
    assert guard.overloaded(0.12)
    assert guard.episodes == 1


def test_below_the_threshold_never_enters() -> None:
    guard = OverloadGuard(POLICY)
    _work(guard, 0.0, 5.0, 0.8)
    assert not guard.overloaded(5.0)
    assert guard.episodes == 0


def test_stays_for_the_hold_time_then_leaves_below_the_low_mark() -> None:
    guard = OverloadGuard(POLICY)
    _work(guard, 0.0, 0.2, 1.0)
    assert guard.overloaded(0.2)
    _work(guard, 0.2, 0.9, 0.1)  # idle, but the hold (1 s from ~0.1) is not over
    assert guard.overloaded(0.9)
    _work(guard, 0.9, 1.5, 0.1)
    assert not guard.overloaded(1.5)


def test_hysteresis_between_the_marks() -> None:
    guard = OverloadGuard(POLICY)
    _work(guard, 0.0, 0.2, 1.0)
    assert guard.overloaded(0.2)
    _work(guard, 0.2, 3.0, 0.7)  # below enter, above leave: stays
    assert guard.overloaded(3.0)
    _work(guard, 3.0, 3.3, 0.4)
    assert not guard.overloaded(3.3)
    _work(guard, 3.3, 6.0, 0.7)  # and from below, the same load does not enter
    assert not guard.overloaded(6.0)


def test_recovers_by_itself_after_silence() -> None:
    guard = OverloadGuard(POLICY)
    _work(guard, 0.0, 0.3, 1.0)
    assert guard.overloaded(0.3)
    # No input at all for ten seconds: the next arrival finds an idle window.
    assert not guard.overloaded(10.0)


def test_lateness_enters_at_once_and_counts_in_the_window() -> None:
    guard = OverloadGuard(POLICY)
    guard.lag(0.05, 0.05)
    assert not guard.overloaded(0.06)
    guard.lag(0.3, 0.07)
    assert guard.overloaded(0.07)
    # Late again within the next windows: no way out even when idle.
    guard.lag(0.3, 1.2)
    assert guard.overloaded(1.25)
    guard.lag(0.0, 1.4)
    assert not guard.overloaded(1.5)


def test_refusals_are_counted() -> None:
    guard = OverloadGuard(POLICY)
    guard.refuse()
    guard.refuse()
    assert guard.refused == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"enter": 0.5, "leave": 0.6},
        {"leave": 0.0},
        {"window": 0.0},
        {"max_lag": 0.0},
        {"retry_after": -1},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be|need"):
        OverloadPolicy(**kwargs)  # type: ignore[arg-type]


def test_each_episode_says_what_started_it() -> None:
    guard = OverloadGuard(POLICY)
    _work(guard, 0.0, 0.12, 0.95)
    assert guard.overloaded(0.12)
    assert guard.reason.startswith("busy 9")
    assert "of 1" in guard.reason
    _work(guard, 0.12, 2.0, 0.1)
    assert not guard.overloaded(2.0)
    guard.lag(0.25, 2.01)
    assert guard.overloaded_now
    assert guard.episodes == 2
    assert guard.reason == "a request waited 250 ms"


def test_the_default_window_is_a_second() -> None:
    """Short windows refuse on bursts a daemon at 75-90% of a CPU absorbs (bench/setups.py)."""
    assert OverloadPolicy().window == 1.0
