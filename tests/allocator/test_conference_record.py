"""The conference record stays small while live and behaves as the dataclass it was.

``Participant`` keeps five small fields in one integer and ``Conference``
makes no ``focus_failures`` list until a focus fails (docs/performance.md,
"Memory"); what callers see (constructor, attributes, ``==``, ``repr``,
``to_dict``/``from_dict``) is unchanged.
"""

from __future__ import annotations

import itertools
import json
import sys

import pytest

from vidim.allocator.conference import (
    Conference,
    ConferenceInput,
    ConferenceState,
    Participant,
    ProbeResult,
)
from vidim.vocabulary import Mode

TRISTATE = (None, False, True)


def participant(**fields: object) -> Participant:
    return Participant(
        uri="sip:bob@example.com",
        requested_mode=Mode.VIDEO,
        mode=Mode.AUDIO,
        credential="secret",
        **fields,  # type: ignore[arg-type]
    )


def conference(**fields: object) -> Conference:
    fields.setdefault("participants", [participant(requester=True), participant(), participant()])
    fields.setdefault("created_at", 12.5)
    return Conference(
        id="c1",
        requester="sip:alice@example.com",
        mode=Mode.VIDEO,
        requester_address="127.0.0.1|5062|UDP",
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("requester", "invited", "probe", "audio", "video"),
    list(itertools.product((False, True), (False, True), ProbeResult, TRISTATE, TRISTATE)),
)
def test_participant_flags_hold_every_combination(
    requester: bool, invited: bool, probe: ProbeResult, audio: bool | None, video: bool | None
) -> None:
    made = participant(requester=requester, invited=invited, probe=probe, audio=audio, video=video)
    assert (made.requester, made.invited, made.probe, made.audio, made.video) == (
        requester,
        invited,
        probe,
        audio,
        video,
    )
    # Set one by one on a default participant: the same, and nothing else moves.
    other = participant(status="connected")
    other.requester = requester
    other.invited = invited
    other.probe = probe
    other.audio = audio
    other.video = video
    assert other.status == "connected"
    assert other.mode is Mode.AUDIO
    assert (other.requester, other.invited, other.probe, other.audio, other.video) == (
        requester,
        invited,
        probe,
        audio,
        video,
    )
    assert Participant.from_dict(json.loads(json.dumps(made.to_dict()))) == made


def test_participant_equality_and_repr_are_the_dataclasss() -> None:
    a = participant(audio=True)
    b = participant(audio=True)
    assert a == b
    b.video = False
    assert a != b
    assert a != "not a participant"
    assert repr(a) == (
        "Participant(uri='sip:bob@example.com', requested_mode=<Mode.VIDEO: 'video'>, "
        "mode=<Mode.AUDIO: 'audio'>, credential='secret', requester=False, "
        "probe=<ProbeResult.UNKNOWN: 'unknown'>, audio=True, video=None, invited=False, "
        "status='')"
    )
    with pytest.raises(TypeError):
        hash(a)


def test_focus_failures_list_is_made_when_a_focus_fails() -> None:
    record = conference()
    assert record._failures is None
    assert record.to_dict()["focus_failures"] == []
    record.focus_failures.append("sip:focus1: 503 Service Unavailable")
    assert record.focus_failures == ["sip:focus1: 503 Service Unavailable"]
    again = Conference.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record
    assert again.focus_failures == record.focus_failures
    record.focus_failures = []
    assert record.to_dict()["focus_failures"] == []


def test_conference_round_trip_equality_and_repr() -> None:
    record = conference(state=ConferenceState.ALLOCATING, focus_deadline=40.0)
    record.move(ConferenceInput.FOCUS_ANSWERED)
    again = Conference.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record
    again.roster_version = 3
    assert again != record
    assert repr(record).startswith("Conference(id='c1', requester='sip:alice@example.com', ")
    assert "focus_failures=[]" in repr(record)
    assert record.deadlines() == [40.0]


def test_participants_are_kept_in_a_list_of_their_size() -> None:
    people = [participant(requester=True)]
    people += [participant(), participant()]  # a list with room to grow
    record = conference(participants=people, created_at=0.0)
    assert record.participants == people
    assert sys.getsizeof(record.participants) < sys.getsizeof(people)
    record.participants += [participant()]  # the allocator adds invitees so
    assert len(record.participants) == 4


def test_a_live_record_is_small() -> None:
    """Record and participants' own bytes (their strings aside): 504.

    As dataclasses the same record was 192 + 3 x 112 + 88 (participants
    list) + 56 (empty focus_failures) = 672 bytes.
    """
    record = conference()
    own = (
        sys.getsizeof(record)
        + sum(sys.getsizeof(p) for p in record.participants)
        + sys.getsizeof(record.participants)
        + (sys.getsizeof(record._failures) if record._failures is not None else 0)
    )
    assert own <= 520, own
