"""Follow the talker through vidim.aio.FocusMedia: the mixer's levels move the video switch.

SIP runs on the virtual clock (focus_peers); the media is real UDP on
loopback: bob and carol (``video``) and dave (``watch``) each have an audio
and a video socket of the test.  Bob talks first, then carol: dave's one
video stream changes from bob's frames to carol's (each frame carries its
sender's tag), with one SSRC and sequence numbers going on by one, and
nobody ever gets dave's own video.
"""

from __future__ import annotations

import asyncio
import itertools

from audio_packets import tone_packet
from focus_peers import baresip_offer, media_world

from vidim.aio.focus import MediaEvent
from vidim.focus.video import TalkerChanged
from vidim.rtp import RtpPacket, is_rtcp, seq_diff
from vidim.sdp import media_summary
from vidim.vocabulary import Mode

BOB, CAROL, DAVE = (f"sip:{user}@example.com" for user in ("bob", "carol", "dave"))
TAGS = {BOB: 1, CAROL: 2, DAVE: 3}
FRAME = 1 / 30


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)


def silence(sequence: int, *, ssrc: int) -> bytes:
    payload = b"\xff" * 160  # PCMU silence
    return bytes(RtpPacket(payload_type=0, sequence_number=sequence, timestamp=sequence * 160,
                           ssrc=ssrc, payload=payload))  # fmt: skip


def frame(tag: int, n: int) -> bytes:
    """A one-packet VP8 frame; a key frame every 15 frames (RFC 7741 descriptor, P bit)."""
    key = n % 15 == 0
    payload = bytes([0x10, 0x00 if key else 0x01, tag, n & 0xFF])
    return bytes(RtpPacket(payload_type=99, sequence_number=(7000 * tag + n) & 0xFFFF,
                           timestamp=n * 3000, ssrc=0x100 * tag, payload=payload,
                           marker=True))  # fmt: skip


def shown(received: list[bytes]) -> list[RtpPacket]:
    return [RtpPacket.parse(d) for d in received if not is_rtcp(d)]


async def scenario() -> None:
    loop = asyncio.get_running_loop()
    talkers: list[TalkerChanged] = []

    def on_media_event(item: MediaEvent) -> None:
        if isinstance(item.event, TalkerChanged):
            talkers.append(item.event)

    world = media_world(on_media_event=on_media_event)
    focus, media = world.focus, world.media
    sockets: dict[str, dict[str, tuple[asyncio.DatagramTransport, Endpoint]]] = {}
    try:
        people = [(BOB, Mode.VIDEO), (CAROL, Mode.VIDEO), (DAVE, Mode.WATCH)]
        world.create(people)
        focus_ports: dict[str, dict[str, int]] = {}
        for sip_port, (uri, _) in zip(itertools.count(6000, 10), people):
            sockets[uri] = {
                kind: await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
                for kind in ("audio", "video")
            }
            audio, video = (sockets[uri][k][0].get_extra_info("sockname")[1] for k in sockets[uri])
            phone = world.dial(uri, sip_port, baresip_offer(audio, video))
            focus_ports[uri] = {kind: port for kind, port, _ in media_summary(phone.answer())}
        await media.settled()
        assert len(focus.forwarding_plan.switches) == 1

        def send(uri: str, kind: str, data: bytes) -> None:
            transport = sockets[uri][kind][0]
            transport.sendto(data, media.relay.address(focus_ports[uri][kind]))

        # Bob talks for a second, then carol for three; everybody sends video all along.
        start = loop.time()
        for n in range(4 * 50):  # 20 ms audio ticks; video frames at 30 fps in between
            speaker = BOB if n < 50 else CAROL
            for uri in (BOB, CAROL, DAVE):
                packet = tone_packet if uri == speaker else silence
                send(uri, "audio", packet(n, ssrc=0xA00 + TAGS[uri]))
            for f in range(int(n * 0.02 / FRAME), int((n + 1) * 0.02 / FRAME)):
                for uri in (BOB, CAROL, DAVE):
                    send(uri, "video", frame(TAGS[uri], f))
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))  # pacing

        dave_saw = shown(sockets[DAVE]["video"][1].received)
        tags = [p.payload[2] for p in dave_saw]
        assert tags[0] == 1  # bob, the first video participant, is shown first
        assert tags[-1] == 2  # then carol, the talker
        last_bob = len(tags) - tags[::-1].index(1)
        assert set(tags[last_bob:]) == {2}  # one switch, no flapping back
        assert dave_saw[last_bob].payload[1] == 0x00  # carol's first frame is a key frame
        assert len({p.ssrc for p in dave_saw}) == 1  # one stream for dave across the switch
        pairs = itertools.pairwise(dave_saw)
        assert {seq_diff(b.sequence_number, a.sequence_number) for a, b in pairs} == {
            1
        }  # loopback neither loses nor reorders here
        assert TalkerChanged(participant=CAROL, previous=BOB) in talkers
        for uri in (BOB, CAROL, DAVE):  # dave's video reaches nobody; nobody sees itself
            seen = {p.payload[2] for p in shown(sockets[uri]["video"][1].received)}
            assert 3 not in seen
            assert TAGS[uri] not in seen
    finally:
        await media.close()
        for pair in sockets.values():
            for transport, _ in pair.values():
                transport.close()


def test_the_watcher_sees_the_talker_and_switches_with_it() -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))
