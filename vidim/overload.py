"""When to refuse new work: a sans-IO overload policy with hysteresis.

A SIP element over UDP that takes more requests than it can handle does not
fail: the kernel queues the datagrams and latency grows without bound, until
the peers' retransmissions double the load.  :class:`OverloadGuard` decides,
from what the I/O layer tells it, when new out-of-dialog requests should be
answered ``503 Service Unavailable`` with ``Retry-After`` instead (RFC 3261
section 21.5.4), cheaply, while responses and in-dialog requests (work already
accepted) are still processed.

Two signals, both fed with timestamps by the caller (no clock in here):

* **lateness**: :meth:`OverloadGuard.lag` reports how long something that
  should have been handled at once waited.  :class:`vidim.aio.SipServer`
  reports how long a sentinel datagram it sends itself waited in its UDP
  receive queue (behind every request not yet read) and how late its
  heartbeat callback ran: the queueing delay a new request sees, the one sign
  of real overload (a busy server whose queue stays short is keeping up).
* **utilization**: :meth:`OverloadGuard.busy` reports stretches of work; over
  each ``window`` the busy time divided by the elapsed time is the fraction
  of the time the element works.  ``SipServer`` reports the process's CPU
  time once per heartbeat (nothing per datagram).  By default only a CPU
  saturated for a whole window (``enter`` 0.98) starts overload on its own;
  utilization mostly decides when overload may end.

Hysteresis: overload starts when a window's utilization reaches ``enter`` or
a lateness reaches ``max_lag``; it lasts at least ``hold`` seconds and ends at
the end of the first window whose utilization is at most ``leave`` with no
lateness above ``max_lag``.  A window closes on the first call at or after its
end, so an element that goes quiet recovers on its next input.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OverloadGuard", "OverloadPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OverloadPolicy:
    """The thresholds (every default is documented in docs/daemon.md)."""

    #: Busy fraction of a window at which new requests start being refused.
    enter: float = 0.98
    #: Busy fraction at or below which they are accepted again.
    leave: float = 0.7
    #: Seconds over which the busy fraction is measured.  A second, not less:
    #: a daemon at 75-90% of a CPU on average saturates many 0.2 s windows
    #: (bursts of arrivals, timers firing together) while its queue stays short;
    #: with 0.2 s it refused from 500 setups/s (bench/setups.py), with 1.0 s
    #: from 700/s, and the queueing delay (``max_lag``) still catches a backlog
    #: at once.
    window: float = 1.0
    #: Refuse for at least this long once overloaded (no flapping).  Short: the
    #: queueing delay says when the backlog is gone, and each second refusing
    #: costs setups (bench/setups.py at 500/s: 1.0 s achieved 209-289/s, 0.3 s 296-396/s).
    hold: float = 0.3
    #: Lateness (seconds) that is overload on its own: a request queued this
    #: long, well under SIP's 0.5 s retransmission interval (T1).
    max_lag: float = 0.2
    #: The Retry-After of the 503 (seconds).
    retry_after: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.leave < self.enter:
            raise ValueError(f"need 0 < leave < enter, got leave={self.leave} enter={self.enter}")
        if self.window <= 0 or self.hold < 0 or self.max_lag <= 0 or self.retry_after < 0:
            raise ValueError("window and max_lag must be above 0, hold and retry_after not below")


class OverloadGuard:
    """Fed with work stretches and lateness, says whether to refuse new requests."""

    __slots__ = (
        "_busy",
        "_lag",
        "_since",
        "_window_start",
        "episodes",
        "overloaded_now",
        "policy",
        "reason",
        "refused",
    )  # fmt: skip

    def __init__(self, policy: OverloadPolicy | None = None, *, now: float = 0.0) -> None:
        self.policy = policy if policy is not None else OverloadPolicy()
        self._window_start = now
        self._busy = 0.0
        self._lag = 0.0
        self._since = now
        #: The state as of the last window closed.
        self.overloaded_now = False
        #: Requests refused so far (the caller counts them with :meth:`refuse`).
        self.refused = 0
        #: How many times overload started.
        self.episodes = 0
        #: Why the last overload episode started (for the log line that reports it).
        self.reason = ""

    def busy(self, start: float, end: float) -> None:
        """A stretch of work from ``start`` to ``end``."""
        if end > start:
            self._busy += end - start
        self._roll(end)

    def lag(self, lateness: float, now: float) -> None:
        """A periodic callback ran ``lateness`` seconds after it was due."""
        self._lag = max(self._lag, lateness)
        if lateness >= self.policy.max_lag and not self.overloaded_now:
            # a blocked loop is overload at once, not at the window's end
            self._enter(now, f"a request waited {lateness * 1e3:.0f} ms")
        self._roll(now)

    def overloaded(self, now: float) -> bool:
        """Whether a new request arriving at ``now`` should be refused."""
        self._roll(now)
        return self.overloaded_now

    def refuse(self) -> None:
        self.refused += 1

    def utilization(self, now: float) -> float:
        """The busy fraction of the current (unfinished) window."""
        elapsed = now - self._window_start
        return self._busy / elapsed if elapsed > 0 else 0.0

    def _enter(self, now: float, reason: str) -> None:
        self.overloaded_now = True
        self._since = now
        self.episodes += 1
        self.reason = reason

    def _roll(self, now: float) -> None:
        policy = self.policy
        elapsed = now - self._window_start
        if elapsed < policy.window:
            return
        used = self._busy / elapsed
        late = self._lag >= policy.max_lag
        if not self.overloaded_now:
            if used >= policy.enter or late:
                self._enter(
                    now,
                    f"a request waited {self._lag * 1e3:.0f} ms"
                    if late
                    else f"busy {used:.0%} of {elapsed * 1e3:.0f} ms",
                )
        elif now - self._since >= policy.hold and used <= policy.leave and not late:
            self.overloaded_now = False
        self._window_start = now
        self._busy = 0.0
        self._lag = 0.0
