"""The real focus's plans through vidim.aio.FocusMedia: RTP between two callers on loopback.

SIP runs on the virtual clock (focus_peers); only the media is real: each
caller's SDP names a UDP socket of the test, and the relay binds each
focus port on an ephemeral one.
"""

from __future__ import annotations

import asyncio

from focus_peers import Softphone, baresip_offer, focus_world, make_conference

from vidim.aio import FocusMedia, RtpRelay
from vidim.sdp import media_summary
from vidim.sip import Address
from vidim.vocabulary import Mode

BOB = "sip:bob@example.com"
CAROL = "sip:carol@example.com"
WAIT = 5.0


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)


async def scenario() -> None:
    loop = asyncio.get_running_loop()
    sockets = [
        await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0)) for _ in range(2)
    ]
    (bob_t, _), (_, carol) = sockets
    net, focus, node, allocator = focus_world()
    media = FocusMedia(focus, RtpRelay("127.0.0.1", ephemeral=True))

    def step() -> None:
        net.advance()
        for event in node.events:
            media.on_event(event)
        node.events.clear()

    try:
        allocator.create(make_conference([(BOB, Mode.AUDIO), (CAROL, Mode.AUDIO)]), net.now)
        step()
        phones = []
        for (transport, _), uri, sip_port in zip(sockets, (BOB, CAROL), (6000, 6010), strict=True):
            rtp_port = transport.get_extra_info("sockname")[1]
            user = uri.removeprefix("sip:").split("@")[0]
            phone = Softphone(user, Address("127.0.0.1", sip_port), baresip_offer(rtp_port, 9))
            net.add(phone)
            phone.call(allocator.join_uri(uri), net.now)
            phones.append(phone)
            step()
        await media.settled()
        assert media.relay.plan == focus.forwarding_plan
        bob_focus_port = next(
            p for kind, p, _ in media_summary(phones[0].answer()) if kind == "audio"
        )
        bob_t.sendto(b"\x80\x00rtp from bob", media.relay.address(bob_focus_port))
        assert await asyncio.wait_for(carol.received.get(), WAIT) == b"\x80\x00rtp from bob"
        # Carol hangs up: the plan shrinks, and the relay with it.
        phones[1].hang_up(net.now)
        step()
        await media.settled()
        assert media.relay.plan == focus.forwarding_plan
        assert media.relay.ports == focus.forwarding_plan.ports
        assert len(media.relay.ports) == 2  # bob's RTP and RTCP, routed nowhere
    finally:
        await media.close()
        for transport, _ in sockets:
            transport.close()
    assert media.relay.ports == frozenset()


def test_the_relay_follows_the_real_focus() -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))
