"""Audio codecs behind two small interfaces: decode to linear PCM, encode from it.

The mixer works on 16-bit mono linear PCM at one internal rate
(:data:`MIX_RATE`, 16 kHz: G.722's and wideband Opus's); each participant's
codec is wrapped in an :class:`AudioDecoder` (payload -> PCM at the mix rate)
and an :class:`AudioEncoder` (one frame of PCM at the mix rate -> payload).
The codecs and the resampling are FFmpeg's, through PyAV (``av``); nothing is
coded by hand (docs/packages.md says why this library).

Both are stateful (Opus predicts, resamplers filter across frames): a stream
has its own decoder, a receiver its own encoder.  A decoder may return any
number of samples (a resampler's first output is short, a 10 ms packet is
half a frame): the mixer queues them.

Supported (:data:`CODECS`): PCMU and PCMA (RFC 3551), G.722 (its RTP clock
says 8000 though it samples at 16 kHz, RFC 3551 section 4.5.2) and Opus
(RFC 7587: ``opus/48000/2`` whatever the audio; decoded to mono).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, cast

import av
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext

__all__ = [
    "CODECS",
    "FRAME_MS",
    "MIX_RATE",
    "AudioCodec",
    "AudioDecoder",
    "AudioEncoder",
    "Pcm",
    "UnsupportedCodecError",
    "codec_for",
]

#: The mixer's internal sample rate (Hz).
MIX_RATE = 16000
#: One packet's worth of audio, the mixer's tick (ms).
FRAME_MS = 20

#: Linear 16-bit mono PCM.
Pcm = npt.NDArray[np.int16]


class UnsupportedCodecError(ValueError):
    """A codec name the mixer cannot decode or encode."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AudioCodec:
    """What the mixer needs to know of a negotiated audio codec."""

    name: str
    """Lower-case SDP encoding name: ``pcmu``, ``pcma``, ``g722``, ``opus``."""
    payload_type: int
    """The payload type this participant negotiated for it."""
    clock_rate: int
    """The RTP clock rate from the SDP (timestamps count in it)."""
    sample_rate: int
    """The rate the codec's samples really have (16000 for G.722)."""
    ffmpeg_decoder: str
    ffmpeg_encoder: str

    @property
    def timestamp_step(self) -> int:
        """RTP timestamp units in one frame."""
        return self.clock_rate * FRAME_MS // 1000


_KNOWN = {
    "pcmu": (8000, 8000, "pcm_mulaw", "pcm_mulaw"),
    "pcma": (8000, 8000, "pcm_alaw", "pcm_alaw"),
    "g722": (8000, 16000, "g722", "g722"),
    "opus": (48000, 48000, "libopus", "libopus"),
}

#: Names of the codecs the mixer supports.
CODECS = frozenset(_KNOWN)


def codec_for(name: str, payload_type: int) -> AudioCodec:
    """The :class:`AudioCodec` of an SDP encoding name (case-insensitive)."""
    key = name.lower()
    if key not in _KNOWN:
        raise UnsupportedCodecError(f"the mixer has no {name} codec (it has {sorted(CODECS)})")
    clock, rate, decoder, encoder = _KNOWN[key]
    return AudioCodec(
        name=key,
        payload_type=payload_type,
        clock_rate=clock,
        sample_rate=rate,
        ffmpeg_decoder=decoder,
        ffmpeg_encoder=encoder,
    )


def _audio_context(name: str, mode: Literal["r", "w"]) -> AudioCodecContext:
    """An FFmpeg codec context, typed as the audio one it is (the name comes from our table)."""
    return cast(AudioCodecContext, av.CodecContext.create(name, mode))


def _resample_all(resampler: av.AudioResampler, frames: list[av.AudioFrame]) -> Pcm:
    """Every frame through the resampler (mono s16 at its rate), as one array."""
    parts = [out.to_ndarray().reshape(-1) for frame in frames for out in resampler.resample(frame)]
    if not parts:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(parts).astype(np.int16, copy=False)


class AudioDecoder:
    """One incoming stream's decoder: RTP payloads to PCM at :data:`MIX_RATE`."""

    def __init__(self, codec: AudioCodec) -> None:
        self.codec = codec
        self._context = _audio_context(codec.ffmpeg_decoder, "r")
        self._context.sample_rate = codec.sample_rate
        self._context.layout = "mono"
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=MIX_RATE)

    def decode(self, payload: bytes) -> Pcm:
        """The payload's samples (any count, maybe none); a corrupt payload gives none."""
        try:
            frames = self._context.decode(av.Packet(payload))
        except (av.FFmpegError, ValueError):
            return np.zeros(0, dtype=np.int16)
        return _resample_all(self._resampler, frames)


class AudioEncoder:
    """One outgoing stream's encoder: 20 ms frames of PCM at :data:`MIX_RATE` to payloads."""

    def __init__(self, codec: AudioCodec, *, bit_rate: int = 32000) -> None:
        self.codec = codec
        context = _audio_context(codec.ffmpeg_encoder, "w")
        context.sample_rate = codec.sample_rate
        context.format = "s16"
        context.layout = "mono"
        context.time_base = Fraction(1, codec.sample_rate)
        if codec.name == "opus":
            context.bit_rate = bit_rate
            context.options = {"application": "voip", "frame_duration": str(FRAME_MS)}
        context.open()
        self._context = context
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=codec.sample_rate)
        self._frame_samples = codec.sample_rate * FRAME_MS // 1000
        self._queue = np.zeros(0, dtype=np.int16)
        self._pts = 0

    def encode(self, pcm: Pcm) -> bytes:
        """One frame (``MIX_RATE * FRAME_MS / 1000`` samples) to one RTP payload.

        The resampler's first output is short: the queue is primed with
        silence so that every call still yields exactly one frame.
        """
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = MIX_RATE
        queue = np.concatenate([self._queue, _resample_all(self._resampler, [frame])])
        if len(queue) < self._frame_samples:
            queue = np.concatenate([np.zeros(self._frame_samples - len(queue), np.int16), queue])
        chunk, self._queue = queue[: self._frame_samples], queue[self._frame_samples :]
        out = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        out.sample_rate = self.codec.sample_rate
        out.pts = self._pts
        out.time_base = Fraction(1, self.codec.sample_rate)
        self._pts += self._frame_samples
        return b"".join(bytes(packet) for packet in self._context.encode(out))
