"""A phone that multiplexes RTCP (RFC 5761) joins the real focus beside one that does not.

SIP runs on the virtual clock (focus_peers); the media is real UDP on
loopback.  Bob offers ``a=rtcp-mux`` (baresip with ``rtcp_mux yes``) and has
one socket for RTP and RTCP; Carol offers none and has two.  The focus
answers Bob's mux, mixes both, and sends Bob RTP and RTCP on his one port.
"""

from __future__ import annotations

import asyncio
import json

from audio_packets import is_loud, tone_packet
from focus_peers import Softphone, baresip_offer, focus_world, make_conference

from vidim.aio import FocusMedia, RtpRelay
from vidim.focus import ConferenceFocus
from vidim.rtp import SenderReport, is_rtcp, parse_rtcp
from vidim.sdp import parse_media
from vidim.sip import Address
from vidim.vocabulary import Mode

BOB = "sip:bob@example.com"
CAROL = "sip:carol@example.com"
WAIT = 5.0
#: The mixer's first sender report to a listener comes 2.5 s after its first packet.
REPORT_WAIT = 8.0


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


async def first_report(bob: Endpoint, focus_port: tuple[str, int]) -> SenderReport:
    """Bob's first RTCP sender report; everything he gets comes from his focus port."""
    while True:
        data, source = await bob.received.get()
        assert source == focus_port
        if is_rtcp(data):
            (report, *_) = parse_rtcp(data)
            assert isinstance(report, SenderReport)
            return report


async def scenario() -> None:
    loop = asyncio.get_running_loop()
    sockets = [
        await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0)) for _ in range(2)
    ]
    (bob_t, bob), (carol_t, carol) = sockets
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
            port = transport.get_extra_info("sockname")[1]
            offer = baresip_offer(port, 9, rtcp_mux=uri == BOB)
            phone = Softphone(uri[4:].split("@")[0], Address("127.0.0.1", sip_port), offer)
            net.add(phone)
            phone.call(allocator.join_uri(uri), net.now)
            phones.append(phone)
            step()
        await media.settled()
        bob_audio, _ = parse_media(phones[0].answer())
        carol_audio, _ = parse_media(phones[1].answer())
        assert (bob_audio.rtcp_mux, carol_audio.rtcp_mux) == (True, False)
        bob_focus = media.relay.address(bob_audio.port)
        # Bob speaks on his one socket: Carol hears him.
        for n in range(5):
            bob_t.sendto(tone_packet(n, ssrc=0xB0B), bob_focus)
        while not is_loud((await asyncio.wait_for(carol.received.get(), WAIT))[0]):
            pass
        # Carol speaks: Bob's mix and the mixer's RTCP for it both reach his one socket,
        # from his one focus port.
        for n in range(5):
            carol_t.sendto(tone_packet(n, ssrc=0xCA201), media.relay.address(carol_audio.port))
        report = await asyncio.wait_for(first_report(bob, bob_focus), REPORT_WAIT)
        assert report.packet_count > 0
        # The focus's record keeps the mux: a restored focus routes alike.
        (conference,) = focus.conferences()
        record = focus.snapshot(conference.uri.split(":")[1].split("@")[0])
        again = ConferenceFocus(focus.config)
        again.restore(json.loads(json.dumps(record)), net.now)
        assert again.forwarding_plan == focus.forwarding_plan
        (mix,) = again.forwarding_plan.mixes
        assert {(m.participant, m.rtcp_port) for m in mix.members} == {
            (BOB, bob_audio.port),
            (CAROL, carol_audio.port + 1),
        }
    finally:
        await media.close()
        for transport, _ in sockets:
            transport.close()


def test_a_muxing_phone_and_a_plain_phone_talk_through_the_focus() -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))
