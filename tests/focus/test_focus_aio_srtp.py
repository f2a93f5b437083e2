"""A phone that insists on SRTP joins the real focus beside a plain one; both hear each other.

SIP runs on the virtual clock (focus_peers); the media is real UDP on
loopback.  Bob offers ``RTP/SAVP`` with an SDES key, as pjsua with
``srtp_use=mandatory`` does; Carol offers plain RTP.  Bob protects and opens
with libsrtp using his key and the one in the focus's answer.
"""

from __future__ import annotations

import asyncio
import base64
import json

from audio_packets import is_loud, tone_packet
from focus_peers import baresip_offer, media_world
from pylibsrtp import Policy, Session

from vidim.aio import FocusMedia
from vidim.focus import ConferenceFocus
from vidim.sdes import new_master_key
from vidim.sdp import parse_media
from vidim.vocabulary import Mode

BOB = "sip:bob@example.com"
CAROL = "sip:carol@example.com"
WAIT = 5.0


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)


def srtp_offer(rtp_port: int, key: bytes) -> bytes:
    """baresip's offer made SRTP-only: RTP/SAVP with two SDES keys (the 80-bit tag first)."""
    inline = base64.b64encode(key).decode()
    crypto = (
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}|2^31\r\n"
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{inline}|2^31\r\n"
    )
    body = baresip_offer(rtp_port, 9).replace(b"RTP/AVP", b"RTP/SAVP")
    return body.replace(b"a=ptime:20\r\n", b"a=ptime:20\r\n" + crypto.encode())


async def hears_carol(
    carol_t: asyncio.DatagramTransport,
    media: FocusMedia,
    port: int,
    bob: Endpoint,
    bob_in: Session,
    first: int,
) -> None:
    """Carol's tone reaches Bob's mix: every packet to him is SRTP, and one is loud."""
    for n in range(first, first + 5):
        carol_t.sendto(tone_packet(n, ssrc=0xCA201), media.relay.address(port))
    while True:
        heard = await asyncio.wait_for(bob.received.get(), WAIT)
        # never in clear towards the SRTP phone: only his key opens it
        if is_loud(bob_in.unprotect(heard)):
            return


async def scenario() -> None:
    loop = asyncio.get_running_loop()
    sockets = [
        await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0)) for _ in range(2)
    ]
    (bob_t, bob), (carol_t, carol) = sockets
    world = media_world()
    net, focus, media = world.net, world.focus, world.media
    bob_key = new_master_key()
    try:
        world.create([(BOB, Mode.AUDIO), (CAROL, Mode.AUDIO)])
        phones = []
        for (transport, _), uri, sip_port in zip(sockets, (BOB, CAROL), (6000, 6010), strict=True):
            port = transport.get_extra_info("sockname")[1]
            offer = srtp_offer(port, bob_key) if uri == BOB else baresip_offer(port, 9)
            phones.append(world.dial(uri, sip_port, offer))
        await media.settled()
        bob_audio, _ = parse_media(phones[0].answer())
        carol_audio, _ = parse_media(phones[1].answer())
        # Bob's SRTP is answered with SRTP and the focus's own key; Carol stays plain.
        assert (bob_audio.protocol, carol_audio.protocol) == ("RTP/SAVP", "RTP/AVP")
        (crypto,) = bob_audio.crypto
        assert (crypto.tag, crypto.suite) == (1, "AES_CM_128_HMAC_SHA1_80")
        assert crypto.key != bob_key
        assert carol_audio.crypto == ()
        bob_out = Session(Policy(bob_key, Policy.SSRC_ANY_OUTBOUND))
        bob_in = Session(Policy(crypto.key, Policy.SSRC_ANY_INBOUND))
        # Bob speaks (SRTP): Carol hears him in her mix, in clear.
        for n in range(5):
            packet = bob_out.protect(tone_packet(n, ssrc=0xB0B))
            bob_t.sendto(packet, media.relay.address(bob_audio.port))
        while not is_loud(await asyncio.wait_for(carol.received.get(), WAIT)):
            pass
        # Carol speaks (plain): Bob's mix reaches him protected with the focus's key.
        await hears_carol(carol_t, media, carol_audio.port, bob, bob_in, first=0)
        # A session refresh (re-INVITE, the same offer) keeps the focus's key: media goes on.
        refresh = phones[0].reinvite(phones[0].offer, net.now)
        world.step()
        await media.settled()
        refreshed, _ = parse_media(phones[0].final(refresh).body)
        assert refreshed.crypto == bob_audio.crypto
        await hears_carol(carol_t, media, carol_audio.port, bob, bob_in, first=100)
        # A restarted focus gets the keys back from its record (JSON), so the call goes on.
        (conference,) = focus.conferences()
        record = focus.snapshot(conference.uri.split(":")[1].split("@")[0])
        again = ConferenceFocus(focus.config)
        again.restore(json.loads(json.dumps(record)), net.now)
        assert again.forwarding_plan == focus.forwarding_plan
        assert any(route.srtp is not None for route in again.forwarding_plan.routes)
    finally:
        await media.close()
        for transport, _ in sockets:
            transport.close()


def test_an_srtp_phone_and_a_plain_phone_talk_through_the_focus() -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))
