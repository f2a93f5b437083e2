"""Focus profiles: what the INVITE to a focus carries, and what its answer means.

``rfc4579`` (the built-in focus and any RFC 4579 conference factory): a
``multipart/mixed`` body with the anchor's SDP and an RFC 5366
``application/resource-lists+xml`` part listing each invitee with its mode
and join credential; the 2xx's Contact, marked ``;isfocus``, is the
conference URI.

``asterisk`` and ``freeswitch``: the conference extension is the focus URI;
``X-Vidim-Conference``, ``X-Vidim-Mode`` and ``X-Vidim-Participants``
headers carry the same information for a dialplan to read (see
``examples/``), and the conference URI is ``conf-<id>`` at the focus host.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from hashlib import blake2b

from ..resource_lists import RESOURCE_LISTS_TYPE, ListEntry, build_resource_list
from ..sip import URI, NameAddr, Response, SipURI, build_multipart, parse_uri
from .conference import Conference

__all__ = [
    "FocusProfile",
    "FocusRequest",
    "anchor_offer",
    "anchor_session_id",
    "conference_uri",
    "focus_request",
    "join_uri",
]


class FocusProfile(StrEnum):
    RFC4579 = "rfc4579"
    ASTERISK = "asterisk"
    FREESWITCH = "freeswitch"


@dataclass(frozen=True, slots=True)
class FocusRequest:
    """The profile-specific part of the INVITE to a focus."""

    headers: tuple[tuple[str, str], ...]
    body: bytes
    content_type: str


def anchor_offer(address: str, session_id: int, session_version: int = 1) -> bytes:
    """The allocator's own SDP: it carries no media, so one inactive audio stream.

    A focus that insists on an offer gets a valid one, and nothing flows.  The
    lines are written directly: they are the same for every conference but for
    the address and the o= numbers, and ``sdp_transform.write`` walked its whole
    grammar for them on every setup (a test checks that sdp-transform reads them).
    """
    ip = f"IN IP{6 if ':' in address else 4} {address}"
    lines = (
        "v=0",
        f"o=vidim {session_id} {session_version} {ip}",
        "s=vidim conference anchor",
        f"c={ip}",
        "t=0 0",
        "m=audio 9 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=inactive",
        "",
    )
    return "\r\n".join(lines).encode("ascii")


def anchor_session_id(conference_id: str) -> int:
    """The o= session id of a conference's anchor: the same in every offer and answer.

    RFC 3264 section 8: a re-offer keeps the o= line but for the version, and
    the anchor's description never changes (one inactive stream), so each
    offer and answer of a conference carries this id and version 1.  Derived
    from the conference id (40 bits of a hash), so the record stores nothing more.
    """
    return int.from_bytes(blake2b(conference_id.encode(), digest_size=5).digest(), "big")


def _participants_value(conference: Conference) -> str:
    return ", ".join(
        f"<{p.uri}>;mode={p.mode.value};key={p.credential}" for p in conference.participants
    )


def focus_request(
    profile: FocusProfile, conference: Conference, *, address: str, session_id: int
) -> FocusRequest:
    """Headers and body of the INVITE (and of a re-INVITE after ``/add``)."""
    offer = anchor_offer(address, session_id)
    if profile is FocusProfile.RFC4579:
        entries = [
            ListEntry(uri=p.uri, display_name=None, mode=p.mode, credential=p.credential)
            for p in conference.participants
        ]
        ctype, body = build_multipart(
            [("application/sdp", offer), (RESOURCE_LISTS_TYPE, build_resource_list(entries))]
        )
        return FocusRequest(headers=(("Require", "recipient-list-invite"),), body=body,
                            content_type=ctype)  # fmt: skip
    headers = (
        ("X-Vidim-Conference", conference.id),
        ("X-Vidim-Mode", conference.mode.value),
        ("X-Vidim-Participants", _participants_value(conference)),
    )
    return FocusRequest(headers=headers, body=offer, content_type="application/sdp")


def conference_uri(
    profile: FocusProfile, response: Response, *, focus_uri: URI | str, conference: Conference
) -> str | None:
    """The URI invitees call, from the focus's 2xx; None when the answer lacks it."""
    if profile is FocusProfile.RFC4579:
        for contact in response.contacts:
            if contact.has_param("isfocus") or (
                isinstance(contact.uri, SipURI) and contact.uri.has_param("isfocus")
            ):
                return str(_without_isfocus(contact))
        return None
    where = _focus_host_port(focus_uri)
    if where is None:
        return None
    host, port = where
    return str(SipURI(host=host, port=port, user=f"conf-{conference.id}"))


def _focus_host_port(focus_uri: URI | str) -> tuple[str, int | None] | None:
    """Host and port of a focus URI from the configuration, or None (not a SIP URI)."""
    focus = parse_uri(focus_uri) if isinstance(focus_uri, str) else focus_uri
    if not isinstance(focus, SipURI):
        return None
    return focus.host, focus.port


def _without_isfocus(contact: NameAddr) -> SipURI | str:
    uri = contact.uri
    if isinstance(uri, SipURI) and uri.has_param("isfocus"):
        return SipURI(
            host=uri.host,
            scheme=uri.scheme,
            user=uri.user,
            port=uri.port,
            params=tuple(p for p in uri.params if p[0].lower() != "isfocus"),
        )
    return str(uri)


def join_uri(conference_uri: URI | str, credential: str) -> str:
    """The conference URI with the invitee's credential, as the invitee dials it.

    Takes the URI parsed, for a caller that joins several invitees to one conference.
    """
    uri = parse_uri(conference_uri) if isinstance(conference_uri, str) else conference_uri
    if isinstance(uri, SipURI):
        return str(uri.with_params(key=credential))
    return str(conference_uri)
