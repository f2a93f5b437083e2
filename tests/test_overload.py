"""The overload policy, sans-IO: fed with timestamps, no clock, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidim.overload import OverloadGuard, OverloadPolicy

POLICY = OverloadPolicy(max_lag=0.2, clear_lag=0.02, hold=0.5, retry_after=7)


#: (signal, seconds, now, refusing afterwards): "wait" is a measured queueing delay
#: (the sentinel), "late" a lower bound of one (a late callback, a sentinel still queued).
Step = tuple[str, float, float, bool]

SCRIPTS: dict[str, list[Step]] = {
    "a long wait enters at once": [
        ("wait", 0.15, 0.05, False),
        ("wait", 0.25, 0.07, True),
    ],
    "max_lag itself is overload": [("wait", 0.2, 0.0, True)],
    "a lower bound enters but cannot end it": [
        ("late", 0.1, 0.5, False),
        ("late", 0.3, 1.0, True),  # a blocked loop, or a sentinel still queued
        ("late", 0.0, 2.0, True),  # the loop on time again: says nothing of the queue
        ("wait", 0.001, 2.1, False),  # a measured short wait does
    ],
    "refusing ends when the queue is short after the hold": [
        ("wait", 0.3, 1.0, True),
        ("wait", 0.001, 1.2, True),  # drained, but the hold (0.5 s) is not over
        ("wait", 0.05, 1.6, True),  # hold over, still queueing
        ("wait", 0.3, 1.65, True),  # longer again: the same episode
        ("wait", 0.019, 1.7, False),
    ],
    "a second episode": [
        ("wait", 0.3, 0.0, True),
        ("wait", 0.0, 1.0, False),
        ("late", 0.21, 2.01, True),
    ],
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_when_refusing_starts_and_ends(name: str) -> None:
    guard = OverloadGuard(POLICY)
    for signal, seconds, now, refusing in SCRIPTS[name]:
        if signal == "wait":
            guard.queue_delay(seconds, now)
        else:
            guard.lag(seconds, now)
        assert guard.overloaded_now is refusing, (signal, seconds, now)


def test_each_episode_is_counted_and_says_what_started_it() -> None:
    guard = OverloadGuard(POLICY)
    guard.queue_delay(0.25, 0.0)
    assert (guard.episodes, guard.reason) == (1, "a request waited 250 ms")
    guard.queue_delay(0.3, 1.0)  # the same episode
    guard.queue_delay(0.0, 1.1)
    guard.lag(0.21, 2.01)
    assert (guard.episodes, guard.reason) == (2, "a request waited 210 ms")


def test_refusals_are_counted() -> None:
    guard = OverloadGuard(POLICY)
    guard.refuse()
    guard.refuse()
    assert guard.refused == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clear_lag": 0.3},
        {"clear_lag": 0.2},
        {"clear_lag": 0.0},
        {"max_lag": 0.0},
        {"hold": -1.0},
        {"retry_after": -1},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be|need"):
        OverloadPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_defaults() -> None:
    """Refusing from 200 ms of queue, well under T1 (0.5 s), measured every 50 ms."""
    policy = OverloadPolicy()
    assert (policy.max_lag, policy.clear_lag, policy.hold) == (0.2, 0.02, 0.1)
    assert policy.beat == 0.05
    assert OverloadPolicy(max_lag=0.02, clear_lag=0.001).beat == 0.01  # at most 100 a second
    assert policy.retry_after == 5


def _fluid(offered: float, seconds: float, refusal_cost: float) -> tuple[float, float]:
    """A server of capacity 1,000/s and its queue, in 1 ms steps, with the wait
    measured every ``beat`` as SipServer's sentinel does.

    Returns the share of the offered requests served and the longest wait (s).
    """
    capacity = 1000.0
    guard = OverloadGuard(OverloadPolicy())
    dt = 0.001
    every = round(guard.policy.beat / dt)
    backlog = 0.0  # seconds of work queued
    served = offered_n = longest = 0.0
    for step in range(1, round(seconds / dt) + 1):
        t = step * dt
        arrivals = offered * dt
        offered_n += arrivals
        if guard.overloaded_now:
            work = arrivals * refusal_cost / capacity
        else:
            work = arrivals / capacity
            served += arrivals
        backlog = max(0.0, backlog + work - dt)
        longest = max(longest, backlog)
        if step % every == 0:
            guard.queue_delay(backlog, t)
    return served / offered_n, longest


@settings(max_examples=40, deadline=None)
@given(load=st.floats(min_value=1.05, max_value=3.0))
def test_past_capacity_only_the_excess_is_refused(load: float) -> None:
    """The excess gets the 503s, not the whole load, and no request waits near T1.

    With a longer hold (the rule this replaced refused for 2-3 s per episode),
    this model serves 25-75% of what it could.
    """
    cost = 0.2  # a refusal, against serving a request (about the daemon's)
    share, longest = _fluid(1000.0 * load, 20.0, refusal_cost=cost)
    # At best the server spends all its time serving or refusing:
    # served + cost * (offered - served) = capacity.
    best = min(1.0, (1.0 - cost * load) / (1.0 - cost))
    assert share * load >= 0.9 * best
    assert share * load <= 1.0 + 1e-6
    assert longest < 0.3


def test_under_capacity_nothing_is_refused() -> None:
    share, longest = _fluid(900.0, 20.0, refusal_cost=0.2)
    assert share == pytest.approx(1.0)
    assert longest < 0.01
