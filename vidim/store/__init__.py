"""State stores: where a daemon keeps its conferences so that they outlive it.

A core (``vidim.allocator``, ``vidim.focus``) reports the records it changed as
:class:`~vidim.core.RecordChange` values; the I/O layer writes them to a
:class:`StateStore` before it sends the core's messages (write-ahead), and loads them
back on start.  Leases say which daemon drives which record when several share a
store.  Backends (docs/store.md):

* :class:`MemoryStore`: dicts, for tests and library users who keep nothing;
* :class:`SqliteStore`: one SQLite file, the daemon's embedded default;
* :class:`RedisStore`: a Redis server shared by several daemons.

``open_store(url)`` builds one from ``memory:``, ``sqlite:PATH`` or
``redis://HOST:PORT/DB``.  This package does I/O; the protocol code never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidim.core import RecordChange

from .base import LeaseLost, StateStore, StoreUnavailable
from .memory_store import MemoryStore
from .sqlite_store import SqliteStore
from .url import STORE_URL_FORMS, open_store

if TYPE_CHECKING:
    from .redis_store import RedisStore


def __getattr__(name: str) -> object:
    # redis-py is imported when a Redis store is first asked for (it loads slowly).
    if name == "RedisStore":
        from .redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module 'vidim.store' has no attribute {name!r}")


__all__ = [
    "STORE_URL_FORMS",
    "LeaseLost",
    "MemoryStore",
    "RecordChange",
    "RedisStore",
    "SqliteStore",
    "StateStore",
    "StoreUnavailable",
    "open_store",
]
