"""The real focus's plans through vidim.aio.FocusMedia: RTP between two callers on loopback.

SIP runs on the virtual clock (focus_peers); only the media is real: each
caller's SDP names a UDP socket of the test, and the relay binds each
focus port on an ephemeral one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from audio_packets import is_loud, tone_packet
from focus_peers import baresip_offer, media_world

from vidim.aio import RtpRelay
from vidim.rtp import Bye, SenderReport, parse_rtcp
from vidim.sdp import media_summary
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
    world = media_world()
    focus, media = world.focus, world.media
    try:
        world.create([(BOB, Mode.AUDIO), (CAROL, Mode.AUDIO)])
        phones = []
        for (transport, _), uri, sip_port in zip(sockets, (BOB, CAROL), (6000, 6010), strict=True):
            rtp_port = transport.get_extra_info("sockname")[1]
            phones.append(world.dial(uri, sip_port, baresip_offer(rtp_port, 9)))
        await media.settled()
        assert media.relay.plan == focus.forwarding_plan
        bob_focus_port = next(
            p for kind, p, _ in media_summary(phones[0].answer()) if kind == "audio"
        )
        # Bob speaks: Carol gets the mix (Bob's voice) as one stream of the focus's own.
        for n in range(5):
            bob_t.sendto(tone_packet(n, ssrc=0xB0B), media.relay.address(bob_focus_port))
        while not is_loud(heard := await asyncio.wait_for(carol.received.get(), WAIT)):
            pass
        assert heard[8:12] != (0xB0B).to_bytes(4, "big")  # the mixer's SSRC, not Bob's
        # Carol hangs up: the plan shrinks, and the relay with it.
        phones[1].hang_up(world.net.now)
        world.step()
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


# -- strangers (issue 18) -------------------------------------------------------------------

SPRAY = 50  # packets a stranger sends to every port of the focus


async def until(condition: Callable[[], bool]) -> None:
    """Return once ``condition`` holds (callers bound it with wait_for)."""
    while not condition():
        await asyncio.sleep(0.005)


async def rtp_pair() -> tuple[
    asyncio.DatagramTransport, Endpoint, asyncio.DatagramTransport, Endpoint
]:
    """A participant's RTP socket on an even port and its RTCP socket on the odd one above."""
    loop = asyncio.get_running_loop()
    while True:
        rtp_t, rtp = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
        port = rtp_t.get_extra_info("sockname")[1]
        if port % 2 == 0:
            try:
                rtcp_t, rtcp = await loop.create_datagram_endpoint(
                    Endpoint, local_addr=("127.0.0.1", port + 1)
                )
            except OSError:
                pass
            else:
                return rtp_t, rtp, rtcp_t, rtcp
        rtp_t.close()


async def spray_scenario(*, latching: bool) -> RtpRelay:
    """Bob and Carol talk (RTP and RTCP) while a stranger sprays every focus port."""
    loop = asyncio.get_running_loop()
    bob_t, bob, bob_rtcp, _ = await rtp_pair()
    carol_t, carol, carol_rtcp, carol_reports = await rtp_pair()
    stranger_t, _ = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
    world = media_world(latching=latching)
    focus, media, relay = world.focus, world.media, world.media.relay
    try:
        world.create([(BOB, Mode.AUDIO), (CAROL, Mode.AUDIO)])
        focus_ports = []
        for transport, uri, sip_port in ((bob_t, BOB, 6000), (carol_t, CAROL, 6010)):
            rtp_port = transport.get_extra_info("sockname")[1]
            phone = world.dial(uri, sip_port, baresip_offer(rtp_port, 9))
            focus_ports.append(next(p for k, p, _ in media_summary(phone.answer()) if k == "audio"))
        await media.settled()
        bob_port, carol_port = focus_ports
        for n in range(5):  # with latching, these latch each port to its participant
            bob_t.sendto(tone_packet(n, ssrc=0xB0B), relay.address(bob_port))
            carol_t.sendto(tone_packet(n, ssrc=0xCA201), relay.address(carol_port))
            bob_rtcp.sendto(b"\x80\xc8bob rtcp", relay.address(bob_port + 1))
            carol_rtcp.sendto(b"\x80\xc8carol rtcp", relay.address(carol_port + 1))
        for port in sorted(relay.ports):
            for n in range(SPRAY):
                stranger_t.sendto(tone_packet(n, ssrc=0xBAD), relay.address(port))
        strangers = SPRAY * len(relay.ports)
        await asyncio.wait_for(until(lambda: relay.totals().strangers >= strangers), WAIT)
        # Each hears the other through the mixer ...
        for endpoint in (bob, carol):
            while not is_loud(await asyncio.wait_for(endpoint.received.get(), WAIT)):
                pass
        # ... which took exactly the participants' packets: no stranger's reached it.
        assert relay.totals().strangers == strangers
        [conference] = [mix.conference for mix in focus.forwarding_plan.mixes]
        mixer = media.mixers.mixer(conference)
        assert mixer is not None
        for uri in (BOB, CAROL):
            reception = mixer.reception(uri)
            assert reception is not None
            assert reception[0].ssrc in (0xB0B, 0xCA201)
            assert reception[0].received == 5
        # The mixer's sender report (2.5 s in) reaches Carol's RTCP port (her RTP + 1)
        # and reports on what Carol sent (one block, about her SSRC).
        report = parse_rtcp(await asyncio.wait_for(carol_reports.received.get(), WAIT))
        assert isinstance(report[0], SenderReport)
        assert [block.ssrc for block in report[0].reports] == [0xCA201]
    finally:
        await media.close()
        for transport in (bob_t, bob_rtcp, carol_t, carol_rtcp, stranger_t):
            transport.close()
    return relay


@pytest.mark.parametrize("latching", [False, True], ids=["sdp-address", "latching"])
def test_a_stranger_spraying_every_port_reaches_nobody(
    latching: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        asyncio.run(asyncio.wait_for(spray_scenario(latching=latching), 20))
    warned = [r for r in caplog.records if "not the participant's address" in r.getMessage()]
    assert len(warned) == 4  # one line per port (RTP and RTCP of two calls), then counted


async def leave_scenario() -> None:
    """Carol hangs up: the mixer's stream to her ends with an RTCP BYE at her RTCP port."""
    bob_t, _, bob_rtcp, _ = await rtp_pair()
    carol_t, _, carol_rtcp, carol_reports = await rtp_pair()
    world = media_world()
    try:
        world.create([(BOB, Mode.AUDIO), (CAROL, Mode.AUDIO)])
        for transport, uri, sip_port in ((bob_t, BOB, 6000), (carol_t, CAROL, 6010)):
            carol = world.dial(
                uri, sip_port, baresip_offer(transport.get_extra_info("sockname")[1], 9)
            )
        await world.media.settled()
        carol.hang_up(world.net.now)
        world.step()
        await world.media.settled()
        while True:  # sender reports may come first
            packets = parse_rtcp(await asyncio.wait_for(carol_reports.received.get(), WAIT))
            if any(isinstance(packet, Bye) for packet in packets):
                break
        assert CAROL not in {m.participant for mix in world.focus.forwarding_plan.mixes
                             for m in mix.members}  # fmt: skip
    finally:
        await world.media.close()
        for transport in (bob_t, bob_rtcp, carol_t, carol_rtcp):
            transport.close()


def test_a_participant_who_leaves_gets_the_mixers_rtcp_bye() -> None:
    asyncio.run(asyncio.wait_for(leave_scenario(), 20))
