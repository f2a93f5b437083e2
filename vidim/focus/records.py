"""The focus's records: a conference, its invitees, calls and subscriptions, its deadlines.

Plain mutable data, shared by the parts of the focus (:mod:`.focus`,
:mod:`.participants`, :mod:`.subscriptions`, :mod:`.signalling`); states
change only through :mod:`.lifecycle`'s tables (``advance``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import Enum

from ..conference_info import UserInfo
from ..sip import (
    Address,
    Dialog,
    DialogId,
    Request,
    Response,
    SipURI,
    parse_name_addr_list,
    unescape,
)
from ..vocabulary import Mode
from .lifecycle import (
    ConferenceInput,
    ConferenceState,
    ParticipantInput,
    ParticipantState,
    next_conference_state,
    next_participant_state,
)
from .media import ForwardingPlan, StreamInfo
from .negotiation import address_of_record

__all__ = [
    "Call",
    "Conference",
    "Invitee",
    "Leg",
    "Owner",
    "Resend",
    "Subscription",
    "TimerKey",
    "TimerKind",
]


@dataclass(eq=False, slots=True)
class Invitee:
    uri: str
    #: ``sip:user@host`` of the URI, for matching asserted identities.
    aor: str
    mode: Mode
    credential: str | None
    display_name: str | None
    state: ParticipantState = ParticipantState.INVITED

    def advance(self, event: ParticipantInput) -> None:
        self.state = next_participant_state(self.state, event)


@dataclass(eq=False, slots=True)
class Call:
    """An invitee's call: its dialog, and the media the focus answered."""

    invitee: Invitee
    dialog: Dialog
    source: Address
    streams: tuple[StreamInfo, ...]
    #: The focus's RTP port per kind ("audio", "video").
    ports: dict[str, int]
    answer: bytes
    session_id: int
    version: int = 1
    #: CSeq numbers of our 200s on this dialog still resent until their ACK.
    unacknowledged: set[int] = field(default_factory=set)

    @property
    def uri(self) -> str:
        return self.invitee.uri

    @property
    def mode(self) -> Mode:
        return self.invitee.mode


@dataclass(eq=False, slots=True)
class Subscription:
    dialog: Dialog
    source: Address
    subscriber: str
    event: str
    expires_at: float
    #: The conference-info version of the last NOTIFY (RFC 4575: +1 per NOTIFY).
    version: int = 0


@dataclass(eq=False, slots=True)
class Conference:
    user: str
    uri: str
    anchor: Dialog
    anchor_source: Address
    created_at: float
    ends_at: float
    invitees: dict[str, Invitee] = field(default_factory=dict)
    calls: dict[str, Call] = field(default_factory=dict)
    subscriptions: list[Subscription] = field(default_factory=list)
    #: Users that have joined, by entity, as the last full view says.
    roster: dict[str, UserInfo] = field(default_factory=dict)
    plan: ForwardingPlan = field(default_factory=ForwardingPlan)
    session_id: int = 0
    sdp_version: int = 1
    state: ConferenceState = ConferenceState.OPEN

    @property
    def contact(self) -> str:
        return f"<{self.uri}>;isfocus"

    def advance(self, event: ConferenceInput) -> None:
        self.state = next_conference_state(self.state, event)

    def identify(self, request: Request, *, trusted: bool) -> tuple[Invitee, str] | None:
        """The invitee a request comes from, and how it showed it (``key`` or ``asserted``).

        ``key``: the Request-URI's ``key`` parameter is its join credential;
        ``asserted``: a P-Asserted-Identity names it, believed only when
        ``trusted`` (the request comes from a trusted network).
        """
        uri = request.uri
        key = uri.param("key") if isinstance(uri, SipURI) else None
        if key:
            given = unescape(key).encode("utf-8", "surrogateescape")
            for invitee in self.invitees.values():
                if invitee.credential and secrets.compare_digest(
                    invitee.credential.encode("utf-8"), given
                ):
                    return invitee, "key"
        if trusted:
            by_aor = {i.aor: i for i in self.invitees.values()}
            for value in request.headers.get_all("p-asserted-identity"):
                for asserted in parse_name_addr_list(value):
                    named = by_aor.get(address_of_record(str(asserted.uri)))
                    if named is not None:
                        return named, "asserted"
        return None


class Leg(Enum):
    """What a dialog of the focus is to its conference."""

    ANCHOR = "anchor"
    PARTICIPANT = "participant"
    SUBSCRIPTION = "subscription"


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose dialog it is: the conference, and for a participant's, the invitee's URI."""

    conference: str
    leg: Leg
    uri: str = ""


@dataclass(eq=False, slots=True)
class Resend:
    """A 200 to an INVITE, resent over UDP until its ACK (RFC 3261 13.3.1.4)."""

    response: Response
    destination: Address
    conference: str
    dialog: DialogId
    interval: float
    deadline: float
    give_up: float


class TimerKind(Enum):
    #: The conference's time limit (``FocusConfig.conference_ttl``): keyed by its anchor.
    TIME_LIMIT = "time limit"
    #: The next resend of a 200 (:class:`Resend`): keyed by its dialog and CSeq.
    RESEND = "resend a 200"
    #: A conference-event subscription runs out: keyed by its dialog.
    SUBSCRIPTION_EXPIRY = "subscription expiry"


@dataclass(frozen=True, slots=True)
class TimerKey:
    """What a deadline is for: a kind of timer and the dialog it concerns."""

    kind: TimerKind
    dialog: DialogId
    #: For :attr:`TimerKind.RESEND`: the CSeq number of the INVITE answered.
    cseq: int = 0
