"""What the built-in focus reports: frozen, keyword-only events named for what happened."""

from __future__ import annotations

from dataclasses import dataclass

from ..sip import Address
from ..vocabulary import Mode
from .media import ForwardingPlan

__all__ = [
    "ConferenceCreated",
    "ConferenceEnded",
    "FocusEvent",
    "InviteesAdded",
    "KeyframeWanted",
    "MediaPlanChanged",
    "MediaPortUnavailable",
    "MessageIgnored",
    "MessageNotSent",
    "ParticipantAdmitted",
    "ParticipantLeft",
    "ParticipantRefused",
    "SubscriptionEnded",
    "SubscriptionStarted",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class FocusEvent:
    """Base of every focus event."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceCreated(FocusEvent):
    """A factory INVITE created a conference (its 200 is on the way)."""

    conference_uri: str
    """The URI invitees call (without ``;isfocus``)."""
    call_id: str
    """Call-ID of the anchor dialog (the factory INVITE), for logs."""
    invitees: tuple[str, ...]
    """The invitees' URIs, in list order."""


@dataclass(frozen=True, kw_only=True, slots=True)
class InviteesAdded(FocusEvent):
    """A re-INVITE on the anchor named invitees the conference did not have."""

    conference_uri: str
    invitees: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ParticipantAdmitted(FocusEvent):
    """An invitee's INVITE was answered 200: it is in a call."""

    conference_uri: str
    uri: str
    """The invitee's URI as the list gave it (the roster's user entity)."""
    mode: Mode
    call_id: str
    how: str
    """``key`` (join credential) or ``asserted`` (trusted P-Asserted-Identity)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ParticipantRefused(FocusEvent):
    """An INVITE to a conference URI was refused (a 4xx/5xx with a Warning)."""

    conference_uri: str | None
    """None when no conference matched."""
    call_id: str
    status: int
    reason: str
    """What the Warning header says."""
    source: str
    """``host:port`` the INVITE came from."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ParticipantLeft(FocusEvent):
    """A participant's call ended."""

    conference_uri: str
    uri: str
    reason: str
    """``hung up``, ``conference ended``, ``replaced by a new call``..."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceEnded(FocusEvent):
    """A conference is over and forgotten (BYEs and terminated NOTIFYs sent)."""

    conference_uri: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MediaPlanChanged(FocusEvent):
    """The forwarding plan of one conference changed (empty once it has ended).

    Apply :attr:`ConferenceFocus.forwarding_plan` (every conference's
    routes together) to the relay.
    """

    conference_uri: str
    plan: ForwardingPlan


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyframeWanted(FocusEvent):
    """A participant asked the focus for a keyframe by SIP INFO ``picture_fast_update``
    (RFC 5168): the video it is shown needs one (:class:`vidim.aio.FocusMedia` asks its
    source, as for an RTCP PLI)."""

    conference_uri: str
    uri: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MediaPortUnavailable(FocusEvent):
    """The RTP relay cannot bind a port of a participant's call: the call is ended with BYE.

    Reported through :meth:`ConferenceFocus.ports_unavailable` (by
    :class:`vidim.aio.FocusMedia`), typically when a restored call's port was
    taken by another program while the focus was down.
    """

    conference_uri: str
    uri: str
    port: int
    reason: str
    """What the operating system said, e.g. ``[Errno 98] Address already in use``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SubscriptionStarted(FocusEvent):
    """A SUBSCRIBE to a conference's roster was accepted."""

    conference_uri: str
    subscriber: str
    """The From URI of the SUBSCRIBE."""
    expires: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SubscriptionEnded(FocusEvent):
    """A roster subscription ended (expired, unsubscribed, refused NOTIFY, conference over)."""

    conference_uri: str
    subscriber: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageIgnored(FocusEvent):
    """Input that was dropped: unparsable bytes, a stray response, a late ACK."""

    reason: str
    summary: str
    """The first line of what arrived, for logs."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageNotSent(FocusEvent):
    """The transport could not send one of the focus's messages (too big, refused...)."""

    summary: str
    """What it was: ``MESSAGE sip:bob@example.com``, ``202 Accepted``."""
    destination: Address
    reason: str
    """What the transport said."""
