"""SDP offers and answers per communication mode (RFC 3264), read with ``sdp-transform``.

The allocator and the built-in focus exchange SDP in both directions; this
module is the one place that decides what a mode means on the wire.

Directions.  An ``a=sendrecv/sendonly/recvonly/inactive`` attribute is
written from the point of view of the side that wrote the description
(RFC 3264 section 5.1).  A ``watch`` participant only receives, so it writes
``recvonly`` in its own offer, while the focus, which only sends to it, writes
``sendonly`` in its answer (or in its offer when it dials out).  DESIGN.md's
"``recvonly`` for ``watch``" is the participant's view of that same stream.

``chat`` means no media at all: a ``chat`` offer still carries one audio
m-line, ``inactive``, because some focuses (Asterisk among them) refuse an
INVITE without media, and the built-in focus answers a ``chat`` offer with
every m-line rejected (port 0), which RFC 3264 allows: the dialog stands,
no RTP flows.

``sdp-transform`` has no type hints and accepts almost anything (a broken
m-line silently becomes an empty dict), so its output is checked here and
turned into the typed :class:`MediaDescription` before anything else sees it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sdp_transform

from .sdes import (
    CryptoAttribute,
    CryptoError,
    KeyFactory,
    choose_crypto,
    fresh_key,
    parse_crypto,
)
from .sip.errors import LocalProtocolError, RemoteProtocolError
from .vocabulary import Capabilities, Mode

__all__ = [
    "AUDIO_CODECS",
    "CONTENT_TYPE",
    "KEYFRAME_FEEDBACK",
    "MAX_SDP_SIZE",
    "SDP_TYPE",
    "TELEPHONE_EVENT",
    "VIDEO_CODECS",
    "Codec",
    "Direction",
    "MediaDescription",
    "RtcpFeedback",
    "SDPError",
    "answer_media",
    "build_answer",
    "build_offer",
    "capabilities_from_feature_tags",
    "capabilities_from_sdp",
    "media_summary",
    "parse_media",
    "write_media",
]

SDP_TYPE = "application/sdp"
CONTENT_TYPE = SDP_TYPE
#: Larger SDP bodies are refused before parsing; real offers are a few KiB.
MAX_SDP_SIZE = 64 * 1024

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
_DIRECTIONS: dict[str, Direction] = {
    "sendrecv": "sendrecv",
    "sendonly": "sendonly",
    "recvonly": "recvonly",
    "inactive": "inactive",
}
#: The focus forwards plain RTP, and SRTP keyed by SDES (RFC 4568) when the
#: line has an ``a=crypto`` it can use; other streams (DTLS-SRTP's
#: ``UDP/TLS/RTP/SAVP``, non-RTP) are rejected.
_RTP_PROTOCOLS = frozenset({"RTP/AVP", "RTP/AVPF"})
_SRTP_PROTOCOLS = frozenset({"RTP/SAVP", "RTP/SAVPF"})


class SDPError(RemoteProtocolError):
    """The peer's SDP cannot be used: unparsable, or nothing acceptable in it.

    ``status_hint`` is 488 (Not Acceptable Here), the answer RFC 3261 gives
    to an offer that cannot be accepted.
    """

    def __init__(self, reason: str, *, status_hint: int = 488) -> None:
        super().__init__(reason, status_hint=status_hint)


@dataclass(frozen=True, slots=True)
class Codec:
    """One RTP payload format: what an ``a=rtpmap`` line (or a static type) names."""

    payload: int
    name: str
    clock_rate: int
    channels: int = 1
    #: The ``a=fmtp`` parameters, verbatim.
    fmtp: str | None = None

    def matches(self, other: Codec) -> bool:
        """Same encoding, rate and channels; for H.264 also the same packetization mode.

        Payload numbers do not matter (dynamic types differ between peers);
        H.264 streams with different packetization modes cannot be forwarded
        to each other (RFC 6184 section 8.1).
        """
        if (self.name.lower(), self.clock_rate, self.channels) != (
            other.name.lower(),
            other.clock_rate,
            other.channels,
        ):
            return False
        if self.name.lower() == "h264":
            return _fmtp_param(self.fmtp, "packetization-mode", "0") == _fmtp_param(
                other.fmtp, "packetization-mode", "0"
            )
        return True


#: What vidim offers and what the focus accepts, most preferred first.  The
#: focus forwards RTP without transcoding, so it picks from *its* list (not
#: the offerer's order): every participant then converges on the same codec.
AUDIO_CODECS: tuple[Codec, ...] = (Codec(0, "PCMU", 8000), Codec(8, "PCMA", 8000))
VIDEO_CODECS: tuple[Codec, ...] = (
    Codec(96, "VP8", 90000),
    Codec(97, "H264", 90000, fmtp="profile-level-id=42e01f;packetization-mode=1"),
)
#: DTMF (RFC 4733), offered and kept beside the audio codec.
TELEPHONE_EVENT = Codec(101, "telephone-event", 8000, fmtp="0-16")

#: Static payload types (RFC 3551) that may appear without an rtpmap line.
_STATIC: dict[int, Codec] = {
    c.payload: c
    for c in (
        Codec(0, "PCMU", 8000),
        Codec(3, "GSM", 8000),
        Codec(4, "G723", 8000),
        Codec(8, "PCMA", 8000),
        Codec(9, "G722", 8000),
        Codec(18, "G729", 8000),
        Codec(26, "JPEG", 90000),
        Codec(31, "H261", 90000),
        Codec(34, "H263", 90000),
    )
}


@dataclass(frozen=True, slots=True)
class RtcpFeedback:
    """One ``a=rtcp-fb`` attribute (RFC 4585 section 4.2): a feedback type a side takes.

    ``a=rtcp-fb:* ccm fir`` is ``RtcpFeedback("*", "ccm fir")``.
    """

    #: The payload type it applies to, as text: a number or ``*`` (every one of the line).
    payload: str
    #: The feedback type and parameter, lower case, one space apart: ``nack pli``,
    #: ``ccm fir``, ``nack``, ``goog-remb``.
    value: str

    def applies_to(self, payload_type: int) -> bool:
        return self.payload in ("*", str(payload_type))


#: The feedback the focus takes on video, all about keyframes: it asks
#: senders for one on every switch and passes receivers' requests on.  Not
#: ``nack`` (it keeps no packets to retransmit) nor ``goog-remb`` (no
#: bandwidth estimation).
KEYFRAME_FEEDBACK = ("nack pli", "ccm fir")


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One m-line as the focus needs it: where to send, what, which way."""

    kind: str
    port: int
    protocol: str
    #: The format list of the m-line, as written (kept when the line is rejected).
    formats: tuple[str, ...]
    #: The RTP formats that could be named (rtpmap or a static type), in offer order.
    codecs: tuple[Codec, ...]
    direction: Direction
    #: Connection address, media-level ``c=`` or else the session's.
    address: str | None
    rtcp_port: int | None = None
    mid: str | None = None
    #: The ``a=crypto`` attributes (SDES, RFC 4568), in order; read on RTP/SAVP(F) lines only.
    crypto: tuple[CryptoAttribute, ...] = ()
    #: The ``a=rtcp-fb`` attributes (RFC 4585), in order.
    rtcp_fb: tuple[RtcpFeedback, ...] = ()
    #: ``a=rtcp-mux``: RTCP shares the RTP port (RFC 5761).
    rtcp_mux: bool = False
    #: ``a=ptime``: the milliseconds of media per packet its writer prefers to receive.
    ptime: int | None = None

    @property
    def rejected(self) -> bool:
        return self.port == 0


# --- parsing -------------------------------------------------------------------------

_LINE_RE = re.compile(r"[a-z]=[^\x00\r\n]*")
#: The lines vidim reads from an SDP body: o=, c= and m=, and the attributes
#: rtpmap, fmtp, rtcp, rtcp-fb, mid, crypto, rtcp-mux and the direction.  Only these
#: go to sdp-transform, which tries every line against its grammar's rules in turn
#: (fifty for a=): the rest of a softphone's SDP (ssrc, candidates, ptime...) cost
#: as much again as the lines vidim reads, once per probed invitee and per
#: participant joining the focus.  The grammar's rules for these keys all
#: start with these literal names, so what they give is the same either way
#: (tests/formats/test_sdp.py checks the grammar for it).  ``rtcp-mux`` is read
#: only as the whole line: the grammar's rule would take ``a=rtcp-muxed`` too.
_READ_LINE_RE = re.compile(
    r"[ocm]=|a=(?:rtpmap:|fmtp:|rtcp:|rtcp-fb:|mid:|crypto:|ptime:|rtcp-mux\s*$"
    r"|sendrecv|sendonly|recvonly|inactive)"
)
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")


def _fmtp_param(fmtp: str | None, name: str, default: str) -> str:
    for item in (fmtp or "").split(";"):
        key, _, value = item.strip().partition("=")
        if key.strip().lower() == name:
            return value.strip()
    return default


def _decode(body: bytes) -> str:
    if len(body) > MAX_SDP_SIZE:
        raise SDPError(f"SDP body of {len(body)} bytes exceeds {MAX_SDP_SIZE}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SDPError("SDP body is not UTF-8") from exc
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0] != "v=0":
        raise SDPError("SDP must start with v=0")
    for line in lines:
        if not _LINE_RE.fullmatch(line):
            raise SDPError(f"malformed SDP line {line[:40]!r}")
    if not any(line.startswith("o=") for line in lines):
        raise SDPError("SDP without an o= line")
    return text


def _int(value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise SDPError(f"bad {what} {value!r} in SDP")


def _address(connection: Any) -> str | None:
    if isinstance(connection, dict):
        ip = connection.get("ip")
        if isinstance(ip, str) and ip:
            return ip
    return None


def _codecs(media: Mapping[str, Any], formats: Sequence[str]) -> tuple[Codec, ...]:
    rtpmap: dict[int, Codec] = {}
    for entry in media.get("rtp") or ():
        payload = _int(entry.get("payload"), "rtpmap payload type")
        name = entry.get("codec")
        if not isinstance(name, str) or not name:
            raise SDPError("rtpmap without an encoding name")
        channels = entry.get("encoding")
        rtpmap[payload] = Codec(
            payload,
            name,
            _int(entry.get("rate"), "clock rate"),
            _int(channels, "channel count") if channels not in (None, "") else 1,
        )
    fmtps: dict[int, str] = {}
    for entry in media.get("fmtp") or ():
        config = entry.get("config")
        fmtps[_int(entry.get("payload"), "fmtp payload type")] = str(config or "")
    out: list[Codec] = []
    for fmt in formats:
        if not fmt.isdigit():
            continue
        payload = int(fmt)
        codec = rtpmap.get(payload) or _STATIC.get(payload)
        if codec is None:
            continue
        out.append(
            Codec(codec.payload, codec.name, codec.clock_rate, codec.channels, fmtps.get(payload))
        )
    return tuple(out)


def _crypto(media: Mapping[str, Any]) -> tuple[CryptoAttribute, ...]:
    """The ``a=crypto`` lines of an m-line; a malformed one is the peer's error (488)."""
    out: list[CryptoAttribute] = []
    for entry in media.get("crypto") or ():
        keys = ("id", "suite", "config", "sessionConfig")
        fields = [entry.get(key) for key in keys]
        text = " ".join(str(field) for field in fields if field not in (None, ""))
        try:
            out.append(parse_crypto(text))
        except CryptoError as error:
            raise SDPError(str(error)) from error
    return tuple(out)


def _rtcp_fb(media: Mapping[str, Any]) -> tuple[RtcpFeedback, ...]:
    """The ``a=rtcp-fb`` lines of an m-line; one the grammar half read is left out.

    An attribute the focus cannot read is one it does not take (RFC 4566
    section 5.13 lets a receiver ignore it), so this is never the peer's error.
    """
    out: list[RtcpFeedback] = []
    for entry in media.get("rtcpFb") or ():
        payload, words = str(entry.get("payload")), (entry.get("type"), entry.get("subtype"))
        value = " ".join(str(word).lower() for word in words if word not in (None, ""))
        if (payload == "*" or payload.isdigit()) and value:
            out.append(RtcpFeedback(payload, value))
    return tuple(out)


def _parse(body: bytes) -> tuple[dict[str, Any], list[MediaDescription]]:
    """Parse with sdp-transform's grammar and check what it could not."""
    text = _decode(body)
    try:
        read = "\n".join(line for line in text.splitlines() if _READ_LINE_RE.match(line))
        session: Any = sdp_transform.parse(read)
    except Exception as exc:  # an untyped third-party parser: any failure is the peer's
        raise SDPError(f"unparsable SDP ({type(exc).__name__})") from exc
    if not isinstance(session, dict) or not isinstance(session.get("origin"), dict):
        raise SDPError("SDP without a valid o= line")
    raw_media = session.get("media")
    m_lines = sum(1 for line in text.split("\n") if line.startswith("m="))
    if not isinstance(raw_media, list) or len(raw_media) != m_lines:
        raise SDPError("SDP with malformed m-lines")
    session_direction = _DIRECTIONS.get(str(session.get("direction")), "sendrecv")
    session_address = _address(session.get("connection"))
    media: list[MediaDescription] = []
    for index, item in enumerate(raw_media):
        kind, protocol = item.get("type"), item.get("protocol")
        if not isinstance(kind, str) or not _TOKEN_RE.fullmatch(kind):
            raise SDPError(f"m-line {index} is malformed")
        if not isinstance(protocol, str) or not protocol:
            raise SDPError(f"m-line {index} has no transport protocol")
        port = _int(item.get("port"), "port")
        if port > 65535:
            raise SDPError(f"m-line {index} has port {port} out of range")
        formats = tuple(str(item.get("payloads", "")).split())
        if not formats:
            raise SDPError(f"m-line {index} has no formats")
        rtcp = item.get("rtcp")
        mid = item.get("mid")
        media.append(
            MediaDescription(
                kind=kind,
                port=port,
                protocol=protocol,
                formats=formats,
                codecs=_codecs(item, formats) if protocol.startswith("RTP/") else (),
                direction=_DIRECTIONS.get(str(item.get("direction")), session_direction),
                address=_address(item.get("connection")) or session_address,
                rtcp_port=_int(rtcp["port"], "rtcp port") if isinstance(rtcp, dict) else None,
                mid=str(mid) if mid is not None else None,
                crypto=_crypto(item) if protocol in _SRTP_PROTOCOLS else (),
                rtcp_fb=_rtcp_fb(item),
                rtcp_mux="rtcpMux" in item,
                ptime=_int(item["ptime"], "ptime") if "ptime" in item else None,
            )
        )
    return session, media


def parse_media(body: bytes) -> tuple[MediaDescription, ...]:
    """The m-lines of an SDP body, typed; :class:`SDPError` when it is not SDP."""
    return tuple(_parse(body)[1])


def media_summary(body: bytes) -> list[tuple[str, int, str]]:
    """``(kind, port, direction)`` per m-line: compact enough for logs and asserts."""
    return [(m.kind, m.port, m.direction) for m in parse_media(body)]


# --- building ------------------------------------------------------------------------


def _check_session(address: str, username: str, session_id: int, version: int) -> None:
    if session_id < 0 or version < 0:
        raise LocalProtocolError("SDP session id and version must be non-negative")
    if not _TOKEN_RE.fullmatch(username):
        raise LocalProtocolError(f"SDP username must be a token, not {username!r}")
    if not address or any(c.isspace() for c in address):
        raise LocalProtocolError(f"bad SDP address {address!r}")


def _check_port(port: int, what: str) -> int:
    if not 0 < port <= 65535:
        raise LocalProtocolError(f"{what} port {port} out of range")
    return port


def _rtpmap(codec: Codec) -> str:
    channels = f"/{codec.channels}" if codec.channels != 1 else ""
    return f"a=rtpmap:{codec.payload} {codec.name}/{codec.clock_rate}{channels}"


def _media_lines(line: MediaDescription) -> list[str]:
    """An m-line and its attributes, in the order sdp-transform wrote them."""
    lines = [f"m={line.kind} {line.port} {line.protocol} {' '.join(line.formats)}"]
    if line.rejected:
        return lines
    lines += [_rtpmap(codec) for codec in line.codecs]
    lines += [f"a=fmtp:{codec.payload} {codec.fmtp}" for codec in line.codecs if codec.fmtp]
    lines += [f"a=rtcp-fb:{feedback.payload} {feedback.value}" for feedback in line.rtcp_fb]
    lines += [f"a=crypto:{attribute.value()}" for attribute in line.crypto]
    if line.ptime is not None:
        lines.append(f"a=ptime:{line.ptime}")
    lines.append(f"a={line.direction}")
    if line.rtcp_mux:
        lines.append("a=rtcp-mux")
    if line.mid is not None:
        lines.append(f"a=mid:{line.mid}")
    return lines


def _direction(sends: bool, receives: bool) -> Direction:
    if sends and receives:
        return "sendrecv"
    if sends:
        return "sendonly"
    return "recvonly" if receives else "inactive"


def _offer_direction(mode: Mode, from_focus: bool) -> Direction:
    if mode is Mode.CHAT:
        return "inactive"
    if mode.sends_media:
        return "sendrecv"
    # watch: the participant receives only, so the focus sends only.
    return "sendonly" if from_focus else "recvonly"


def build_offer(
    mode: Mode,
    *,
    address: str,
    audio_port: int,
    video_port: int | None,
    session_id: int,
    version: int = 1,
    username: str = "vidim",
    from_focus: bool = False,
) -> bytes:
    """An SDP offer for ``mode``, written by a participant or, with ``from_focus``, the focus.

    Audio offers PCMU, PCMA and telephone-event; modes with video add a VP8 /
    H.264 m-line on ``video_port`` (required for them, ignored otherwise).
    The direction is the writer's own (see the module docstring): ``watch``
    is ``recvonly`` from a participant, ``sendonly`` from the focus; ``chat``
    gives a single ``inactive`` audio m-line.
    """
    direction = _offer_direction(mode, from_focus)
    kinds = [("audio", audio_port, (*AUDIO_CODECS, TELEPHONE_EVENT))]
    if mode.has_video:
        if video_port is None:
            raise LocalProtocolError(f"mode {mode} needs a video port")
        kinds.append(("video", video_port, VIDEO_CODECS))
    media = [
        MediaDescription(
            kind=kind,
            port=_check_port(port, kind),
            protocol="RTP/AVP",
            formats=tuple(str(codec.payload) for codec in codecs),
            codecs=codecs,
            direction=direction,
            address=address,
        )
        for kind, port, codecs in kinds
    ]
    return write_media(media, address=address, session_id=session_id, version=version,
                       username=username)  # fmt: skip


PortAllocator = Callable[[int, str], int]


def build_answer(
    offer: bytes,
    mode: Mode,
    *,
    address: str,
    ports: Mapping[str, int] | PortAllocator,
    session_id: int,
    version: int = 1,
    username: str = "vidim",
    audio_codecs: Sequence[Codec] = AUDIO_CODECS,
    video_codecs: Sequence[Codec] = VIDEO_CODECS,
) -> bytes:
    """The focus's answer to a participant's ``offer``: :func:`answer_media`, written.

    Raises :class:`SDPError` (488) when the offer is not SDP, or when the mode
    has audio and no audio m-line can be taken.
    """
    media = answer_media(
        parse_media(offer),
        mode,
        address=address,
        ports=ports,
        audio_codecs=audio_codecs,
        video_codecs=video_codecs,
    )
    return write_media(media, address=address, session_id=session_id, version=version,
                       username=username)  # fmt: skip


def answer_media(
    offered: Sequence[MediaDescription],
    mode: Mode,
    *,
    address: str,
    ports: Mapping[str, int] | PortAllocator,
    audio_codecs: Sequence[Codec] = AUDIO_CODECS,
    video_codecs: Sequence[Codec] = VIDEO_CODECS,
    keys: KeyFactory = fresh_key,
    audio_ptime: int | None = None,
) -> tuple[MediaDescription, ...]:
    """The m-lines of the focus's answer to ``offered``, allowing exactly what ``mode`` allows.

    The answer has the offer's m-lines in the same order (RFC 3264 section
    6); a line the focus does not take gets port 0 with the offer's format
    list.  What is kept: the first audio m-line when the mode has audio, the
    first video m-line for ``video`` and ``watch``, each only with a codec in
    common (picked in the focus's order; telephone-event rides along).  The
    focus's direction is what the mode allows intersected with what the
    offer allows, so a participant may hold or mute itself but never gains
    more than its mode: ``watch`` answers ``sendonly``, ``chat`` rejects all.

    ``ports`` gives the focus's RTP port per kind (``{"audio": 40000}``), or
    is called as ``ports(index, kind)`` for each line taken, so that ports
    are allocated only for streams that will flow.  The lines are what
    :func:`parse_media` reads from :func:`write_media`'s text, so the focus
    that wrote its answer need not parse it back.

    SRTP (RFC 4568).  An ``RTP/SAVP`` or ``RTP/SAVPF`` line is taken when
    one of its ``a=crypto`` attributes is usable (:func:`vidim.sdes.choose_crypto`):
    the answer keeps the protocol and answers that attribute's tag and suite
    with a key of the focus's own, ``keys(kind, offered_attribute)``: by
    default fresh for every answer (:func:`vidim.focus.negotiation.negotiate`
    keeps a stream's key while the participant keeps its own).
    Without a usable one the line is rejected.  ``RTP/AVP`` stays plain, even
    with ``a=crypto`` lines (RFC 4568 defines SDES for SAVP only).

    RTCP.  A taken video line answers the offered ``a=rtcp-fb`` ``nack pli``
    and ``ccm fir`` that apply to the chosen codec (:data:`KEYFRAME_FEEDBACK`),
    on any RTP profile (phones offer them on ``RTP/AVP`` too); a taken line
    answers ``a=rtcp-mux`` when it was offered (RFC 5761 section 5.1.1) and
    its payload types do not clash with RTCP's.

    ``audio_ptime``: said as ``a=ptime`` on the audio line (RFC 4566: the
    packet time the focus prefers to receive, the one it sends).

    Raises :class:`SDPError` (488) when the mode has audio and no audio
    m-line can be taken.
    """
    allowed = {"audio": mode.has_audio, "video": mode.has_video}
    preferences = {"audio": tuple(audio_codecs), "video": tuple(video_codecs)}
    taken: set[str] = set()
    answer: list[MediaDescription] = []
    for index, line in enumerate(offered):
        codec = None
        crypto = choose_crypto(line.crypto)
        if (
            allowed.get(line.kind, False)
            and line.kind not in taken
            and not line.rejected
            and (line.protocol in _RTP_PROTOCOLS or (line.protocol in _SRTP_PROTOCOLS and crypto))
            and line.address is not None
        ):
            codec = _pick(preferences[line.kind], line.codecs)
        if codec is None:
            # Written with no attribute: read back, it has the static types for
            # codecs and the session's direction.
            static = _codecs({}, line.formats) if line.protocol.startswith("RTP/") else ()
            answer.append(MediaDescription(kind=line.kind, port=0, protocol=line.protocol,
                                           formats=line.formats, codecs=static,
                                           direction="sendrecv", address=address))  # fmt: skip
            continue
        taken.add(line.kind)
        port = ports(index, line.kind) if callable(ports) else ports.get(line.kind)
        if port is None:
            raise LocalProtocolError(f"no {line.kind} port given for the answer")
        codecs = [codec]
        if line.kind == "audio":
            codecs += [
                Codec(c.payload, c.name, c.clock_rate, c.channels, c.fmtp or TELEPHONE_EVENT.fmtp)
                for c in line.codecs
                if c.name.lower() == "telephone-event" and c.clock_rate == codec.clock_rate
            ][:1]
        # The focus sends when the participant may receive, and receives when
        # the participant's mode sends and it offered to send.
        sends = line.direction in ("sendrecv", "recvonly")
        receives = mode.sends_media and line.direction in ("sendrecv", "sendonly")
        answer.append(
            MediaDescription(
                kind=line.kind,
                port=_check_port(port, line.kind),
                protocol=line.protocol,
                formats=tuple(str(c.payload) for c in codecs),
                codecs=tuple(codecs),
                direction=_direction(sends, receives),
                address=address,
                mid=line.mid,
                crypto=(crypto.answered(keys(line.kind, crypto)),) if crypto else (),
                rtcp_fb=_answer_feedback(line, codec),
                rtcp_mux=line.rtcp_mux and not any(_clashes_with_rtcp(c.payload) for c in codecs),
                ptime=audio_ptime if line.kind == "audio" else None,
            )
        )
    if mode.has_audio and "audio" not in taken:
        raise SDPError("no usable audio stream in the offer (none, rejected, or no common codec)")
    return tuple(answer)


def write_media(
    media: Iterable[MediaDescription],
    *,
    address: str,
    session_id: int,
    version: int = 1,
    username: str = "vidim",
) -> bytes:
    """An SDP body with these m-lines (a rejected one as the port 0 line alone).

    Written line by line, in the form and order sdp-transform's writer used
    (the focus writes one per participant joining; a test checks that
    sdp-transform writes the same text).
    """
    _check_session(address, username, session_id, version)
    ip = f"IN IP{6 if ':' in address else 4} {address}"
    lines = ["v=0", f"o={username} {session_id} {version} {ip}", "s=vidim", f"c={ip}", "t=0 0"]
    for line in media:
        lines += _media_lines(line)
    lines.append("")
    return "\r\n".join(lines).encode("utf-8")


def _clashes_with_rtcp(payload_type: int) -> bool:
    """RTP payload types 64-95 look like RTCP on a multiplexed port (RFC 5761 section 4)."""
    return 64 <= payload_type <= 95


def _answer_feedback(offered: MediaDescription, codec: Codec) -> tuple[RtcpFeedback, ...]:
    """The keyframe feedback offered for the chosen codec, each once, with its payload number.

    Only on video (:data:`KEYFRAME_FEEDBACK`); ``*`` is answered as the one
    payload type the answer has.
    """
    if offered.kind != "video":
        return ()
    values = [fb.value for fb in offered.rtcp_fb if fb.applies_to(codec.payload)]
    taken = [value for value in KEYFRAME_FEEDBACK if value in values]
    taken.sort(key=values.index)  # in the offer's order
    return tuple(RtcpFeedback(str(codec.payload), value) for value in taken)


def _pick(preferences: Sequence[Codec], offered: Sequence[Codec]) -> Codec | None:
    """The focus's first codec the offer also has, with the offer's payload number.

    Our fmtp wins when we have one (it says what the focus forwards), else the
    offer's is kept.
    """
    for ours in preferences:
        for theirs in offered:
            if ours.matches(theirs):
                return Codec(
                    theirs.payload,
                    theirs.name,
                    theirs.clock_rate,
                    theirs.channels,
                    ours.fmtp if ours.fmtp is not None else theirs.fmtp,
                )
    return None


# --- capabilities --------------------------------------------------------------------


def capabilities_from_sdp(body: bytes) -> Capabilities:
    """What a device can do, from the SDP of its OPTIONS answer (or an offer).

    A kind counts when an m-line of it has a non-zero port: a pjsua2 build
    without video lists ``m=video 0``.
    """
    media = parse_media(body)
    return Capabilities(
        audio=any(m.kind == "audio" and not m.rejected for m in media),
        video=any(m.kind == "video" and not m.rejected for m in media),
    )


_TRUTH = {"true": True, "!false": True, "false": False, "!true": False}


def _tag_value(value: str | None) -> bool | None:
    """RFC 3840 boolean feature value: bare tag is TRUE; ``"FALSE"``/``"!TRUE"`` false."""
    if value is None:
        return True
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return _TRUTH.get(text.strip().lower())


def capabilities_from_feature_tags(
    params: Mapping[str, str | None] | Iterable[tuple[str, str | None]],
) -> Capabilities | None:
    """Capabilities from RFC 3840 feature tags on a Contact (``;audio;video``).

    ``params`` is the Contact's parameters (``NameAddr.params`` or a mapping).
    ``audio`` and ``video`` are base tags and are written without a prefix
    (RFC 3840 section 9); the ``+sip.audio`` spelling some devices use is
    accepted too.  A bare tag means TRUE, ``="FALSE"`` or ``="!TRUE"`` false.
    Returns ``None`` when neither tag is present (nothing is known); when only
    one is, the other is taken as unsupported, since a device that advertises
    its media lists the media it has.
    """
    items = params.items() if isinstance(params, Mapping) else params
    found: dict[str, bool] = {}
    for name, value in items:
        key = name.lower().removeprefix("+sip.")
        if key in ("audio", "video"):
            truth = _tag_value(value)
            if truth is not None:
                found[key] = truth
    if not found:
        return None
    return Capabilities(audio=found.get("audio", False), video=found.get("video", False))
