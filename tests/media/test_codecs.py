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
