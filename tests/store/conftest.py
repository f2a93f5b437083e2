"""Fixtures of the state store tests: a real redis-server, and the three backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer
from store_backends import Backend, FakeClock

from vidim.store import MemoryStore, RedisStore, SqliteStore


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server on a free loopback port; stopped (even if paused) at teardown.

    ``.url`` to connect, ``.stop()`` / ``.start()`` to restart it on the same port,
    ``.pause()`` / ``.resume()`` to make it hang.
    """
    for attempt in range(3):  # the free port may be taken between the probe and the start
        server = RedisServer(tmp_path)
        try:
            server.start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        if server.running:
            server.resume()  # a stopped (SIGSTOP) process does not act on SIGTERM
        server.stop()


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
