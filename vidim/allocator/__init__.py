"""The conference allocator: from a SIP MESSAGE carrying a mode to a conference.

Sans-IO like :mod:`vidim.sip`: SIP messages and the time go in; messages to
send, one deadline and events come out.  ``Allocator(config)`` is the
object to drive; see docs/allocator.md for its parts.
"""

from __future__ import annotations

from ..vocabulary import Capabilities, Mode, effective_mode
from .allocator import Allocator, FollowUp, NewConferenceAsked, address_of
from .conference import (
    TRANSITIONS,
    Conference,
    ConferenceInput,
    ConferenceState,
    Deadline,
    Participant,
    ProbeResult,
    next_state,
)
from .config import AllocatorConfig
from .events import (
    AllocatorEvent,
    AuthenticationFailed,
    ConferenceEnded,
    ConferenceFailed,
    ConferenceReady,
    ConferenceStateChanged,
    FocusFailover,
    InvitationFailed,
    InvitationSent,
    MessageIgnored,
    MessageNotSent,
    ParticipantJoined,
    ParticipantLeft,
    RequestAccepted,
    RequestRefused,
)
from .profiles import (
    FocusProfile,
    FocusRequest,
    anchor_offer,
    anchor_session_id,
    conference_uri,
    focus_request,
    join_uri,
)
from .requests import (
    AddInvitees,
    Command,
    EndConference,
    Invitee,
    NewConference,
    RequestForm,
    RequestPolicy,
    RequestRefusedError,
    ShowHelp,
    ShowStatus,
    format_command,
    help_text,
    parse_command,
    parse_request,
)

__all__ = [
    "TRANSITIONS",
    "AddInvitees",
    "Allocator",
    "AllocatorConfig",
    "AllocatorEvent",
    "AuthenticationFailed",
    "Capabilities",
    "Command",
    "Conference",
    "ConferenceEnded",
    "ConferenceFailed",
    "ConferenceInput",
    "ConferenceReady",
    "ConferenceState",
    "ConferenceStateChanged",
    "Deadline",
    "EndConference",
    "FocusFailover",
    "FocusProfile",
    "FocusRequest",
    "FollowUp",
    "InvitationFailed",
    "InvitationSent",
    "Invitee",
    "MessageIgnored",
    "MessageNotSent",
    "Mode",
    "NewConference",
    "NewConferenceAsked",
    "Participant",
    "ParticipantJoined",
    "ParticipantLeft",
    "ProbeResult",
    "RequestAccepted",
    "RequestForm",
    "RequestPolicy",
    "RequestRefused",
    "RequestRefusedError",
    "ShowHelp",
    "ShowStatus",
    "address_of",
    "anchor_offer",
    "anchor_session_id",
    "conference_uri",
    "effective_mode",
    "focus_request",
    "format_command",
    "help_text",
    "join_uri",
    "next_state",
    "parse_command",
    "parse_request",
]
