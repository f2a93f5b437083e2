"""What the allocator reports: keyword-only events named for what happened.

Plain classes with a constructor of their own (``==``, ``hash`` and ``repr`` as
the frozen dataclasses they were): compiled by mypyc, constructing one is a
direct call, where a dataclass's generated ``__init__`` runs as Python.
Treat them as read-only.
"""

from __future__ import annotations

from typing import ClassVar, Final

from ..sip.value import FieldRecord
from ..vocabulary import Mode
from .conference import ConferenceState

#: A state's value by dict lookup (``Enum.value`` is a Python-level property).
_STATE_TEXT: Final[dict[ConferenceState, str]] = {state: state.value for state in ConferenceState}

__all__ = [
    "AllocatorEvent",
    "ConferenceEnded",
    "ConferenceFailed",
    "ConferenceReady",
    "ConferenceStateChanged",
    "InvitationFailed",
    "InvitationSent",
    "MessageIgnored",
    "ParticipantJoined",
    "ParticipantLeft",
    "RequestAccepted",
    "RequestRefused",
]


class AllocatorEvent(FieldRecord):
    """Base of every allocator event."""


class RequestAccepted(AllocatorEvent):
    call_id: str
    """Call-ID of the MESSAGE, for logs."""
    requester: str
    """Who asked (address of record)."""
    command: str
    """``new``, ``add``, ``end``, ``status`` or ``help``."""
    conference_id: str | None
    """The conference it concerns, when there is one."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("call_id", "requester", "command", "conference_id")

    def __init__(
        self,
        *,
        call_id: str,
        requester: str,
        command: str,
        conference_id: str | None,
    ) -> None:
        self.call_id = call_id
        self.requester = requester
        self.command = command
        self.conference_id = conference_id

    def __str__(self) -> str:
        # What the daemon logs at INFO once per request: written out, not by getattr.
        # repr() rather than !r: mypyc builds an f-string of str parts in one go,
        # but makes each !r a call of str.format.
        return (
            f"RequestAccepted(call_id={repr(self.call_id)}, requester={repr(self.requester)}, "  # noqa: RUF010
            f"command={repr(self.command)}, conference_id={repr(self.conference_id)})"  # noqa: RUF010
        )


class RequestRefused(AllocatorEvent):
    call_id: str
    requester: str | None
    """Who asked, when known."""
    status: int
    """The status of the answer (4xx/5xx)."""
    reason: str
    """What the Warning header and the IM to the requester say."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("call_id", "requester", "status", "reason")

    def __init__(self, *, call_id: str, requester: str | None, status: int, reason: str) -> None:
        self.call_id = call_id
        self.requester = requester
        self.status = status
        self.reason = reason


class ConferenceStateChanged(AllocatorEvent):
    conference_id: str
    old: ConferenceState
    new: ConferenceState
    reason: str
    """Why, in words (the input of the transition table)."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("conference_id", "old", "new", "reason")

    def __init__(
        self,
        *,
        conference_id: str,
        old: ConferenceState,
        new: ConferenceState,
        reason: str,
    ) -> None:
        self.conference_id = conference_id
        self.old = old
        self.new = new
        self.reason = reason

    def __str__(self) -> str:
        # Logged at INFO for every state change: the states by their values
        # (an Enum's repr is slow and long), no getattr per field, repr() for
        # !r (see RequestAccepted.__str__).
        return (
            f"ConferenceStateChanged(conference_id={repr(self.conference_id)}, "  # noqa: RUF010
            f"old={_STATE_TEXT[self.old]}, new={_STATE_TEXT[self.new]}, "
            f"reason={repr(self.reason)})"  # noqa: RUF010
        )


class ConferenceReady(AllocatorEvent):
    conference_id: str
    conference_uri: str
    """What invitees call (each with its own credential added)."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("conference_id", "conference_uri")

    def __init__(self, *, conference_id: str, conference_uri: str) -> None:
        self.conference_id = conference_id
        self.conference_uri = conference_uri


class InvitationSent(AllocatorEvent):
    conference_id: str
    invitee: str
    mode: Mode

    _FIELDS: ClassVar[tuple[str, ...]] = ("conference_id", "invitee", "mode")

    def __init__(self, *, conference_id: str, invitee: str, mode: Mode) -> None:
        self.conference_id = conference_id
        self.invitee = invitee
        self.mode = mode


class InvitationFailed(AllocatorEvent):
    conference_id: str
    invitee: str
    reason: str

    _FIELDS: ClassVar[tuple[str, ...]] = ("conference_id", "invitee", "reason")

    def __init__(self, *, conference_id: str, invitee: str, reason: str) -> None:
        self.conference_id = conference_id
        self.invitee = invitee
        self.reason = reason


class ParticipantJoined(AllocatorEvent):
    conference_id: str
    participant: str
    mode: Mode | None
    """The mode the focus reports, when it reports one."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("conference_id", "participant", "mode")

    def __init__(self, *, conference_id: str, participant: str, mode: Mode | None) -> None:
        self.conference_id = conference_id
        self.participant = participant
        self.mode = mode


class ParticipantLeft(AllocatorEvent):
    conference_id: str
    participant: str

    _FIELDS: ClassVar[tuple[str, ...]] = ("conference_id", "participant")

    def __init__(self, *, conference_id: str, participant: str) -> None:
        self.conference_id = conference_id
        self.participant = participant


class ConferenceEnded(AllocatorEvent):
    conference_id: str
    reason: str

    _FIELDS: ClassVar[tuple[str, ...]] = ("conference_id", "reason")

    def __init__(self, *, conference_id: str, reason: str) -> None:
        self.conference_id = conference_id
        self.reason = reason


class ConferenceFailed(AllocatorEvent):
    conference_id: str
    reason: str

    _FIELDS: ClassVar[tuple[str, ...]] = ("conference_id", "reason")

    def __init__(self, *, conference_id: str, reason: str) -> None:
        self.conference_id = conference_id
        self.reason = reason


class MessageIgnored(AllocatorEvent):
    """Input that changed nothing: malformed, stray, or discarded by the transaction layer."""

    reason: str
    summary: str
    """The start line, or the first octets of what could not be parsed."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("reason", "summary")

    def __init__(self, *, reason: str, summary: str) -> None:
        self.reason = reason
        self.summary = summary
