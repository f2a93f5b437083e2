"""The focus leg alone: failover, giving up, ending before the focus answered.

The roster and the invitations are stand-ins; the transaction layer is real
(its output is read, nothing answers).
"""

from __future__ import annotations

from typing import Any, cast

from allocator_factory import make_context, two_party_record

from vidim.allocator.conference import Conference, ConferenceState, Deadline
from vidim.allocator.context import Context, Purpose
from vidim.allocator.events import (
    AllocatorEvent,
    ConferenceEnded,
    ConferenceFailed,
    FocusFailover,
)
from vidim.allocator.focus_leg import FocusLeg
from vidim.allocator.notices import Invitations
from vidim.allocator.roster import Roster
from vidim.sip import Address, make_response

FOCI = ("sip:focus@192.0.2.1:5080", "sip:focus@192.0.2.2:5080")


class StandIn:
    """Records the calls made to it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append(name)


def world(
    **config: Any,
) -> tuple[Context, list[AllocatorEvent], FocusLeg, Conference, list[Conference]]:
    config.setdefault("focus_uris", FOCI)
    context, events = make_context(**config)
    retired: list[Conference] = []
    focus = FocusLeg(context, cast(Roster, StandIn()), cast(Invitations, StandIn()), retired.append)
    conference = two_party_record(ConferenceState.ALLOCATING)
    context.conferences.add(conference)
    return context, events, focus, conference, retired


def invites_sent(context: Context) -> list[Address]:
    return [
        destination
        for message, destination in context.layer.messages_to_send()
        if getattr(message, "method", None) == "INVITE"
    ]


def answer_invite(context: Context, focus: FocusLeg, conference: Conference, status: int) -> None:
    (pending,) = [p for p in context.pending.values() if p.purpose is Purpose.FOCUS_INVITE]
    response = make_response(pending.request, status, to_tag="t")
    focus.on_invite_answer(conference, pending, response, 1.0)


def test_an_invite_waits_for_its_answer_until_the_focus_deadline() -> None:
    context, _, focus, conference, _ = world()
    focus.invite(conference, 0.0)
    assert invites_sent(context) == [Address("192.0.2.1", 5080)]
    assert conference.deadlines == {Deadline.FOCUS: 8.0}
    assert conference.id in focus.invites
    assert context.conferences.by_call_id(next(iter(context.pending.values())).request.call_id)


def test_a_5xx_fails_over_to_the_next_focus() -> None:
    context, events, focus, conference, retired = world()
    focus.invite(conference, 0.0)
    invites_sent(context)
    answer_invite(context, focus, conference, 503)
    assert conference.focus_index == 1
    assert conference.state is ConferenceState.ALLOCATING
    assert invites_sent(context) == [Address("192.0.2.2", 5080)]
    assert conference.focus_failures == [f"{FOCI[0]}: 503 Service Unavailable"]
    assert retired == []
    assert not any(isinstance(e, ConferenceFailed) for e in events)
    failover = FocusFailover(
        conference_id="c1", failed=FOCI[0], next=FOCI[1], reason="503 Service Unavailable"
    )
    assert [e for e in events if isinstance(e, FocusFailover)] == [failover]


def test_a_4xx_gives_up_at_once() -> None:
    context, events, focus, conference, retired = world()
    focus.invite(conference, 0.0)
    answer_invite(context, focus, conference, 403)
    assert conference.state is ConferenceState.FAILED
    assert retired == [conference]
    reason = f"no conference focus could host it ({FOCI[0]}: 403 Forbidden)"
    assert events[-1] == ConferenceFailed(conference_id="c1", reason=reason)
    assert conference.deadlines == {}


def test_silence_fails_over_then_gives_up() -> None:
    _context, events, focus, conference, retired = world()
    focus.invite(conference, 0.0)
    focus.on_invite_timeout(conference, 8.0)
    assert conference.focus_index == 1
    focus.on_invite_timeout(conference, 16.0)
    assert conference.state is ConferenceState.FAILED
    assert conference.focus_failures == [
        f"{FOCI[0]}: no answer within 8 s",
        f"{FOCI[1]}: no answer within 8 s",
    ]
    assert retired == [conference]
    assert isinstance(events[-1], ConferenceFailed)


def test_ending_before_the_focus_answered_cancels_the_invite() -> None:
    context, events, focus, conference, retired = world()
    focus.invite(conference, 0.0)
    invites_sent(context)
    focus.end(conference, "ended by sip:alice@example.com", 1.0)
    assert conference.state is ConferenceState.ENDED
    assert events[-1] == ConferenceEnded(
        conference_id="c1", reason="ended by sip:alice@example.com"
    )
    assert retired == [conference]
    assert focus.invites == {}
    # the requester is told where their request came from
    notices = [
        (m, d) for m, d in context.layer.messages_to_send() if getattr(m, "method", "") == "MESSAGE"
    ]
    assert [d for _, d in notices] == [Address("192.0.2.7", 5062)]
