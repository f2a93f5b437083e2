"""The whole flow through the allocator, with in-memory peers on a virtual clock."""

from __future__ import annotations

from peers import FOCUS, PROXY, Focus, Phone, SimNetwork

from vidim.allocator.allocator import Allocator, AllocatorConfig
from vidim.allocator.conference import ConferenceState, Deadline
from vidim.allocator.events import (
    ConferenceEnded,
    ConferenceReady,
    InvitationSent,
    ParticipantJoined,
    ParticipantLeft,
)
from vidim.allocator.requests import RequestPolicy
from vidim.sip import Address
from vidim.sip.transaction import NonInviteClientState, NonInviteClientTransaction
from vidim.vocabulary import Mode


def make_world(**config: object) -> tuple[SimNetwork, Allocator, Phone, Phone, Phone, Focus]:
    allocator = Allocator(
        AllocatorConfig(
            requests=RequestPolicy.for_domain("example.com"),
            proxy=PROXY,
            focus_uris=(f"sip:conference-factory@{FOCUS.host}:{FOCUS.port}",),
            **config,  # type: ignore[arg-type]
        )
    )
    alice = Phone("alice", Address("127.0.0.1", 5062))
    bob = Phone("bob", Address("127.0.0.1", 5064))
    carol = Phone("carol", Address("127.0.0.1", 5066), video=False)
    focus = Focus()
    net = SimNetwork(allocator, alice, bob, carol, focus)
    for phone in (alice, bob, carol):
        net.register(phone.uri, phone)
    return net, allocator, alice, bob, carol, focus


def test_header_form_to_ready_conference_and_end() -> None:
    net, allocator, alice, bob, carol, focus = make_world()
    alice.send_message(
        0.0,
        to="sip:bob@example.com",
        text="let's talk",
        headers=[("X-Vidim-Mode", "video"), ("X-Vidim-Invite", "<sip:carol@example.com>")],
    )
    net.run(5.0)
    assert alice.statuses()[0] == 202
    (ready,) = net.of_type(ConferenceReady)
    (conference,) = focus.conferences
    assert {(e.uri, e.mode) for e in conference.participants} == {
        ("sip:alice@example.com", Mode.VIDEO),
        ("sip:bob@example.com", Mode.VIDEO),
        ("sip:carol@example.com", Mode.AUDIO),  # probing found no video
    }
    sent = {e.invitee: e.mode for e in net.of_type(InvitationSent)}
    assert sent == {"sip:bob@example.com": Mode.VIDEO, "sip:carol@example.com": Mode.AUDIO}
    (invitation,) = bob.messages
    header = invitation.headers.get("X-Vidim-Conference")
    assert header is not None
    assert ready.conference_uri.split("@")[0] in header
    assert "X-Vidim-Mode" not in invitation.headers
    (carols,) = carol.texts()
    assert carols.startswith("alice@example.com invites you to an audio conference. Call sip:conf-")
    assert any("is ready" in text for text in alice.texts())
    # alice ends it
    alice.send_message(net.now, text="/end")
    net.advance(5.0)
    assert conference.ended
    assert [e.reason for e in net.of_type(ConferenceEnded)] == ["ended by sip:alice@example.com"]
    assert allocator.conferences == {}
    assert ConferenceState.ENDED.value in {e.new.value for e in net.events if hasattr(e, "new")}


def test_roster_updates_reach_the_requester() -> None:
    net, allocator, alice, _bob, _carol, focus = make_world()
    alice.send_message(0.0, text="/video bob")
    net.run(5.0)
    (conference,) = focus.conferences
    assert len(conference.subscribers) == 1
    focus.join(conference, "sip:bob@example.com", Mode.VIDEO, net.now)
    net.advance(1.0)
    assert [e.participant for e in net.of_type(ParticipantJoined)] == ["sip:bob@example.com"]
    assert "bob@example.com joined (video)." in alice.texts()
    focus.leave(conference, "sip:bob@example.com", net.now)
    net.advance(1.0)
    assert [e.participant for e in net.of_type(ParticipantLeft)] == ["sip:bob@example.com"]
    assert "bob@example.com left." in alice.texts()
    focus.hang_up(conference, net.now)
    net.advance(1.0)
    assert [e.reason for e in net.of_type(ConferenceEnded)] == ["the focus ended the conference"]
    assert allocator.conferences == {}


def test_ended_conferences_leave_nothing_behind() -> None:
    # A daemon runs for months: every way of ending must free what it held.
    net, allocator, alice, _bob, _carol, focus = make_world()
    for way in ("end", "hang_up", "end", "hang_up"):
        alice.send_message(net.now, text="/video bob")
        net.advance(5.0)
        conference = focus.conferences[-1]
        focus.join(conference, "sip:bob@example.com", Mode.VIDEO, net.now)
        net.advance(1.0)
        if way == "end":
            alice.send_message(net.now, text="/end")
        else:
            focus.hang_up(conference, net.now)
        net.advance(5.0)
        assert conference.ended
    net.advance(100.0)  # let every transaction finish
    assert allocator.conferences == {}
    context = allocator._context
    assert list(context.dialogs) == []
    assert context.conferences.indexes_empty()
    assert allocator._focus.anchors == allocator._focus.invites == {}
    assert allocator._roster.subscriptions == allocator._roster.views == {}
    assert context.pending == context.subscribes == {}
    assert len(context.timers) == 0
    assert allocator.get_timer() is None


def test_indexes_follow_each_requesters_conferences() -> None:
    net, allocator, alice, _bob, _carol, focus = make_world()
    table = allocator._context.conferences
    alice.send_message(0.0, text="/video bob")
    net.run(5.0)
    (first,) = allocator.conferences.values()
    assert table.newest_of(first.requester) is first
    assert len(allocator._commands.rate) == 1
    focus.join(focus.conferences[0], "sip:bob@example.com", Mode.VIDEO, net.now)
    net.advance(1.0)
    roster = allocator._roster.views[first.id]
    assert roster.entity == first.conference_uri
    assert [user.entity for user in roster.users] == ["sip:bob@example.com"]
    alice.send_message(net.now, text="/audio carol")
    net.advance(5.0)
    second = next(c for c in allocator.conferences.values() if c is not first)
    assert table.newest_of(first.requester) is second
    # Only SUBSCRIBEs are kept aside for retiring (not every transaction in flight).
    context = allocator._context
    assert all(p.request.method == "SUBSCRIBE" for p in context.subscribes.values())
    # One timer per deadline, the same as the record's (nobody joined the
    # second yet: keepalive and idle; somebody joined the first: keepalive).
    assert set(second.deadlines) == {Deadline.KEEPALIVE, Deadline.IDLE}
    assert set(first.deadlines) == {Deadline.KEEPALIVE}
    for conference in (first, second):
        for kind, when in conference.deadlines.items():
            assert context.timers.deadline((conference.id, kind)) == when
    focus.hang_up(focus.conferences[0], net.now)
    net.advance(1.0)
    assert table.newest_of(first.requester) is second
    alice.send_message(net.now, text="/end")
    net.advance(5.0)
    assert table.newest_of(first.requester) is None
    assert table.indexes_empty()


def test_requests_answered_for_good_are_let_go_of() -> None:
    """A non-INVITE request is forgotten at its final response, not at Timer K."""
    net, allocator, alice, _bob, _carol, _focus = make_world()
    alice.send_message(0.0, text="/video bob")
    net.advance(1.0)
    layer = allocator._layer
    completed = [
        txn
        for txn in layer._transactions.values()
        if isinstance(txn, NonInviteClientTransaction)
        and txn.state is NonInviteClientState.COMPLETED
    ]
    assert completed  # the invitation MESSAGE and the SUBSCRIBE, answered, linger for Timer K
    for txn in completed:
        assert txn.request is None  # what they keep: nothing of the request
    methods = {tid: p.request.method for tid, p in allocator._context.pending.items()}
    assert {txn.id for txn in completed if txn.key[1] == "MESSAGE"}.isdisjoint(methods)
    assert set(methods.values()) <= {"INVITE", "SUBSCRIBE"}
