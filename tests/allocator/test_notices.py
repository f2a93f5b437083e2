"""The texts people read: invitations, the ready notice, /status."""

from __future__ import annotations

from vidim.allocator.conference import Conference, ConferenceState, Participant
from vidim.allocator.notices import (
    conference_header,
    describe,
    invitation_text,
    ready_text,
    status_text,
    with_article,
)
from vidim.vocabulary import Mode


def person(uri: str, asked: Mode, got: Mode, **fields: object) -> Participant:
    return Participant(uri=uri, requested_mode=asked, mode=got, credential="k", **fields)  # type: ignore[arg-type]


def conference() -> Conference:
    return Conference(
        id="c1",
        requester="sip:alice@example.com",
        mode=Mode.VIDEO,
        requester_address="127.0.0.1|5062|UDP",
        participants=[
            person("sip:alice@example.com", Mode.VIDEO, Mode.VIDEO, requester=True),
            person("sip:bob@example.com", Mode.VIDEO, Mode.VIDEO, invited=True),
            person("sip:carol@example.com", Mode.VIDEO, Mode.AUDIO, status="connected"),
            person("sip:dan@example.com", Mode.AUDIO, Mode.CHAT),
        ],
        created_at=0.0,
        state=ConferenceState.ACTIVE,
        conference_uri="sip:conf@focus",
    )


def test_modes_take_their_article() -> None:
    assert [with_article(mode) for mode in Mode] == ["a video", "an audio", "a watch", "a chat"]


def test_an_invitee_is_described_with_why_it_got_less() -> None:
    bob, carol, dan = conference().participants[1:]
    assert describe(bob) == "bob@example.com (video)"
    assert describe(carol) == "carol@example.com (audio, asked video: no video)"
    assert describe(dan) == "dan@example.com (chat, asked audio: not reachable by phone)"


def test_ready_text_names_the_join_uri_and_the_invitees() -> None:
    text = ready_text(conference(), "sip:conf@focus;key=k")
    assert text.splitlines() == [
        "Your video conference is ready. Call sip:conf@focus;key=k to join.",
        "Invited: bob@example.com (video), carol@example.com (audio, asked video: no video), "
        "dan@example.com (chat, asked audio: not reachable by phone).",
        "Send /end to end it, /status for who is there, /add <name> to invite more "
        "(conference #c1).",
    ]


def test_invitations_by_mode() -> None:
    record = conference()
    bob, dan = record.participants[1], record.participants[3]
    assert invitation_text(record, bob, "sip:j") == (
        "alice@example.com invites you to a video conference. Call sip:j to join."
    )
    assert invitation_text(record, dan, "sip:j") == (
        "alice@example.com invites you to a video conference. You take part by instant "
        "message: updates will come here."
    )
    assert conference_header(record, bob, "sip:j") == "<sip:j>;mode=video;id=c1"


def test_status_lists_everyone() -> None:
    assert status_text(conference()).splitlines() == [
        "Conference #c1 (video), active:",
        "- alice@example.com (requester): video, invited",
        "- bob@example.com: video, invited",
        "- carol@example.com: audio, connected",
        "- dan@example.com: chat, not yet invited",
    ]
