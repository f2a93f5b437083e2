"""The built-in focus's N-1 audio mixer, sans-IO: packets and the time in, packets out.

Every participant that may speak (mode ``video`` or ``audio``) contributes;
every participant that may listen (``video``, ``audio``, ``watch``) receives
the mix of every speaker but itself, in its own codec, as one RTP stream
with its own SSRC and continuous sequence numbers and timestamps.  What a
``watch`` participant sends is dropped on arrival; ``chat`` has no media.

Three inputs, as in the rest of the core (aioquic's shape):

* :meth:`AudioMixer.receive_datagram` with a participant's RTP or RTCP
  (told apart as on a multiplexed port, RFC 5761) and the arrival time;
* :meth:`AudioMixer.handle_timer` at :meth:`AudioMixer.get_timer`, every
  20 ms: one frame, 20 ms of audio, is taken from every speaker's jitter
  buffer, from as many packets as that takes (10 ms to 120 ms each; decoded,
  or concealed: the last frame repeated, then faded), the mixes are encoded
  and sent; RTCP (SR + SDES) goes out every ``rtcp_interval``.  One tick
  per call: a timer that comes late finds :meth:`AudioMixer.get_timer`
  already past, and the caller reads what arrived meanwhile before it calls
  again, so a tick caught up never misses a packet that was only unread;
* the participants themselves: :meth:`AudioMixer.add`, :meth:`AudioMixer.update`
  (a re-INVITE), :meth:`AudioMixer.remove`.

Out come :meth:`AudioMixer.packets_to_send` (:class:`MediaPacket`: for whom,
the bytes, RTP or RTCP) and :meth:`AudioMixer.events` (levels per speaker,
source changes, refused packets).  Time is any monotonic clock in seconds;
``ntp_offset`` turns it into the wall clock of sender reports.

The mix rate follows the members unless ``MixerConfig.rate`` fixes it
(ConfBridge's ``internal_sample_rate = auto``): 8 kHz while every member
with audio is narrowband (G.711: no resampler at all), 16 kHz while one is
not, and back to 8 kHz when the last wideband member leaves, since a
conference pays three times the CPU at 16 kHz for nothing then.  A change
rebuilds the G.711 members' decoders and encoders at the new rate (the
wideband ones, which force 16 kHz, never change) and converts the few
samples queued; sequence numbers and timestamps go on, so a listener hears
no more than the new resamplers' delay as silence, about 3 ms.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..rtp import (
    SDES_CNAME,
    Bye,
    ReceiverReport,
    RtcpPacket,
    RtpPacket,
    RtpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_rtcp,
    is_rtcp,
    ntp_timestamp,
    parse_rtcp,
    seq_add,
)
from ..vocabulary import Mode
from .codecs import FRAME_MS, AudioCodec, AudioDecoder, AudioEncoder, Pcm, mix_rate_for, resample
from .jitter import Buffered, JitterBuffer, Push
from .reception import ReceptionStats

__all__ = [
    "AudioLevelMeasured",
    "AudioMixer",
    "MediaPacket",
    "MixerConfig",
    "MixerEvent",
    "PacketRefused",
    "SourceChanged",
    "audio_level",
]

#: RFC 6464: levels run 0 (loudest, 0 dBov) to 127 (-127 dBov and below: silence).
SILENT_LEVEL = 127


@dataclass(frozen=True, kw_only=True, slots=True)
class MixerConfig:
    """How the mixer runs; the defaults are what the focus uses."""

    tick: float = FRAME_MS / 1000
    """Seconds between mixes (one frame)."""
    rate: int | None = None
    """The sample rate the mix is made at, 16000 or 8000; None (the default): it follows
    the members (see the module docstring)."""
    rtcp_interval: float = 5.0
    """Seconds between the RTCP reports sent to each participant (RFC 3550's minimum)."""
    level_ticks: int = 5
    """Ticks over which an audio level is measured (5: every 100 ms)."""
    conceal_gains: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
    """Gain of the last frame repeated for each missing frame in a row; silence after."""
    max_lag: float = 0.2
    """A timer handled this late skips the missed ticks rather than bursting them out,
    and drops the frames they would have played."""
    late_tick: float = 0.005
    """A tick run this late is the mixer's or the host's delay: a packet it misses is not
    counted as the network's jitter (:meth:`JitterBuffer.pop`'s ``behind``)."""
    cname: bytes = b"vidim-focus"
    """The SDES CNAME of every stream the mixer sends."""
    record_delays: bool = False
    """Keep each played frame's wait (arrival to send) in :attr:`AudioMixer.delays` (bench)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MediaPacket:
    """A datagram for a participant: RTP, or RTCP (to its RTCP port unless it muxes)."""

    participant: str
    data: bytes
    rtcp: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class MixerEvent:
    """Base of the mixer's events."""

    participant: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AudioLevelMeasured(MixerEvent):
    """A speaker's level over the last ``level_ticks``, RFC 6464 style.

    Sent for every interval with sound, and once when the speaker falls silent.
    """

    level: int
    """-dBov, 0 (full scale) to 127 (silence)."""
    at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceChanged(MixerEvent):
    """A participant's audio now comes from a new SSRC (a re-INVITE, a restarted phone)."""

    old_ssrc: int | None
    new_ssrc: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PacketRefused(MixerEvent):
    """A datagram that is not well-formed RTP/RTCP was dropped; ``reason`` says why."""

    reason: str


def _power(pcm: Pcm) -> float:
    """Mean square of the samples."""
    return float(np.mean(np.square(pcm, dtype=np.float64))) if len(pcm) else 0.0


def _level_of_power(power: float) -> int:
    """RFC 6464 level: -dBov (0 dBov: a full-scale square wave), clamped to 0..127."""
    if power <= 0:
        return SILENT_LEVEL
    return max(0, min(SILENT_LEVEL, round(-10 * math.log10(power / 32768.0**2))))


def audio_level(pcm: Pcm) -> int:
    """RFC 6464 level of linear PCM: -dBov of its RMS, 0..127."""
    return _level_of_power(_power(pcm))


class _Input:
    """What one speaker sends: its jitter buffer, decoder, concealment and statistics."""

    def __init__(self, codec: AudioCodec, ssrc: int, rate: int) -> None:
        self.codec = codec
        self.ssrc = ssrc
        self.frame_samples = rate * FRAME_MS // 1000
        self.silence: Pcm = np.zeros(self.frame_samples, dtype=np.int16)
        self.buffer = JitterBuffer(frame_step=codec.timestamp_step)
        self.decoder = AudioDecoder(codec, rate)
        self.stats = ReceptionStats(ssrc, codec.clock_rate)
        self.queue: Pcm = np.zeros(0, dtype=np.int16)
        self.last: Pcm = self.silence
        self.missing = 0
        self.level_power = 0.0
        self.level_ticks = 0
        self.was_silent = True

    def change_rate(self, rate: int) -> None:
        """Decode at ``rate`` from now on; what is queued and the frame concealment
        repeats are converted, not lost."""
        old = self.decoder.rate
        self.decoder = AudioDecoder(self.codec, rate)
        self.frame_samples = rate * FRAME_MS // 1000
        self.silence = np.zeros(self.frame_samples, dtype=np.int16)
        self.queue = resample(self.queue, old, rate)
        last = resample(self.last, old, rate)[: self.frame_samples]
        self.last = np.concatenate([last, self.silence[len(last) :]])

    def next_frame(
        self, gains: tuple[float, ...], *, behind: bool
    ) -> tuple[Pcm | None, list[Buffered]]:
        """This tick's frame (None: silence) and the packets decoded for it (none if concealed).

        A frame is 20 ms of audio, from as many packets as that takes: two of
        10 ms, one of 20 ms, none while a longer packet's rest lasts (the
        samples past the frame wait in ``queue`` for the next tick).  When the
        packets fall short the tick conceals and what came waits for the next.
        ``behind``: the tick runs late (:meth:`JitterBuffer.pop`).
        """
        short = self.frame_samples - len(self.queue)
        need = -(-short * self.codec.timestamp_step // self.frame_samples)  # rounded up
        played = self.buffer.pop(need=need, behind=behind)
        if played:
            self.queue = np.concatenate([self.queue, *map(self._decode, played)])
        if len(self.queue) >= self.frame_samples:
            frame, self.queue = self.queue[: self.frame_samples], self.queue[self.frame_samples :]
            self.last, self.missing = frame, 0
            return frame, played
        # Nothing to play: repeat the last frame, fading, then silence.
        self.missing += 1
        if self.missing > len(gains):
            return None, []
        return (self.last * gains[self.missing - 1]).astype(np.int16), []

    def _decode(self, item: Buffered) -> Pcm:
        if item.packet.payload_type == self.codec.payload_type:
            return self.decoder.decode(item.packet.payload)
        return self.silence  # telephone-event, comfort noise: silence here


@dataclass(slots=True)
class _Output:
    """The stream the mixer sends one listener."""

    ssrc: int
    encoder: AudioEncoder
    sequence: int
    timestamp: int
    packets: int = 0
    octets: int = 0
    first: bool = True


class _Participant:
    __slots__ = ("codec", "input", "key", "mode", "next_rtcp", "output", "ssrc_hint")

    def __init__(self, key: str, mode: Mode, codec: AudioCodec, ssrc: int | None) -> None:
        self.key = key
        self.mode = mode
        self.codec = codec
        self.ssrc_hint = ssrc
        self.input: _Input | None = None
        self.output: _Output | None = None
        self.next_rtcp = 0.0


class AudioMixer:
    """The N-1 mixer of one conference (see the module docstring)."""

    def __init__(
        self,
        config: MixerConfig | None = None,
        *,
        ntp_offset: float = 0.0,
        random32: Callable[[], int] = lambda: secrets.randbits(32),
    ) -> None:
        self.config = config or MixerConfig()
        self._ntp_offset = ntp_offset
        self._random32 = random32
        self._participants: dict[str, _Participant] = {}
        self._next_tick: float | None = None
        self._to_send: list[MediaPacket] = []
        self._events: list[MixerEvent] = []
        self.rate = self.config.rate or mix_rate_for(())
        """The rate the mix is made at now (Hz)."""
        self.delays: list[float] = []
        """Seconds from a frame's arrival to the packet that carried it (``record_delays``)."""
        self.ticks_late = 0
        """Ticks skipped because the timer came more than ``max_lag`` late."""

    # -- participants --------------------------------------------------------------------

    def add(
        self, key: str, *, mode: Mode, codec: AudioCodec, now: float, ssrc: int | None = None
    ) -> None:
        """A participant joins with its mode, negotiated codec and (if its SDP said) SSRC."""
        if key in self._participants:
            raise ValueError(f"participant {key!r} is in the mixer already")
        participant = _Participant(key, mode, codec, ssrc)
        self._participants[key] = participant
        self._follow_rate()
        self._apply_mode(participant, now)
        if self._next_tick is None:
            self._next_tick = now + self.config.tick

    def update(self, key: str, *, mode: Mode, codec: AudioCodec, now: float) -> None:
        """A re-INVITE changed the participant's mode or codec (the focus checked the mode)."""
        participant = self._participants[key]
        if codec != participant.codec:
            participant.codec = codec
            participant.input = None
            if participant.output is not None:
                self._send_bye(participant)
                participant.output = None
        participant.mode = mode
        self._follow_rate()
        self._apply_mode(participant, now)

    def remove(self, key: str) -> None:
        """A participant left: its stream ends with an RTCP BYE."""
        participant = self._participants.pop(key)
        if participant.output is not None:
            self._send_bye(participant)
        if not self._participants:
            self._next_tick = None
        self._follow_rate()

    def __contains__(self, key: object) -> bool:
        return key in self._participants

    def reception(self, key: str) -> tuple[ReceptionStats, JitterBuffer] | None:
        """The statistics and jitter buffer of what the participant sends, if it speaks."""
        source = self._participants[key].input
        return (source.stats, source.buffer) if source is not None else None

    def _follow_rate(self) -> None:
        """Mix at the rate the members with audio need, unless the configuration fixes it."""
        if self.config.rate is not None:
            return
        members = self._participants.values()
        rate = mix_rate_for(p.codec for p in members if p.mode.has_audio)
        if rate == self.rate:
            return
        self.rate = rate
        for participant in members:
            if participant.input is not None:
                participant.input.change_rate(rate)
            if participant.output is not None:
                participant.output.encoder = AudioEncoder(participant.codec, rate)

    def _apply_mode(self, participant: _Participant, now: float) -> None:
        if not participant.mode.sends_media:
            participant.input = None
        if not participant.mode.has_audio:
            if participant.output is not None:
                self._send_bye(participant)
            participant.output = None
        elif participant.output is None:
            participant.output = _Output(
                ssrc=self._random32(),
                encoder=AudioEncoder(participant.codec, self.rate),
                sequence=self._random32() & 0xFFFF,
                timestamp=self._random32(),
            )
            # The first report half an interval in (RFC 3550 section 6.2's initial delay).
            participant.next_rtcp = now + self.config.rtcp_interval / 2

    # -- the three inputs ----------------------------------------------------------------

    def receive_datagram(self, key: str, data: bytes, now: float) -> None:
        """A datagram from a participant's RTP or RTCP port (or its one muxed port)."""
        participant = self._participants.get(key)
        if participant is None or not participant.mode.has_audio:
            return
        try:
            if is_rtcp(data):
                self._receive_rtcp(participant, parse_rtcp(data), now)
            else:
                self._receive_rtp(participant, RtpPacket.parse(data), now)
        except RtpParseError as error:
            self._events.append(PacketRefused(participant=key, reason=str(error)))

    def get_timer(self) -> float | None:
        """When to call :meth:`handle_timer` next (None: no participant)."""
        return self._next_tick

    def handle_timer(self, now: float) -> None:
        """Mix the tick due by ``now``, one per call: when :meth:`get_timer` is still
        past, read what arrived, then call again (the module docstring says why)."""
        tick = self.config.tick
        if self._next_tick is None or self._next_tick > now:
            return
        if now - self._next_tick > self.config.max_lag:
            missed = int((now - self._next_tick) / tick)
            self.ticks_late += missed
            self._next_tick += missed * tick
            for participant in self._participants.values():
                if participant.input is not None:  # their frames are dropped, not delay
                    participant.input.buffer.skip(missed)
        self._mix(now, behind=now - self._next_tick >= self.config.late_tick)
        self._send_reports(now)
        self._next_tick += tick

    def packets_to_send(self) -> list[MediaPacket]:
        """The datagrams produced since the last call, in order."""
        packets, self._to_send = self._to_send, []
        return packets

    def events(self) -> Iterator[MixerEvent]:
        """The events produced since the last call."""
        events, self._events = self._events, []
        yield from events

    # -- receiving -----------------------------------------------------------------------

    def _receive_rtp(self, participant: _Participant, packet: RtpPacket, now: float) -> None:
        if not participant.mode.sends_media:
            return  # watch: what it sends reaches nobody
        source = participant.input
        if source is None or source.ssrc != packet.ssrc:
            old = source.ssrc if source is not None else participant.ssrc_hint
            if old != packet.ssrc:
                self._events.append(
                    SourceChanged(participant=participant.key, old_ssrc=old, new_ssrc=packet.ssrc)
                )
            source = _Input(participant.codec, packet.ssrc, self.rate)
            participant.input = source
        source.stats.update(packet.sequence_number, packet.timestamp, now)
        if source.buffer.push(packet, now) is Push.RESTARTED:
            source.decoder = AudioDecoder(participant.codec, self.rate)
            source.queue = np.zeros(0, dtype=np.int16)

    def _receive_rtcp(
        self, participant: _Participant, packets: tuple[RtcpPacket, ...], now: float
    ) -> None:
        source = participant.input
        for packet in packets:
            if source is None:
                return
            if isinstance(packet, SenderReport) and packet.ssrc == source.ssrc:
                source.stats.sender_report_received(packet.ntp_timestamp, now)
            elif isinstance(packet, Bye) and source.ssrc in packet.ssrcs:
                participant.input = source = None

    # -- mixing --------------------------------------------------------------------------

    def _mix(self, now: float, *, behind: bool) -> None:
        gains = self.config.conceal_gains
        frames: dict[str, Pcm] = {}
        for participant in self._participants.values():
            source = participant.input
            if source is None:
                continue
            frame, played = source.next_frame(gains, behind=behind)
            if self.config.record_delays:
                self.delays.extend(now - item.arrival for item in played)
            self._measure(participant.key, source, frame, now)
            if frame is not None:
                frames[participant.key] = frame
        total = np.zeros(self.rate * FRAME_MS // 1000, dtype=np.int32)
        for frame in frames.values():
            total += frame
        for participant in self._participants.values():
            output = participant.output
            if output is None:
                continue
            own = frames.get(participant.key)
            mix = total - own if own is not None else total
            pcm = np.clip(mix, -32768, 32767).astype(np.int16)
            self._send_frame(participant, output, pcm)

    def _send_frame(self, participant: _Participant, output: _Output, pcm: Pcm) -> None:
        payload = output.encoder.encode(pcm)
        packet = RtpPacket(
            payload_type=participant.codec.payload_type,
            sequence_number=output.sequence,
            timestamp=output.timestamp,
            ssrc=output.ssrc,
            marker=output.first,
            payload=payload,
        )
        data = bytes(packet)
        self._to_send.append(MediaPacket(participant=participant.key, data=data))
        output.first = False
        output.sequence = seq_add(output.sequence, 1)
        output.timestamp = (output.timestamp + participant.codec.timestamp_step) & 0xFFFFFFFF
        output.packets += 1
        output.octets += len(payload)

    def _measure(self, key: str, source: _Input, frame: Pcm | None, now: float) -> None:
        """Add the frame to the speaker's level; report it every ``level_ticks``."""
        if frame is not None:
            source.level_power += _power(frame)
        source.level_ticks += 1
        if source.level_ticks < self.config.level_ticks:
            return
        power = source.level_power / source.level_ticks
        source.level_power, source.level_ticks = 0.0, 0
        level = _level_of_power(power)
        silent = level == SILENT_LEVEL
        if not (silent and source.was_silent):
            self._events.append(AudioLevelMeasured(participant=key, level=level, at=now))
        source.was_silent = silent

    # -- RTCP ----------------------------------------------------------------------------

    def _send_reports(self, now: float) -> None:
        for participant in self._participants.values():
            output = participant.output
            if output is None or now < participant.next_rtcp:
                continue
            participant.next_rtcp = now + self.config.rtcp_interval
            source = participant.input
            blocks = (source.stats.report_block(now),) if source is not None else ()
            report: RtcpPacket = SenderReport(
                ssrc=output.ssrc,
                ntp_timestamp=ntp_timestamp(now + self._ntp_offset),
                rtp_timestamp=output.timestamp,
                packet_count=output.packets & 0xFFFFFFFF,
                octet_count=output.octets & 0xFFFFFFFF,
                reports=blocks,
            )
            if output.packets == 0:
                report = ReceiverReport(ssrc=output.ssrc, reports=blocks)
            self._to_send.append(
                MediaPacket(
                    participant=participant.key,
                    data=build_rtcp([report, self._sdes(output.ssrc)]),
                    rtcp=True,
                )
            )

    def _sdes(self, ssrc: int) -> SourceDescription:
        return SourceDescription(
            chunks=(SdesChunk(ssrc=ssrc, items=((SDES_CNAME, self.config.cname),)),)
        )

    def _send_bye(self, participant: _Participant) -> None:
        output = participant.output
        assert output is not None
        report = ReceiverReport(ssrc=output.ssrc)
        data = build_rtcp([report, self._sdes(output.ssrc), Bye(ssrcs=(output.ssrc,))])
        self._to_send.append(MediaPacket(participant=participant.key, data=data, rtcp=True))
