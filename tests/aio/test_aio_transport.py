"""The transport a request goes over, on real loopback sockets (issue 18).

The allocator and the built-in focus run behind their own SipServers; bob
is a TCP listener written here (no proxy in between); alice sends her
command over UDP.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aio_helpers import TIMEOUT, DatagramClient, EchoCore, request_bytes, udp_client

from vidim.aio import SipServer
from vidim.allocator.allocator import Allocator, AllocatorConfig
from vidim.allocator.events import (
    AllocatorEvent,
    ConferenceEnded,
    ConferenceReady,
    InvitationFailed,
)
from vidim.allocator.requests import RequestPolicy
from vidim.focus import ConferenceFocus, FocusConfig
from vidim.sip import (
    Address,
    Message,
    Request,
    Response,
    StreamFramer,
    make_response,
    new_tag,
    parse_message,
)


def free_port() -> int:
    """A port free for UDP and TCP now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))
    return port


@dataclass
class TcpPhone:
    """A phone listening on TCP only: answers each request 200 on its connection."""

    requests: asyncio.Queue[Request] = field(default_factory=asyncio.Queue)
    connections: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        framer = StreamFramer()
        try:
            while data := await reader.read(65536):
                framer.receive_data(data)
                while (message := framer.next_message()) is not None:
                    if isinstance(message, Request):
                        self.requests.put_nowait(message)
                        answer = make_response(message, 200, to_tag=new_tag())
                        writer.write(answer.to_bytes())
        finally:
            writer.close()

    async def next(self) -> Request:
        return await asyncio.wait_for(self.requests.get(), TIMEOUT)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), TIMEOUT)


class UdpTrap(asyncio.DatagramProtocol):
    """What reaches bob's port over UDP: nothing should."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append(data)


class Events(list[AllocatorEvent]):
    """The allocator's events, and a queue to wait on them."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[AllocatorEvent] = asyncio.Queue()

    def on_event(self, event: AllocatorEvent) -> None:
        self.append(event)
        self.queue.put_nowait(event)

    async def wait_for(self, kind: type[AllocatorEvent]) -> AllocatorEvent:
        while not isinstance(event := await asyncio.wait_for(self.queue.get(), TIMEOUT), kind):
            pass
        return event


@dataclass
class Vidim:
    """The two servers, and every message the allocator received with its source."""

    allocator: SipServer[AllocatorEvent]
    focus: SipServer[Any]
    received: list[tuple[Request | Response, Address]]


@contextlib.asynccontextmanager
async def vidim(events: Events, focus_transport: str = "") -> AsyncIterator[Vidim]:
    """The allocator (no proxy, no probing) and the built-in focus, each on its own port."""
    focus_port = free_port()
    focus = ConferenceFocus(FocusConfig(local=Address("127.0.0.1", focus_port)))
    focus_server: SipServer[Any] = SipServer(focus, port=focus_port)
    params = f";transport={focus_transport}" if focus_transport else ""
    allocator = Allocator(
        AllocatorConfig(
            local=Address("127.0.0.1", free_port()),
            requests=RequestPolicy.for_domain("example.com"),
            focus_uris=(f"sip:conference-factory@127.0.0.1:{focus_port}{params}",),
            probe=False,
        )
    )
    received: list[tuple[Request | Response, Address]] = []
    receive = allocator.receive

    def recording(message: Request | Response, source: Address, now: float) -> None:
        received.append((message, source))
        receive(message, source, now)

    allocator.receive = recording  # type: ignore[method-assign]
    server = SipServer(allocator, port=allocator.config.local.port, on_event=events.on_event)
    await focus_server.start()
    try:
        await server.start()
        try:
            yield Vidim(server, focus_server, received)
        finally:
            await server.close(drain=0.5)
    finally:
        await focus_server.close(drain=0.5)


async def command(client: DatagramClient, server: SipServer[Any], text: str) -> None:
    client.send(
        request_bytes(
            "MESSAGE",
            uri="sip:vidim@example.com",
            via_port=client.port,
            headers=(("Content-Type", "text/plain"),),
            body=text.encode(),
        ),
        server.port,
    )


async def im_containing(client: DatagramClient, text: str) -> Request:
    """The next IM to alice whose body holds ``text`` (each answered 200)."""
    while True:
        message = await client.next()
        if isinstance(message, Request):
            client.send(
                make_response(message, 200, to_tag=new_tag()).to_bytes(), message_port(message)
            )
            if text in message.body.decode():
                return message


def message_port(request: Request) -> int:
    return request.top_via.rport or request.top_via.port or 5060


def test_an_invitee_with_transport_tcp_gets_its_invitation_over_tcp() -> None:
    """Issue 18: bob listens on TCP only; no proxy; the invitation used to go over UDP."""
    events = Events()

    async def main() -> None:
        bob = TcpPhone()
        port = await bob.start()
        loop = asyncio.get_running_loop()
        trap = UdpTrap()
        udp, _ = await loop.create_datagram_endpoint(lambda: trap, local_addr=("127.0.0.1", port))
        client = await udp_client()
        try:
            async with vidim(events) as both:
                server = both.allocator
                await command(client, server, f"/video sip:bob@127.0.0.1:{port};transport=tcp")
                invitation = await bob.next()
                assert invitation.method == "MESSAGE"
                assert invitation.headers.get("X-Vidim-Conference") is not None
                assert invitation.top_via.transport == "TCP"
                assert invitation.top_via.port == server.port
                await im_containing(client, "is ready")
                assert trap.datagrams == []
                assert not [e for e in events if isinstance(e, InvitationFailed)]
        finally:
            client.close()
            udp.close()
            await bob.close()

    asyncio.run(main())


def test_a_large_invitation_goes_over_tcp_to_a_uri_without_transport() -> None:
    """RFC 3261 18.1.1: more than 1300 bytes, no transport=udp: TCP."""
    events = Events()

    async def main() -> None:
        bob = TcpPhone()
        port = await bob.start()
        loop = asyncio.get_running_loop()
        trap = UdpTrap()
        udp, _ = await loop.create_datagram_endpoint(lambda: trap, local_addr=("127.0.0.1", port))
        client = await udp_client()
        user = "bob" + "o" * 1200
        try:
            async with vidim(events) as both:
                server = both.allocator
                await command(client, server, f"/video sip:{user}@127.0.0.1:{port}")
                invitation = await bob.next()
                assert len(invitation.to_bytes()) > 1300
                assert invitation.top_via.transport == "TCP"
                await events.wait_for(ConferenceReady)
                assert trap.datagrams == []
        finally:
            client.close()
            udp.close()
            await bob.close()

    asyncio.run(main())


def test_a_large_invitation_to_a_udp_only_invitee_falls_back_to_udp() -> None:
    """RFC 3261 18.1.1: TCP was chosen for the size, and nobody accepts it: UDP again."""
    events = Events()

    async def main() -> None:
        bob = await udp_client()  # bob listens on UDP only: his port refuses TCP
        client = await udp_client()
        user = "bob" + "o" * 1200
        try:
            async with vidim(events) as both:
                server = both.allocator
                await command(client, server, f"/video sip:{user}@127.0.0.1:{bob.port}")
                invitation = await bob.next()
                assert isinstance(invitation, Request)
                assert len(invitation.to_bytes()) > 1300
                assert invitation.top_via.transport == "UDP"
                await events.wait_for(ConferenceReady)
        finally:
            client.close()
            bob.close()

    asyncio.run(main())


def test_an_invitee_unreachable_over_tcp_fails_with_an_im_to_the_requester(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The connect fails: TransportFailed in the allocator, a failure IM, a WARNING."""
    events = Events()
    closed = free_port()  # nobody listens there

    async def main() -> None:
        client = await udp_client()
        try:
            async with vidim(events) as both:
                server = both.allocator
                await command(client, server, f"/video sip:carol@127.0.0.1:{closed};transport=tcp")
                told = await im_containing(client, "was not delivered")
                assert told.body.decode() == (
                    f"The invitation to carol@127.0.0.1:{closed};transport=tcp was not "
                    "delivered (503 Local transport error)."
                )
                await events.wait_for(InvitationFailed)
        finally:
            client.close()

    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"to 127.0.0.1:{closed}/TCP: cannot connect" in w for w in warnings)


class FailureCore(EchoCore):
    """An EchoCore told of the messages that could not be sent."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: asyncio.Queue[tuple[Message, Address]] = asyncio.Queue()

    def send_failed(self, message: Message, destination: Address, reason: str, now: float) -> None:
        self.failed.put_nowait((message, destination))


def test_a_message_for_a_transport_the_server_lacks_is_reported_to_the_core(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        core = FailureCore()
        server = SipServer(core, port=0)
        await server.start()
        try:
            request = parse_message(request_bytes(call_id="tls", transport="TLS"))
            core.queue(request, Address("127.0.0.1", 5061, "TLS"))
            server.transmit()
            message, destination = await asyncio.wait_for(core.failed.get(), TIMEOUT)
            assert message is request
            assert destination.transport == "TLS"
        finally:
            await server.close(drain=0.5)

    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        asyncio.run(main())
    assert any("no TLS transport" in r.getMessage() for r in caplog.records)


def test_a_connection_with_via_alias_carries_requests_to_its_sent_by_port() -> None:
    """RFC 5923: the peer asks for its connection to be reused for its sent-by address."""

    async def main() -> None:
        core = FailureCore()
        server = SipServer(core, port=0)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        listening = free_port()  # the peer's sent-by port: nobody accepts there
        try:
            first = request_bytes(call_id="hello", transport="TCP", via_port=listening)
            first = first.replace(b";rport", b";rport;alias")
            writer.write(first)
            framer = StreamFramer()
            answer = await read_one(reader, framer)
            assert isinstance(answer, Response)
            # An in-dialog request to its Contact: host and listening port, TCP.
            later = parse_message(request_bytes(call_id="later", transport="TCP"))
            core.queue(later, Address("127.0.0.1", listening, "TCP"))
            server.transmit()
            request = await read_one(reader, framer)
            assert isinstance(request, Request)
            assert request.call_id == "later"
            assert core.failed.empty()
        finally:
            writer.close()
            await server.close(drain=0.5)

    asyncio.run(main())


async def read_one(reader: asyncio.StreamReader, framer: StreamFramer) -> Request | Response:
    while (message := framer.next_message()) is None:
        data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
        assert data, "connection closed"
        framer.receive_data(data)
    return message


def test_the_focus_reached_over_tcp_hangs_up_over_tcp_and_its_via_says_so() -> None:
    """The allocator's Contact names no transport: the anchor dialog came over TCP, so TCP."""
    events = Events()

    async def main() -> None:
        bob = TcpPhone()
        port = await bob.start()
        client = await udp_client()
        try:
            async with vidim(events, focus_transport="tcp") as both:
                await command(
                    client, both.allocator, f"/video sip:bob@127.0.0.1:{port};transport=tcp"
                )
                await events.wait_for(ConferenceReady)
                _answer, source = next(
                    (m, s)
                    for m, s in both.received
                    if isinstance(m, Response) and m.cseq.method == "INVITE"
                )
                assert source.transport == "TCP"
                assert isinstance(both.focus.core, ConferenceFocus)
                both.focus.core.end_all(both.focus.now())
                both.focus.transmit()
                await events.wait_for(ConferenceEnded)
                (bye, source) = next(
                    (m, s) for m, s in both.received if isinstance(m, Request) and m.method == "BYE"
                )
                assert source.transport == "TCP"
                assert bye.top_via.transport == "TCP"
        finally:
            client.close()
            await bob.close()

    asyncio.run(main())
