"""The conference record: plain dataclasses that go to JSON data and back unchanged."""

from __future__ import annotations

import itertools
import json

import pytest

from vidim.allocator.conference import (
    Conference,
    ConferenceInput,
    ConferenceState,
    Deadline,
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
def test_participant_fields_hold_every_combination(
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


def test_focus_failures_survive_the_record() -> None:
    record = conference()
    assert record.to_dict()["focus_failures"] == []
    record.focus_failures.append("sip:focus1: 503 Service Unavailable")
    again = Conference.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record
    assert again.focus_failures == ["sip:focus1: 503 Service Unavailable"]


def test_conference_round_trip_equality_and_repr() -> None:
    record = conference(state=ConferenceState.ALLOCATING, deadlines={Deadline.FOCUS: 40.0})
    record.move(ConferenceInput.FOCUS_ANSWERED)
    again = Conference.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record
    again.roster_version = 3
    assert again != record
    assert repr(record).startswith("Conference(id='c1', requester='sip:alice@example.com', ")
    assert "focus_failures=[]" in repr(record)
    assert "state=active" in repr(record)  # a state reads as its value in logs


def test_deadlines_are_kept_one_key_each_in_the_record() -> None:
    """The record's layout (FORMAT 1): ``<kind>_deadline``, None when not armed."""
    deadlines = {Deadline.PROBE: 1.5, Deadline.IDLE: 300.0}
    record = conference(deadlines=deadlines).to_dict()
    assert {key: record[key] for key in record if key.endswith("_deadline")} == {
        "probe_deadline": 1.5,
        "focus_deadline": None,
        "idle_deadline": 300.0,
        "keepalive_deadline": None,
        "ending_deadline": None,
    }
    assert Conference.from_dict(record).deadlines == deadlines


def test_invitees_are_everyone_but_the_requester() -> None:
    record = conference()
    assert record.invitees == record.participants[1:]
    assert record.participant("sip:bob@example.com") is record.participants[0]
    assert record.participant("sip:nobody@example.com") is None
