"""Every message the server cannot send is a WARNING and reaches the core (issue 18).

Real sockets on loopback, both event loops; waits are bounded and on the
core's own queue of reported failures.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket

import pytest
from aio_helpers import LOOPS, TIMEOUT, EchoCore, request_bytes, run_on, udp_client

from vidim.aio import SipServer
from vidim.sip import Address, Message, Request, parse_message


class ReportingCore(EchoCore):
    """An EchoCore told of its failed sends; it queues a marker request after each."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: asyncio.Queue[tuple[Message, Address, str]] = asyncio.Queue()

    def send_failed(self, message: Message, destination: Address, reason: str, now: float) -> None:
        self.failures.put_nowait((message, destination, reason))


def closed_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def big_request(size: int) -> Request:
    request = parse_message(request_bytes(call_id=f"big-{size}", body=b"x" * size))
    assert isinstance(request, Request)
    return request


@pytest.mark.parametrize("loop", LOOPS)
def test_each_kind_of_send_failure_reaches_the_core_and_the_log(
    loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        core = ReportingCore()
        server = SipServer(core, port=0, connect_timeout=2.0)
        await server.start()
        client = await udp_client()
        cases = [
            # (message, destination, what the reason says)
            (big_request(70_000), Address("127.0.0.1", client.port), "do not fit a UDP datagram"),
            # No SO_BROADCAST: the kernel refuses the sendto at once (EACCES).
            (big_request(10), Address("255.255.255.255", 5060), "ermission denied"),
            (big_request(20), Address("127.0.0.1", closed_tcp_port(), "TCP"), "cannot connect"),
            (big_request(30), Address("127.0.0.1", 5060, "SCTP"), "no SCTP transport"),
        ]
        try:
            for message, destination, _ in cases:
                core.queue(message, destination)
            server.transmit()
            reported = {}
            for _ in cases:
                message, destination, reason = await asyncio.wait_for(core.failures.get(), TIMEOUT)
                reported[message.call_id] = (destination, reason)
            for message, destination, expected in cases:
                assert reported[message.call_id][0] == destination
                assert expected in reported[message.call_id][1], reported[message.call_id]
            # The server goes on serving.
            client.send(request_bytes(call_id="alive", via_port=client.port), server.port)
            assert (await client.response_to("alive")).status == 200
        finally:
            client.close()
            await server.close(drain=1.0)

    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        run_on(loop, main)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("cannot send OPTIONS sip:vidim@127.0.0.1" in w for w in warnings) == 4


def test_a_core_without_send_failed_gets_the_warning_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        try:
            core.queue(big_request(70_000), Address("127.0.0.1", 9))
            server.transmit()
        finally:
            await server.close(drain=1.0)

    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        asyncio.run(main())
    assert any("do not fit a UDP datagram" in r.getMessage() for r in caplog.records)


def test_an_icmp_error_reported_during_a_sendto_is_not_blamed_on_that_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Linux reports an earlier datagram's ICMP error at the next sendto (udp(7))."""
    core = ReportingCore()
    server = SipServer(core, port=0, clock=lambda: 0.0)  # not started: no loop needed
    server._sending = (big_request(1), Address("127.0.0.1", 5060))
    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        server._udp_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
        assert core.failures.empty()
        server._udp_error(OSError(errno.EMSGSIZE, "Message too long"))
        assert core.failures.get_nowait()[2] == "[Errno 90] Message too long"
    assert any("for an earlier datagram" in r.getMessage() for r in caplog.records)
