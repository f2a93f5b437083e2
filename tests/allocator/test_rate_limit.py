"""At most so many new conferences per requester per window."""

from __future__ import annotations

from vidim.allocator.commands import RateLimiter


def test_the_limit_holds_within_the_window_and_frees_after_it() -> None:
    rate = RateLimiter(limit=2, window=60.0)
    assert rate.allow("alice", 0.0)
    assert rate.allow("alice", 10.0)
    assert not rate.allow("alice", 20.0)  # refused requests do not count ...
    assert rate.allow("bob", 20.0)  # ... and each requester has their own count
    assert rate.allow("alice", 60.5)  # the first has left the window
    assert not rate.allow("alice", 61.0)


def test_requesters_quiet_for_a_window_are_forgotten() -> None:
    rate = RateLimiter(limit=5, window=60.0)
    rate.sweep_if_due(0.0)
    rate.allow("alice", 1.0)
    rate.allow("bob", 50.0)
    assert len(rate) == 2
    rate.sweep_if_due(30.0)  # not due yet
    assert len(rate) == 2
    rate.sweep_if_due(70.0)  # due: alice's request is out of the window, bob's is not
    assert len(rate) == 1
    rate.sweep_if_due(200.0)
    assert len(rate) == 0
