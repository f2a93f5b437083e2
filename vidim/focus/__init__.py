"""The built-in conference focus: conference state, admission, roster, RTP forwarding plan.

:class:`ConferenceFocus` is sans-IO (messages and time in; messages,
deadlines and events out); :class:`vidim.aio.FocusMedia` keeps a
:class:`vidim.aio.RtpRelay` on its :class:`ForwardingPlan`.  Neither is
imported here, so that the protocol core never pulls in asyncio.

Inside: :mod:`.focus` (the driver: dispatch, timers, the end),
:mod:`.anchor` (conference creation), :mod:`.participants` (admission,
SDP per mode), :mod:`.subscriptions` (the roster, RFC 4575),
:mod:`.signalling` (dialogs, timers, what is sent), :mod:`.negotiation`
(bodies and SDP answers), :mod:`.lifecycle` (the state tables),
:mod:`.media` (the forwarding plan, pure), :mod:`.stored` (a conference's
record for a state store, and back).  The audio mixer (:mod:`.mixer`, one per
conference in :mod:`.mixers`) needs numpy and PyAV: not imported here either.
"""

from __future__ import annotations

from .config import NOT_INVITED, ConferenceSnapshot, FocusConfig
from .events import (
    ConferenceCreated,
    ConferenceEnded,
    FocusEvent,
    InviteesAdded,
    KeyframeWanted,
    MediaPlanChanged,
    MediaPortUnavailable,
    MessageIgnored,
    MessageNotSent,
    ParticipantAdmitted,
    ParticipantLeft,
    ParticipantRefused,
    SubscriptionEnded,
    SubscriptionStarted,
)
from .focus import ConferenceFocus
from .lifecycle import (
    CONFERENCE_TRANSITIONS,
    PARTICIPANT_TRANSITIONS,
    ConferenceInput,
    ConferenceState,
    ParticipantInput,
    ParticipantState,
)
from .media import (
    AudioMix,
    Destination,
    ForwardingPlan,
    MixMember,
    ParticipantMedia,
    PortPool,
    PortsExhaustedError,
    Route,
    StreamInfo,
    forwarding_plan,
    lowest_free,
    streams_from_sdp,
)

__all__ = [
    "CONFERENCE_TRANSITIONS",
    "NOT_INVITED",
    "PARTICIPANT_TRANSITIONS",
    "AudioMix",
    "ConferenceCreated",
    "ConferenceEnded",
    "ConferenceFocus",
    "ConferenceInput",
    "ConferenceSnapshot",
    "ConferenceState",
    "Destination",
    "FocusConfig",
    "FocusEvent",
    "ForwardingPlan",
    "InviteesAdded",
    "KeyframeWanted",
    "MediaPlanChanged",
    "MediaPortUnavailable",
    "MessageIgnored",
    "MessageNotSent",
    "MixMember",
    "ParticipantAdmitted",
    "ParticipantInput",
    "ParticipantLeft",
    "ParticipantMedia",
    "ParticipantRefused",
    "ParticipantState",
    "PortPool",
    "PortsExhaustedError",
    "Route",
    "StreamInfo",
    "SubscriptionEnded",
    "SubscriptionStarted",
    "forwarding_plan",
    "lowest_free",
    "streams_from_sdp",
]
