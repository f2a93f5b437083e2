"""The codec wrappers: names, clock rates, and what a bad payload gives."""

from __future__ import annotations

import numpy as np
import pytest

from vidim.focus.codecs import (
    MIX_RATE,
    AudioDecoder,
    AudioEncoder,
    UnsupportedCodecError,
    codec_for,
    mix_rate_for,
)


@pytest.mark.parametrize(
    ("name", "clock", "step", "payload_bytes"),
    [
        ("PCMU", 8000, 160, 160),
        ("pcma", 8000, 160, 160),
        ("G722", 8000, 160, 160),
        ("opus", 48000, 960, None),
    ],
)
def test_each_codec_frames_20_ms(
    name: str, clock: int, step: int, payload_bytes: int | None
) -> None:
    codec = codec_for(name, 96)
    assert (codec.clock_rate, codec.timestamp_step) == (clock, step)
    payload = AudioEncoder(codec).encode(np.zeros(MIX_RATE // 50, dtype=np.int16))
    if payload_bytes is not None:
        assert len(payload) == payload_bytes
    else:
        assert 0 < len(payload) < 200


def test_an_unknown_codec_is_named() -> None:
    with pytest.raises(UnsupportedCodecError, match="speex"):
        codec_for("speex", 97)


def test_a_corrupt_opus_payload_decodes_to_nothing_rather_than_raising() -> None:
    decoder = AudioDecoder(codec_for("opus", 111))
    assert len(decoder.decode(b"\xff" * 3)) == 0
    assert len(decoder.decode(b"")) == 0


@pytest.mark.parametrize("name", ["pcmu", "pcma"])
def test_the_g711_tables_code_exactly_as_ffmpeg(name: str) -> None:
    """The table path against FFmpeg's coder itself (through the Opus-style path's API)."""
    from fractions import Fraction

    import av

    samples = np.random.default_rng(1).integers(-32768, 32768, 160).astype(np.int16)
    encoder = av.CodecContext.create(f"pcm_{'mulaw' if name == 'pcmu' else 'alaw'}", "w")
    encoder.sample_rate, encoder.format, encoder.layout = 8000, "s16", "mono"  # type: ignore[attr-defined]
    encoder.time_base = Fraction(1, 8000)
    encoder.open()
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    expected = b"".join(bytes(p) for p in encoder.encode(frame))  # type: ignore[attr-defined]
    assert AudioEncoder(codec_for(name, 0), 8000).encode(samples) == expected


def test_the_mix_rate_follows_the_widest_codec() -> None:
    assert mix_rate_for([codec_for("pcmu", 0), codec_for("pcma", 8)]) == 8000
    assert mix_rate_for([codec_for("pcmu", 0), codec_for("g722", 9)]) == MIX_RATE
    assert mix_rate_for([codec_for("opus", 111)]) == MIX_RATE


def test_opus_stays_under_the_receivers_maxaveragebitrate() -> None:
    """RFC 7587 6.1: the encoder to a phone that offered maxaveragebitrate=12000 keeps to it."""
    t = np.arange(MIX_RATE * 2) / MIX_RATE  # two seconds of a voice-like chord
    pcm = (6000 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 1330 * t))).astype(np.int16)
    frames = np.split(pcm, 100)  # 20 ms each

    def bits_a_second(encoder: AudioEncoder) -> float:
        sizes = [len(encoder.encode(frame)) for frame in frames]
        return sum(sizes[25:]) * 8 / (len(sizes[25:]) * 0.02)  # after the encoder settled

    default = bits_a_second(AudioEncoder(codec_for("opus", 111)))
    limited = bits_a_second(AudioEncoder(codec_for("opus", 111, max_bit_rate=12000)))
    assert limited <= 12000
    assert 20000 < default <= 32000 * 1.05  # constrained VBR: near its 32 kbit/s target
