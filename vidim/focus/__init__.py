"""The built-in conference focus: conference state, admission, roster, RTP forwarding plan.

:class:`ConferenceFocus` is sans-IO (messages and time in; messages,
deadlines and events out); :class:`vidim.aio.RtpRelay` is the asyncio
UDP relay that applies its :class:`ForwardingPlan`.  The relay is not
imported here, so that the protocol core never pulls in asyncio.
"""

from __future__ import annotations

from .events import (
    ConferenceCreated,
    ConferenceEnded,
    FocusEvent,
    InviteesAdded,
    MediaPlanChanged,
    MessageIgnored,
    ParticipantAdmitted,
    ParticipantLeft,
    ParticipantRefused,
    SubscriptionEnded,
    SubscriptionStarted,
)
from .focus import NOT_INVITED, ConferenceFocus, ConferenceSnapshot, FocusConfig
from .media import (
    Destination,
    ForwardingPlan,
    ParticipantMedia,
    PortPool,
    PortsExhaustedError,
    Route,
    StreamInfo,
    forwarding_plan,
    streams_from_sdp,
)

__all__ = [
    "NOT_INVITED",
    "ConferenceCreated",
    "ConferenceEnded",
    "ConferenceFocus",
    "ConferenceSnapshot",
    "Destination",
    "FocusConfig",
    "FocusEvent",
    "ForwardingPlan",
    "InviteesAdded",
    "MediaPlanChanged",
    "MessageIgnored",
    "ParticipantAdmitted",
    "ParticipantLeft",
    "ParticipantMedia",
    "ParticipantRefused",
    "PortPool",
    "PortsExhaustedError",
    "Route",
    "StreamInfo",
    "SubscriptionEnded",
    "SubscriptionStarted",
    "forwarding_plan",
    "streams_from_sdp",
]
