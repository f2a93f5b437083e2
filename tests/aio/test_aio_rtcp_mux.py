"""RTCP multiplexed on the RTP port (RFC 5761) through the relay, on loopback sockets.

Bob's answer had ``a=rtcp-mux``: he has one socket for RTP and RTCP, both
ways.  Carol's did not: she has two (RTP, and RTCP on the next port).  What
crosses between them changes layout at the focus: forwarded, mixed, and
SRTP-protected.  Bounded waits, no sleeps as synchronisation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
from aio_helpers import TIMEOUT as WAIT
from pylibsrtp import Policy, Session

from vidim.aio import FocusMedia, RtpRelay
from vidim.focus import ForwardingPlan, ParticipantMedia, StreamInfo, forwarding_plan
from vidim.focus.codecs import AudioDecoder, AudioEncoder, codec_for
from vidim.rtp import Bye, RtpPacket, build_rtcp, is_rtcp, parse_rtcp
from vidim.sdes import SrtpKeys, new_master_key
from vidim.vocabulary import Mode

PCMU = ("pcmu/8000/1", 0)
CONFERENCE = "sip:conf@x"


class Endpoint(asyncio.DatagramProtocol):
    """A phone's socket: queues what it receives, with the source."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


async def endpoint(port: int = 0) -> tuple[asyncio.DatagramTransport, Endpoint, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Endpoint, local_addr=("127.0.0.1", port)
    )
    return transport, protocol, transport.get_extra_info("sockname")[1]


async def endpoint_pair() -> tuple[asyncio.DatagramTransport, Endpoint, asyncio.DatagramTransport,
                                   Endpoint, int]:  # fmt: skip
    """RTP and RTCP sockets on consecutive ports (RTP + 1), as a phone without mux has."""
    for _ in range(50):
        rtp_t, rtp, port = await endpoint()
        try:
            rtcp_t, rtcp, _ = await endpoint(port + 1)
        except OSError:
            rtp_t.close()
            continue
        return rtp_t, rtp, rtcp_t, rtcp, port
    raise AssertionError("no free consecutive port pair on 127.0.0.1")


def rtp(seq: int, ssrc: int, payload_type: int = 0) -> bytes:
    header = bytes((0x80, payload_type)) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
    return header + ssrc.to_bytes(4, "big") + bytes([seq % 256]) * 160


def tone(seq: int, ssrc: int) -> bytes:
    """20 ms of a loud 440 Hz tone in PCMU."""
    pcm = (20000 * np.sin(2 * np.pi * 440 * (np.arange(160) + 160 * seq) / 8000)).astype(np.int16)
    payload = AudioEncoder(codec_for("pcmu", 0), 8000).encode(pcm)
    return bytes(RtpPacket(payload_type=0, sequence_number=seq, timestamp=160 * seq, ssrc=ssrc,
                           payload=payload))  # fmt: skip


def is_loud(data: bytes) -> bool:
    packet = RtpPacket.parse(data)
    pcm = AudioDecoder(codec_for("pcmu", 0), 8000).decode(packet.payload).astype(np.float64)
    return packet.payload_type == 0 and float(np.sqrt(np.mean(np.square(pcm)))) > 2000


def sender_report(ssrc: int) -> bytes:
    """RFC 3550 6.4.1 without report blocks: 28 bytes, packet type 200."""
    return bytes((0x80, 200, 0, 6)) + ssrc.to_bytes(4, "big") + bytes(20)


def bob_muxes(local: int, port: int, *, keys: SrtpKeys | None = None, **kw: object) -> StreamInfo:
    return StreamInfo("audio", local, "127.0.0.1", port, port, rtcp_mux=True, srtp=keys,
                      **kw)  # type: ignore[arg-type]  # fmt: skip


def carol_plain(local: int, port: int, **kw: object) -> StreamInfo:
    return StreamInfo("audio", local, "127.0.0.1", port, port + 1, **kw)  # type: ignore[arg-type]


async def next_of(endpoint: Endpoint, rtcp: bool) -> tuple[bytes, tuple[str, int]]:
    """The next datagram that is (or is not) RTCP; the mixer's other kind is skipped."""
    while True:
        data, source = await asyncio.wait_for(endpoint.received.get(), WAIT)
        if is_rtcp(data) == rtcp:
            return data, source


async def forwarded() -> None:
    bob_t, bob, bob_port = await endpoint()
    carol_t, carol, carol_rtcp_t, carol_rtcp, carol_port = await endpoint_pair()
    te = "telephone-event/8000/1"
    plan = forwarding_plan(
        [
            ParticipantMedia("sip:bob@x", Mode.AUDIO,
                             (bob_muxes(100, bob_port, payload_types=(PCMU, (te, 101))),)),
            ParticipantMedia("sip:carol@x", Mode.AUDIO,
                             (carol_plain(110, carol_port, payload_types=(PCMU, (te, 121))),)),
        ]
    )  # fmt: skip
    relay = RtpRelay("127.0.0.1", ephemeral=True)
    await relay.apply(plan)
    try:
        # Bob's one socket: RTP (payload type rewritten for Carol) and RTCP (untouched)
        # reach Carol's two, each from her own focus port.
        bob_t.sendto(rtp(1, 0xB0B, 101), relay.address(100))
        bob_t.sendto(sender_report(0xB0B), relay.address(100))
        data, source = await asyncio.wait_for(carol.received.get(), WAIT)
        assert (data, source) == (rtp(1, 0xB0B, 121), relay.address(110))
        data, source = await asyncio.wait_for(carol_rtcp.received.get(), WAIT)
        assert (data, source) == (sender_report(0xB0B), relay.address(111))
        # Carol's two sockets: both reach Bob's one, from his one focus port.
        carol_t.sendto(rtp(2, 0xCA201, 121), relay.address(110))
        carol_rtcp_t.sendto(sender_report(0xCA201), relay.address(111))
        got = {await asyncio.wait_for(bob.received.get(), WAIT) for _ in range(2)}
        assert got == {
            (rtp(2, 0xCA201, 101), relay.address(100)),
            (sender_report(0xCA201), relay.address(100)),
        }
        assert carol.received.empty()
        assert carol_rtcp.received.empty()
        stats = relay.stats()
        assert (stats[100].packets_in, stats[100].packets_out) == (2, 2)
        assert 101 in relay.ports  # Bob's port + 1 stays allocated...
        assert 101 not in stats  # ...and unused
        assert relay.totals().strangers == 0
    finally:
        await relay.close()
        for transport in (bob_t, carol_t, carol_rtcp_t):
            transport.close()


def test_a_muxing_and_a_plain_participant_forwarded() -> None:
    asyncio.run(asyncio.wait_for(forwarded(), 20))


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


class Focus:
    """Stands in for a ConferenceFocus: a plan the test sets."""

    def __init__(self) -> None:
        self.forwarding_plan = ForwardingPlan()

    def ports_unavailable(self, errors: dict[int, str], now: float) -> None:
        raise AssertionError(f"ports unavailable: {errors}")


async def mixed() -> None:
    bob_t, bob, bob_port = await endpoint()
    carol_t, carol, carol_rtcp_t, carol_rtcp, carol_port = await endpoint_pair()

    def plan(bob_codec: tuple[str, int]) -> ForwardingPlan:
        return forwarding_plan(
            [
                ParticipantMedia("sip:bob@x", Mode.AUDIO,
                                 (bob_muxes(100, bob_port, payload_types=(bob_codec,)),)),
                ParticipantMedia("sip:carol@x", Mode.AUDIO,
                                 (carol_plain(110, carol_port, payload_types=(PCMU,)),)),
            ],
            conference=CONFERENCE,
        )  # fmt: skip

    focus = Focus()
    focus.forwarding_plan = plan(PCMU)
    media = FocusMedia(focus, RtpRelay("127.0.0.1", ephemeral=True))
    try:
        media.plan_changed()
        await media.settled()
        relay = media.relay
        mixer = media.mixers.mixer(CONFERENCE)
        assert mixer is not None
        # Bob speaks on his one socket, and sends his sender report there too.
        for n in range(5):
            bob_t.sendto(tone(n, 0xB0B), relay.address(100))
        bob_t.sendto(sender_report(0xB0B), relay.address(100))
        while not is_loud((await next_of(carol, rtcp=False))[0]):
            pass
        # The mix to Bob (RTP) leaves from his port.
        carol_t.sendto(tone(0, 0xCA201), relay.address(110))
        _, source = await next_of(bob, rtcp=False)
        assert source == relay.address(100)
        # Bob's RTCP BYE on the same socket is read as RTCP: his input ends.
        assert mixer.reception("sip:bob@x") is not None
        bob_t.sendto(build_rtcp([Bye(ssrcs=(0xB0B,))]), relay.address(100))
        await asyncio.wait_for(until(lambda: mixer.reception("sip:bob@x") is None), WAIT)
        # The mixer's RTCP to Bob leaves from his RTP port too: a re-INVITE that changes
        # his codec ends his old stream with a BYE, at once.
        focus.forwarding_plan = plan(("pcma/8000/1", 8))
        media.plan_changed()
        await media.settled()
        data, source = await next_of(bob, rtcp=True)
        assert source == relay.address(100)
        assert any(isinstance(packet, Bye) for packet in parse_rtcp(data))
        assert carol_rtcp.received.empty()  # Bob's RTCP is the mixer's, never forwarded
        assert 101 not in relay.stats()
    finally:
        await media.close()
        for transport in (bob_t, carol_t, carol_rtcp_t):
            transport.close()


def test_a_muxing_participant_in_the_mix() -> None:
    asyncio.run(asyncio.wait_for(mixed(), 20))


async def srtp() -> None:
    bob_t, bob, bob_port = await endpoint()
    carol_t, carol, carol_rtcp_t, carol_rtcp, carol_port = await endpoint_pair()
    keys = SrtpKeys("AES_CM_128_HMAC_SHA1_80", new_master_key(), new_master_key())
    bob_out = Session(Policy(keys.remote_key, Policy.SSRC_ANY_OUTBOUND))
    bob_in = Session(Policy(keys.local_key, Policy.SSRC_ANY_INBOUND))
    plan = forwarding_plan(
        [
            ParticipantMedia("sip:bob@x", Mode.AUDIO,
                             (bob_muxes(100, bob_port, keys=keys, payload_types=(PCMU,)),)),
            ParticipantMedia("sip:carol@x", Mode.AUDIO,
                             (carol_plain(110, carol_port, payload_types=(PCMU,)),)),
        ]
    )  # fmt: skip
    relay = RtpRelay("127.0.0.1", ephemeral=True)
    await relay.apply(plan)
    try:
        # Bob's SRTP and SRTCP on one socket: opened, to Carol's two sockets in clear.
        bob_t.sendto(bob_out.protect(rtp(1, 0xB0B)), relay.address(100))
        bob_t.sendto(bob_out.protect_rtcp(sender_report(0xB0B)), relay.address(100))
        data, _ = await asyncio.wait_for(carol.received.get(), WAIT)
        assert data == rtp(1, 0xB0B)
        data, _ = await asyncio.wait_for(carol_rtcp.received.get(), WAIT)
        assert data == sender_report(0xB0B)
        # Carol's RTP and RTCP in clear: to Bob's one socket as SRTP and SRTCP.
        carol_t.sendto(rtp(2, 0xCA201), relay.address(110))
        data, _ = await asyncio.wait_for(bob.received.get(), WAIT)
        assert bob_in.unprotect(data) == rtp(2, 0xCA201)
        carol_rtcp_t.sendto(sender_report(0xCA201), relay.address(111))
        data, source = await asyncio.wait_for(bob.received.get(), WAIT)
        assert source == relay.address(100)
        assert bob_in.unprotect_rtcp(data) == sender_report(0xCA201)
        assert relay.totals().unauthenticated == 0
    finally:
        await relay.close()
        for transport in (bob_t, carol_t, carol_rtcp_t):
            transport.close()


def test_srtp_and_srtcp_on_a_muxed_port() -> None:
    asyncio.run(asyncio.wait_for(srtp(), 20))
