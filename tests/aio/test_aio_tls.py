"""SIP over TLS on real loopback sockets: vidim's listener and its verified connections (issue 18).

Certificates are made per test with the openssl command (tests/tls_peer.py).
Bob is a TLS listener written here; alice sends her command over UDP, or
over her own TLS connection to vidim.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aio_helpers import TIMEOUT, DatagramClient, EchoCore, read_messages, request_bytes, udp_client

from tls_peer import Ca, Leaf, client_context, make_ca, server_context
from vidim.aio import SipServer, TlsSettings
from vidim.allocator.allocator import Allocator, AllocatorConfig
from vidim.allocator.events import (
    AllocatorEvent,
    InvitationFailed,
    InvitationSent,
    TransportUnavailable,
)
from vidim.allocator.requests import RequestPolicy
from vidim.focus import ConferenceFocus, FocusConfig
from vidim.sip import Address, Request, StreamFramer, make_response, new_tag


def free_port() -> int:
    """A port free for UDP and TCP now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))
    return port


@dataclass
class TlsPhone:
    """A phone listening on TLS only: answers each request 200 on its connection."""

    context: ssl.SSLContext
    requests: asyncio.Queue[Request] = field(default_factory=asyncio.Queue)
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self.context, ssl_handshake_timeout=TIMEOUT
        )
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        try:
            while data := await reader.read(65536):
                framer.receive_data(data)
                while (message := framer.next_message()) is not None:
                    if isinstance(message, Request):
                        self.requests.put_nowait(message)
                        writer.write(make_response(message, 200, to_tag=new_tag()).to_bytes())
        except (ssl.SSLError, ConnectionError):
            pass
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
    """What reaches bob's port over UDP: nothing should (no fallback to plain text)."""

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


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    return make_ca(tmp_path / "ca")


@pytest.fixture
def vidim_leaf(ca: Ca) -> Leaf:
    return ca.issue("vidim", dns=("localhost",), ips=("127.0.0.1",))


@contextlib.asynccontextmanager
async def allocator(
    events: Events, leaf: Leaf, ca: Ca, *, tls: bool = True
) -> AsyncIterator[SipServer[AllocatorEvent]]:
    """The allocator (no proxy, no probing) with a TLS listener trusting ``ca`` only.

    The built-in focus runs beside it, over UDP.
    """
    port, tls_port, focus_port = free_port(), free_port(), free_port()
    focus = ConferenceFocus(FocusConfig(local=Address("127.0.0.1", focus_port)))
    focus_server: SipServer[Any] = SipServer(focus, port=focus_port)
    core = Allocator(
        AllocatorConfig(
            local=Address("127.0.0.1", port),
            requests=RequestPolicy.for_domain("example.com"),
            focus_uris=(f"sip:conference-factory@127.0.0.1:{focus_port}",),
            probe=False,
            tls_port=tls_port if tls else None,
        )
    )
    settings = TlsSettings(
        port=tls_port,
        certificate=str(leaf.certificate),
        key=str(leaf.key),
        ca_file=str(ca.certificate),
    )
    server = SipServer(core, port=port, on_event=events.on_event, tls=settings if tls else None)
    await focus_server.start()
    try:
        await server.start()
        try:
            yield server
        finally:
            await server.close(drain=0.5)
    finally:
        await focus_server.close(drain=0.5)


def command(client: DatagramClient, server: SipServer[Any], text: str) -> None:
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
            port = message.top_via.rport or message.top_via.port or 5060
            client.send(make_response(message, 200, to_tag=new_tag()).to_bytes(), port)
            if text in message.body.decode():
                return message


def test_the_server_listens_on_tls_beside_udp_and_tcp(ca: Ca, vidim_leaf: Leaf) -> None:
    """A TLS client verifying vidim's certificate gets its OPTIONS answered on its connection."""

    async def main() -> None:
        settings = TlsSettings(
            port=0, certificate=str(vidim_leaf.certificate), key=str(vidim_leaf.key)
        )
        server = SipServer(EchoCore(), port=0, tls=settings)
        await server.start()
        try:
            assert server.tls_port not in (None, 0, server.port)
            assert server.tls_port is not None
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.tls_port, ssl=client_context(ca), server_hostname="127.0.0.1"
            )
            writer.write(request_bytes(call_id="over-tls", transport="TLS"))
            (answer,) = await read_messages(reader, 1)
            assert (answer.call_id, getattr(answer, "status", None)) == ("over-tls", 200)
            writer.close()
        finally:
            await server.close(drain=0.5)

    asyncio.run(main())


def test_a_sips_invitee_gets_its_invitation_over_verified_tls(ca: Ca, vidim_leaf: Leaf) -> None:
    """Bob listens on TLS only; vidim verifies his certificate; the Via names TLS and its port."""
    events = Events()
    bob_leaf = ca.issue("bob", ips=("127.0.0.1",))

    async def main() -> None:
        bob = TlsPhone(server_context(bob_leaf))
        port = await bob.start()
        client = await udp_client()
        try:
            async with allocator(events, vidim_leaf, ca) as server:
                command(client, server, f"/video sips:bob@127.0.0.1:{port}")
                invitation = await bob.next()
                assert invitation.method == "MESSAGE"
                assert (invitation.top_via.transport, invitation.top_via.port) == (
                    "TLS",
                    server.tls_port,
                )
                await events.wait_for(InvitationSent)
                # transport=tls on a sip: URI: TLS too, over the same connection.
                command(client, server, f"/video sip:bob@127.0.0.1:{port};transport=tls")
                again = await bob.next()
                assert again.top_via.transport == "TLS"
                assert not [e for e in events if isinstance(e, InvitationFailed)]
        finally:
            client.close()
            await bob.close()

    asyncio.run(main())


@pytest.mark.parametrize("failure", ["untrusted CA", "wrong host name"])
def test_a_tls_peer_that_fails_verification_is_a_send_failure_never_plain_text(
    ca: Ca, vidim_leaf: Leaf, tmp_path: Path, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure IM to the requester, an InvitationFailed, a WARNING; bob gets nothing."""
    events = Events()
    if failure == "untrusted CA":
        bob_leaf = make_ca(tmp_path / "other").issue("bob", ips=("127.0.0.1",))
    else:
        bob_leaf = ca.issue("bob", dns=("bob.example.com",))

    async def main() -> None:
        bob = TlsPhone(server_context(bob_leaf))
        port = await bob.start()
        loop = asyncio.get_running_loop()
        trap = UdpTrap()
        udp, _ = await loop.create_datagram_endpoint(lambda: trap, local_addr=("127.0.0.1", port))
        client = await udp_client()
        try:
            async with allocator(events, vidim_leaf, ca) as server:
                command(client, server, f"/video sips:bob@127.0.0.1:{port}")
                told = await im_containing(client, "was not delivered")
                assert f"sips:bob@127.0.0.1:{port}" in told.body.decode()
                await events.wait_for(InvitationFailed)
                assert bob.requests.empty()
                assert trap.datagrams == []
        finally:
            client.close()
            udp.close()
            await bob.close()

    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("/TLS: TLS peer not verified" in w for w in warnings), warnings


def test_a_tls_requester_gets_its_answer_and_ims_over_its_own_connection(
    ca: Ca, vidim_leaf: Leaf
) -> None:
    """RFC 3261 18.2.2: the 202 and the IMs to alice go back over the connection she opened."""
    events = Events()

    async def main() -> None:
        async with allocator(events, vidim_leaf, ca) as server:
            assert server.tls_port is not None
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.tls_port, ssl=client_context(ca), server_hostname="127.0.0.1"
            )
            try:
                own_port = writer.get_extra_info("sockname")[1]
                writer.write(
                    request_bytes(
                        "MESSAGE",
                        uri="sip:vidim@example.com",
                        via_port=own_port,
                        transport="TLS",
                        call_id="alice-tls",
                        headers=(("Content-Type", "text/plain"),),
                        body=b"/video sip:bob@127.0.0.1:9",
                    )
                )
                framer = StreamFramer()
                (answer,) = await read_messages(reader, 1, framer)
                assert answer.call_id == "alice-tls"
                assert getattr(answer, "status", None) == 202
                (im,) = await read_messages(reader, 1, framer)
                assert isinstance(im, Request)
                assert im.method == "MESSAGE"
                assert "is ready" in im.body.decode()
                assert im.top_via.transport == "TLS"
            finally:
                writer.close()

    asyncio.run(main())


def test_without_a_tls_listener_sips_is_refused_and_nothing_is_sent(
    ca: Ca, vidim_leaf: Leaf
) -> None:
    """No ``tls_port``: TransportUnavailable, as before TLS existed."""
    events = Events()

    async def main() -> None:
        client = await udp_client()
        try:
            async with allocator(events, vidim_leaf, ca, tls=False) as server:
                assert server.tls_port is None
                command(client, server, "/video sips:bob@127.0.0.1:9")
                refused = await events.wait_for(TransportUnavailable)
                assert isinstance(refused, TransportUnavailable)
                assert refused.reason.endswith("over TLS: not configured")
        finally:
            client.close()

    asyncio.run(main())
