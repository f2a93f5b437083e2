"""One conference's record and the table its state moves by.

Rule 1 (as in h11's ``_state.py``): every change of a conference's state
goes through :data:`TRANSITIONS`; a (state, input) pair missing from it is a
:class:`~vidim.sip.LocalProtocolError`.  The record is plain data: it
serializes to JSON types with :meth:`Conference.to_dict` so that a store can
keep it and a restarted allocator can resume managing it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Final

from ..sip import LocalProtocolError
from ..vocabulary import Mode

__all__ = [
    "TRANSITIONS",
    "Conference",
    "ConferenceInput",
    "ConferenceState",
    "Participant",
    "ProbeResult",
    "next_state",
]

#: to_dict() layout version; bump it when the layout changes.
FORMAT = 1


class ConferenceState(Enum):
    __hash__ = object.__hash__  # members are singletons: C-level hash for the table lookups

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


class ConferenceInput(Enum):
    __hash__ = object.__hash__  # members are singletons: C-level hash for the table lookups

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
    __hash__ = object.__hash__  # members are singletons: C-level hash for the table lookups

    #: No probe sent (probing off) or no answer yet.
    UNKNOWN = "unknown"
    #: The device answered; its capabilities are recorded.
    ANSWERED = "answered"
    #: 404, 480, another error or silence: reach it by IM only.
    UNREACHABLE = "unreachable"


# Participant flags: one small integer (a cached int, no allocation) for seven
# fields, since a record lives as long as its conference (docs/performance.md,
# "Memory"): each slot is 8 bytes per participant.
_REQUESTER: Final = 1
_INVITED: Final = 2
_PROBE_SHIFT: Final = 2
_AUDIO_SHIFT: Final = 4
_VIDEO_SHIFT: Final = 6
_MODE_SHIFT: Final = 8
_REQUESTED_SHIFT: Final = 10
_PROBES: Final = (ProbeResult.UNKNOWN, ProbeResult.ANSWERED, ProbeResult.UNREACHABLE)
_TRISTATE: Final = (None, False, True)
_MODES: Final = (Mode.VIDEO, Mode.AUDIO, Mode.WATCH, Mode.CHAT)


def _probe_bits(probe: ProbeResult) -> int:
    if probe is ProbeResult.UNKNOWN:
        return 0
    if probe is ProbeResult.ANSWERED:
        return 1
    if probe is ProbeResult.UNREACHABLE:
        return 2
    raise TypeError(f"not a ProbeResult: {probe!r}")


def _tristate_bits(value: bool | None) -> int:
    return 0 if value is None else 2 if value else 1


def _mode_bits(mode: Mode) -> int:
    if mode is Mode.VIDEO:
        return 0
    if mode is Mode.AUDIO:
        return 1
    if mode is Mode.WATCH:
        return 2
    if mode is Mode.CHAT:
        return 3
    raise TypeError(f"not a Mode: {mode!r}")


class Participant:
    """An invitee: what was asked for, what it can do, what it got.

    A plain ``__slots__`` record (constructor, ``==`` and ``repr`` as the
    dataclass it was): ``requester``, ``invited``, ``probe``, ``audio``,
    ``video``, ``mode`` and ``requested_mode`` are kept in one integer.
    """

    __slots__ = ("_flags", "credential", "status", "uri")

    #: Address of record, e.g. ``sip:bob@example.com``.
    uri: str
    #: The secret the focus checks before admitting this invitee.
    credential: str
    #: Roster status from the focus (RFC 4575 endpoint status), "" before any.
    status: str
    _flags: int

    def __init__(
        self,
        uri: str,
        requested_mode: Mode,
        mode: Mode,
        credential: str,
        requester: bool = False,
        probe: ProbeResult = ProbeResult.UNKNOWN,
        audio: bool | None = None,
        video: bool | None = None,
        invited: bool = False,
        status: str = "",
    ) -> None:
        self.uri = uri
        self.credential = credential
        self.status = status
        self._flags = (
            (_REQUESTER if requester else 0)
            | (_INVITED if invited else 0)
            | _probe_bits(probe) << _PROBE_SHIFT
            | _tristate_bits(audio) << _AUDIO_SHIFT
            | _tristate_bits(video) << _VIDEO_SHIFT
            | _mode_bits(mode) << _MODE_SHIFT
            | _mode_bits(requested_mode) << _REQUESTED_SHIFT
        )

    def _set(self, mask: int, bits: int) -> None:
        self._flags = (self._flags & ~mask) | bits

    @property
    def requester(self) -> bool:
        """The one who asked for the conference (first in the list, never probed or invited)."""
        return (self._flags & _REQUESTER) != 0

    @requester.setter
    def requester(self, value: bool) -> None:
        self._set(_REQUESTER, _REQUESTER if value else 0)

    @property
    def invited(self) -> bool:
        return (self._flags & _INVITED) != 0

    @invited.setter
    def invited(self, value: bool) -> None:
        self._set(_INVITED, _INVITED if value else 0)

    @property
    def probe(self) -> ProbeResult:
        return _PROBES[(self._flags >> _PROBE_SHIFT) & 3]

    @probe.setter
    def probe(self, value: ProbeResult) -> None:
        self._set(3 << _PROBE_SHIFT, _probe_bits(value) << _PROBE_SHIFT)

    @property
    def audio(self) -> bool | None:
        return _TRISTATE[(self._flags >> _AUDIO_SHIFT) & 3]

    @audio.setter
    def audio(self, value: bool | None) -> None:
        self._set(3 << _AUDIO_SHIFT, _tristate_bits(value) << _AUDIO_SHIFT)

    @property
    def video(self) -> bool | None:
        return _TRISTATE[(self._flags >> _VIDEO_SHIFT) & 3]

    @video.setter
    def video(self, value: bool | None) -> None:
        self._set(3 << _VIDEO_SHIFT, _tristate_bits(value) << _VIDEO_SHIFT)

    @property
    def mode(self) -> Mode:
        """The requested mode lowered by probing; the mode of the invitation."""
        return _MODES[(self._flags >> _MODE_SHIFT) & 3]

    @mode.setter
    def mode(self, value: Mode) -> None:
        self._set(3 << _MODE_SHIFT, _mode_bits(value) << _MODE_SHIFT)

    @property
    def requested_mode(self) -> Mode:
        return _MODES[(self._flags >> _REQUESTED_SHIFT) & 3]

    @requested_mode.setter
    def requested_mode(self, value: Mode) -> None:
        self._set(3 << _REQUESTED_SHIFT, _mode_bits(value) << _REQUESTED_SHIFT)

    def _fields(self) -> tuple[object, ...]:
        return (
            self.uri,
            self.requested_mode,
            self.mode,
            self.credential,
            self.requester,
            self.probe,
            self.audio,
            self.video,
            self.invited,
            self.status,
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Participant)
        return self._fields() == other._fields()

    # (No __hash__ = None: a class with __eq__ and no __hash__ is unhashable
    # anyway, and compiled, the line would cost a slot.)

    def __repr__(self) -> str:
        return (
            f"Participant(uri={self.uri!r}, requested_mode={self.requested_mode!r}, "
            f"mode={self.mode!r}, credential={self.credential!r}, "
            f"requester={self.requester!r}, probe={self.probe!r}, audio={self.audio!r}, "
            f"video={self.video!r}, invited={self.invited!r}, status={self.status!r})"
        )

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


#: ``Conference._timer_at`` when the allocator has no timer entry for it.
NO_TIMER: Final = float("inf")

_CONFERENCE_FIELDS = (
    "id",
    "requester",
    "mode",
    "requester_address",
    "participants",
    "created_at",
    "state",
    "focus_index",
    "focus_failures",
    "conference_uri",
    "anchor",
    "subscription",
    "roster_version",
    "probe_deadline",
    "focus_deadline",
    "idle_deadline",
    "keepalive_deadline",
    "ending_deadline",
    "reason",
)


class Conference:
    """The record of one conference; the allocator's only per-conference state.

    Deadlines are absolute times on the clock the allocator is driven with;
    give it a wall clock (``time.time()``) when records outlive the process.

    A plain ``__slots__`` record (constructor, ``==`` and ``repr`` as the
    dataclass it was) so that it can stay small while it is live: no list
    for ``focus_failures`` until a focus fails, the participants in a list
    of their exact size.
    """

    __slots__ = (
        "_failures",
        "_timer_at",
        "anchor",
        "conference_uri",
        "created_at",
        "ending_deadline",
        "focus_deadline",
        "focus_index",
        "id",
        "idle_deadline",
        "keepalive_deadline",
        "mode",
        "participants",
        "probe_deadline",
        "reason",
        "requester",
        "requester_address",
        "roster_version",
        "state",
        "subscription",
    )

    id: str
    requester: str
    mode: Mode
    #: Where IMs for the requester go when there is no proxy: ``host:port``.
    requester_address: str
    participants: list[Participant]
    created_at: float
    state: ConferenceState
    #: Index into the configured focus list of the focus tried last.
    focus_index: int
    conference_uri: str | None
    #: The INVITE dialog with the focus (``Dialog.to_dict()``) in a saved record.
    #: A live record leaves it None: the allocator holds the live Dialog and
    #: ``Allocator.snapshot()`` serializes it into the record it returns.
    anchor: dict[str, Any] | None
    #: The conference-event subscription dialog, once established.
    subscription: dict[str, Any] | None
    #: The last roster version seen (RFC 4575 section 4.6).
    roster_version: int
    #: When probing gives up waiting, when the focus must have answered,
    #: when an idle conference ends, when the anchor is next checked.
    probe_deadline: float | None
    focus_deadline: float | None
    idle_deadline: float | None
    keepalive_deadline: float | None
    ending_deadline: float | None
    #: The reason the conference ended or failed.
    reason: str
    _failures: list[str] | None
    #: The allocator's own: when its one timer entry for this record is due
    #: (the earliest deadline when it was armed), ``NO_TIMER`` when it has none.
    #: Not part of the record: not compared, copied nor saved.
    _timer_at: float

    def __init__(
        self,
        id: str,
        requester: str,
        mode: Mode,
        requester_address: str,
        participants: list[Participant],
        created_at: float,
        state: ConferenceState = ConferenceState.REQUESTED,
        focus_index: int = 0,
        focus_failures: list[str] | None = None,
        conference_uri: str | None = None,
        anchor: dict[str, Any] | None = None,
        subscription: dict[str, Any] | None = None,
        roster_version: int = 0,
        probe_deadline: float | None = None,
        focus_deadline: float | None = None,
        idle_deadline: float | None = None,
        keepalive_deadline: float | None = None,
        ending_deadline: float | None = None,
        reason: str = "",
    ) -> None:
        self.id = id
        self.requester = requester
        self.mode = mode
        self.requester_address = requester_address
        # A list of its exact size: the caller's may have room to grow.
        self.participants = (
            participants[:] if isinstance(participants, list) else list(participants)
        )
        self.created_at = created_at
        self.state = state
        self.focus_index = focus_index
        self._failures = focus_failures or None
        self.conference_uri = conference_uri
        self.anchor = anchor
        self.subscription = subscription
        self.roster_version = roster_version
        self.probe_deadline = probe_deadline
        self.focus_deadline = focus_deadline
        self.idle_deadline = idle_deadline
        self.keepalive_deadline = keepalive_deadline
        self.ending_deadline = ending_deadline
        self.reason = reason
        self._timer_at = NO_TIMER

    @property
    def focus_failures(self) -> list[str]:
        """Why each focus tried so far failed, in order (the list is made on first use)."""
        failures = self._failures
        if failures is None:
            failures = self._failures = []
        return failures

    @focus_failures.setter
    def focus_failures(self, value: list[str]) -> None:
        self._failures = value

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _CONFERENCE_FIELDS)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _CONFERENCE_FIELDS)
        return f"Conference({fields})"

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

    def deadlines(self) -> list[float]:
        return [
            d
            for d in (
                self.probe_deadline,
                self.focus_deadline,
                self.idle_deadline,
                self.keepalive_deadline,
                self.ending_deadline,
            )
            if d is not None
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (see :meth:`from_dict`)."""
        return {
            "format": FORMAT,
            "id": self.id,
            "requester": self.requester,
            "mode": self.mode.value,
            "requester_address": self.requester_address,
            "participants": [p.to_dict() for p in self.participants],
            "created_at": self.created_at,
            "state": self.state.value,
            "focus_index": self.focus_index,
            "focus_failures": list(self._failures or ()),
            "conference_uri": self.conference_uri,
            "anchor": self.anchor,
            "subscription": self.subscription,
            "roster_version": self.roster_version,
            "probe_deadline": self.probe_deadline,
            "focus_deadline": self.focus_deadline,
            "idle_deadline": self.idle_deadline,
            "keepalive_deadline": self.keepalive_deadline,
            "ending_deadline": self.ending_deadline,
            "reason": self.reason,
        }

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
            probe_deadline=data["probe_deadline"],
            focus_deadline=data["focus_deadline"],
            idle_deadline=data["idle_deadline"],
            keepalive_deadline=data["keepalive_deadline"],
            ending_deadline=data["ending_deadline"],
            reason=str(data["reason"]),
        )
