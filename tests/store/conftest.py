"""Fixtures of the state store tests: the three backends (``redis_server``: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_backends import Backend, FakeClock

from redis_peer import RedisServer
from vidim.store import MemoryStore, RedisStore, SqliteStore


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each of the three backends in turn, on fresh data."""
    clock = FakeClock()
    if request.param == "memory":
        memory = MemoryStore(clock=clock)  # one object: its dicts are the data
        return Backend("memory", lambda: memory, clock)
    if request.param == "sqlite":
        path = tmp_path / "state" / "vidim.sqlite3"
        return Backend("sqlite", lambda: SqliteStore(path, clock=clock), clock)
    server: RedisServer = request.getfixturevalue("redis_server")
    return Backend("redis", lambda: RedisStore(server.url), None)
