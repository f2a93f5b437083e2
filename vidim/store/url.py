"""``open_store(url)``: the one string an operator writes (``--store``) to a backend."""

from __future__ import annotations

from pathlib import Path

from .base import StateStore
from .memory_store import MemoryStore
from .sqlite_store import SqliteStore

__all__ = ["STORE_URL_FORMS", "open_store"]

#: What ``open_store`` accepts, for error messages and ``--help``.
STORE_URL_FORMS = (
    "memory:, sqlite:PATH (relative or absolute), sqlite:///ABSOLUTE/PATH, "
    "redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
)


def open_store(url: str, *, prefix: str = "vidim:") -> StateStore:
    """The store ``url`` names, not yet opened (``await store.open()``).

    ``prefix`` starts every Redis key (two deployments can share one Redis).
    Raises ValueError, naming the accepted forms, for anything else.
    """
    scheme, colon, rest = url.partition(":")
    if not colon:
        raise ValueError(f"store {url!r}: no scheme; accepted: {STORE_URL_FORMS}")
    if scheme == "memory" and not rest:
        return MemoryStore()
    if scheme == "sqlite" and rest:
        if rest.startswith("//"):
            # sqlite:///abs/path (the SQLAlchemy form): an empty host, then the path.
            host, _, path = rest[2:].partition("/")
            if host or not path:
                raise ValueError(
                    f"store {url!r}: sqlite:/// needs a path; accepted: {STORE_URL_FORMS}"
                )
            return SqliteStore(Path("/" + path))
        return SqliteStore(Path(rest))
    if scheme in ("redis", "rediss") and rest.startswith("//") and len(rest) > 2:
        from .redis_store import RedisStore  # imported when used: redis-py loads slowly

        return RedisStore(url, prefix=prefix)
    raise ValueError(f"store {url!r}: not a store URL; accepted: {STORE_URL_FORMS}")
