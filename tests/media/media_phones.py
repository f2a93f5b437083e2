"""Test phones for the mixer: each plays a tone in its codec and decodes what it receives.

A :class:`Phone` builds the RTP packets a softphone would send (20 ms, or
its ``ptime``; its own SSRC, sequence numbers and timestamps) and decodes the stream the mixer
sends it with an independent decoder; :func:`run` drives a mixer and its
phones on a virtual clock.  :func:`tone_amplitude` is a Goertzel filter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from vidim.focus.codecs import MIX_RATE, AudioCodec, AudioDecoder, AudioEncoder, Pcm, codec_for
from vidim.focus.mixer import AudioMixer, MediaPacket
from vidim.rtp import RtpPacket, parse_rtcp
from vidim.vocabulary import Mode

FRAME = MIX_RATE // 50
WINDOW = MIX_RATE // 10  # 100 ms


def tone(
    frequency: float, start: int, count: int, amplitude: float = 6000.0, rate: int = MIX_RATE
) -> Pcm:
    t = np.arange(start, start + count)
    return (amplitude * np.sin(2 * np.pi * frequency * t / rate)).astype(np.int16)


class PacketEncoder:
    """A phone's encoder for packets of ``ptime`` ms at the codec's own rate (the
    mixer's :class:`AudioEncoder` makes 20 ms packets only: Opus is opened here)."""

    def __init__(self, codec: AudioCodec, ptime: int) -> None:
        self.rate = codec.sample_rate
        self.samples = self.rate * ptime // 1000
        self._pts = 0
        self._encoder = AudioEncoder(codec, self.rate)
        self._opus = None
        if codec.name == "opus":
            self._opus = av.CodecContext.create("libopus", "w")
            self._opus.sample_rate, self._opus.format, self._opus.layout = self.rate, "s16", "mono"
            self._opus.time_base = Fraction(1, self.rate)
            self._opus.options = {"application": "voip", "frame_duration": str(ptime)}
            self._opus.open()

    def encode(self, pcm: Pcm) -> bytes:
        if self._opus is None:
            return self._encoder.encode(pcm)  # G.711: a table, any length
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = self.rate, self._pts
        self._pts += len(pcm)
        return b"".join(bytes(packet) for packet in self._opus.encode(frame))


def tone_amplitude(samples: Pcm, frequency: float) -> float:
    """The amplitude of ``frequency`` in the samples (one DFT bin, as Goertzel computes)."""
    n = np.arange(len(samples))
    basis = np.exp(-2j * np.pi * frequency * n / MIX_RATE)
    return float(2 * abs(np.dot(samples.astype(np.float64), basis)) / len(samples))


@dataclass
class Phone:
    key: str
    frequency: float | None
    """The tone it plays, None for silence."""
    codec_name: str = "pcmu"
    payload_type: int = 0
    mode: Mode = Mode.AUDIO
    ptime: int = 20
    """Milliseconds of audio per packet (20: through the mixer's own encoder, at 16 kHz)."""
    ssrc: int = 0
    sequence: int = 1000
    timestamp: int = 5000
    sent_frames: int = 0
    received: list[RtpPacket] = field(default_factory=list)
    rtcp: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.codec: AudioCodec = codec_for(self.codec_name, self.payload_type)
        self.encoder: AudioEncoder | PacketEncoder = AudioEncoder(self.codec)
        self.rate, self.samples = MIX_RATE, FRAME
        if self.ptime != 20:
            self.encoder = PacketEncoder(self.codec, self.ptime)
            self.rate, self.samples = self.encoder.rate, self.encoder.samples
        if not self.ssrc:
            self.ssrc = 0x1000 + sum(map(ord, self.key))

    def next_packet(self) -> RtpPacket:
        pcm = (
            tone(self.frequency, self.sent_frames * self.samples, self.samples, rate=self.rate)
            if self.frequency is not None
            else np.zeros(self.samples, dtype=np.int16)
        )
        packet = RtpPacket(
            payload_type=self.payload_type,
            sequence_number=self.sequence & 0xFFFF,
            timestamp=self.timestamp & 0xFFFFFFFF,
            ssrc=self.ssrc,
            payload=self.encoder.encode(pcm),
        )
        self.sent_frames += 1
        self.sequence += 1
        self.timestamp += self.codec.clock_rate * self.ptime // 1000
        return packet

    def take(self, packet: MediaPacket) -> None:
        if packet.rtcp:
            parse_rtcp(packet.data)  # well-formed
            self.rtcp.append(packet.data)
        else:
            self.received.append(RtpPacket.parse(packet.data))

    def decoded(self) -> Pcm:
        """Everything received, decoded in sequence order with a fresh decoder."""
        decoder = AudioDecoder(self.codec)
        parts = [decoder.decode(p.payload) for p in self.received]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


#: Called with (phone, packet, now): the packets to deliver (drop, reorder, duplicate).
Network = Callable[[Phone, RtpPacket, float], list[tuple[RtpPacket, float]]]


def perfect(phone: Phone, packet: RtpPacket, now: float) -> list[tuple[RtpPacket, float]]:
    return [(packet, now)]


def run(
    mixer: AudioMixer,
    phones: list[Phone],
    seconds: float,
    *,
    network: Network = perfect,
    start: float = 0.0,
    offset: float = 0.007,
    stalls: Sequence[tuple[float, float]] = (),
) -> float:
    """Phones send every ``ptime`` (from ``offset`` after the mixer's tick phase) through ``network``;
    the mixer's timer runs when due; its output goes to the phones.  Returns the end time.

    ``stalls``: windows ``[begin, end)`` in which the host runs nothing: what arrives
    or falls due in one is handled at its end, as asyncio's loop does it: each
    iteration reads one datagram per socket (phone), then calls the timer due.
    """

    def held(when: float) -> float:
        return next((end for begin, end in stalls if begin <= when < end), when)

    by_key = {phone.key: phone for phone in phones}
    in_flight: list[tuple[float, str, bytes]] = []
    read: set[str] = set()  # the phones read from in this loop iteration
    steps = round(seconds / 0.02)
    sent = dict.fromkeys(by_key, 0)  # packets each phone sent in this run
    now = start
    for step in range(steps):
        end = start + (step + 1) * 0.02 + offset
        for phone in phones:
            while phone.mode is not Mode.CHAT:
                send_at = start + sent[phone.key] * (phone.ptime / 1000) + offset
                if send_at >= end:
                    break
                sent[phone.key] += 1
                for packet, when in network(phone, phone.next_packet(), send_at):
                    in_flight.append((held(when), phone.key, bytes(packet)))
        in_flight.sort(key=lambda item: item[0])
        while True:
            timer = mixer.get_timer()
            due_packets = [item for item in in_flight if item[0] < end]
            next_arrival = due_packets[0][0] if due_packets else math.inf
            next_timer = held(timer) if timer is not None and held(timer) < end else math.inf
            if next_arrival is math.inf and next_timer is math.inf:
                break
            if next_arrival < next_timer or (
                next_arrival == next_timer and due_packets[0][1] not in read
            ):
                when, key, data = in_flight.pop(0)
                if when != now:
                    read.clear()
                read.add(key)
                now = when
                mixer.receive_datagram(key, data, now)
            else:
                read.clear()
                now = next_timer
                mixer.handle_timer(now)
                for out in mixer.packets_to_send():
                    by_key[out.participant].take(out)
    return now


def windows(samples: Pcm, skip_seconds: float = 1.0) -> list[Pcm]:
    start = int(skip_seconds * MIX_RATE)
    return [samples[i : i + WINDOW] for i in range(start, len(samples) - WINDOW + 1, WINDOW)]


def share_with_tone(samples: Pcm, frequency: float, threshold: float = 1000.0) -> float:
    """The share of 100 ms windows (after the first second) where the tone is present."""
    parts = windows(samples)
    assert parts, "nothing received"
    return sum(tone_amplitude(w, frequency) > threshold for w in parts) / len(parts)


def max_amplitude(samples: Pcm, frequency: float) -> float:
    return max(tone_amplitude(w, frequency) for w in windows(samples))
