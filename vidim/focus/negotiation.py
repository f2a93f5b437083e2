"""What the focus reads from request bodies and answers to SDP offers.

Pure functions (the port pool is the only state they touch): the anchor's
SDP rejects every offered m-line, a participant's allows exactly its
invitee's mode (:func:`vidim.sdp.build_answer`) on ports from the pool.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from ..resource_lists import RESOURCE_LISTS_TYPE, ListEntry, parse_resource_list
from ..sdes import CryptoAttribute, new_master_key
from ..sdp import (
    SDP_TYPE,
    VIDEO_CODECS,
    Codec,
    SDPError,
    answer_media,
    build_answer,
    build_offer,
    parse_media,
    write_media,
)
from ..sip import RemoteProtocolError, Request, SIPParseError, SipURI, parse_uri
from ..vocabulary import Mode
from .media import PortPool, PortsExhaustedError, StreamInfo, codec_key, streams_from_sdp

__all__ = [
    "MIXER_AUDIO_CODECS",
    "MIXER_PTIME",
    "Negotiated",
    "address_of_record",
    "anchor_sdp",
    "list_part",
    "negotiate",
    "new_session_id",
    "reversion",
    "sdp_part",
    "video_codecs_for",
]

#: The o= line's username in every SDP of the focus.
USERNAME = "vidim-focus"

#: The audio codecs the focus answers with, in its order of preference: every
#: codec the mixer has (:data:`vidim.focus.codecs.CODECS`); participants of one
#: conference may each have another, the mixer transcodes.  G.711 first: what
#: every phone has, and the cheapest to mix (docs/performance.md).
MIXER_AUDIO_CODECS: tuple[Codec, ...] = (
    Codec(0, "PCMU", 8000),
    Codec(8, "PCMA", 8000),
    Codec(9, "G722", 8000),
    # RFC 7587: the answer's fmtp is what the focus receives and sends; its mixes are mono.
    Codec(111, "opus", 48000, 2, fmtp="stereo=0;sprop-stereo=0"),
)


#: Milliseconds of audio in each packet the mixer sends (:data:`vidim.focus.codecs.FRAME_MS`,
#: a test keeps the two equal), said in every answer as ``a=ptime``.
MIXER_PTIME = 20


def video_codecs_for(streams: Iterable[StreamInfo]) -> tuple[Codec, ...]:
    """The focus's video codecs for a new participant: the conference's own first.

    Video is forwarded, not transcoded, so a conference's video codec is the
    one its first video participant got (``streams``: the conference's
    streams, in the order the participants joined); a phone that offers it
    gets it, a phone without it gets another codec the focus has, and then
    sees and is seen only by participants with that codec (docs/focus.md).
    """
    first = next((s.payload_types[0][0] for s in streams
                  if s.kind == "video" and s.payload_types), None)  # fmt: skip
    return tuple(sorted(VIDEO_CODECS, key=lambda codec: codec_key(codec) != first))


def new_session_id() -> int:
    """A random o= session id (RFC 4566: unique, and NTP-sized is customary)."""
    return secrets.randbits(40)


def address_of_record(uri_text: str) -> str:
    """``sip:user@host`` of a URI, for matching asserted identities; the text when unparsable."""
    try:
        uri = parse_uri(uri_text)
    except SIPParseError:
        return uri_text
    return uri.address_of_record if isinstance(uri, SipURI) else str(uri)


def sdp_part(request: Request) -> bytes | None:
    """The SDP of a request (whole body or a multipart part); None when it has none."""
    if not request.body:
        return None
    for part in request.body_parts():
        ctype = part.content_type
        if ctype is not None and ctype.mime == SDP_TYPE:
            return part.body
    return None


def list_part(request: Request) -> list[ListEntry] | None:
    """The RFC 5366 resource list of a request; None when it has none."""
    if not request.body:
        return None
    for part in request.body_parts():
        ctype = part.content_type
        if ctype is not None and ctype.mime == RESOURCE_LISTS_TYPE:
            return parse_resource_list(part.body)
    return None


def anchor_sdp(offer: bytes | None, address: str, session_id: int, version: int) -> bytes:
    """The anchor's SDP: every offered line rejected, or (no offer) an inactive offer."""
    if offer is None:
        return build_offer(
            Mode.CHAT,
            address=address,
            audio_port=9,
            video_port=None,
            session_id=session_id,
            version=version,
            username=USERNAME,
            from_focus=True,
        )
    return build_answer(
        offer,
        Mode.CHAT,
        address=address,
        ports={},
        session_id=session_id,
        version=version,
        username=USERNAME,
    )


@dataclass(frozen=True, slots=True)
class Negotiated:
    answer: bytes
    #: The focus's RTP port per kind ("audio", "video").
    ports: dict[str, int]
    streams: tuple[StreamInfo, ...]


def negotiate(
    offer: bytes,
    mode: Mode,
    *,
    address: str,
    pool: PortPool,
    current: dict[str, int],
    session_id: int,
    version: int,
    streams: tuple[StreamInfo, ...] = (),
    video_codecs: tuple[Codec, ...] = VIDEO_CODECS,
) -> Negotiated:
    """Answer ``offer`` for ``mode``, reusing ``current`` ports and taking new ones from ``pool``.

    Raises :class:`~vidim.sip.RemoteProtocolError` with the status to answer
    (503 when the pool is empty, the SDP error's otherwise), the ports it
    took given back.  Ports of ``current`` the answer no longer uses are
    *not* released here: the caller does, once the answer is sent.

    SRTP keys: a stream of ``streams`` (the call's current ones) keeps the
    focus's key while the participant offers the same key and suite again (a
    session refresh, a hold), so the relay's SRTP sessions go on (RFC 4568
    section 7.1.4 allows either); a new key from the participant gets a new
    one from the focus.

    ``video_codecs``: the focus's video codecs in the order it prefers them
    (:func:`video_codecs_for` puts the conference's own first).
    """
    fresh: list[int] = []
    ports: dict[str, int] = {}

    def allocate(index: int, kind: str) -> int:
        port = current.get(kind)
        if port is None:
            port = pool.allocate()
            fresh.append(port)
        ports[kind] = port
        return port

    def key(kind: str, offered: CryptoAttribute) -> bytes:
        for stream in streams:
            keys = stream.srtp
            if keys is not None and (stream.kind, keys.suite, keys.remote_key) == (
                kind,
                offered.suite,
                offered.key,
            ):
                return keys.local_key
        return new_master_key()

    try:
        # The offer is parsed once; the answer's lines are not parsed back.
        offered = parse_media(offer)
        media = answer_media(
            offered,
            mode,
            address=address,
            ports=allocate,
            audio_codecs=MIXER_AUDIO_CODECS,
            video_codecs=video_codecs,
            keys=key,
            audio_ptime=MIXER_PTIME,
        )
        answer = write_media(
            media, address=address, session_id=session_id, version=version, username=USERNAME
        )
        streams = streams_from_sdp(offered, media)
    except (PortsExhaustedError, SDPError) as error:
        for port in fresh:
            pool.release(port)
        if isinstance(error, SDPError):
            raise
        raise RemoteProtocolError(
            "no media ports left on the focus", status_hint=503, headers=(("Retry-After", "30"),)
        ) from None
    return Negotiated(answer, ports, streams)


def reversion(sdp: bytes, version: int) -> bytes:
    """The same SDP with its o= line's version replaced (RFC 3264 section 8)."""
    lines = sdp.split(b"\r\n")
    for index, line in enumerate(lines):
        if line.startswith(b"o="):
            fields = line.split(b" ")
            if len(fields) >= 3:
                fields[2] = str(version).encode()
                lines[index] = b" ".join(fields)
            break
    return b"\r\n".join(lines)
