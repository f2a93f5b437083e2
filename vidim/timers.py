"""Deadlines by key, for the sans-IO servers: no clock, the caller says what time it is.

The allocator keeps one deadline per (conference, kind), the focus one per
conference, retransmitted answer and subscription.  Both need the same
three things: arm or move a deadline, cancel it, and take the ones due.
A heap with lazy deletion does all three in O(log n): an entry whose key
was re-armed or cancelled since it was pushed is skipped when it surfaces.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["Timers"]

K = TypeVar("K", bound=Hashable)


class Timers(Generic[K]):
    """At most one live deadline per key."""

    def __init__(self) -> None:
        # key -> (when, sequence) of its live entry in the heap.  The sequence
        # keeps keys that do not compare out of the comparison, fires equal
        # deadlines in arming order, and tells the live entry from the ones a
        # re-arm left behind, even at the same time.
        self._due: dict[K, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def arm(self, key: K, when: float) -> None:
        """Set ``key``'s deadline to ``when``, replacing the one it had."""
        sequence = next(self._sequence)
        self._due[key] = (when, sequence)
        heapq.heappush(self._heap, (when, sequence, key))

    def cancel(self, key: K) -> None:
        """Forget ``key``'s deadline (nothing happens if it had none)."""
        self._due.pop(key, None)

    def deadline(self, key: K) -> float | None:
        entry = self._due.get(key)
        return entry[0] if entry is not None else None

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None."""
        while self._heap:
            when, sequence, key = self._heap[0]
            if self._due.get(key) == (when, sequence):
                return when
            heapq.heappop(self._heap)
        return None

    def pop_due(self, now: float) -> Iterator[K]:
        """Yield each key whose deadline is at or before ``now``, earliest first.

        A key is forgotten before it is yielded, so the caller may arm it
        again; a deadline armed at or before ``now`` while iterating is
        yielded too.
        """
        while (when := self.next_deadline()) is not None and when <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._due[key]
            yield key
