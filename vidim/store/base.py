"""What every state store offers, and the two ways a store says no.

A core (the allocator, the built-in focus) hands out :class:`~vidim.core.RecordChange`
values; whoever sends the core's messages writes them here first (write-ahead), so
that nobody is told of a conference a restart, or another daemon, would not know.
Records are plain JSON data kept per *namespace* (a core's ``namespace``); a *lease*
says which daemon (an owner string) drives a record's timers, for a time.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from typing import Any

from vidim.core import RecordChange

__all__ = ["LeaseLost", "StateStore", "StoreUnavailable", "decode_record", "encode_record"]


class StoreUnavailable(Exception):  # noqa: N818 (issue 16 names it; it says what happened)
    """The backend cannot be reached, or refused the operation; nothing was written.

    The message says which backend and why, e.g. ``redis 127.0.0.1:6390: connection
    refused``: the daemon logs it as it is.
    """


class LeaseLost(Exception):  # noqa: N818 (issue 16 names it; it says what happened)
    """A write refused because another owner holds the lease of some of its ids.

    Nothing of the write was stored.  ``ids`` are the records another daemon drives:
    this one must stop driving them (fencing).
    """

    def __init__(self, ids: Collection[str]) -> None:
        self.ids = frozenset(ids)
        super().__init__(f"lease held by another owner: {', '.join(sorted(self.ids))}")


def encode_record(record: dict[str, Any]) -> str:
    """The stored form of a record: compact, strict, ASCII JSON (no NaN, no Infinity).

    ASCII (``\\u`` escapes) keeps any Python string storable, a lone surrogate too.

    Every backend encodes before it writes anything, so a record that is not JSON
    data raises (TypeError or ValueError) with nothing written, whatever the backend.
    """
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


def decode_record(text: str | bytes) -> dict[str, Any]:
    """The record ``encode_record`` stored."""
    record: dict[str, Any] = json.loads(text)
    return record


class StateStore(ABC):
    """Records per namespace, written a transaction at a time, and leases on them.

    Every method raises :class:`StoreUnavailable` when the backend cannot be
    reached or fails; ``write`` raises :class:`LeaseLost` when it is fenced off.
    ``ttl`` values are seconds.  Implementations: ``MemoryStore``, ``SqliteStore``,
    ``RedisStore`` (``open_store(url)`` picks one).
    """

    @abstractmethod
    async def open(self) -> None:
        """Connect or open the file, and check it is usable (schema, reachability)."""

    @abstractmethod
    async def close(self) -> None:
        """Release the connection or file; the store may be opened again."""

    @abstractmethod
    async def ping(self) -> None:
        """Return when the backend answers; raise StoreUnavailable when it does not."""

    @abstractmethod
    async def write(
        self, namespace: str, changes: Sequence[RecordChange], *, owner: str | None = None
    ) -> None:
        """Store every change in one transaction: all of them or none.

        A change whose record is None deletes the record and its index entries; any
        other replaces the record and its index entries.  With ``owner``, nothing is
        written and :class:`LeaseLost` names the ids when any changed id's lease is
        held, unexpired, by another owner.
        """

    @abstractmethod
    async def load(self, namespace: str) -> dict[str, dict[str, Any]]:
        """Every record of ``namespace``, by id."""

    @abstractmethod
    async def get(self, namespace: str, id: str) -> dict[str, Any] | None:
        """One record, or None."""

    @abstractmethod
    async def find(self, namespace: str, index_name: str, value: str) -> list[str]:
        """The ids whose last write indexed them under ``index_name`` = ``value`` (sorted)."""

    @abstractmethod
    async def acquire(
        self, namespace: str, ids: Collection[str], owner: str, ttl: float
    ) -> set[str]:
        """Take the leases that are free, expired or already ``owner``'s, for ``ttl``.

        Returns the ids ``owner`` now holds (those it already held are renewed).
        """

    @abstractmethod
    async def renew(self, namespace: str, ids: Collection[str], owner: str, ttl: float) -> set[str]:
        """Extend ``owner``'s unexpired leases by ``ttl``; returns the ids still held."""

    @abstractmethod
    async def release(self, namespace: str, ids: Collection[str], owner: str) -> None:
        """Give up ``owner``'s leases; a lease held by another owner is left alone."""

    @abstractmethod
    async def owner_of(self, namespace: str, id: str) -> str | None:
        """Who holds the lease of ``id``, unexpired, or None."""

    @abstractmethod
    async def unowned(self, namespace: str) -> list[str]:
        """Ids of records with no unexpired lease: a daemon may adopt them (sorted)."""

    @abstractmethod
    async def count_event(self, namespace: str, key: str, limit: int, window: float) -> bool:
        """Count one event of ``key``, unless ``limit`` were counted in the last ``window`` s.

        True when it was counted (under the limit), False when it was not.  Several
        daemons share the count: new conferences per requester, whichever daemon
        the requests reach.
        """

    async def __aenter__(self) -> StateStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
