"""Probing alone: what an OPTIONS answer says, and when the focus is invited.

The focus leg is a stand-in that records what probing asks of it.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from allocator_factory import make_context

from vidim.allocator.conference import (
    Conference,
    ConferenceState,
    Deadline,
    Participant,
    ProbeResult,
)
from vidim.allocator.context import Context
from vidim.allocator.focus_leg import FocusLeg
from vidim.allocator.probing import Probing, capabilities_of, known_capabilities
from vidim.sip import Request, Response, make_response
from vidim.vocabulary import Capabilities, Mode

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


class StandInFocus:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def invite(self, conference: Conference, now: float) -> None:
        self.calls.append(("invite", conference.id))

    def update(self, conference: Conference, now: float) -> None:
        self.calls.append(("update", conference.id))


def world(**config: Any) -> tuple[Context, Probing, StandInFocus, Conference]:
    context, _ = make_context(**config)
    focus = StandInFocus()
    probing = Probing(context, cast(FocusLeg, focus))
    conference = Conference(
        id="c1",
        requester="sip:alice@example.com",
        mode=Mode.VIDEO,
        requester_address="127.0.0.1|5062|UDP",
        participants=[
            Participant("sip:alice@example.com", Mode.VIDEO, Mode.VIDEO, "k", requester=True),
            Participant("sip:bob@example.com", Mode.VIDEO, Mode.VIDEO, "k"),
            Participant("sip:carol@example.com", Mode.VIDEO, Mode.VIDEO, "k"),
            Participant("sip:dan@example.com", Mode.CHAT, Mode.CHAT, "k"),  # not probed
        ],
        created_at=0.0,
    )
    context.conferences.add(conference)
    return context, probing, focus, conference


def answer(context: Context, uri: str, status: int, **fields: Any) -> tuple[Any, Response]:
    (pending,) = [p for p in context.pending.values() if p.target == uri]
    request: Request = pending.request
    return pending, make_response(request, status, to_tag="t", **fields)


def test_capabilities_from_the_sdp_or_the_contact() -> None:
    options = Request("OPTIONS", "sip:bob@example.com", [("Call-ID", "x"), ("CSeq", "1 OPTIONS")])
    with_sdp = make_response(options, 200, headers=[("Content-Type", "application/sdp")], body=SDP)
    assert capabilities_of(with_sdp) == Capabilities(audio=True, video=False)
    tagged = make_response(options, 200, headers=[("Contact", "<sip:bob@192.0.2.5>;audio;video")])
    assert capabilities_of(tagged) == Capabilities(audio=True, video=True)
    assert capabilities_of(make_response(options, 200)) is None
    broken = make_response(
        options, 200, headers=[("Content-Type", "application/sdp")], body=b"not sdp"
    )
    assert capabilities_of(broken) is None


def test_what_probing_knows_of_a_participant() -> None:
    bob = Participant("sip:bob@example.com", Mode.VIDEO, Mode.VIDEO, "k")
    assert known_capabilities(bob) is None
    bob.audio, bob.video = True, False
    assert known_capabilities(bob) == Capabilities(audio=True, video=False)
    bob.probe = ProbeResult.UNREACHABLE
    assert known_capabilities(bob) == Capabilities.unreachable()


def test_every_answer_in_lowers_the_modes_and_invites_the_focus() -> None:
    context, probing, focus, conference = world()
    probing.start(conference, 0.0)
    assert conference.state is ConferenceState.PROBING
    assert sorted(p.target for p in context.pending.values()) == [
        "sip:bob@example.com",
        "sip:carol@example.com",
    ]
    assert conference.deadlines == {Deadline.PROBE: 2.0}
    probing.on_answer(conference, *answer(context, "sip:bob@example.com", 480), now=0.1)
    assert focus.calls == []  # carol has not answered yet
    headers = [("Content-Type", "application/sdp")]
    pending, ok = answer(context, "sip:carol@example.com", 200, headers=headers, body=SDP)
    probing.on_answer(conference, pending, ok, 0.2)
    assert focus.calls == [("invite", "c1")]
    assert conference.state is ConferenceState.ALLOCATING
    assert conference.deadlines == {}
    modes = {p.uri: (p.probe, p.mode) for p in conference.invitees}
    assert modes == {
        "sip:bob@example.com": (ProbeResult.UNREACHABLE, Mode.CHAT),
        "sip:carol@example.com": (ProbeResult.ANSWERED, Mode.AUDIO),
        "sip:dan@example.com": (ProbeResult.UNKNOWN, Mode.CHAT),
    }


@pytest.mark.parametrize("status", [405, 501])
def test_a_device_that_will_not_say_keeps_its_mode(status: int) -> None:
    context, probing, _focus, conference = world()
    probing.start(conference, 0.0)
    probing.on_answer(conference, *answer(context, "sip:bob@example.com", status), now=0.1)
    probing.on_deadline(conference, 2.0)  # carol stays silent
    bob, carol = conference.invitees[:2]
    assert (bob.probe, bob.mode) == (ProbeResult.ANSWERED, Mode.VIDEO)
    assert (carol.probe, carol.mode) == (ProbeResult.UNREACHABLE, Mode.CHAT)


def test_without_probing_the_focus_is_invited_at_once() -> None:
    context, probing, focus, conference = world(probe=False)
    probing.start(conference, 0.0)
    assert conference.state is ConferenceState.ALLOCATING
    assert focus.calls == [("invite", "c1")]
    assert context.pending == {}


def test_invitees_added_to_an_active_conference_go_to_the_focus_by_update() -> None:
    _context, probing, focus, conference = world(probe=False)
    conference.state = ConferenceState.ACTIVE
    probing.probe(conference, 0.0)  # nobody to probe: at once
    assert focus.calls == [("update", "c1")]
