"""Host names located on a real DNS server (RFC 3263), and the message sent there (issue 18).

A tiny authoritative server on 127.0.0.1 (dnspython's message API over a UDP
socket) answers for ``vidim.test``; a :class:`SipServer` asks it through a
:class:`Resolver` and sends to the target it names.  Waits are bounded and on
what the peers receive.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from aio_helpers import LOOPS, TIMEOUT, EchoCore, read_messages, request_bytes, run_on, udp_client

from vidim.aio import SipServer
from vidim.aio.resolver import Resolver
from vidim.sip import Address, Message, Request, parse_message


class DnsServer(asyncio.DatagramProtocol):
    """Answers from ``zone``: (name, type) -> (TTL, rdata texts); NXDOMAIN otherwise."""

    def __init__(self, zone: dict[tuple[str, str], tuple[int, list[str]]]) -> None:
        self.zone = zone
        self.asked: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, kind))
        if (name, kind) in self.zone:
            ttl, texts = self.zone[(name, kind)]
            response.answer.append(
                dns.rrset.from_text_list(question.name, ttl, dns.rdataclass.IN, kind, texts)
            )
        elif not any(known == name for known, _ in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])


async def dns_server(zone: dict[tuple[str, str], tuple[int, list[str]]]) -> DnsServer:
    loop = asyncio.get_running_loop()
    _, server = await loop.create_datagram_endpoint(
        lambda: DnsServer(zone), local_addr=("127.0.0.1", 0)
    )
    return server


def message_to(uri: str, call_id: str) -> Request:
    request = parse_message(request_bytes("MESSAGE", uri=uri, call_id=call_id))
    assert isinstance(request, Request)
    return request


class ReportingCore(EchoCore):
    def __init__(self) -> None:
        super().__init__()
        self.failures: asyncio.Queue[tuple[Message, Address, str]] = asyncio.Queue()

    def send_failed(self, message: Message, destination: Address, reason: str, now: float) -> None:
        self.failures.put_nowait((message, destination, reason))


@pytest.mark.parametrize("loop", LOOPS)
def test_a_message_goes_to_the_srv_target_and_the_answers_are_cached(loop: str) -> None:
    async def main() -> None:
        bob = await udp_client()
        zone = {
            ("_sip._udp.vidim.test", "SRV"): (60, [f"10 0 {bob.port} bob.vidim.test."]),
            ("bob.vidim.test", "A"): (60, ["127.0.0.1"]),
        }
        names = await dns_server(zone)
        core = EchoCore()
        resolver = Resolver(nameservers=[("127.0.0.1", names.port)])
        server = SipServer(core, port=0, resolver=resolver)
        await server.start()
        try:
            for call_id in ("srv-1", "srv-2"):
                core.queue(
                    message_to("sip:bob@vidim.test", call_id),
                    Address("vidim.test", 5060, "UDP", "NAPTR"),
                )
                server.transmit()
                received = await bob.next()
                assert isinstance(received, Request)
                assert received.call_id == call_id
                assert received.via[0].transport == "UDP"
            # RFC 3263: NAPTR first (none), then SRV per transport, then the target's A/AAAA;
            # the second message asked nothing (TTL 60 s).
            assert names.asked[0] == ("vidim.test", "NAPTR")
            assert ("_sip._udp.vidim.test", "SRV") in names.asked
            assert ("bob.vidim.test", "A") in names.asked
            assert len(names.asked) == len(set(names.asked))
        finally:
            await server.close(drain=1.0)
            bob.close()
            assert names.transport is not None
            names.transport.close()

    run_on(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_naptr_chooses_tcp_and_the_via_says_so(loop: str) -> None:
    async def main() -> None:
        arrived: asyncio.Queue[list[Any]] = asyncio.Queue()

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            arrived.put_nowait(await read_messages(reader, 1))
            writer.close()

        bob = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        bob_port = bob.sockets[0].getsockname()[1]
        zone = {
            ("vidim.test", "NAPTR"): (
                0,  # TTL 0: not cached, asked again for the second message
                [
                    '10 50 "s" "SIP+D2T" "" _sip._tcp.vidim.test.',
                    '20 50 "s" "SIP+D2U" "" _sip._udp.vidim.test.',
                ],
            ),
            ("_sip._tcp.vidim.test", "SRV"): (60, [f"10 0 {bob_port} bob.vidim.test."]),
            ("_sip._udp.vidim.test", "SRV"): (60, ["10 0 9 nobody.vidim.test."]),
            ("bob.vidim.test", "A"): (60, ["127.0.0.1"]),
        }
        names = await dns_server(zone)
        core = EchoCore()
        server = SipServer(core, port=0, resolver=Resolver(nameservers=[("127.0.0.1", names.port)]))
        await server.start()
        try:
            for call_id in ("naptr-1", "naptr-2"):
                core.queue(
                    message_to("sip:bob@vidim.test", call_id),
                    Address("vidim.test", 5060, "UDP", "NAPTR"),
                )
                server.transmit()
                [received] = await asyncio.wait_for(arrived.get(), TIMEOUT)
                assert isinstance(received, Request)
                assert received.call_id == call_id
                assert received.via[0].transport == "TCP"
            assert names.asked.count(("vidim.test", "NAPTR")) == 2
            assert names.asked.count(("_sip._tcp.vidim.test", "SRV")) == 1
        finally:
            await server.close(drain=1.0)
            bob.close()
            assert names.transport is not None
            names.transport.close()

    run_on(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_name_without_records_is_a_send_failure(loop: str) -> None:
    async def main() -> None:
        names = await dns_server({})
        core = ReportingCore()
        server = SipServer(core, port=0, resolver=Resolver(nameservers=[("127.0.0.1", names.port)]))
        await server.start()
        try:
            destination = Address("nowhere.vidim.test", 5060, "UDP", "NAPTR")
            core.queue(message_to("sip:bob@nowhere.vidim.test", "none"), destination)
            server.transmit()
            message, reported, reason = await asyncio.wait_for(core.failures.get(), TIMEOUT)
            assert message.call_id == "none"
            assert reported == destination
            assert "cannot resolve nowhere.vidim.test" in reason
        finally:
            await server.close(drain=1.0)
            assert names.transport is not None
            names.transport.close()

    run_on(loop, main)


def test_a_silent_name_server_is_not_waited_for_twice() -> None:
    """A timeout counts as no records for a while: retransmissions do not wait again."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        silent, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        port = silent.get_extra_info("sockname")[1]
        resolver = Resolver(nameservers=[("127.0.0.1", port)], timeout=0.3)
        try:
            destination = Address("vidim.test", 5060, "TCP", "SRV")
            started = loop.time()
            assert await resolver.locate(destination) == []
            first = loop.time() - started
            started = loop.time()
            assert await resolver.locate(destination) == []
            assert first >= 0.3
            assert loop.time() - started < 0.1
        finally:
            silent.close()

    asyncio.run(main())


def test_localhost_gets_no_srv_query_and_resolves_without_dns() -> None:
    """RFC 6761 section 6.3: localhost names are the loopback address, with no other records."""

    async def main() -> None:
        names = await dns_server({})
        resolver = Resolver(nameservers=[("127.0.0.1", names.port)])
        try:
            targets = await resolver.locate(Address("localhost", 5060, "UDP", "NAPTR"))
            assert Address("127.0.0.1", 5060, "UDP") in targets
            assert names.asked == []
        finally:
            assert names.transport is not None
            names.transport.close()

    asyncio.run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_messages_to_a_name_leave_in_the_order_they_were_sent(loop: str) -> None:
    """Each waits behind the lookup under way (an INVITE before its CANCEL); one lookup."""

    async def main() -> None:
        bob = await udp_client()
        zone = {("bob.vidim.test", "A"): (60, ["127.0.0.1"])}
        names = await dns_server(zone)
        core = EchoCore()
        resolver = Resolver(nameservers=[("127.0.0.1", names.port)])
        server = SipServer(core, port=0, resolver=resolver)
        await server.start()
        sent = [f"order-{n}" for n in range(8)]
        try:
            for call_id in sent:
                destination = Address("bob.vidim.test", bob.port, "UDP", "A")
                core.queue(message_to(f"sip:bob@bob.vidim.test:{bob.port}", call_id), destination)
                server.transmit()
            assert [(await bob.next()).call_id for _ in sent] == sent
            assert names.asked == [("bob.vidim.test", "A"), ("bob.vidim.test", "AAAA")]
        finally:
            await server.close(drain=1.0)
            bob.close()
            assert names.transport is not None
            names.transport.close()

    run_on(loop, main)
