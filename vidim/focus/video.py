"""The built-in focus's video switch, sans-IO: follow the talker.

Every participant that may receive video (mode ``video`` or ``watch``) gets
one video stream from the focus: the active speaker's, or, for the speaker
itself, the previous speaker's (:mod:`.talker` decides who that is, from
the mixer's audio levels).  Video is forwarded, not transcoded: the packets
of the source are sent on with the receiver's payload type and rewritten
SSRC, sequence numbers and timestamps, so that across switches the receiver
sees one continuous stream (the sequence goes on by one, the timestamp jumps
by the time that passed, at least one frame at ``max_frame_rate``, VP8's
PictureID and TL0PICIDX go on by one: :mod:`.vp8`).

A switch waits for a keyframe (:mod:`.keyframes`): when a receiver's source
is to change, the new source is asked for one (RTCP FIR and/or PLI if it
negotiated them, else a :class:`PictureFastUpdateWanted` event for the
signalling to send SIP INFO, RFC 5168), the old source's packets go on
being forwarded, and the receiver is switched at the first packet of the
new source's keyframe.  A request not answered within ``keyframe_retry``
is repeated, at doubling intervals up to ``keyframe_retry_max`` (an RTCP
FIR repeated keeps its sequence number, RFC 5104 section 4.3.1.2).  A PLI
or FIR from a receiver is passed on the same way to its source, at most
once per ``keyframe_retry``.  Each receiver's
stream gets an RTCP sender report every ``rtcp_interval``.

Modes, on media: ``audio`` and ``chat`` get no video and their video is
dropped; ``watch`` gets video and what it sends is dropped; only ``video``
participants become a source.

Inputs, as in the mixer: :meth:`VideoSwitch.receive_datagram` (RTP or
RTCP, RFC 5761 demux), :meth:`VideoSwitch.audio_level` (the mixer's
:class:`~vidim.focus.mixer.AudioLevelMeasured`), the participants
(:meth:`VideoSwitch.add`, :meth:`VideoSwitch.update`,
:meth:`VideoSwitch.remove`) and :meth:`VideoSwitch.handle_timer` at
:meth:`VideoSwitch.get_timer`.  Out come :meth:`VideoSwitch.packets_to_send`
(:class:`~vidim.focus.mixer.MediaPacket`) and :meth:`VideoSwitch.events`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

from ..rtp import (
    SDES_CNAME,
    FirEntry,
    FullIntraRequest,
    PictureLossIndication,
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
    seq_diff,
)
from ..sdp import Codec
from ..vocabulary import Mode
from .keyframes import KeyframeFeedback, starts_keyframe
from .mixer import MediaPacket, PacketRefused
from .talker import ActiveSpeaker, SpeakerConfig
from .vp8 import Vp8Counters, read_counters, with_counters

__all__ = [
    "KeyframeRequested",
    "PictureFastUpdateWanted",
    "TalkerChanged",
    "VideoConfig",
    "VideoEvent",
    "VideoSourceChanged",
    "VideoSwitch",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class VideoConfig:
    """How the switch runs; the defaults are what the focus uses."""

    speaker: SpeakerConfig = field(default_factory=SpeakerConfig)
    """Who the speaker is: hysteresis (1.5 s), the level of speech."""
    keyframe_retry: float = 1.0
    """Seconds before an unanswered keyframe request is sent again; doubled at each repeat
    up to ``keyframe_retry_max`` (a phone that ignores requests is not asked every second)."""
    keyframe_retry_max: float = 8.0
    """The longest interval between repeats of an unanswered keyframe request."""
    max_frame_rate: int = 30
    """The timestamp jump at a switch is at least one frame at this rate."""
    cname: bytes = b"vidim-focus"
    """The SDES CNAME in the focus's RTCP (a compound packet carries one, RFC 3550 6.1);
    the mixer's, so that a phone can pair the video it gets with the mix (lip sync)."""
    rtcp_interval: float = 5.0
    """Seconds between the sender reports on each receiver's stream (the first after half)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class VideoEvent:
    """Base of the video switch's events."""

    participant: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TalkerChanged(VideoEvent):
    """``participant`` is the new speaker; ``previous`` spoke before it."""

    previous: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class VideoSourceChanged(VideoEvent):
    """The receiver ``participant`` now gets ``source``'s video (None: no video)."""

    source: str | None
    previous: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyframeRequested(VideoEvent):
    """An RTCP FIR and/or PLI asking ``participant`` for a keyframe is in the packets to send."""

    fir_sequence: int | None
    """The FIR command sequence number, None when only a PLI was sent."""
    repeated: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class PictureFastUpdateWanted(VideoEvent):
    """Ask ``participant`` for a keyframe by SIP INFO (RFC 5168): it negotiated no RTCP feedback.

    The signalling sends an INFO in its dialog with
    :func:`~vidim.focus.keyframes.picture_fast_update_body` as
    :data:`~vidim.focus.keyframes.MEDIA_CONTROL_TYPE`.
    """

    repeated: bool


#: How far behind the newest a late packet of the source may come and still be sent on.
_REORDER_WINDOW = 1000


class _Output:
    """The one video stream sent to a receiver, and where it comes from."""

    __slots__ = (
        "base_seq",
        "last_picture_id",
        "last_seq",
        "last_time",
        "last_tl0",
        "last_ts",
        "next_report",
        "octets",
        "packets",
        "pending",
        "picture_offset",
        "seq_offset",
        "source",
        "ssrc",
        "tl0_offset",
        "ts_offset",
    )

    def __init__(self, ssrc: int, first_seq: int, first_ts: int) -> None:
        self.ssrc = ssrc
        self.source: str | None = None
        """The participant whose packets are forwarded now."""
        self.pending: str | None = None
        """The participant to switch to at its next keyframe."""
        self.seq_offset = 0
        self.ts_offset = 0
        self.base_seq = 0
        """No packet of the source numbered before this is forwarded: the switch's first,
        then (as the stream goes on) :data:`_REORDER_WINDOW` behind the newest."""
        # The highest packet sent; before the first, the numbers to start from.
        self.last_seq = seq_add(first_seq, -1)
        self.last_ts = first_ts
        self.last_time: float | None = None
        self.packets = 0
        self.octets = 0
        self.next_report: float | None = None
        """When the next sender report is due (None: nothing sent yet)."""
        # VP8's own counters (:mod:`.vp8`), continued across switches like the sequence.
        self.picture_offset = 0
        self.tl0_offset = 0
        self.last_picture_id: int | None = None
        self.last_tl0: int | None = None


class _Member:
    __slots__ = (
        "codec",
        "feedback",
        "fir_sequence",
        "key",
        "last_request",
        "local_ssrc",
        "mode",
        "output",
        "requested_at",
        "retry_in",
        "ssrc",
    )

    def __init__(
        self,
        key: str,
        mode: Mode,
        codec: Codec | None,
        feedback: KeyframeFeedback,
        ssrc: int | None,
        local_ssrc: int,
    ) -> None:
        self.key = key
        self.mode = mode
        self.codec = codec
        self.feedback = feedback
        self.ssrc = ssrc
        """The SSRC of the video it sends (its SDP's, or the last packet's)."""
        self.local_ssrc = local_ssrc
        """The focus's SSRC in RTCP to it when it gets no video stream from us."""
        self.output: _Output | None = None
        self.requested_at: float | None = None
        """When a keyframe was last asked of it, while unanswered."""
        self.retry_in = 0.0
        """How long after ``requested_at`` the request is repeated."""
        self.fir_sequence = 0
        self.last_request: float | None = None
        """When a keyframe was last asked of it (receivers' requests are limited by it)."""

    @property
    def sends_video(self) -> bool:
        return self.mode is Mode.VIDEO and self.codec is not None

    @property
    def receives_video(self) -> bool:
        return self.mode.has_video and self.codec is not None


class VideoSwitch:
    """The follow-the-talker video switch of one conference (see the module docstring)."""

    def __init__(
        self,
        config: VideoConfig | None = None,
        *,
        ntp_offset: float = 0.0,
        random32: Callable[[], int] = lambda: secrets.randbits(32),
    ) -> None:
        self.config = config or VideoConfig()
        self._ntp_offset = ntp_offset
        self._random32 = random32
        self._members: dict[str, _Member] = {}
        self._talker = ActiveSpeaker(self.config.speaker)
        self._to_send: list[MediaPacket] = []
        self._events: list[VideoEvent | PacketRefused] = []

    # -- participants --------------------------------------------------------------------

    def add(
        self,
        key: str,
        *,
        mode: Mode,
        codec: Codec | None,
        feedback: KeyframeFeedback,
        now: float,
        ssrc: int | None = None,
    ) -> None:
        """A participant joins: its mode, its negotiated video codec (None: no video stream),
        the keyframe feedback it negotiated and (if its SDP said) its video SSRC."""
        if key in self._members:
            raise ValueError(f"participant {key!r} is in the video switch already")
        member = _Member(key, mode, codec, feedback, ssrc, self._random32())
        self._members[key] = member
        self._apply_mode(member, now)

    def update(
        self,
        key: str,
        *,
        mode: Mode,
        codec: Codec | None,
        feedback: KeyframeFeedback,
        now: float,
    ) -> None:
        """A re-INVITE changed the mode, codec or feedback (the focus checked the mode)."""
        member = self._members[key]
        member.mode, member.codec, member.feedback = mode, codec, feedback
        self._apply_mode(member, now)

    def remove(self, key: str, now: float) -> None:
        """A participant left: whoever watched it switches to the next in line."""
        self._members.pop(key)
        self._talker.remove(key)
        for member in self._members.values():
            output = member.output
            if output is not None and output.source == key:
                output.source = None
                self._events.append(
                    VideoSourceChanged(participant=member.key, source=None, previous=key)
                )
        self._assign(now)

    def __contains__(self, key: object) -> bool:
        return key in self._members

    @property
    def speaker(self) -> str | None:
        """The active speaker, whose video everyone else is shown."""
        return self._talker.speaker

    def source_of(self, key: str) -> str | None:
        """Whose video the receiver ``key`` gets now (before a pending switch's keyframe)."""
        output = self._members[key].output
        return output.source if output is not None else None

    def _apply_mode(self, member: _Member, now: float) -> None:
        self._talker.set_mode(member.key, member.mode, video_stream=member.codec is not None)
        if not member.receives_video:
            member.output = None
        elif member.output is None:
            member.output = _Output(self._random32(), self._random32(), self._random32())
        self._assign(now)

    # -- the inputs ----------------------------------------------------------------------

    def audio_level(self, key: str, level: int, now: float) -> None:
        """A participant's audio level (RFC 6464 -dBov), as the mixer measured it."""
        if self._talker.level(key, level, now):
            self._speaker_changed(now)

    def receive_datagram(self, key: str, data: bytes, now: float) -> None:
        """A datagram from a participant's video RTP or RTCP port (or its one muxed port)."""
        member = self._members.get(key)
        if member is None or not member.receives_video:
            return  # audio, chat: no video either way
        try:
            if is_rtcp(data):
                self._receive_rtcp(member, parse_rtcp(data), now)
            elif member.sends_video:  # watch: what it sends reaches nobody
                self._receive_rtp(member, RtpPacket.parse(data), now)
        except RtpParseError as error:
            self._events.append(PacketRefused(participant=key, reason=str(error)))

    def get_timer(self) -> float | None:
        """When to call :meth:`handle_timer` next: a challenger's hysteresis, a request's
        retry, a sender report."""
        deadlines = [
            member.requested_at + member.retry_in
            for member in self._members.values()
            if member.requested_at is not None
        ]
        deadlines += [
            member.output.next_report
            for member in self._members.values()
            if member.output is not None and member.output.next_report is not None
        ]
        talker = self._talker.get_timer()
        if talker is not None:
            deadlines.append(talker)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        """Make a speaker whose hysteresis is over; repeat unanswered keyframe requests;
        send the sender reports due."""
        if self._talker.decide(now):
            self._speaker_changed(now)
        for member in self._members.values():
            output = member.output
            due = output.next_report if output is not None else None
            if output is not None and due is not None and due <= now:
                self._send_report(member, output, now)
            if member.requested_at is None:
                continue
            if not self._awaited(member.key):
                member.requested_at = None
            elif now >= member.requested_at + member.retry_in:
                self._request_keyframe(member, now, repeated=True)

    def packets_to_send(self) -> list[MediaPacket]:
        """The datagrams produced since the last call, in order."""
        packets, self._to_send = self._to_send, []
        return packets

    def events(self) -> Iterator[VideoEvent | PacketRefused]:
        """The events produced since the last call."""
        events, self._events = self._events, []
        yield from events

    # -- who sees whom -------------------------------------------------------------------

    def _speaker_changed(self, now: float) -> None:
        order = self._talker.order
        self._events.append(
            TalkerChanged(participant=order[0], previous=order[1] if len(order) > 1 else None)
        )
        self._assign(now)

    def _assign(self, now: float) -> None:
        """Point every receiver at whom it should see; ask new sources for a keyframe."""
        for member in self._members.values():
            output = member.output
            if output is None:
                continue
            can_see = partial(self._can_show, member)
            if output.source is not None and not can_see(output.source):
                previous, output.source = output.source, None  # a re-INVITE changed it
                self._events.append(
                    VideoSourceChanged(participant=member.key, source=None, previous=previous)
                )
            wanted = self._talker.shown_to(member.key, can_see)
            if wanted == output.source:
                output.pending = None
            elif wanted != output.pending:
                output.pending = wanted
                if wanted is not None:
                    self._request_keyframe(self._members[wanted], now, repeated=False)
        for member in self._members.values():
            if member.requested_at is not None and not self._awaited(member.key):
                member.requested_at = None

    def _can_show(self, receiver: _Member, key: str) -> bool:
        """Whether ``key`` sends video in a codec ``receiver`` negotiated (same name, same
        H.264 packetization mode)."""
        codec, source_codec = receiver.codec, self._members[key].codec
        if codec is None or source_codec is None or not self._members[key].sends_video:
            return False
        return codec.matches(source_codec)

    def _awaited(self, key: str) -> bool:
        """Whether a receiver waits for this participant's keyframe to switch to it."""
        return any(m.output is not None and m.output.pending == key for m in self._members.values())

    def _request_keyframe(self, source: _Member, now: float, *, repeated: bool) -> None:
        """Ask ``source`` for a keyframe, unless a request is out already (one per switch)."""
        if not repeated and source.requested_at is not None:
            return
        if source.ssrc is None and source.feedback.by_rtcp:
            return  # nothing received yet: asked at its first packet
        source.requested_at = source.last_request = now
        retry, most = self.config.keyframe_retry, self.config.keyframe_retry_max
        source.retry_in = min(source.retry_in * 2, most) if repeated else retry
        if not source.feedback.by_rtcp:
            self._events.append(PictureFastUpdateWanted(participant=source.key, repeated=repeated))
            return
        assert source.ssrc is not None
        # From the SSRC of the stream the source gets from us, if it gets one.
        ours = source.output.ssrc if source.output is not None else source.local_ssrc
        packets: list[RtcpPacket] = [ReceiverReport(ssrc=ours), self._sdes(ours)]
        fir_sequence = None
        if source.feedback.fir:
            if not repeated:
                source.fir_sequence = (source.fir_sequence + 1) & 0xFF
            fir_sequence = source.fir_sequence
            entry = FirEntry(ssrc=source.ssrc, sequence=fir_sequence)
            packets.append(FullIntraRequest(sender_ssrc=ours, entries=(entry,)))
        if source.feedback.pli:
            packets.append(PictureLossIndication(sender_ssrc=ours, media_ssrc=source.ssrc))
        self._to_send.append(
            MediaPacket(participant=source.key, data=build_rtcp(packets), rtcp=True)
        )
        self._events.append(
            KeyframeRequested(participant=source.key, fir_sequence=fir_sequence, repeated=repeated)
        )

    def _sdes(self, ssrc: int) -> SourceDescription:
        return SourceDescription(
            chunks=(SdesChunk(ssrc=ssrc, items=((SDES_CNAME, self.config.cname),)),)
        )

    def _send_report(self, receiver: _Member, output: _Output, now: float) -> None:
        """An SR on the stream we send ``receiver`` (RFC 3550 section 6.4.1): its RTP time
        now is the last packet's timestamp plus the time since it was sent."""
        assert receiver.codec is not None
        assert output.last_time is not None
        output.next_report = now + self.config.rtcp_interval
        elapsed = round((now - output.last_time) * receiver.codec.clock_rate)
        report = SenderReport(
            ssrc=output.ssrc,
            ntp_timestamp=ntp_timestamp(now + self._ntp_offset),
            rtp_timestamp=(output.last_ts + elapsed) & 0xFFFF_FFFF,
            packet_count=output.packets & 0xFFFF_FFFF,
            octet_count=output.octets & 0xFFFF_FFFF,
        )
        data = build_rtcp([report, self._sdes(output.ssrc)])
        self._to_send.append(MediaPacket(participant=receiver.key, data=data, rtcp=True))

    # -- packets -------------------------------------------------------------------------

    def _receive_rtcp(self, member: _Member, packets: tuple[RtcpPacket, ...], now: float) -> None:
        """A receiver's PLI or FIR goes to the source it watches; other RTCP stops here."""
        if any(isinstance(p, PictureLossIndication | FullIntraRequest) for p in packets):
            self.keyframe_wanted(member.key, now)

    def keyframe_wanted(self, key: str, now: float) -> None:
        """The receiver ``key`` asked for a keyframe (its RTCP PLI or FIR, or a SIP INFO
        ``picture_fast_update``): the source it watches is asked, at most once per
        ``keyframe_retry``."""
        member = self._members.get(key)
        output = member.output if member is not None else None
        if output is None or output.source is None:
            return
        source = self._members[output.source]
        last = source.last_request
        if last is None or now >= last + self.config.keyframe_retry:  # one a retry interval
            self._request_keyframe(source, now, repeated=False)

    def _receive_rtp(self, member: _Member, packet: RtpPacket, now: float) -> None:
        assert member.codec is not None
        if packet.payload_type != member.codec.payload:
            return  # RTX, FEC, another codec: not forwarded
        if packet.ssrc != member.ssrc:
            self._source_restarted(member, packet.ssrc, now)
        keyframe = starts_keyframe(member.codec.name, packet.payload)
        # Read once for every receiver: they all take this source's codec.
        counters = read_counters(packet.payload) if member.codec.name.lower() == "vp8" else None
        if keyframe:
            member.requested_at = None
        elif member.requested_at is None and self._awaited(member.key):
            self._request_keyframe(member, now, repeated=False)
        for receiver in self._members.values():
            output = receiver.output
            if output is None or receiver is member:
                continue
            if keyframe and output.pending == member.key:
                self._switch(receiver, output, member, packet, counters, now)
            if output.source == member.key:
                self._forward(receiver, output, packet, counters, now)

    def _source_restarted(self, member: _Member, ssrc: int, now: float) -> None:
        """A new SSRC (a restarted encoder): its receivers wait for a keyframe of it."""
        known = member.ssrc is not None
        member.ssrc = ssrc
        if not known:
            return
        for receiver in self._members.values():
            output = receiver.output
            if output is not None and output.source == member.key:
                output.source, output.pending = None, member.key
        if self._awaited(member.key):
            member.requested_at = None
            self._request_keyframe(member, now, repeated=False)

    def _switch(
        self,
        receiver: _Member,
        output: _Output,
        source: _Member,
        packet: RtpPacket,
        counters: Vp8Counters | None,
        now: float,
    ) -> None:
        """Start forwarding ``source`` to ``receiver`` at this keyframe packet, seamlessly."""
        assert source.codec is not None
        previous, output.source, output.pending = output.source, source.key, None
        next_seq = seq_add(output.last_seq, 1)
        next_ts = output.last_ts
        if output.last_time is not None:
            clock = source.codec.clock_rate
            elapsed = round((now - output.last_time) * clock)
            next_ts += max(elapsed, clock // self.config.max_frame_rate)
        output.base_seq = packet.sequence_number
        output.seq_offset = (next_seq - packet.sequence_number) & 0xFFFF
        output.ts_offset = (next_ts - packet.timestamp) & 0xFFFF_FFFF
        if counters is not None:  # the first frame shown goes on from the last one sent
            if counters.picture_id is not None and output.last_picture_id is not None:
                output.picture_offset = output.last_picture_id + 1 - counters.picture_id
            if counters.tl0_pic_idx is not None and output.last_tl0 is not None:
                output.tl0_offset = output.last_tl0 + 1 - counters.tl0_pic_idx
        self._events.append(
            VideoSourceChanged(participant=receiver.key, source=source.key, previous=previous)
        )

    def _forward(
        self,
        receiver: _Member,
        output: _Output,
        packet: RtpPacket,
        counters: Vp8Counters | None,
        now: float,
    ) -> None:
        assert receiver.codec is not None
        since_switch = seq_diff(packet.sequence_number, output.base_seq)
        if since_switch < 0:
            return  # sent before the switch: its number belongs to the previous source
        if since_switch > _REORDER_WINDOW:  # keep the base in reach of seq_diff as we go on
            output.base_seq = seq_add(packet.sequence_number, -_REORDER_WINDOW)
        sequence = seq_add(packet.sequence_number, output.seq_offset)
        timestamp = (packet.timestamp + output.ts_offset) & 0xFFFF_FFFF
        newest = output.last_time is None or seq_diff(sequence, output.last_seq) > 0
        if newest:
            output.last_seq, output.last_ts, output.last_time = sequence, timestamp, now
        payload = packet.payload
        if counters is not None:
            # A late packet's older frame does not move where a switch goes on from.
            picture_id = tl0 = None
            if counters.picture_id is not None:
                width = 1 << counters.picture_id_bits
                picture_id = (counters.picture_id + output.picture_offset) % width
                if newest:
                    output.last_picture_id = picture_id
            if counters.tl0_pic_idx is not None:
                tl0 = (counters.tl0_pic_idx + output.tl0_offset) & 0xFF
                if newest:
                    output.last_tl0 = tl0
            payload = with_counters(payload, picture_id, tl0)
        rewritten = RtpPacket(
            payload_type=receiver.codec.payload,
            sequence_number=sequence,
            timestamp=timestamp,
            ssrc=output.ssrc,
            marker=packet.marker,
            payload=payload,
        )
        self._to_send.append(MediaPacket(participant=receiver.key, data=bytes(rewritten)))
        output.packets += 1
        output.octets += len(packet.payload)
        if output.next_report is None:  # RFC 3550 6.2: the first report after half an interval
            output.next_report = now + self.config.rtcp_interval / 2
