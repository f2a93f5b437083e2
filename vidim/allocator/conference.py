"""One conference's record and the table its state moves by.

Rule 1 (as in h11's ``_state.py``): every change of a conference's state
goes through :data:`TRANSITIONS`; a (state, input) pair missing from it is a
:class:`~vidim.sip.LocalProtocolError`.  The record is plain data: it
serializes to JSON types with :meth:`Conference.to_dict` so that a store can
keep it and a restarted allocator can resume managing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..sip import LocalProtocolError
from ..vocabulary import Mode

__all__ = [
    "TRANSITIONS",
    "Conference",
    "ConferenceInput",
    "ConferenceState",
    "Deadline",
    "Participant",
    "ProbeResult",
    "next_state",
]

#: to_dict() layout version; bump it when the layout changes.
FORMAT = 1


class ConferenceState(Enum):
    #: The request was accepted (202 sent); nothing else has happened yet.
    REQUESTED = "requested"
    #: OPTIONS probes are out to the invitees.
    PROBING = "probing"
    #: An INVITE is out to a focus.
    ALLOCATING = "allocating"
    #: The focus answered: invitations are out, the roster is followed.
    ACTIVE = "active"
    #: BYE sent on the anchor dialog; waiting for its answer.
    ENDING = "ending"
    #: Over, normally (requester, focus, idle time).
    ENDED = "ended"
    #: Never came to life: every focus failed.
    FAILED = "failed"

    def __repr__(self) -> str:
        # Events are logged by their repr: ``old=active``, not the Enum's long form.
        return self.value


class ConferenceInput(Enum):
    START_PROBING = "start probing"
    START_ALLOCATING = "start allocating"
    PROBES_DONE = "probes done"
    FOCUS_FAILED_TRY_NEXT = "focus failed, try the next"
    FOCUS_FAILED_NO_MORE = "focus failed, none left"
    FOCUS_ANSWERED = "focus answered"
    ADD_INVITEES = "add invitees"
    ROSTER_CHANGED = "roster changed"
    END_REQUESTED = "end requested"
    IDLE_TIMEOUT = "nobody joined in time"
    FOCUS_ENDED = "focus ended it"
    FOCUS_DEAD = "focus stopped answering"
    BYE_DONE = "BYE answered or timed out"


_S = ConferenceState
_I = ConferenceInput

#: (state, input) -> next state.  Anything else is a local protocol error.
TRANSITIONS: dict[tuple[ConferenceState, ConferenceInput], ConferenceState] = {
    (_S.REQUESTED, _I.START_PROBING): _S.PROBING,
    (_S.REQUESTED, _I.START_ALLOCATING): _S.ALLOCATING,
    (_S.PROBING, _I.PROBES_DONE): _S.ALLOCATING,
    (_S.PROBING, _I.END_REQUESTED): _S.ENDED,
    (_S.ALLOCATING, _I.FOCUS_FAILED_TRY_NEXT): _S.ALLOCATING,
    (_S.ALLOCATING, _I.FOCUS_FAILED_NO_MORE): _S.FAILED,
    (_S.ALLOCATING, _I.FOCUS_ANSWERED): _S.ACTIVE,
    (_S.ALLOCATING, _I.END_REQUESTED): _S.ENDED,
    (_S.ACTIVE, _I.ADD_INVITEES): _S.ACTIVE,
    (_S.ACTIVE, _I.ROSTER_CHANGED): _S.ACTIVE,
    (_S.ACTIVE, _I.END_REQUESTED): _S.ENDING,
    (_S.ACTIVE, _I.IDLE_TIMEOUT): _S.ENDING,
    (_S.ACTIVE, _I.FOCUS_ENDED): _S.ENDED,
    (_S.ACTIVE, _I.FOCUS_DEAD): _S.ENDED,
    (_S.ENDING, _I.ROSTER_CHANGED): _S.ENDING,
    (_S.ENDING, _I.BYE_DONE): _S.ENDED,
    (_S.ENDING, _I.FOCUS_ENDED): _S.ENDED,
}
del _S, _I

#: States in which nothing more happens.
FINAL_STATES = frozenset((ConferenceState.ENDED, ConferenceState.FAILED))


def next_state(state: ConferenceState, event: ConferenceInput) -> ConferenceState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"a conference cannot take {event.value!r} while {state.value}"
        ) from None


class ProbeResult(Enum):
    #: No probe sent (probing off) or no answer yet.
    UNKNOWN = "unknown"
    #: The device answered; its capabilities are recorded.
    ANSWERED = "answered"
    #: 404, 480, another error or silence: reach it by IM only.
    UNREACHABLE = "unreachable"


class Deadline(Enum):
    """What a conference may be waiting for; each kind has at most one deadline."""

    #: Probing gives up waiting for the invitees' answers.
    PROBE = "probe"
    #: The focus must have answered the INVITE (else the next one is tried).
    FOCUS = "focus"
    #: An active conference nobody joined ends.
    IDLE = "idle"
    #: The anchor dialog is checked with an OPTIONS (and the subscription renewed).
    KEEPALIVE = "keepalive"
    #: Backstop for the BYE's answer.
    ENDING = "ending"

    @property
    def record_key(self) -> str:
        """Its key in :meth:`Conference.to_dict`: ``probe_deadline``..."""
        return f"{self.value}_deadline"


@dataclass(slots=True)
class Participant:
    """An invitee (or the requester): what was asked for, what it can do, what it got."""

    #: Address of record, e.g. ``sip:bob@example.com``.
    uri: str
    requested_mode: Mode
    #: The requested mode lowered by probing; the mode of the invitation.
    mode: Mode
    #: The secret the focus checks before admitting this invitee.
    credential: str
    #: The one who asked for the conference (first in the list, never probed or invited).
    requester: bool = False
    probe: ProbeResult = ProbeResult.UNKNOWN
    audio: bool | None = None
    video: bool | None = None
    invited: bool = False
    #: Roster status from the focus (RFC 4575 endpoint status), "" before any.
    status: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "requested_mode": self.requested_mode.value,
            "mode": self.mode.value,
            "credential": self.credential,
            "requester": self.requester,
            "probe": self.probe.value,
            "audio": self.audio,
            "video": self.video,
            "invited": self.invited,
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Participant:
        return cls(
            uri=str(data["uri"]),
            requested_mode=Mode(data["requested_mode"]),
            mode=Mode(data["mode"]),
            credential=str(data["credential"]),
            requester=bool(data["requester"]),
            probe=ProbeResult(data["probe"]),
            audio=data["audio"],
            video=data["video"],
            invited=bool(data["invited"]),
            status=str(data["status"]),
        )


@dataclass(slots=True)
class Conference:
    """The record of one conference: what a store keeps to resume managing it.

    Deadlines are absolute times on the clock the allocator is driven with;
    give it a wall clock (``time.time()``) when records outlive the process.
    """

    id: str
    requester: str
    mode: Mode
    #: Where IMs for the requester go when there is no proxy: ``host|port|transport``.
    requester_address: str
    participants: list[Participant]
    created_at: float
    state: ConferenceState = ConferenceState.REQUESTED
    #: Index into the configured focus list of the focus tried last.
    focus_index: int = 0
    #: Why each focus tried so far failed, in order.
    focus_failures: list[str] = field(default_factory=list)
    conference_uri: str | None = None
    #: The INVITE dialog with the focus (``Dialog.to_dict()``) in a saved record.
    #: A live record leaves it None: the allocator holds the live Dialog and
    #: ``Allocator.snapshot()`` serializes it into the record it returns.
    anchor: dict[str, Any] | None = None
    #: The conference-event subscription dialog, once established.
    subscription: dict[str, Any] | None = None
    #: The last roster version seen (RFC 4575 section 4.6).
    roster_version: int = 0
    #: What the conference waits for, and until when.
    deadlines: dict[Deadline, float] = field(default_factory=dict)
    #: The reason the conference ended or failed.
    reason: str = ""

    def move(self, event: ConferenceInput) -> ConferenceState:
        """Apply ``event`` through the table; returns the new state."""
        self.state = next_state(self.state, event)
        return self.state

    @property
    def live(self) -> bool:
        return self.state not in FINAL_STATES

    def participant(self, uri: str) -> Participant | None:
        for participant in self.participants:
            if participant.uri == uri:
                return participant
        return None

    @property
    def invitees(self) -> list[Participant]:
        """Everyone but the requester."""
        return [p for p in self.participants if not p.requester]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (see :meth:`from_dict`)."""
        record = {
            "format": FORMAT,
            "id": self.id,
            "requester": self.requester,
            "mode": self.mode.value,
            "requester_address": self.requester_address,
            "participants": [p.to_dict() for p in self.participants],
            "created_at": self.created_at,
            "state": self.state.value,
            "focus_index": self.focus_index,
            "focus_failures": list(self.focus_failures),
            "conference_uri": self.conference_uri,
            "anchor": self.anchor,
            "subscription": self.subscription,
            "roster_version": self.roster_version,
        }
        for kind in Deadline:
            record[kind.record_key] = self.deadlines.get(kind)
        record["reason"] = self.reason
        return record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conference:
        if data.get("format") != FORMAT:
            raise LocalProtocolError(f"unknown conference record format {data.get('format')!r}")
        return cls(
            id=str(data["id"]),
            requester=str(data["requester"]),
            mode=Mode(data["mode"]),
            requester_address=str(data["requester_address"]),
            participants=[Participant.from_dict(p) for p in data["participants"]],
            created_at=float(data["created_at"]),
            state=ConferenceState(data["state"]),
            focus_index=int(data["focus_index"]),
            focus_failures=[str(f) for f in data["focus_failures"]],
            conference_uri=data["conference_uri"],
            anchor=data["anchor"],
            subscription=data["subscription"],
            roster_version=int(data["roster_version"]),
            deadlines={
                kind: float(data[kind.record_key])
                for kind in Deadline
                if data[kind.record_key] is not None
            },
            reason=str(data["reason"]),
        )
