"""SipServer's UDP receive buffer: a request the kernel capped is logged at start.

A full receive buffer drops requests before the daemon reads them, so that their
senders get neither 202 nor 503 (bench/overload.py): an operator must hear of it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest
from aio_helpers import EchoCore

from vidim.aio import SipServer

RMEM_MAX = Path("/proc/sys/net/core/rmem_max")


def start_and_close(server: SipServer[object]) -> int:
    """Start ``server``, close it; what SO_RCVBUF its UDP socket reported."""

    async def main() -> int:
        await server.start()
        try:
            sock = server._udp_sock
            assert sock is not None
            return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        finally:
            await server.close(drain=0.5)

    return asyncio.run(main())


@pytest.mark.skipif(not RMEM_MAX.exists(), reason="Linux's net.core.rmem_max")
def test_a_request_above_rmem_max_is_logged_as_capped(caplog: pytest.LogCaptureFixture) -> None:
    cap = int(RMEM_MAX.read_text())
    asked = cap + 1024 * 1024
    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        reported = start_and_close(SipServer(EchoCore(), port=0, udp_buffer=asked))
    assert reported == 2 * cap  # Linux reports twice what it granted
    (warning,) = [r for r in caplog.records if "receive buffer capped" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert f"asked {asked} bytes, got {cap}" in warning.getMessage()
    assert "net.core.rmem_max" in warning.getMessage()


def test_a_granted_request_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        start_and_close(SipServer(EchoCore(), port=0, udp_buffer=64 * 1024))
    assert not [r for r in caplog.records if "receive buffer capped" in r.getMessage()]
