"""The built-in focus's media: RTP port pairs and the forwarding plan, as pure data.

The built-in focus terminates its conferences' media: each conference's
audio streams are the members of its :class:`AudioMix`, and what arrives on
their ports goes to the conference's
:class:`~vidim.focus.mixer.AudioMixer` (:mod:`vidim.focus.mixers`), which
sends each listener one stream of the others; its video streams are the
members of its :class:`SwitchedVideo`, whose
:class:`~vidim.focus.video.VideoSwitch` (:mod:`vidim.focus.switches`) sends
each viewer one stream, the speaker's.  A stream in a codec the mixer does
not have is forwarded: each RTP (and RTCP) packet goes to every other
participant allowed to receive it, as an external focus's relay would.
What goes where is decided here, from the streams negotiated in the SDP, by
a pure function (:func:`forwarding_plan`); :mod:`vidim.aio.rtp` only
applies the result to sockets.

Ports.  The focus gives each stream of each participant a pair of its own
local ports (RTP even, RTCP = RTP + 1, RFC 3550 section 11), from a
configured range (:class:`PortPool`).  A participant sends to its pair, and
the focus sends to it *from* that same pair: packets from Bob reach Carol
out of Carol's own port, so a softphone that checks or learns the source
address of incoming RTP (symmetric RTP, pjmedia's "remote address switch")
keeps talking to the port it was given, never to Bob's.

Rules for forwarding (DESIGN.md, "Communication modes"; the mixer and the
video switch keep the same ones):

* audio from a participant whose mode sends (``video``, ``audio``) goes to
  every other participant with audio (``video``, ``audio``, ``watch``);
* video from a ``video`` participant goes to every other participant with
  video (``video``, ``watch``); an ``audio`` participant never gets video;
* nothing from a ``watch`` participant is forwarded, RTCP included;
* no participant gets its own media back;
* the negotiated directions narrow this further: a stream the participant
  put on hold (``sendonly``/``inactive`` from its side) is not sent to it,
  and a stream it does not send is not forwarded.

RTCP follows RTP: from port + 1, to the receiver's RTCP port (``a=rtcp`` or
RTP + 1), out of the receiver's port + 1.  A participant whose answer has
``a=rtcp-mux`` (RFC 5761) sends and receives RTCP on its RTP port instead:
its RTP route also carries RTCP (told apart by :func:`vidim.rtp.is_rtcp`,
and never payload-type-rewritten), and RTCP to it leaves from its focus RTP
port for its RTP port.  Which focus port RTCP to a participant leaves from
is decided in one place, :func:`focus_rtcp_port` (as
:attr:`StreamInfo.local_rtcp_port` and :attr:`MixMember.rtcp_port`); its
port + 1 stays allocated and routed all the same (simplest: the pool hands
out pairs, and a restored call keeps its ports).

Payload types.  Participants may number the same codec differently (dynamic
types, telephone-event); a :class:`Destination` carries the
``source type -> destination type`` map for RTP, and the relay rewrites the
7-bit payload type in the RTP header.  Codecs the receiver did not
negotiate are passed through unchanged (the focus does not transcode).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..rtp import is_rtcp
from ..sdes import SrtpKeys
from ..sdp import Codec, MediaDescription
from ..vocabulary import Mode
from .keyframes import NO_FEEDBACK, KeyframeFeedback

#: Encoding names the mixer decodes and encodes: :data:`vidim.focus.codecs.CODECS`
#: (a test keeps the two equal), written out so that planning never loads FFmpeg.
MIXED_CODECS = frozenset({"pcmu", "pcma", "g722", "opus"})

__all__ = [
    "AudioMix",
    "Destination",
    "ForwardingPlan",
    "MixMember",
    "ParticipantMedia",
    "PortPool",
    "PortsExhaustedError",
    "Route",
    "StreamInfo",
    "SwitchMember",
    "SwitchedVideo",
    "codec_key",
    "focus_rtcp_port",
    "forwarding_plan",
    "lowest_free",
    "streams_from_sdp",
]


class PortsExhaustedError(Exception):
    """No free RTP/RTCP port pair is left in the focus's range."""


def lowest_free(count: int) -> int:
    """A :class:`PortPool` chooser that hands out the first free pair (deterministic)."""
    return 0


class PortPool:
    """Even/odd port pairs from an inclusive range, handed out at random.

    Random, not in order: a stranger cannot tell from one conference's
    ports which ports the next call gets (issue 18).  Late packets of an
    ended call that reach a new call on a reused pair are dropped by the
    relay, which takes a port's media only from its participant
    (:mod:`vidim.aio.rtp`).  ``choose(n)`` picks which of the ``n`` free
    pairs to hand out, oldest-freed first; :func:`secrets.randbelow` by
    default, :func:`lowest_free` gives the lowest pair first (tests).
    """

    __slots__ = ("_choose", "_free", "_used", "high", "low")

    def __init__(
        self, low: int, high: int, *, choose: Callable[[int], int] = secrets.randbelow
    ) -> None:
        first = low + (low % 2)
        if not 0 < low <= high <= 65535 or first + 1 > high:
            raise ValueError(f"port range {low}-{high} holds no even/odd pair")
        self.low = low
        self.high = high
        self._choose = choose
        self._free: list[int] = list(range(first, high, 2))
        self._used: set[int] = set()

    def __len__(self) -> int:
        """The number of free pairs."""
        return len(self._free)

    @property
    def capacity(self) -> int:
        return len(self._free) + len(self._used)

    @property
    def in_use(self) -> frozenset[int]:
        """The RTP (even) ports of the pairs handed out."""
        return frozenset(self._used)

    def allocate(self) -> int:
        """A random even RTP port whose RTP + 1 is free for RTCP.

        Raises :class:`PortsExhaustedError` when no pair is free.
        """
        free = self._free
        if not free:
            raise PortsExhaustedError(f"no free RTP port pair in {self.low}-{self.high}")
        port = free.pop(self._choose(len(free)))
        self._used.add(port)
        return port

    def reserve(self, port: int) -> None:
        """Hand out this pair (a restored call's): it is not allocated again until released.

        A port outside the range (the range changed since) is held too, and
        never joins the free pairs.  Raises :class:`ValueError` for a pair
        already handed out.
        """
        if port in self._used:
            raise ValueError(f"RTP port {port} is handed out already")
        if port in self._free:
            self._free.remove(port)
        self._used.add(port)

    def release(self, port: int) -> None:
        """Give a pair back; releasing a port that is not handed out does nothing."""
        if port in self._used:
            self._used.remove(port)
            if self.low <= port < self.high and port % 2 == 0:
                self._free.append(port)


def codec_key(codec: Codec) -> str:
    """What identifies a codec across participants: ``name/rate/channels``, lower case."""
    return f"{codec.name.lower()}/{codec.clock_rate}/{codec.channels}"


def focus_rtcp_port(local_port: int, rtcp_mux: bool) -> int:
    """The focus port that RTCP to a participant's stream leaves from (and arrives on).

    ``local_port`` is the stream's focus RTP port; with ``rtcp_mux`` (its
    answer had ``a=rtcp-mux``, RFC 5761) RTCP shares it, else it is the
    port + 1 (RFC 3550 section 11).  The one place this is decided: the
    plan's RTCP destinations, the mixer bank and the video switch all ask here.
    """
    return local_port if rtcp_mux else local_port + 1


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One negotiated stream of a participant, as the focus sees it."""

    kind: str
    #: The focus's RTP port for this stream (RTCP: :attr:`local_rtcp_port`).
    local_port: int
    #: Where the participant receives RTP and RTCP (from its SDP; with
    #: ``rtcp_mux`` both are its RTP port).
    remote_host: str
    remote_port: int
    remote_rtcp_port: int
    #: The participant sends this stream to the focus.
    sends: bool = True
    #: The participant accepts this stream from the focus.
    receives: bool = True
    #: ``(codec_key, payload type)`` of the codecs negotiated with this participant.
    payload_types: tuple[tuple[str, int], ...] = ()
    #: The SRTP keys (SDES) when the stream is ``RTP/SAVP``; None for plain RTP.
    srtp: SrtpKeys | None = None
    #: The keyframe requests (RTCP PLI, FIR) the answer took for a video stream.
    feedback: KeyframeFeedback = NO_FEEDBACK
    #: RTCP shares the RTP port both ways (RFC 5761), as the answer said.
    rtcp_mux: bool = False
    #: The most bits a second the participant takes of the focus's first codec, when its
    #: offer said (Opus ``maxaveragebitrate``, RFC 7587 section 6.1); None: no limit said.
    max_bit_rate: int | None = None

    @property
    def local_rtcp_port(self) -> int:
        """The focus port RTCP to this participant leaves from: :func:`focus_rtcp_port`."""
        return focus_rtcp_port(self.local_port, self.rtcp_mux)

    @property
    def reachable(self) -> bool:
        """False when the participant gave no address to send to (hold with 0.0.0.0, port 0)."""
        return self.remote_port > 0 and self.remote_host not in ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class ParticipantMedia:
    """A connected participant: who, in which mode, with which streams."""

    uri: str
    mode: Mode
    streams: tuple[StreamInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one packet goes: out of the focus's ``via_port`` to ``host:port``."""

    #: The focus port the packet leaves from (the receiver's own focus port).
    via_port: int
    host: str
    port: int
    #: RTP payload type rewrites, ``(from, to)``; empty for RTCP.
    payload_map: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """Packets arriving on the focus's ``port`` come from ``participant``; send them on."""

    port: int
    participant: str
    kind: str
    rtcp: bool
    #: The participant's address for this port, from its SDP (latching may replace it).
    remote: tuple[str, int] | None
    destinations: tuple[Destination, ...] = ()
    #: What arrives goes to the conference's audio mixer or video switch, not to
    #: destinations: the focus terminates this stream.
    terminated: bool = False
    #: The participant's SRTP keys: the relay opens what arrives on this port
    #: with ``remote_key`` and protects what leaves it with ``local_key``.
    srtp: SrtpKeys | None = None
    #: An RTP port whose participant multiplexes RTCP on it (RFC 5761): what
    #: :func:`vidim.rtp.is_rtcp` calls RTCP is RTCP here, and goes to
    #: ``rtcp_destinations``.
    rtcp_mux: bool = False
    rtcp_destinations: tuple[Destination, ...] = ()

    def carries_rtcp(self, data: bytes) -> bool:
        """Whether ``data``, arriving on or leaving this port, is RTCP (SRTCP when keyed)."""
        return self.rtcp or (self.rtcp_mux and is_rtcp(data))

    def destinations_for(self, rtcp: bool) -> tuple[Destination, ...]:
        """Where a packet goes: RTCP on a multiplexed RTP port has destinations of its own."""
        return self.rtcp_destinations if rtcp and self.rtcp_mux else self.destinations


@dataclass(frozen=True, slots=True)
class MixMember:
    """A participant's audio stream in its conference's mixer."""

    participant: str
    mode: Mode
    #: The focus's RTP port of the stream: where its packets arrive and
    #: where the mix to it leaves from (RTCP: :attr:`rtcp_port`).
    port: int
    #: The negotiated codec (:func:`codec_key`) and its payload type for this participant.
    codec: str
    payload_type: int
    #: As in :class:`StreamInfo`: it sends audio to the focus / accepts audio from it.
    sends: bool = True
    receives: bool = True
    #: As in :class:`StreamInfo`: the most its mix may take (Opus ``maxaveragebitrate``).
    max_bit_rate: int | None = None
    #: As in :class:`StreamInfo`: RTCP shares the RTP port (RFC 5761).
    rtcp_mux: bool = False

    @property
    def rtcp_port(self) -> int:
        """The focus port RTCP to this member leaves from: :func:`focus_rtcp_port`."""
        return focus_rtcp_port(self.port, self.rtcp_mux)


@dataclass(frozen=True, slots=True)
class AudioMix:
    """One conference's audio mixer: who is in it (see :mod:`vidim.focus.mixers`)."""

    conference: str
    members: tuple[MixMember, ...] = ()


@dataclass(frozen=True, slots=True)
class SwitchMember:
    """A participant's video stream in its conference's video switch."""

    participant: str
    mode: Mode
    #: The focus's RTP port of the stream (RTCP is ``port + 1``): where its
    #: packets arrive and where the video shown to it leaves from.
    port: int
    #: The negotiated video codec, with this participant's payload type.
    codec: Codec
    #: The keyframe requests it negotiated (none: SIP INFO, RFC 5168).
    feedback: KeyframeFeedback = NO_FEEDBACK
    #: As in :class:`StreamInfo`: it sends video to the focus / accepts video from it.
    sends: bool = True
    receives: bool = True
    #: RTCP shares the RTP port (RFC 5761), as its answer said.
    rtcp_mux: bool = False

    @property
    def rtcp_port(self) -> int:
        """The focus port RTCP to this member leaves from: :func:`focus_rtcp_port`."""
        return focus_rtcp_port(self.port, self.rtcp_mux)


@dataclass(frozen=True, slots=True)
class SwitchedVideo:
    """One conference's video switch: who is in it (see :mod:`vidim.focus.switches`)."""

    conference: str
    members: tuple[SwitchMember, ...] = ()


@dataclass(frozen=True, slots=True)
class ForwardingPlan:
    """Every focus port in use and what arrives there goes to; ports are unique.

    ``mixes``: the audio mixer of each conference whose audio is mixed;
    ``switches``: the video switch of each conference whose video is switched.
    """

    routes: tuple[Route, ...] = ()
    mixes: tuple[AudioMix, ...] = ()
    switches: tuple[SwitchedVideo, ...] = ()

    @property
    def ports(self) -> frozenset[int]:
        return frozenset(route.port for route in self.routes)

    def as_dict(self) -> dict[int, Route]:
        return {route.port: route for route in self.routes}

    def route(self, port: int) -> Route | None:
        return self.as_dict().get(port)

    @classmethod
    def merge(cls, plans: Iterable[ForwardingPlan]) -> ForwardingPlan:
        """One plan for several conferences (their ports never overlap)."""
        merged: dict[int, Route] = {}
        mixes: list[AudioMix] = []
        switches: list[SwitchedVideo] = []
        for plan in plans:
            mixes.extend(plan.mixes)
            switches.extend(plan.switches)
            for route in plan.routes:
                if route.port in merged:
                    raise ValueError(f"port {route.port} is in two plans")
                merged[route.port] = route
        routes = tuple(merged[port] for port in sorted(merged))
        return cls(routes, tuple(mixes), tuple(switches))


def _may_send(mode: Mode, kind: str) -> bool:
    if kind == "audio":
        return mode.sends_media
    if kind == "video":
        return mode is Mode.VIDEO
    return False


def _may_receive(mode: Mode, kind: str) -> bool:
    if kind == "audio":
        return mode.has_audio
    if kind == "video":
        return mode.has_video
    return False


def _payload_map(source: StreamInfo, target: StreamInfo) -> tuple[tuple[int, int], ...]:
    theirs = dict(target.payload_types)
    return tuple(
        (pt, theirs[key]) for key, pt in source.payload_types if key in theirs and theirs[key] != pt
    )


def _mix_member(sender: ParticipantMedia, stream: StreamInfo) -> MixMember | None:
    """The stream as a mixer input/output, in the first negotiated codec the mixer has."""
    for key, payload_type in stream.payload_types:
        if key.partition("/")[0] in MIXED_CODECS:
            return MixMember(
                participant=sender.uri,
                mode=sender.mode,
                port=stream.local_port,
                codec=key,
                payload_type=payload_type,
                sends=stream.sends,
                receives=stream.receives,
                rtcp_mux=stream.rtcp_mux,
                max_bit_rate=stream.max_bit_rate,
            )
    return None


def _switch_member(sender: ParticipantMedia, stream: StreamInfo) -> SwitchMember | None:
    """The stream as a video switch input/output, in the codec it negotiated.

    The focus answers H.264 with its own fmtp only (packetization mode 1,
    :data:`vidim.sdp.VIDEO_CODECS`), so the codec's name says all the switch
    must match between a source and a viewer.
    """
    for key, payload_type in stream.payload_types[:1]:
        name, rate, channels = key.split("/")
        return SwitchMember(
            participant=sender.uri,
            mode=sender.mode,
            port=stream.local_port,
            codec=Codec(payload_type, name, int(rate), int(channels)),
            feedback=stream.feedback,
            sends=stream.sends,
            receives=stream.receives,
            rtcp_mux=stream.rtcp_mux,
        )
    return None


def forwarding_plan(
    participants: Iterable[ParticipantMedia], *, conference: str | None = None
) -> ForwardingPlan:
    """Where every packet arriving at the focus goes (see the module docstring for the rules).

    Every stream's ports appear in the plan, with no destinations when
    nothing of it is forwarded, so that the relay has a socket to send to
    that participant from.

    ``conference``: the conference's URI when the focus terminates its
    media (the built-in focus's way): audio routes in a codec the mixer has
    and every video route are then ``terminated`` (no destinations), listed
    in the plan's :class:`AudioMix` and :class:`SwitchedVideo`; an audio
    stream in another codec is forwarded as before.  Without it, everything
    is forwarded.
    """
    people = list(participants)
    routes: list[Route] = []
    members: list[MixMember] = []
    viewers: list[SwitchMember] = []
    for index, sender in enumerate(people):
        for stream in sender.streams:
            member: MixMember | SwitchMember | None = None
            if conference is not None and stream.kind == "audio":
                member = _mix_member(sender, stream)
            elif conference is not None and stream.kind == "video":
                member = _switch_member(sender, stream)
            if isinstance(member, MixMember):
                members.append(member)
            elif member is not None:
                viewers.append(member)
            rtp: list[Destination] = []
            rtcp: list[Destination] = []
            if member is None and _may_send(sender.mode, stream.kind) and stream.sends:
                for other_index, receiver in enumerate(people):
                    if other_index == index or receiver.uri == sender.uri:
                        continue
                    if not _may_receive(receiver.mode, stream.kind):
                        continue
                    for target in receiver.streams:
                        if target.kind != stream.kind or not target.receives:
                            continue
                        if not target.reachable:
                            continue
                        rtp.append(
                            Destination(
                                target.local_port,
                                target.remote_host,
                                target.remote_port,
                                _payload_map(stream, target),
                            )
                        )
                        rtcp.append(
                            Destination(
                                target.local_rtcp_port, target.remote_host, target.remote_rtcp_port
                            )
                        )
                        break  # one stream of a kind per participant
            host = stream.remote_host
            reachable = stream.reachable
            remote = (host, stream.remote_port) if reachable else None
            remote_rtcp = (host, stream.remote_rtcp_port) if reachable else None
            port, uri, kind = stream.local_port, sender.uri, stream.kind
            ended = member is not None
            keys, mux = stream.srtp, stream.rtcp_mux
            # A muxing sender's RTCP arrives on its RTP port: that route forwards it too.
            muxed_rtcp = tuple(rtcp) if mux else ()
            routes.append(
                Route(port, uri, kind, False, remote, tuple(rtp), ended, keys,
                      rtcp_mux=mux, rtcp_destinations=muxed_rtcp)
            )  # fmt: skip
            routes.append(Route(port + 1, uri, kind, True, remote_rtcp, tuple(rtcp), ended, keys))
    routes.sort(key=lambda route: route.port)
    mixes = (AudioMix(conference, tuple(members)),) if conference is not None and members else ()
    switches: tuple[SwitchedVideo, ...] = ()
    if conference is not None and viewers:
        switches = (SwitchedVideo(conference, tuple(viewers)),)
    return ForwardingPlan(tuple(routes), mixes, switches)


def streams_from_sdp(
    offer: tuple[MediaDescription, ...], answer: tuple[MediaDescription, ...]
) -> tuple[StreamInfo, ...]:
    """The streams an offer/answer pair set up, from the focus's side (it wrote ``answer``).

    m-lines are matched by position (RFC 3264); a line the answer rejected
    (port 0) sets up nothing.  The answer's direction is the focus's own:
    ``sendonly`` means the participant only receives.  An SRTP stream's keys
    are the offered ``a=crypto`` whose tag the answer took and the answer's own.
    The keyframe feedback and RTCP multiplexing are the answer's: what the
    focus took of the offer's (:func:`vidim.sdp.answer_media`); with
    multiplexing, the participant receives RTCP on its RTP port.  An Opus
    offer's ``maxaveragebitrate`` bounds what the focus sends it.
    """
    streams: list[StreamInfo] = []
    for theirs, ours in zip(offer, answer, strict=False):
        if ours.rejected or theirs.rejected:
            continue
        keys = None
        for answered in ours.crypto[:1]:
            offered = next((c for c in theirs.crypto if c.tag == answered.tag), None)
            if offered is not None:
                keys = SrtpKeys(answered.suite, answered.key, offered.key)
        feedback = {fb.value for fb in ours.rtcp_fb}
        streams.append(
            StreamInfo(
                kind=ours.kind,
                local_port=ours.port,
                remote_host=theirs.address or "0.0.0.0",
                remote_port=theirs.port,
                remote_rtcp_port=(
                    theirs.port if ours.rtcp_mux else theirs.rtcp_port or theirs.port + 1
                ),
                sends=ours.direction in ("sendrecv", "recvonly"),
                receives=ours.direction in ("sendrecv", "sendonly"),
                payload_types=tuple((codec_key(c), c.payload) for c in ours.codecs),
                srtp=keys,
                feedback=KeyframeFeedback(pli="nack pli" in feedback, fir="ccm fir" in feedback),
                rtcp_mux=ours.rtcp_mux,
                max_bit_rate=_max_bit_rate(theirs, ours),
            )
        )
    return tuple(streams)


def _max_bit_rate(theirs: MediaDescription, ours: MediaDescription) -> int | None:
    """The offer's ``maxaveragebitrate`` for the codec the answer took (RFC 7587 6.1: the
    most the offerer wants to receive); None when it said none, or nothing readable."""
    taken = ours.codecs[0].payload if ours.codecs else None
    for codec in theirs.codecs:
        if codec.payload == taken and codec.name.lower() == "opus":
            for item in (codec.fmtp or "").split(";"):
                name, _, value = item.strip().partition("=")
                if name.strip().lower() == "maxaveragebitrate" and value.strip().isdigit():
                    return int(value)
    return None
