"""What the built-in focus reports: frozen, keyword-only events named for what happened."""

from __future__ import annotations

from dataclasses import dataclass

from ..vocabulary import Mode
from .media import ForwardingPlan

__all__ = [
    "ConferenceCreated",
    "ConferenceEnded",
    "FocusEvent",
    "InviteesAdded",
    "MediaPlanChanged",
    "MessageIgnored",
    "ParticipantAdmitted",
    "ParticipantLeft",
    "ParticipantRefused",
    "SubscriptionEnded",
    "SubscriptionStarted",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class FocusEvent:
    """Base of every focus event."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceCreated(FocusEvent):
    conference_uri: str
    """The URI invitees call (without ``;isfocus``)."""
    call_id: str
    """Call-ID of the anchor dialog (the factory INVITE), for logs."""
    invitees: tuple[str, ...]
    """The invitees' URIs, in list order."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteesAdded(FocusEvent):
    """A re-INVITE on the anchor named invitees the conference did not have."""

    conference_uri: str
    invitees: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantAdmitted(FocusEvent):
    conference_uri: str
    uri: str
    """The invitee's URI as the list gave it (the roster's user entity)."""
    mode: Mode
    call_id: str
    how: str
    """``key`` (join credential) or ``asserted`` (trusted P-Asserted-Identity)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantRefused(FocusEvent):
    conference_uri: str | None
    """None when no conference matched."""
    call_id: str
    status: int
    reason: str
    """What the Warning header says."""
    source: str
    """``host:port`` the INVITE came from."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantLeft(FocusEvent):
    conference_uri: str
    uri: str
    reason: str
    """``hung up``, ``conference ended``, ``replaced by a new call``..."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceEnded(FocusEvent):
    conference_uri: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaPlanChanged(FocusEvent):
    """The forwarding plan of one conference changed (empty once it has ended).

    Apply :attr:`ConferenceFocus.forwarding_plan` (every conference's
    routes together) to the relay.
    """

    conference_uri: str
    plan: ForwardingPlan


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionStarted(FocusEvent):
    conference_uri: str
    subscriber: str
    """The From URI of the SUBSCRIBE."""
    expires: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionEnded(FocusEvent):
    conference_uri: str
    subscriber: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageIgnored(FocusEvent):
    """Input that was dropped: unparsable bytes, a stray response, a late ACK."""

    reason: str
    summary: str
    """The first line of what arrived, for logs."""
