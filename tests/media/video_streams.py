"""Test video for the switch: packetizers, cameras and screens on a virtual clock.

* :func:`encode` makes real VP8 (libvpx) or H.264 (libx264) frames with
  PyAV, each with the encoder's own keyframe flag;
* :func:`vp8_payloads` and :func:`h264_payloads` cut a frame into RTP
  payloads as RFC 7741 and RFC 6184 lay them out (descriptor variants;
  single NAL units, STAP-A, FU-A);
* a :class:`Camera` sends one participant's video at 30 fps with a tag in
  every packet (who, which frame) and sends a keyframe when asked (RTCP FIR
  or PLI, or SIP INFO); a :class:`Screen` keeps what a receiver got;
  :func:`run` drives a :class:`~vidim.focus.video.VideoSwitch` with them.
"""

from __future__ import annotations

import fractions
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import av
import numpy as np

from vidim.focus.keyframes import KeyframeFeedback
from vidim.focus.video import PictureFastUpdateWanted, VideoSwitch
from vidim.rtp import (
    FullIntraRequest,
    PictureLossIndication,
    RtpPacket,
    SenderReport,
    parse_rtcp,
    seq_add,
)
from vidim.sdp import Codec
from vidim.vocabulary import Mode

FPS = 30
CLOCK = 90000
VP8 = Codec(96, "VP8", CLOCK)
H264 = Codec(97, "H264", CLOCK, fmtp="profile-level-id=42e01f;packetization-mode=1")
BOTH = KeyframeFeedback(pli=True, fir=True)


def encode(codec: str, count: int, gop: int = 10) -> list[tuple[bytes, bool]]:
    """``count`` frames of a moving picture, encoded: (bitstream, keyframe) each.

    H.264 comes as Annex B (start codes), with SPS and PPS before each IDR.
    """
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = 64, 48, "yuv420p"
    context.time_base = fractions.Fraction(1, FPS)
    context.gop_size = gop
    if codec == "libx264":
        context.options = {
            "tune": "zerolatency",
            "preset": "ultrafast",
            "x264-params": "repeat-headers=1",
        }
    else:
        context.options = {"deadline": "realtime", "lag-in-frames": "0"}
    out: list[tuple[bytes, bool]] = []
    for index in range(count):
        image = np.full((48, 64, 3), (index * 7) % 256, dtype=np.uint8)
        image[:, index % 64] = 255
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        out += [(bytes(p), p.is_keyframe) for p in context.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in context.encode(None)]
    return out


def vp8_payloads(
    frame: bytes,
    *,
    mtu: int = 200,
    picture_id: int | None = None,
    extra: bool = False,
    wide: bool | None = None,
) -> list[bytes]:
    """RFC 7741 payloads of one frame: S on the first, a picture ID (7 or 15 bit: ``wide``,
    by default 15 above 127) if given, TL0PICIDX and TID/KEYIDX bytes if ``extra``."""
    descriptor_tail = b""
    flags = 0
    if picture_id is not None:
        flags |= 0x80
        if picture_id > 127 if wide is None else wide:
            descriptor_tail += bytes([0x80 | picture_id >> 8, picture_id & 0xFF])
        else:
            descriptor_tail += bytes([picture_id])
    if extra:
        flags |= 0x40 | 0x20 | 0x10
        descriptor_tail += bytes([3, 0x40])
    out = []
    for index, start in enumerate(range(0, len(frame), mtu)):
        first = (0x10 if index == 0 else 0x00) | (0x80 if flags else 0x00)
        descriptor = bytes([first]) + (bytes([flags]) + descriptor_tail if flags else b"")
        out.append(descriptor + frame[start : start + mtu])
    return out


def annexb_nals(stream: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (split at 00 00 01 / 00 00 00 01)."""
    parts = stream.split(b"\x00\x00\x01")
    return [part.rstrip(b"\x00") for part in parts if part.rstrip(b"\x00")]


def h264_payloads(nals: list[bytes], *, mtu: int = 200, aggregate: bool = True) -> list[bytes]:
    """RFC 6184 packetization mode 1: NAL units that fit share a STAP-A (if ``aggregate``),
    a NAL unit over ``mtu`` is cut into FU-A fragments, the rest go alone."""
    out: list[bytes] = []
    stap: list[bytes] = []

    def flush() -> None:
        if len(stap) == 1:
            out.append(stap[0])
        elif stap:
            nri = max(nal[0] & 0x60 for nal in stap)
            out.append(bytes([nri | 24]) + b"".join(len(n).to_bytes(2, "big") + n for n in stap))
        stap.clear()

    for nal in nals:
        if len(nal) > mtu:
            flush()
            header, body = nal[0], nal[1:]
            chunks = [body[i : i + mtu] for i in range(0, len(body), mtu)]
            for index, chunk in enumerate(chunks):
                fu_header = header & 0x1F
                fu_header |= 0x80 if index == 0 else 0
                fu_header |= 0x40 if index == len(chunks) - 1 else 0
                out.append(bytes([header & 0xE0 | 28, fu_header]) + chunk)
        elif aggregate and sum(len(n) + 2 for n in stap) + len(nal) + 3 <= mtu:
            stap.append(nal)
        else:
            flush()
            if aggregate:
                stap.append(nal)
            else:
                out.append(nal)
    flush()
    return out


def synthetic_frame(codec: Codec, tag: bytes, keyframe: bool, picture_id: int = 300) -> list[bytes]:
    """The RTP payloads of a made-up frame, laid out as the codec's are, ``tag`` in each
    (VP8: with a 15-bit ``picture_id``)."""
    unit = tag + b"|" + bytes(20)
    if codec.name == "VP8":
        header = b"\x10\x02\x00\x9d\x01\x2a" if keyframe else b"\x11\x02\x00"
        frame = header + unit + unit
        return vp8_payloads(frame, mtu=len(header) + len(unit), picture_id=picture_id, wide=True)
    nals = [b"\x67\x42\xe0\x1f" + tag + b"|", b"\x68\xce\x38\x80"] if keyframe else []
    nals.append((b"\x65" if keyframe else b"\x41") + unit * 3)
    return h264_payloads(nals, mtu=len(unit))


#: Where a synthetic frame's tag starts: two bytes no descriptor or NAL header can hold in a
#: row (a 15-bit VP8 picture ID's first byte has its top bit set).
TAG = b"##"


def tag_of(payload: bytes) -> tuple[str, int]:
    """The camera and frame number a synthetic payload was made by (``key/frame|``)."""
    start = payload.rindex(TAG) + len(TAG)  # the last: a picture ID byte may be "#" too
    key, frame = payload[start : payload.index(b"|", start)].decode().split("/")
    return key, int(frame)


@dataclass
class Camera:
    """One participant's phone: video out at 30 fps, keyframes when asked."""

    key: str
    mode: Mode = Mode.VIDEO
    codec: Codec = VP8
    feedback: KeyframeFeedback = BOTH
    ssrc: int = 0
    answers: bool = True
    """False: it ignores keyframe requests (only its first frame is a keyframe)."""
    sequence: int = 65500
    timestamp_base: int = 4_294_000_000
    frames: int = 0
    wants_keyframe: bool = True
    requests: list[tuple[float, str, int | None]] = field(default_factory=list)
    """(time, "fir" / "pli" / "info", FIR sequence) of each keyframe request received."""
    reports: list[tuple[float, SenderReport]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ssrc = self.ssrc or 0x1000 + sum(self.key.encode())

    def frame(self, now: float) -> list[bytes]:
        keyframe, self.wants_keyframe = self.wants_keyframe, False
        tag = TAG + f"{self.key}/{self.frames}".encode()
        self.frames += 1
        # Each camera counts its VP8 picture IDs from its own start (15 bits, wrapping).
        picture_id = (977 * sum(self.key.encode()) + self.frames) % 32768
        payloads = synthetic_frame(self.codec, tag, keyframe, picture_id)
        timestamp = (self.timestamp_base + round(now * CLOCK)) & 0xFFFFFFFF
        packets = []
        for index, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=self.codec.payload,
                sequence_number=self.sequence,
                timestamp=timestamp,
                ssrc=self.ssrc,
                marker=index == len(payloads) - 1,
                payload=payload,
            )
            self.sequence = seq_add(self.sequence, 1)
            packets.append(bytes(packet))
        return packets

    def receive_rtcp(self, data: bytes, now: float) -> None:
        for packet in parse_rtcp(data):
            if isinstance(packet, FullIntraRequest):
                assert [e.ssrc for e in packet.entries] == [self.ssrc]
                self.requests += [(now, "fir", e.sequence) for e in packet.entries]
            elif isinstance(packet, PictureLossIndication):
                assert packet.media_ssrc == self.ssrc
                self.requests.append((now, "pli", None))
            else:
                if isinstance(packet, SenderReport):
                    self.reports.append((now, packet))
                continue
            self.wants_keyframe = self.wants_keyframe or self.answers

    def receive_info(self, now: float) -> None:
        self.requests.append((now, "info", None))
        self.wants_keyframe = self.wants_keyframe or self.answers


@dataclass
class Screen:
    """What one receiver got: (time, packet) in order."""

    key: str
    packets: list[tuple[float, RtpPacket]] = field(default_factory=list)

    def sources(self) -> list[str]:
        """Whose video it got, in order, one entry per run of packets from one camera."""
        runs: list[str] = []
        for _, packet in self.packets:
            key = self.origin(packet)
            if not runs or runs[-1] != key:
                runs.append(key)
        return runs

    def origin(self, packet: RtpPacket) -> str:
        return tag_of(packet.payload)[0] if TAG in packet.payload else "?"

    def runs(self) -> Iterator[list[tuple[float, RtpPacket]]]:
        """The packets, cut where the camera changes."""
        current: list[tuple[float, RtpPacket]] = []
        for item in self.packets:
            if current and self.origin(current[-1][1]) != self.origin(item[1]):
                yield current
                current = []
            current.append(item)
        if current:
            yield current


@dataclass
class Room:
    """A switch with cameras (every participant) and screens (the receivers), on one clock."""

    switch: VideoSwitch
    cameras: dict[str, Camera]
    screens: dict[str, Screen] = field(default_factory=dict)
    now: float = 0.0
    events: list[object] = field(default_factory=list)

    @classmethod
    def of(cls, *cameras: Camera, switch: VideoSwitch | None = None) -> Room:
        switch = switch or VideoSwitch(random32=iter(range(11, 1_000_000, 7919)).__next__)
        room = cls(switch, {c.key: c for c in cameras})
        for camera in cameras:
            room.join(camera)
        return room

    def join(self, camera: Camera) -> None:
        self.cameras[camera.key] = camera
        self.switch.add(
            camera.key,
            mode=camera.mode,
            codec=camera.codec,
            feedback=camera.feedback,
            now=self.now,
        )
        self.screens[camera.key] = Screen(camera.key)
        self.deliver()

    def deliver(self) -> None:
        for media in self.switch.packets_to_send():
            if media.rtcp:
                self.cameras[media.participant].receive_rtcp(media.data, self.now)
            else:
                packet = RtpPacket.parse(media.data)
                self.screens[media.participant].packets.append((self.now, packet))
        for event in self.switch.events():
            self.events.append(event)
            if isinstance(event, PictureFastUpdateWanted):
                self.cameras[event.participant].receive_info(self.now)

    def run(self, until: float, talking: Callable[[float], dict[str, int]] | None = None) -> None:
        """Every camera sends a frame each 1/30 s, levels come every 100 ms, until ``until``."""
        frame_step, level_step = 1 / FPS, 0.1
        next_frame = next_level = self.now
        while self.now < until - 1e-9:
            timer = self.switch.get_timer()
            self.now = min(t for t in (next_frame, next_level, timer, until) if t is not None)
            if timer is not None and timer <= self.now:
                self.switch.handle_timer(self.now)
            if next_level <= self.now:
                for key, level in (talking(self.now) if talking else {}).items():
                    self.switch.audio_level(key, level, self.now)
                next_level += level_step
            if next_frame <= self.now:
                for camera in list(self.cameras.values()):
                    for data in camera.frame(self.now):
                        self.switch.receive_datagram(camera.key, data, self.now)
                next_frame += frame_step
            self.deliver()
