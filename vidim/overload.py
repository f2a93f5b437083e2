"""When to refuse new work: a sans-IO overload policy driven by the queueing delay.

A SIP element over UDP that takes more requests than it can handle does not
fail: the kernel queues the datagrams and latency grows without bound, until
the peers' retransmissions double the load.  :class:`OverloadGuard` decides,
from what the I/O layer tells it, when new out-of-dialog requests should be
answered ``503 Service Unavailable`` with ``Retry-After`` instead (RFC 3261
section 21.5.4), cheaply, while responses and in-dialog requests (work already
accepted) are still processed.

The one signal is how long a new request waits before it is looked at, fed
with timestamps by the caller (no clock in here):

* :meth:`OverloadGuard.queue_delay` is a measured wait: :class:`vidim.aio.SipServer`
  sends itself a sentinel datagram every :attr:`OverloadPolicy.beat`, which
  queues behind every datagram not yet read, and reports when it arrives.  A
  wait of ``max_lag`` or more starts refusing; once ``hold`` has passed, a
  wait under ``clear_lag`` ends it.
* :meth:`OverloadGuard.lag` is a lower bound: a sentinel still queued, or a
  callback that ran late (a blocked loop).  It can start refusing, not end it.

Not the CPU: a server that is busy but whose queue stays short is keeping up,
and refusing then only loses work (on a VM whose host slows it down for a
moment, a saturated CPU is common at a load the server sustains).  And the
queue, not a window of low CPU, says when refusing ends: refusals are cheap
(about a tenth of a conference setup in the daemon, whose refused requests are
logged at DEBUG only), so the backlog drains in a few hundred milliseconds and
serving resumes then.  The rule this replaced,
refusing until a one-second window of at most 70% CPU, refused everything for
two to three seconds per episode, and bench/setups.py achieved 60-75% of the
sustainable rate when offered 1.1-1.5 times it; refusing while the queue is
long keeps the server at its capacity, and only the excess gets the 503s.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OverloadGuard", "OverloadPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OverloadPolicy:
    """The thresholds (every default is documented in docs/daemon.md)."""

    #: A wait (seconds) that starts refusing: a request queued this long, well
    #: under SIP's 0.5 s retransmission interval (T1).
    max_lag: float = 0.2
    #: A measured wait under this (seconds) ends refusing: the backlog is gone.
    clear_lag: float = 0.02
    #: Refuse for at least this long once started (no flapping on one sample).
    hold: float = 0.1
    #: The Retry-After of the 503 (seconds).
    retry_after: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.clear_lag < self.max_lag:
            raise ValueError(
                f"need 0 < clear_lag < max_lag, got clear_lag={self.clear_lag} "
                f"max_lag={self.max_lag}"
            )
        if self.hold < 0 or self.retry_after < 0:
            raise ValueError("hold and retry_after must be 0 or more")

    @property
    def beat(self) -> float:
        """How often the I/O layer measures the wait (seconds): a quarter of ``max_lag``.

        Often enough that a growing queue is seen before it is much longer than
        ``max_lag``, and that serving resumes soon after the queue is gone (50 ms
        by default: a sentinel datagram each time, nothing per request); never
        more often than every 10 ms.
        """
        return max(self.max_lag / 4, 0.01)


class OverloadGuard:
    """Fed with the waits of new requests, says whether to refuse them."""

    def __init__(self, policy: OverloadPolicy | None = None, *, now: float = 0.0) -> None:
        self.policy = policy if policy is not None else OverloadPolicy()
        self._since = now
        #: Whether new requests are refused now.
        self.overloaded_now = False
        #: Requests refused so far (the caller counts them with :meth:`refuse`).
        self.refused = 0
        #: How many times overload started.
        self.episodes = 0
        #: Why the last overload episode started (for the log line that reports it).
        self.reason = ""

    def lag(self, lateness: float, now: float) -> None:
        """Something that should have run at once ran at least ``lateness`` late."""
        if lateness >= self.policy.max_lag and not self.overloaded_now:
            self._enter(now, lateness)

    def queue_delay(self, delay: float, now: float) -> None:
        """A datagram that arrived ``delay`` seconds before ``now`` is being read now."""
        if not self.overloaded_now:
            if delay >= self.policy.max_lag:
                self._enter(now, delay)
        elif delay < self.policy.clear_lag and now - self._since >= self.policy.hold:
            self.overloaded_now = False

    def refuse(self) -> None:
        self.refused += 1

    def _enter(self, now: float, delay: float) -> None:
        self.overloaded_now = True
        self._since = now
        self.episodes += 1
        self.reason = f"a request waited {delay * 1e3:.0f} ms"
