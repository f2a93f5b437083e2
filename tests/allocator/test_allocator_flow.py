"""The whole flow through the allocator, with in-memory peers on a virtual clock."""

from __future__ import annotations

import sys

from peers import FOCUS, PROXY, Focus, Phone, SimNetwork

from vidim.allocator.allocator import Allocator, AllocatorConfig
from vidim.allocator.conference import ConferenceState
from vidim.allocator.events import (
    ConferenceEnded,
    ConferenceReady,
    InvitationSent,
    ParticipantJoined,
    ParticipantLeft,
)
from vidim.allocator.requests import RequestPolicy
from vidim.sip import Address, Via
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
    assert list(allocator._dialogs) == []
    assert allocator._by_call_id == {}
    assert allocator._call_ids == {}
    assert allocator._by_requester == allocator._latest == {}
    assert allocator._anchors == allocator._subscriptions == {}
    assert allocator._pending == allocator._pending_subscribes == {}
    # ... not even the table of the busiest moment.
    assert sys.getsizeof(allocator._pending) == sys.getsizeof({})
    assert allocator._rosters == {}
    assert allocator.get_timer() is None


def test_per_conference_indexes_stay_small() -> None:
    """What each live conference costs in the indexes (100,000 live is the target)."""
    net, allocator, alice, _bob, _carol, focus = make_world()
    alice.send_message(0.0, text="/video bob")
    net.run(5.0)
    (first,) = allocator.conferences.values()
    # One conference: its requester's entry is the id itself, not a list of one;
    # the rate window's entry the time itself.
    assert allocator._by_requester == {first.requester: first.id}
    assert allocator._latest == {}  # their only conference is their newest
    assert not isinstance(allocator._requests_seen[first.requester], list)
    # Nobody there yet: the roster is kept as its version alone ...
    assert isinstance(allocator._rosters[first.id], int)
    focus.join(focus.conferences[0], "sip:bob@example.com", Mode.VIDEO, net.now)
    net.advance(1.0)
    # ... then as the view, naming the conference by the same string as the record.
    roster = allocator._rosters[first.id]
    assert not isinstance(roster, int)
    assert roster.entity is first.conference_uri
    assert [user.entity for user in roster.users] == ["sip:bob@example.com"]
    alice.send_message(net.now, text="/audio carol")
    net.advance(5.0)
    second = next(c for c in allocator.conferences.values() if c is not first)
    assert allocator._by_requester == {first.requester: [first.id, second.id]}
    assert allocator._latest == {first.requester: second.id}
    assert len(allocator._requests_seen[first.requester]) == 2  # type: ignore[arg-type]
    # Only SUBSCRIBEs are kept aside for retiring (not every transaction in flight).
    assert all(p.request.method == "SUBSCRIBE" for p in allocator._pending_subscribes.values())
    # One timer entry per conference, however many deadlines it has (the
    # second, nobody there yet: keepalive and idle), due no later than the
    # earliest of them.
    assert second.keepalive_deadline is not None
    assert second.idle_deadline is not None
    for conference in (first, second):
        entries = [entry for entry in allocator._timers if entry[1] == conference.id]
        assert entries == [(conference._timer_at, conference.id)]
        deadlines = [conference.keepalive_deadline, conference.idle_deadline]
        assert conference._timer_at <= min(d for d in deadlines if d is not None)
    focus.hang_up(focus.conferences[0], net.now)
    net.advance(1.0)
    assert allocator._by_requester == {first.requester: second.id}
    assert allocator._latest == {}
    alice.send_message(net.now, text="/end")
    net.advance(5.0)
    assert allocator._by_requester == {}


def test_out_of_dialog_lines_are_what_the_value_types_write() -> None:
    """Via, From and Call-ID come from prefixes written once: the same text as before."""
    for local in (Address("127.0.0.1", 5070), Address("::1", 5075, "TCP")):
        allocator = Allocator(
            AllocatorConfig(local=local, requests=RequestPolicy.for_domain("example.com"))
        )
        request = allocator._out_of_dialog("MESSAGE", "sip:bob@example.com")
        via = request.top_via
        assert via.branch is not None
        assert via.is_rfc3261_branch
        assert request.headers.get("Via") == str(
            Via(local.transport, local.host, local.port, (("rport", None),)).with_params(
                branch=via.branch
            )
        )
        tag = request.from_addr.tag
        assert tag is not None
        assert request.headers.get("From") == f"<sip:vidim@example.com>;tag={tag}"
        assert request.call_id.endswith(f"@{local.host}")
        assert request.headers.get("To") == "<sip:bob@example.com>"
        assert request.headers.get("CSeq") == "1 MESSAGE"


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
    methods = {tid: p.request.method for tid, p in allocator._pending.items()}
    assert {txn.id for txn in completed if txn.key[1] == "MESSAGE"}.isdisjoint(methods)
    assert set(methods.values()) <= {"INVITE", "SUBSCRIBE"}
