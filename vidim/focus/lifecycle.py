"""The focus's two state machines: a conference's and an invitee's, as tables.

Rule 1 (as in h11's ``_state.py`` and :mod:`vidim.allocator.conference`):
every change of a conference's or a participant's state goes through
:data:`CONFERENCE_TRANSITIONS` or :data:`PARTICIPANT_TRANSITIONS`; a
(state, input) pair missing from its table is a
:class:`~vidim.sip.LocalProtocolError`, i.e. a bug in the focus.

The focus sends its BYEs and terminated NOTIFYs and forgets a conference in
one step, so there is no "ending" state: nothing waits for their answers.
Whether the anchor's 200 was acknowledged is not a conference state either:
an invitee may join before the allocator's ACK arrives; a missing ACK ends
the conference from whatever state it is in.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from ..sip import LocalProtocolError

__all__ = [
    "CONFERENCE_TRANSITIONS",
    "PARTICIPANT_TRANSITIONS",
    "ConferenceInput",
    "ConferenceState",
    "ParticipantInput",
    "ParticipantState",
    "next_conference_state",
    "next_participant_state",
]


State = TypeVar("State", bound=Enum)
Input = TypeVar("Input", bound=Enum)


class ConferenceState(Enum):
    #: Created by a factory INVITE (the anchor dialog); nobody has joined yet.
    OPEN = "open"
    #: Somebody joined: the conference ends when the last one in a call leaves.
    LIVE = "live"
    #: Over: BYEs and terminated NOTIFYs sent, the conference forgotten.
    ENDED = "ended"


class ConferenceInput(Enum):
    INVITEES_ADDED = "invitees added"
    PARTICIPANT_JOINED = "participant joined"
    PARTICIPANT_LEFT = "participant left (others remain)"
    LAST_PARTICIPANT_LEFT = "last participant left"
    ANCHOR_BYE = "BYE on the anchor"
    ANCHOR_NOT_ACKNOWLEDGED = "no ACK for the anchor's 200"
    TIME_LIMIT = "time limit reached"
    END_REQUESTED = "ended by the API"


_C = ConferenceState
_CI = ConferenceInput

#: (state, input) -> next state.  Anything else is a local protocol error.
CONFERENCE_TRANSITIONS: dict[tuple[ConferenceState, ConferenceInput], ConferenceState] = {
    (_C.OPEN, _CI.INVITEES_ADDED): _C.OPEN,
    (_C.OPEN, _CI.PARTICIPANT_JOINED): _C.LIVE,
    (_C.OPEN, _CI.ANCHOR_BYE): _C.ENDED,
    (_C.OPEN, _CI.ANCHOR_NOT_ACKNOWLEDGED): _C.ENDED,
    (_C.OPEN, _CI.TIME_LIMIT): _C.ENDED,
    (_C.OPEN, _CI.END_REQUESTED): _C.ENDED,
    (_C.LIVE, _CI.INVITEES_ADDED): _C.LIVE,
    (_C.LIVE, _CI.PARTICIPANT_JOINED): _C.LIVE,
    (_C.LIVE, _CI.PARTICIPANT_LEFT): _C.LIVE,
    (_C.LIVE, _CI.LAST_PARTICIPANT_LEFT): _C.ENDED,
    (_C.LIVE, _CI.ANCHOR_BYE): _C.ENDED,
    (_C.LIVE, _CI.ANCHOR_NOT_ACKNOWLEDGED): _C.ENDED,
    (_C.LIVE, _CI.TIME_LIMIT): _C.ENDED,
    (_C.LIVE, _CI.END_REQUESTED): _C.ENDED,
}


class ParticipantState(Enum):
    #: On the conference's list; has not called (yet).
    INVITED = "invited"
    #: Its INVITE (or re-INVITE) got our 200 over UDP, resent until its ACK arrives.
    ANSWERING = "answering"
    #: In a call.
    CONNECTED = "connected"
    #: Its call ended; it may call again while the conference lasts.
    LEFT = "left"


class ParticipantInput(Enum):
    ANSWERED = "200 sent, ACK awaited"
    ANSWERED_RELIABLY = "200 sent over TCP"
    ACK = "ACK received"
    ACK_MISSING = "no ACK in 64*T1"
    HUNG_UP = "BYE received"
    REPLACED = "called again"
    CONFERENCE_ENDED = "conference ended"
    #: The RTP relay cannot bind the call's port (taken after a restart, say).
    NO_MEDIA_PORT = "media port unavailable"


_P = ParticipantState
_PI = ParticipantInput

#: (state, input) -> next state.  Anything else is a local protocol error.
#: ``ANSWERED`` in a call is a re-INVITE; an invitee that calls again while
#: in a call is ``REPLACED`` (its old call ends) and then ``ANSWERED``.
PARTICIPANT_TRANSITIONS: dict[tuple[ParticipantState, ParticipantInput], ParticipantState] = {
    (_P.INVITED, _PI.ANSWERED): _P.ANSWERING,
    (_P.INVITED, _PI.ANSWERED_RELIABLY): _P.CONNECTED,
    (_P.ANSWERING, _PI.ANSWERED): _P.ANSWERING,
    (_P.ANSWERING, _PI.ANSWERED_RELIABLY): _P.ANSWERING,
    (_P.ANSWERING, _PI.ACK): _P.CONNECTED,
    (_P.ANSWERING, _PI.ACK_MISSING): _P.LEFT,
    (_P.ANSWERING, _PI.HUNG_UP): _P.LEFT,
    (_P.ANSWERING, _PI.REPLACED): _P.LEFT,
    (_P.ANSWERING, _PI.CONFERENCE_ENDED): _P.LEFT,
    (_P.ANSWERING, _PI.NO_MEDIA_PORT): _P.LEFT,
    (_P.CONNECTED, _PI.ANSWERED): _P.ANSWERING,
    (_P.CONNECTED, _PI.ANSWERED_RELIABLY): _P.CONNECTED,
    (_P.CONNECTED, _PI.HUNG_UP): _P.LEFT,
    (_P.CONNECTED, _PI.REPLACED): _P.LEFT,
    (_P.CONNECTED, _PI.CONFERENCE_ENDED): _P.LEFT,
    (_P.CONNECTED, _PI.NO_MEDIA_PORT): _P.LEFT,
    (_P.LEFT, _PI.ANSWERED): _P.ANSWERING,
    (_P.LEFT, _PI.ANSWERED_RELIABLY): _P.CONNECTED,
}
del _C, _CI, _P, _PI


def next_conference_state(state: ConferenceState, event: ConferenceInput) -> ConferenceState:
    return _next(CONFERENCE_TRANSITIONS, state, event, "a conference")


def next_participant_state(state: ParticipantState, event: ParticipantInput) -> ParticipantState:
    return _next(PARTICIPANT_TRANSITIONS, state, event, "a participant")


def _next(table: dict[tuple[State, Input], State], state: State, event: Input, what: str) -> State:
    try:
        return table[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"{what} cannot take {event.value!r} while {state.value}"
        ) from None
