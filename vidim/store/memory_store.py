"""A state store in dicts: for tests, and for library users who keep no state."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from vidim.core import RecordChange

from .base import LeaseLost, StateStore, decode_record, encode_record

__all__ = ["MemoryStore"]


class MemoryStore(StateStore):
    """Everything in this process's memory; gone with it.  Never unavailable.

    Records are kept encoded, as the other backends keep them, so a caller that
    changes a record it wrote or loaded changes its own copy only.  ``clock`` (seconds,
    ``time.time`` by default) decides when leases expire.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        #: (namespace, id) -> (encoded record, index entries)
        self._records: dict[tuple[str, str], tuple[str, tuple[tuple[str, str], ...]]] = {}
        #: (namespace, id) -> (owner, expiry on the clock)
        self._leases: dict[tuple[str, str], tuple[str, float]] = {}
        #: When each key's events were counted (see count_event), oldest first.
        self._events: dict[tuple[str, str], list[float]] = {}

    async def count_event(self, namespace: str, key: str, limit: int, window: float) -> bool:
        now = self._clock()
        times = [t for t in self._events.get((namespace, key), []) if t > now - window]
        counted = len(times) < limit
        if counted:
            times.append(now)
        self._events[namespace, key] = times
        return counted

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close: the records stay until the object goes."""

    async def ping(self) -> None:
        """Always answers."""

    def _holder(self, namespace: str, id: str) -> str | None:
        lease = self._leases.get((namespace, id))
        if lease is None or lease[1] <= self._clock():
            return None
        return lease[0]

    async def write(
        self, namespace: str, changes: Sequence[RecordChange], *, owner: str | None = None
    ) -> None:
        if owner is not None:
            fenced = {c.id for c in changes if self._holder(namespace, c.id) not in (None, owner)}
            if fenced:
                raise LeaseLost(fenced)
        encoded = [
            (c.id, None if c.record is None else encode_record(c.record), c.index) for c in changes
        ]
        for id, text, index in encoded:
            if text is None:
                self._records.pop((namespace, id), None)
            else:
                self._records[namespace, id] = (text, tuple(index))

    async def load(self, namespace: str) -> dict[str, dict[str, Any]]:
        return {
            id: decode_record(text)
            for (ns, id), (text, _index) in self._records.items()
            if ns == namespace
        }

    async def get(self, namespace: str, id: str) -> dict[str, Any] | None:
        stored = self._records.get((namespace, id))
        return None if stored is None else decode_record(stored[0])

    async def find(self, namespace: str, index_name: str, value: str) -> list[str]:
        return sorted(
            id
            for (ns, id), (_text, index) in self._records.items()
            if ns == namespace and (index_name, value) in index
        )

    async def acquire(
        self, namespace: str, ids: Collection[str], owner: str, ttl: float
    ) -> set[str]:
        held = {id for id in ids if self._holder(namespace, id) in (None, owner)}
        for id in held:
            self._leases[namespace, id] = (owner, self._clock() + ttl)
        return held

    async def renew(self, namespace: str, ids: Collection[str], owner: str, ttl: float) -> set[str]:
        held = {id for id in ids if self._holder(namespace, id) == owner}
        for id in held:
            self._leases[namespace, id] = (owner, self._clock() + ttl)
        return held

    async def release(self, namespace: str, ids: Collection[str], owner: str) -> None:
        for id in ids:
            if self._holder(namespace, id) == owner:
                del self._leases[namespace, id]

    async def owner_of(self, namespace: str, id: str) -> str | None:
        return self._holder(namespace, id)

    async def unowned(self, namespace: str) -> list[str]:
        return sorted(
            id
            for ns, id in self._records
            if ns == namespace and self._holder(namespace, id) is None
        )
