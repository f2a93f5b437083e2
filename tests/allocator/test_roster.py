"""The roster alone: one subscription, NOTIFYs folded in, who came and went.

The focus side is a real dialog (vidim's own ``DialogManager``); nothing is
sent over a network: requests are read from the transaction layer's table.
"""

from __future__ import annotations

from allocator_factory import make_context, two_party_record

from vidim.allocator.conference import Conference, ConferenceState, Deadline
from vidim.allocator.context import Context, Purpose
from vidim.allocator.events import (
    AllocatorEvent,
    MessageIgnored,
    ParticipantJoined,
    ParticipantLeft,
)
from vidim.allocator.roster import Roster
from vidim.conference_info import (
    CONFERENCE_INFO_TYPE,
    ConferenceInfo,
    UserInfo,
    build_conference_info,
)
from vidim.sip import Dialog, DialogManager, Via, parse_message
from vidim.vocabulary import Mode

ROOM = "sip:conf-1@192.0.2.1:5080"


def purposes(context: Context) -> list[Purpose]:
    return [p.purpose for p in context.pending.values()]


def subscribed() -> tuple[Context, list[AllocatorEvent], Roster, Conference, Dialog]:
    context, events = make_context()
    conference = two_party_record(ConferenceState.ACTIVE, invited=True, conference_uri=ROOM)
    context.conferences.add(conference)
    context.arm(conference, Deadline.IDLE, 300.0)
    roster = Roster(context)
    roster.subscribe(conference, 0.0)
    (pending,) = context.pending.values()
    assert pending.purpose is Purpose.SUBSCRIBE
    focus = DialogManager(local_via=Via("UDP", "192.0.2.1", 5080), warn_agent="focus")
    focus_side = focus.accept(pending.request, local_contact=f"<{ROOM}>")
    ok = focus_side.create_response(pending.request, 200, headers=[("Expires", "3600")])
    roster.on_subscribe_answer(conference, pending, parse_message(ok.to_bytes()), 0.0)
    context.forget(next(iter(context.pending)))
    return context, events, roster, conference, focus_side


def notify(
    context: Context, roster: Roster, conference: Conference, focus_side: Dialog, body: bytes
) -> None:
    sent = focus_side.create_request(
        "NOTIFY",
        headers=[("Event", "conference"), ("Subscription-State", "active;expires=3600")],
        body=body,
        content_type=CONFERENCE_INFO_TYPE,
    )
    request = parse_message(sent.to_bytes())
    dialog, _automatic = context.dialogs.receive_request(request)
    assert dialog is not None
    roster.on_notify(conference, request, dialog, 1.0)


def document(version: int, *users: UserInfo, state: str = "full") -> bytes:
    info = ConferenceInfo(entity=ROOM, version=version, state=state, users=users)  # type: ignore[arg-type]
    return build_conference_info(info)


def test_who_came_and_went_is_told_once_each() -> None:
    context, events, roster, conference, focus_side = subscribed()
    assert roster.subscriptions["c1"].dialog is not None
    notify(context, roster, conference, focus_side, document(1))
    assert events == []
    assert conference.deadlines == {Deadline.IDLE: 300.0}  # nobody yet
    bob = UserInfo(entity="sip:bob@example.com", status="connected", mode=Mode.VIDEO)
    notify(context, roster, conference, focus_side, document(2, bob))
    notify(context, roster, conference, focus_side, document(3, bob))  # the same: no news
    notify(context, roster, conference, focus_side, document(4))
    assert events == [
        ParticipantJoined(conference_id="c1", participant="sip:bob@example.com", mode=Mode.VIDEO),
        ParticipantLeft(conference_id="c1", participant="sip:bob@example.com"),
    ]
    texts = [p.request.body for p in context.pending.values() if p.purpose is Purpose.NOTICE]
    assert texts == [b"bob@example.com joined (video).", b"bob@example.com left."]
    assert conference.deadlines == {}  # somebody came: no idle end
    assert conference.participants[1].status == "disconnected"


def test_an_unreadable_notify_is_ignored() -> None:
    context, events, roster, conference, focus_side = subscribed()
    notify(context, roster, conference, focus_side, b"<not xml")
    assert [type(e) for e in events] == [MessageIgnored]
    assert Purpose.RESUBSCRIBE not in purposes(context)


def test_a_missed_notify_refreshes_the_subscription() -> None:
    context, events, roster, conference, focus_side = subscribed()
    notify(context, roster, conference, focus_side, document(1))
    notify(context, roster, conference, focus_side, document(3, state="partial"))  # 2 is lost
    assert [type(e) for e in events] == [MessageIgnored]
    assert "c1" not in roster.views
    assert purposes(context) == [Purpose.RESUBSCRIBE]


def test_the_subscription_is_renewed_at_half_its_lifetime() -> None:
    context, _events, roster, conference, _focus_side = subscribed()
    roster.renew_if_due(conference, 1799.0)
    assert purposes(context) == []
    roster.renew_if_due(conference, 1800.0)
    assert purposes(context) == [Purpose.RESUBSCRIBE]
    assert roster.subscriptions["c1"].renewed == 1800.0


def test_forgetting_a_conference_hands_back_its_subscription() -> None:
    _context, _events, roster, conference, _focus_side = subscribed()
    dialog = roster.subscriptions["c1"].dialog
    assert roster.forget(conference) is dialog
    assert roster.subscriptions == roster.views == {}
    assert roster.forget(conference) is None
