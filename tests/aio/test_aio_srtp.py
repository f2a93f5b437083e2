"""SRTP through the RTP relay on loopback: one SRTP participant and one plain, both heard.

The participants are real UDP sockets; bob protects and opens with libsrtp
(pylibsrtp) as an SRTP phone does, with the keys of an SDES negotiation.
"""

from __future__ import annotations

import asyncio

from aio_helpers import TIMEOUT as WAIT
from pylibsrtp import Policy, Session

from vidim.aio import RtpRelay
from vidim.focus import ParticipantMedia, StreamInfo, forwarding_plan
from vidim.sdes import SrtpKeys, new_master_key
from vidim.vocabulary import Mode


class Endpoint(asyncio.DatagramProtocol):
    """A phone's RTP or RTCP socket: queues what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


async def endpoint() -> tuple[asyncio.DatagramTransport, Endpoint, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
    return transport, protocol, transport.get_extra_info("sockname")[1]


SUITE_80 = "AES_CM_128_HMAC_SHA1_80"
PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


def rtp(seq: int, ssrc: int, payload_type: int = 0) -> bytes:
    header = bytes((0x80, payload_type)) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
    return header + ssrc.to_bytes(4, "big") + bytes([seq % 256]) * 160


def rtcp_sender_report(ssrc: int) -> bytes:
    # RFC 3550 6.4.1, no report blocks: 28 bytes, length 6 (words minus one).
    return bytes((0x80, 200, 0, 6)) + ssrc.to_bytes(4, "big") + bytes(20)


def phone_sessions(keys: SrtpKeys) -> tuple[Session, Session]:
    """bob's own (protect, open) sessions: his key out, the focus's key in."""
    profile = PROFILES[keys.suite]
    out = Session(Policy(keys.remote_key, Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
    back = Session(Policy(keys.local_key, Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
    return out, back


def stream(local: int, remote: int, rtcp: int, keys: SrtpKeys | None) -> StreamInfo:
    return StreamInfo("audio", local, "127.0.0.1", remote, rtcp,
                      payload_types=(("pcmu/8000/1", 0),), srtp=keys)  # fmt: skip


async def scenario(suite: str) -> None:
    bob_t, bob, bob_port = await endpoint()
    bob_rtcp_t, bob_rtcp, bob_rtcp_port = await endpoint()
    carol_t, carol, carol_port = await endpoint()
    carol_rtcp_t, carol_rtcp, carol_rtcp_port = await endpoint()
    keys = SrtpKeys(suite, new_master_key(), new_master_key())
    bob_out, bob_in = phone_sessions(keys)
    plan = forwarding_plan(
        [
            ParticipantMedia(
                "sip:bob@x", Mode.AUDIO, (stream(100, bob_port, bob_rtcp_port, keys),)
            ),
            ParticipantMedia(
                "sip:carol@x", Mode.AUDIO, (stream(110, carol_port, carol_rtcp_port, None),)
            ),
        ]
    )
    relay = RtpRelay("127.0.0.1", ephemeral=True)
    await relay.apply(plan)
    try:
        # bob -> carol: sent protected, arrives plain.
        for seq in (1, 2, 3):
            protected = bob_out.protect(rtp(seq, 0xB0B))
            assert protected != rtp(seq, 0xB0B)
            bob_t.sendto(protected, relay.address(100))
            data, _ = await asyncio.wait_for(carol.received.get(), WAIT)
            assert data == rtp(seq, 0xB0B)
        # carol -> bob: sent plain, arrives protected with the focus's key.
        for seq in (7, 8):
            carol_t.sendto(rtp(seq, 0xCA201), relay.address(110))
            data, source = await asyncio.wait_for(bob.received.get(), WAIT)
            assert source == relay.address(100)
            assert data != rtp(seq, 0xCA201)
            assert bob_in.unprotect(data) == rtp(seq, 0xCA201)
        # RTCP both ways: bob's SRTCP arrives plain, carol's plain RTCP as SRTCP.
        bob_rtcp_t.sendto(bob_out.protect_rtcp(rtcp_sender_report(0xB0B)), relay.address(101))
        data, _ = await asyncio.wait_for(carol_rtcp.received.get(), WAIT)
        assert data == rtcp_sender_report(0xB0B)
        carol_rtcp_t.sendto(rtcp_sender_report(0xCA201), relay.address(111))
        data, source = await asyncio.wait_for(bob_rtcp.received.get(), WAIT)
        assert source == relay.address(101)
        assert bob_in.unprotect_rtcp(data) == rtcp_sender_report(0xCA201)
        # A packet from bob's own address with a wrong key: not authenticated, dropped.
        forged = Session(
            Policy(new_master_key(), Policy.SSRC_ANY_OUTBOUND, srtp_profile=PROFILES[suite])
        ).protect(rtp(9, 0xB0B))
        bob_t.sendto(forged, relay.address(100))
        bob_t.sendto(rtp(10, 0xB0B), relay.address(100))  # plain RTP from an SRTP phone
        # A replay of a packet already taken.
        bob_t.sendto(protected, relay.address(100))
        # The next good packet still flows: nothing above reached carol.
        bob_t.sendto(bob_out.protect(rtp(11, 0xB0B)), relay.address(100))
        data, _ = await asyncio.wait_for(carol.received.get(), WAIT)
        assert data == rtp(11, 0xB0B)
        assert carol.received.empty()
        stats = relay.stats()
        assert stats[100].unauthenticated == 3
        assert relay.totals().unauthenticated == 3
        assert relay.totals().strangers == 0
    finally:
        await relay.close()
        for transport in (bob_t, bob_rtcp_t, carol_t, carol_rtcp_t):
            transport.close()


def test_srtp_and_plain_participants_hear_each_other_80() -> None:
    asyncio.run(asyncio.wait_for(scenario("AES_CM_128_HMAC_SHA1_80"), 20))


def test_srtp_and_plain_participants_hear_each_other_32() -> None:
    asyncio.run(asyncio.wait_for(scenario("AES_CM_128_HMAC_SHA1_32"), 20))
