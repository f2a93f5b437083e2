"""Audio codecs behind two small interfaces: decode to linear PCM, encode from it.

The mixer works on 16-bit mono linear PCM at one internal rate
(:data:`MIX_RATE`, 16 kHz: G.722's and wideband Opus's, or 8 kHz for a
conference of G.711 phones only, :func:`mix_rate_for`); each participant's
codec is wrapped in an :class:`AudioDecoder` (payload -> PCM at the mix rate)
and an :class:`AudioEncoder` (one frame of PCM at the mix rate -> payload).
The codecs and the resampling are FFmpeg's, through PyAV (``av``); nothing is
coded by hand (docs/packages.md says why this library).  G.711 runs through
two lookup tables filled once by FFmpeg's own G.711 coder.

Both are stateful (Opus predicts, resamplers filter across frames): a stream
has its own decoder, a receiver its own encoder.  A decoder returns as many
samples as the payload holds (a 10 ms packet is half a frame, a 60 ms one
three): the mixer queues them.  A resampler's first output is short by its
delay: the decoder pads it with silence in front, so that the samples out
always match the audio in and a 10 ms packet gives half a frame from the first.

Supported (:data:`CODECS`): PCMU and PCMA (RFC 3551), G.722 (its RTP clock
says 8000 though it samples at 16 kHz, RFC 3551 section 4.5.2) and Opus
(RFC 7587: ``opus/48000/2`` whatever the audio; decoded to mono).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
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
    "mix_rate_for",
    "resample",
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
    """The rate the encoder takes samples at (16000 for G.722 and for Opus)."""
    ffmpeg_decoder: str
    ffmpeg_encoder: str
    max_bit_rate: int | None = None
    """The most bits a second the receiver takes (Opus ``maxaveragebitrate``); None: ours."""

    @property
    def timestamp_step(self) -> int:
        """RTP timestamp units in one frame."""
        return self.clock_rate * FRAME_MS // 1000


_KNOWN = {
    "pcmu": (8000, 8000, "pcm_mulaw", "pcm_mulaw"),
    "pcma": (8000, 8000, "pcm_alaw", "pcm_alaw"),
    "g722": (8000, 16000, "g722", "g722"),
    # Encoded from 16 kHz (wideband: voice needs no more, and libopus takes it
    # without a resampler); FFmpeg's libopus decoder always gives 48 kHz.
    "opus": (48000, 16000, "libopus", "libopus"),
}

#: Names of the codecs the mixer supports.
CODECS = frozenset(_KNOWN)
#: The two G.711 laws: run through lookup tables taken from FFmpeg.
G711 = frozenset({"pcmu", "pcma"})


def codec_for(name: str, payload_type: int, *, max_bit_rate: int | None = None) -> AudioCodec:
    """The :class:`AudioCodec` of an SDP encoding name (case-insensitive); ``max_bit_rate``:
    the most the receiver said it takes (only Opus's encoder has a rate to lower)."""
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
        max_bit_rate=max_bit_rate,
    )


def mix_rate_for(codecs: Iterable[AudioCodec]) -> int:
    """The rate to mix a conference at: 8 kHz when every codec in it is narrowband
    (G.711: no resampling at all), else :data:`MIX_RATE` (as ConfBridge's
    ``internal_sample_rate = auto`` follows its participants)."""
    return 8000 if all(codec.sample_rate == 8000 for codec in codecs) else MIX_RATE


def _audio_context(name: str, mode: Literal["r", "w"]) -> AudioCodecContext:
    """An FFmpeg codec context, typed as the audio one it is (the name comes from our table)."""
    return cast(AudioCodecContext, av.CodecContext.create(name, mode))


def _resample_all(resampler: av.AudioResampler, frames: Iterable[av.AudioFrame | None]) -> Pcm:
    """Every frame through the resampler (mono s16 at its rate), as one array (None: flush)."""
    parts = [out.to_ndarray().reshape(-1) for frame in frames for out in resampler.resample(frame)]
    if not parts:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(parts).astype(np.int16, copy=False)


def _frame(pcm: Pcm, rate: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    return frame


def resample(pcm: Pcm, rate: int, to_rate: int) -> Pcm:
    """A piece of PCM at another rate, whole: a one-off resampler, flushed (for a mixer
    that changes its rate, with less than a frame on hand)."""
    if rate == to_rate or not len(pcm):
        return pcm
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    return _resample_all(resampler, [_frame(pcm, rate), None])


@functools.cache
def _g711_tables(ffmpeg_name: str) -> tuple[Pcm, npt.NDArray[np.uint8]]:
    """FFmpeg's own G.711 as two lookup tables: code -> sample (256), sample -> code (65536).

    G.711 is a fixed mapping of each sample: running it through a table is
    the codec itself, ten times cheaper than a call into FFmpeg per frame.
    """
    decoder = _audio_context(ffmpeg_name, "r")
    decoder.sample_rate, decoder.layout = 8000, "mono"
    codes = bytes(range(256))
    decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in decoder.decode(av.Packet(codes))])
    encoder = _audio_context(ffmpeg_name, "w")
    encoder.sample_rate, encoder.format, encoder.layout = 8000, "s16", "mono"
    encoder.time_base = Fraction(1, 8000)
    encoder.open()
    every_sample = np.arange(-32768, 32768, dtype=np.int16)
    encoded = b"".join(bytes(p) for p in encoder.encode(_frame(every_sample, 8000)))
    return decoded.astype(np.int16), np.frombuffer(encoded, dtype=np.uint8)


class AudioDecoder:
    """One incoming stream's decoder: RTP payloads to PCM at ``rate`` (the mixer's)."""

    def __init__(self, codec: AudioCodec, rate: int = MIX_RATE) -> None:
        self.codec = codec
        self.rate = rate
        self._table: Pcm | None = None
        self._context: AudioCodecContext | None = None
        if codec.name in G711:
            self._table = _g711_tables(codec.ffmpeg_decoder)[0]
        else:
            self._context = _audio_context(codec.ffmpeg_decoder, "r")
            self._context.sample_rate = codec.sample_rate
            self._context.layout = "mono"
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        self._primed = False

    def decode(self, payload: bytes) -> Pcm:
        """The payload's samples at ``rate``; a corrupt payload gives none."""
        if self._table is not None:
            pcm = self._table[np.frombuffer(payload, dtype=np.uint8)]
            if self.rate == self.codec.sample_rate or not len(pcm):  # (FFmpeg refuses 0)
                return pcm
            resampled = _resample_all(self._resampler, [_frame(pcm, self.codec.sample_rate)])
            return self._prime(resampled, len(pcm), self.codec.sample_rate)
        assert self._context is not None
        try:
            frames = self._context.decode(av.Packet(payload))
        except (av.FFmpegError, ValueError):
            return np.zeros(0, dtype=np.int16)
        resampled = _resample_all(self._resampler, frames)
        if not frames:
            return resampled
        return self._prime(resampled, sum(f.samples for f in frames), frames[0].sample_rate)

    def _prime(self, pcm: Pcm, samples_in: int, rate_in: int) -> Pcm:
        """The first output padded in front to the length of the audio in (the
        resampler keeps its delay's worth back); later ones as they are."""
        if self._primed or not samples_in:
            return pcm
        self._primed = True
        short = samples_in * self.rate // rate_in - len(pcm)
        return np.concatenate([np.zeros(short, dtype=np.int16), pcm]) if short > 0 else pcm


class AudioEncoder:
    """One outgoing stream's encoder: 20 ms frames of PCM at ``rate`` to RTP payloads."""

    def __init__(self, codec: AudioCodec, rate: int = MIX_RATE, *, bit_rate: int = 32000) -> None:
        self.codec = codec
        self.rate = rate
        self._table: npt.NDArray[np.uint8] | None = None
        self._context: AudioCodecContext | None = None
        if codec.name in G711:
            self._table = _g711_tables(codec.ffmpeg_encoder)[1]
        else:
            context = _audio_context(codec.ffmpeg_encoder, "w")
            context.sample_rate = codec.sample_rate
            context.format = "s16"
            context.layout = "mono"
            context.time_base = Fraction(1, codec.sample_rate)
            if codec.name == "opus":
                # Constrained VBR: libopus's plain VBR sent 50 kbit/s for a 32 kbit/s
                # target on a steady tone.  A receiver's maxaveragebitrate (RFC 7587 6.1)
                # gets CBR at that rate (CVBR still overshot 12 kbit/s by 10 %);
                # libopus's floor is 6 kbit/s.
                limit = codec.max_bit_rate
                context.bit_rate = max(6000, min(bit_rate, limit)) if limit else bit_rate
                context.options = {
                    "application": "voip",
                    "frame_duration": str(FRAME_MS),
                    "vbr": "off" if limit else "constrained",
                }
            context.open()
            self._context = context
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=codec.sample_rate)
        self._frame_samples = codec.sample_rate * FRAME_MS // 1000
        self._queue = np.zeros(0, dtype=np.int16)
        self._pts = 0

    def encode(self, pcm: Pcm) -> bytes:
        """One frame (``rate * FRAME_MS / 1000`` samples) to one RTP payload."""
        chunk = pcm if self.rate == self.codec.sample_rate else self._resample(pcm)
        if self._table is not None:
            return self._table[chunk.astype(np.int32) + 32768].tobytes()
        assert self._context is not None
        out = _frame(chunk, self.codec.sample_rate)
        out.pts = self._pts
        self._pts += self._frame_samples
        return b"".join(bytes(packet) for packet in self._context.encode(out))

    def _resample(self, pcm: Pcm) -> Pcm:
        """One frame at the codec's rate.  The resampler's first output is short: the
        queue is primed with silence so that every call still yields one whole frame."""
        queue = np.concatenate(
            [self._queue, _resample_all(self._resampler, [_frame(pcm, self.rate)])]
        )
        if len(queue) < self._frame_samples:
            queue = np.concatenate([np.zeros(self._frame_samples - len(queue), np.int16), queue])
        chunk, self._queue = queue[: self._frame_samples], queue[self._frame_samples :]
        return chunk
