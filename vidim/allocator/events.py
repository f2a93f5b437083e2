"""What the allocator reports: keyword-only events named for what happened.

Each is a frozen dataclass, as in h11 and aioquic; the daemon logs them by
their ``repr`` (a conference state shows as its value: ``old=active``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sip import Address
from ..vocabulary import Mode
from .conference import ConferenceState

__all__ = [
    "AllocatorEvent",
    "AuthenticationFailed",
    "ConferenceEnded",
    "ConferenceFailed",
    "ConferenceReady",
    "ConferenceStateChanged",
    "FocusFailover",
    "InvitationFailed",
    "InvitationSent",
    "MessageIgnored",
    "MessageNotSent",
    "ParticipantJoined",
    "ParticipantLeft",
    "RequestAccepted",
    "RequestRefused",
    "TransportUnavailable",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class AllocatorEvent:
    """Base of every allocator event."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthenticationFailed(AllocatorEvent):
    """A 401/407 to a request of ours that was not (or no longer) answered with credentials.

    The daemon logs it at WARNING: wrong or missing ``[auth]`` credentials stop
    IMs, probes or conferences, and the requester only learns that something failed.
    """

    conference_id: str | None
    """The conference the request was for, when there is one."""
    summary: str
    """The request challenged (method and Request-URI)."""
    status: int
    """401 or 407."""
    realm: str
    """The realm(s) challenging, comma-separated."""
    reason: str
    """Why it was not answered: credentials refused, none configured, another realm..."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestAccepted(AllocatorEvent):
    call_id: str
    """Call-ID of the MESSAGE, for logs."""
    requester: str
    """Who asked (address of record)."""
    command: str
    """``new``, ``add``, ``end``, ``status`` or ``help``."""
    conference_id: str | None
    """The conference it concerns, when there is one."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestRefused(AllocatorEvent):
    call_id: str
    requester: str | None
    """Who asked, when known."""
    status: int
    """The status of the answer (4xx/5xx)."""
    reason: str
    """What the Warning header and the IM to the requester say."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceStateChanged(AllocatorEvent):
    conference_id: str
    old: ConferenceState
    new: ConferenceState
    reason: str
    """Why, in words (the input of the transition table)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceReady(AllocatorEvent):
    conference_id: str
    conference_uri: str
    """What invitees call (each with its own credential added)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FocusFailover(AllocatorEvent):
    """A focus would not host the conference: its INVITE goes to the next one."""

    conference_id: str
    failed: str
    """The focus URI that failed."""
    next: str
    """The focus URI tried now."""
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class InvitationSent(AllocatorEvent):
    conference_id: str
    invitee: str
    mode: Mode


@dataclass(frozen=True, kw_only=True, slots=True)
class InvitationFailed(AllocatorEvent):
    conference_id: str
    invitee: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ParticipantJoined(AllocatorEvent):
    conference_id: str
    participant: str
    mode: Mode | None
    """The mode the focus reports, when it reports one."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ParticipantLeft(AllocatorEvent):
    conference_id: str
    participant: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceEnded(AllocatorEvent):
    conference_id: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceFailed(AllocatorEvent):
    conference_id: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageIgnored(AllocatorEvent):
    """Input that changed nothing: malformed, stray, or discarded by the transaction layer."""

    reason: str
    summary: str
    """The start line, or the first octets of what could not be parsed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageNotSent(AllocatorEvent):
    """The transport could not send one of the allocator's messages (too big, refused...)."""

    summary: str
    """What it was: ``MESSAGE sip:bob@example.com``, ``202 Accepted``."""
    destination: Address
    reason: str
    """What the transport said."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportUnavailable(AllocatorEvent):
    """A request not sent: vidim has no transport to its destination (TLS, for ``sips:``).

    Nothing goes out in plain text instead; the request fails as if answered
    503, so the requester is told (an invitation's failure IM, a focus's
    failover).  The daemon logs it at WARNING.
    """

    conference_id: str | None
    method: str
    target: str
    """The URI it was for."""
    transport: str
    reason: str
