"""Suite-wide fixtures: a real redis-server (helper: redis_peer.py, beside this file).

The store's tests and the several-daemons integration test both use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_peer import RedisServer


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
