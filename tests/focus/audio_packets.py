"""PCMU RTP packets for tests of the mixed audio: a tone in, and how loud what came out is."""

from __future__ import annotations

import numpy as np

from vidim.focus.codecs import AudioDecoder, AudioEncoder, codec_for
from vidim.rtp import RtpPacket, RtpParseError

PCMU = codec_for("pcmu", 0)
#: RMS above which decoded audio counts as sound (a full-scale tone is ~23000).
LOUD = 2000.0


def tone_packet(sequence: int, *, ssrc: int, frequency: float = 440.0) -> bytes:
    """20 ms of a loud sine tone as a PCMU RTP packet (sequence ``sequence``)."""
    t = (np.arange(160) + 160 * sequence) / 8000
    pcm = (20000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
    payload = AudioEncoder(PCMU, 8000).encode(pcm)
    packet = RtpPacket(
        payload_type=0,
        sequence_number=sequence & 0xFFFF,
        timestamp=(160 * sequence) & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=payload,
    )
    return bytes(packet)


def loudness(data: bytes) -> float:
    """RMS of a PCMU RTP datagram's audio; 0 for anything else (RTCP, another codec)."""
    try:
        packet = RtpPacket.parse(data)
    except RtpParseError:
        return 0.0
    if packet.payload_type != 0 or not packet.payload:
        return 0.0
    pcm = AudioDecoder(PCMU, 8000).decode(packet.payload).astype(np.float64)
    return float(np.sqrt(np.mean(np.square(pcm))))


def is_loud(data: bytes) -> bool:
    return loudness(data) > LOUD
