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

import re
from enum import StrEnum
from functools import lru_cache
from hashlib import blake2b

import sdp_transform

from ..resource_lists import RESOURCE_LISTS_TYPE, ListEntry, build_resource_list
from ..sip import LocalProtocolError, NameAddr, Response, SipURI, build_multipart, parse_uri
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


class FocusRequest:
    """The profile-specific part of the INVITE to a focus.

    A plain class (``==`` and ``repr`` as the frozen dataclass it was): compiled,
    its constructor is a C call.  Treat it as read-only.
    """

    __slots__ = ("body", "content_type", "headers")

    headers: tuple[tuple[str, str], ...]
    body: bytes
    content_type: str

    def __init__(
        self, headers: tuple[tuple[str, str], ...], body: bytes, content_type: str
    ) -> None:
        self.headers = headers
        self.body = body
        self.content_type = content_type

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, FocusRequest)
        return (self.headers, self.body, self.content_type) == (
            other.headers,
            other.body,
            other.content_type,
        )

    def __hash__(self) -> int:
        return hash((self.headers, self.body, self.content_type))

    def __repr__(self) -> str:
        return (
            f"FocusRequest(headers={self.headers!r}, body={self.body!r}, "
            f"content_type={self.content_type!r})"
        )


#: What :func:`join_uri` appends as it is: ``secrets.token_urlsafe`` output, or any
#: URI ``paramchar`` run without escapes.
_CREDENTIAL_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+")

#: Conference ids as ``secrets.token_urlsafe`` writes them: ``conf-<id>`` is a URI user.
_CONFERENCE_ID_RE = re.compile(r"[A-Za-z0-9\-_]+")

#: Stand-ins for the o= numbers while the template is written (digits, as the grammar wants).
_SESSION_MARK = 918_273_645_546_372_819
_VERSION_MARK = 918_273_645_546_372_818


@lru_cache(maxsize=16)
def _anchor_template(address: str) -> tuple[str, str]:
    """The anchor offer for ``address`` around its o= numbers: written once, not per setup.

    Everything but the session id and version is the same for every
    conference (the allocator sends no media), so sdp_transform runs once per
    address and each offer is two string joins.
    """
    session = {
        "version": 0,
        "origin": {
            "username": "vidim",
            "sessionId": _SESSION_MARK,
            "sessionVersion": _VERSION_MARK,
            "netType": "IN",
            "ipVer": 6 if ":" in address else 4,
            "address": address,
        },
        "name": "vidim conference anchor",
        "connection": {"version": 6 if ":" in address else 4, "ip": address},
        "timing": {"start": 0, "stop": 0},
        "media": [
            {
                "type": "audio",
                "port": 9,
                "protocol": "RTP/AVP",
                "payloads": "0",
                "rtp": [{"payload": 0, "codec": "PCMU", "rate": 8000}],
                "direction": "inactive",
            }
        ],
    }
    text: str = sdp_transform.write(session)
    head, mark, tail = text.partition(f" {_SESSION_MARK} {_VERSION_MARK} ")
    if not mark:  # pragma: no cover - sdp_transform wrote the origin some other way
        raise LocalProtocolError(f"cannot template the anchor offer for {address!r}")
    return head + " ", " " + tail


def anchor_offer(address: str, session_id: int, session_version: int = 1) -> bytes:
    """The allocator's own SDP: it carries no media, so one inactive audio stream.

    A focus that insists on an offer gets a valid one, and nothing flows.
    """
    head, tail = _anchor_template(address)
    return f"{head}{session_id} {session_version}{tail}".encode("ascii")


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
    profile: FocusProfile, response: Response, *, focus_uri: str, conference: Conference
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
    if _CONFERENCE_ID_RE.fullmatch(conference.id):  # what vidim draws: a valid user part
        uri = f"sip:conf-{conference.id}@{host}"
        return uri if port is None else f"{uri}:{port}"
    return str(SipURI(host=host, port=port, user=f"conf-{conference.id}"))


@lru_cache(maxsize=64)
def _focus_host_port(focus_uri: str) -> tuple[str, int | None] | None:
    """Host and port of a focus URI from the configuration (parsed once), or None."""
    focus = parse_uri(focus_uri)
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


def join_uri(conference_uri_text: str, credential: str) -> str:
    """The conference URI with the invitee's credential, as the invitee dials it.

    ``conference_uri_text`` is a URI as vidim writes it (``str`` of a parsed
    URI): when it is a plain ``sip:``/``sips:`` URI without a ``key`` parameter
    or URI headers, and the credential is a token, the parameter is appended
    as text, which is what re-parsing and re-writing it would give.
    """
    text = conference_uri_text
    if (
        text.startswith(("sip:", "sips:"))
        and "?" not in text
        and ";key" not in text.lower()
        and _CREDENTIAL_RE.fullmatch(credential)
    ):
        return f"{text};key={credential}"
    uri = parse_uri(text)
    if isinstance(uri, SipURI):
        return str(uri.with_params(key=credential))
    return text
