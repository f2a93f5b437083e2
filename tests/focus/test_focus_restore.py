"""The focus's records (issue 16): take_changes, snapshot and restore, on the virtual clock.

The main check runs a scripted conference through a focus whose changes are
kept as a store would keep them (JSON, written before the messages leave):
at every input the store must equal a snapshot of every live conference
(nothing missed), and at every in-dialog request a focus restored from the
store alone must answer exactly as the original does.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from focus_peers import (
    FOCUS,
    AllocatorSide,
    FocusNode,
    Net,
    Softphone,
    baresip_offer,
    make_conference,
    pjsua2_offer,
    predictable_config,
)

from vidim.focus import (
    ConferenceEnded,
    ConferenceFocus,
    FocusConfig,
    MediaPlanChanged,
    MediaPortUnavailable,
    ParticipantLeft,
    ParticipantState,
    PortPool,
)
from vidim.sdp import media_summary
from vidim.sip import Address, LocalProtocolError, Message, Request, parse_message
from vidim.vocabulary import Mode

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
CAROL = "sip:carol@example.com"
DAVE = "sip:dave@example.com"
_BRANCH = re.compile(rb"branch=z9hG4bK[^;\r\n]*")


def wire(messages: list[tuple[Message, Address]]) -> list[tuple[bytes, Address]]:
    """Messages as bytes, Via branches (random per request) blanked."""
    return [(_BRANCH.sub(b"branch=z9hG4bK-", m.to_bytes()), to) for m, to in messages]


def restored(store: dict[str, dict[str, Any]], config: FocusConfig, now: float) -> ConferenceFocus:
    focus = ConferenceFocus(config)
    focus.record_changes()
    for record in store.values():
        focus.restore(copy.deepcopy(record), now)
    focus.messages_to_send()
    focus.events()
    return focus


class StoredFocusNode(FocusNode):
    """A focus whose changes go to a JSON store, checked against it on every input."""

    def __init__(self, focus: ConferenceFocus) -> None:
        super().__init__(focus)
        focus.record_changes()  # as a store does (the daemon's Persistence)
        self.store: dict[str, dict[str, Any]] = {}
        #: The first line of each in-dialog request a restored focus answered alike.
        self.checked: list[str] = []
        self._pending: list[tuple[Message, Address]] = []

    def write(self) -> None:
        """Store the changes, then check nothing was missed: the store is every live record."""
        for change in self.focus.take_changes():
            if change.record is None:
                self.store.pop(change.id, None)
            else:
                self.store[change.id] = json.loads(json.dumps(change.record))
        live = {s.uri.split(":")[1].split("@")[0] for s in self.focus.conferences()}
        assert self.store == {user: self.focus.snapshot(user) for user in live}

    def deliver(self, data: bytes, source: Address, now: float) -> None:
        self.write()
        message = parse_message(data)
        if not isinstance(message, Request) or message.to_addr.tag is None:
            super().deliver(data, source, now)
            return
        twin = restored(self.store, self.focus.config, now)
        twin.receive_datagram(data, source, now)
        self.focus.receive_datagram(data, source, now)
        mine = self.focus.messages_to_send()
        assert wire(twin.messages_to_send()) == wire(mine), message.method
        self._pending += mine
        self.checked.append(f"{message.method} {message.call_id}")

    def fire(self, now: float) -> None:
        self.write()
        super().fire(now)

    def outgoing(self, now: float) -> list[tuple[Message, Address]]:
        self.write()  # write-ahead: stored before anything leaves
        out, self._pending = self._pending + super().outgoing(now), []
        return out


def world(config: FocusConfig | None = None) -> tuple[Net, StoredFocusNode, AllocatorSide]:
    focus = ConferenceFocus(config or predictable_config())
    node = StoredFocusNode(focus)
    allocator = AllocatorSide()
    return Net(node, allocator), node, allocator


def join(net: Net, allocator: AllocatorSide, uri: str, port: int, offer: bytes) -> Softphone:
    user = uri.removeprefix("sip:").split("@")[0]
    phone = Softphone(user, Address("127.0.0.1", port), offer)
    net.add(phone)
    phone.call(allocator.join_uri(uri), net.now)
    net.advance()
    return phone


def in_dialog(peer: Softphone | AllocatorSide, method: str, now: float, **kwargs: Any) -> Request:
    dialog = peer.anchor if isinstance(peer, AllocatorSide) else peer.dialog
    assert dialog is not None
    return peer.send(dialog.create_request(method, **kwargs), now)


def conference_of(node: FocusNode) -> str:
    (snapshot,) = node.focus.conferences()
    return snapshot.uri.split(":")[1].split("@")[0]


def test_every_input_is_stored_and_a_restored_focus_answers_alike() -> None:
    net, node, allocator = world(predictable_config(max_subscription_expires=600))
    entries = [(ALICE, Mode.VIDEO), (BOB, Mode.VIDEO), (CAROL, Mode.AUDIO), (DAVE, Mode.WATCH)]
    allocator.create(make_conference(entries[:3]), net.now)
    net.advance()
    subscribe = allocator.subscribe(net.now)
    net.advance()
    bob = join(net, allocator, BOB, 6000, baresip_offer(7000, 7002))
    carol = join(net, allocator, CAROL, 6010, pjsua2_offer(7010))
    in_dialog(allocator, "OPTIONS", net.now)
    in_dialog(carol, "OPTIONS", net.now)
    net.advance()
    # Bob puts his call on hold (a re-INVITE), then resumes.
    held = baresip_offer(7000, 7002, direction="sendonly")
    in_dialog(bob, "INVITE", net.now, body=held, content_type="application/sdp")
    net.advance()
    bob.reinvite(baresip_offer(7000, 7002), net.now)
    net.advance()
    # The roster subscription is refreshed in its dialog (CSeq and version go on).
    (watcher,) = allocator.dialogs.dialogs_of(subscribe)
    refresh = watcher.create_request(
        "SUBSCRIBE", headers=[("Event", "conference"), ("Expires", "600")]
    )
    allocator.send(refresh, net.now)
    net.advance()
    # The allocator adds Dave by re-INVITE on the anchor; he joins to watch.
    assert allocator.conference is not None
    added = make_conference(entries)
    for old, new in zip(allocator.conference.participants, added.participants, strict=False):
        new.credential = old.credential
    allocator.reinvite(added, net.now)
    net.advance()
    dave = join(net, allocator, DAVE, 6030, baresip_offer(7030, 7032))
    net.advance(700)  # the subscription expires on its own
    carol.hang_up(net.now)
    net.advance()
    subscribe = allocator.subscribe(net.now)
    net.advance()
    bob.hang_up(net.now)
    net.advance()
    dave.hang_up(net.now)  # the last one: the conference ends
    net.advance(40)
    assert not node.focus.conferences()
    assert node.store == {}
    methods = [line.split()[0] for line in node.checked]
    for method in ("ACK", "OPTIONS", "INVITE", "SUBSCRIBE", "BYE"):
        assert method in methods, method
    assert len(node.checked) >= 14


def a_live_conference() -> tuple[Net, StoredFocusNode, AllocatorSide, list[Softphone]]:
    net, node, allocator = world()
    allocator.create(
        make_conference([(ALICE, Mode.VIDEO), (BOB, Mode.VIDEO), (CAROL, Mode.AUDIO)]), net.now
    )
    net.advance()
    allocator.subscribe(net.now)
    net.advance()
    phones = [
        join(net, allocator, BOB, 6000, baresip_offer(7000, 7002)),
        join(net, allocator, CAROL, 6010, pjsua2_offer(7010)),
    ]
    node.write()
    return net, node, allocator, phones


def restart(net: Net, node: StoredFocusNode, at: float | None = None) -> StoredFocusNode:
    """Replace the focus with one restored from the store, as after a kill -9."""
    node.write()
    if at is not None:
        net.now = at
    fresh = StoredFocusNode(ConferenceFocus(node.focus.config))
    for record in node.store.values():
        fresh.focus.restore(json.loads(json.dumps(record)), net.now)
    fresh.store = dict(node.store)
    net.add(fresh)
    return fresh


def test_a_record_is_json_and_comes_back_the_same() -> None:
    _, node, _, _ = a_live_conference()
    user = conference_of(node)
    record = node.focus.snapshot(user)
    assert record["format"] == 1
    assert json.loads(json.dumps(record)) == record
    again = ConferenceFocus(node.focus.config)
    again.record_changes()
    uri = again.restore(json.loads(json.dumps(record)), 1.0)
    assert uri == node.focus.conferences()[0].uri
    assert again.snapshot(user) == record
    assert again.conferences() == node.focus.conferences()
    assert again.forwarding_plan == node.focus.forwarding_plan
    assert again.ports_in_use == node.focus.ports_in_use
    # The restore asks the relay for the same ports; it changed nothing to store.
    (changed,) = [e for e in again.events() if isinstance(e, MediaPlanChanged)]
    assert changed.plan == node.focus.forwarding_plan
    assert again.take_changes() == []
    assert again.messages_to_send() == []


def test_keyframe_feedback_and_rtcp_mux_are_stored() -> None:
    net, node, allocator = world()
    allocator.create(make_conference([(ALICE, Mode.VIDEO), (BOB, Mode.VIDEO)]), net.now)
    net.advance()
    join(net, allocator, BOB, 6000, baresip_offer(7000, 7002, rtcp_mux=True))
    user = conference_of(node)
    record = node.focus.snapshot(user)
    (call,) = record["calls"]
    assert [(s["kind"], s["feedback"], s["rtcp_mux"]) for s in call["streams"]] == [
        ("audio", {"pli": False, "fir": False}, True),
        ("video", {"pli": True, "fir": False}, True),
    ]
    again = ConferenceFocus(node.focus.config)
    again.restore(json.loads(json.dumps(record)), net.now)
    assert again.snapshot(user) == record
    plan = again.forwarding_plan
    assert plan == node.focus.forwarding_plan
    assert [route.rtcp_mux for route in plan.routes if not route.rtcp] == [True, True]


def test_after_a_restart_calls_go_on_and_end_with_bye() -> None:
    net, node, allocator, (bob, carol) = a_live_conference()
    node = restart(net, node, at=net.now + 5)
    in_dialog(bob, "OPTIONS", net.now)
    net.advance()
    assert bob.responses[-1].status == 200
    carol.hang_up(net.now)
    net.advance()
    assert carol.responses[-1].status == 200
    assert [e.uri for e in node.events if isinstance(e, ParticipantLeft)] == [CAROL]
    # The roster subscription made before the restart gets the partial NOTIFY.
    notify = allocator.received("NOTIFY")[-1]
    assert b"disconnected" in notify.body
    bob.hang_up(net.now)
    net.advance()
    assert [e.reason for e in node.events if isinstance(e, ConferenceEnded)] == [
        "the last participant left"
    ]
    assert allocator.received("BYE")
    assert node.store == {}


def test_deadlines_come_back_at_their_stored_times() -> None:
    net, node, allocator, (bob, carol) = a_live_conference()
    config = node.focus.config
    ends_at = node.focus.conferences()[0].ends_at
    node = restart(net, node, at=ends_at - 1)
    assert node.focus.get_timer() is not None
    net.advance(0.5)
    assert node.focus.conferences()
    net.advance(1)
    assert not node.focus.conferences()
    (ended,) = [e for e in node.events if isinstance(e, ConferenceEnded)]
    assert ended.reason == "the conference time limit was reached"
    assert bob.received("BYE")
    assert carol.received("BYE")
    assert allocator.received("BYE")
    assert ends_at == pytest.approx(config.conference_ttl, abs=1)


def test_a_200_awaiting_its_ack_is_resent_after_a_restart() -> None:
    net, node, allocator = world()
    allocator.create(make_conference([(ALICE, Mode.VIDEO), (BOB, Mode.VIDEO)]), net.now)
    net.advance()
    # Bob's ACKs are lost until the restart.
    lost = True
    net.drop.append(lambda source, _, line: lost and line.startswith("ACK") and source.port == 6000)
    bob = Softphone("bob", Address("127.0.0.1", 6000), baresip_offer(7000, 7002))
    net.add(bob)
    invite = bob.call(allocator.join_uri(BOB), net.now)
    net.advance(0.2)
    assert bob.final(invite).status == 200
    call = node.focus.snapshot(conference_of(node))["calls"][0]
    assert call["unacknowledged"] == [invite.cseq.seq]
    node = restart(net, node)
    lost = False
    # A retransmission of the INVITE gets the same 200, not a new call.
    first_200 = bob.final(invite)
    bob.layer.send_stateless(invite, FOCUS)
    net.advance(0.01)
    again = [r for r in bob.responses if r.call_id == invite.call_id and r.status == 200]
    assert len(again) >= 2
    assert again[-1].to_bytes() == first_200.to_bytes()
    assert len(node.focus.conferences()[0].connected) == 1
    # The resent 200 is ACKed now: Bob is in the call.
    net.advance(5)
    assert node.focus.conferences()[0].participants[1] == (BOB, ParticipantState.CONNECTED)
    assert not bob.received("BYE")


def test_new_calls_never_get_a_restored_call_s_ports() -> None:
    config = predictable_config(rtp_ports=(40000, 40011))  # three pairs... for six streams
    net, node, allocator = world(config)
    allocator.create(
        make_conference([(ALICE, Mode.VIDEO), (BOB, Mode.VIDEO), (CAROL, Mode.AUDIO)]), net.now
    )
    net.advance()
    join(net, allocator, BOB, 6000, baresip_offer(7000, 7002))
    before = node.focus.ports_in_use
    node = restart(net, node)
    assert node.focus.ports_in_use == before
    carol = join(net, allocator, CAROL, 6010, pjsua2_offer(7010))
    (audio,) = [port for kind, port, _ in media_summary(carol.answer()) if port]
    assert audio not in before
    assert node.focus.ports_in_use == before | {audio}


def test_a_port_the_relay_cannot_bind_ends_its_call_with_bye() -> None:
    net, node, _allocator, (bob, carol) = a_live_conference()
    focus = node.focus
    (carol_port,) = [port for kind, port, _ in media_summary(carol.answer()) if port]
    focus.events()
    focus.ports_unavailable({carol_port + 1: "Address already in use", 9: "nobody's"}, net.now)
    events = focus.events()
    (unavailable,) = [e for e in events if isinstance(e, MediaPortUnavailable)]
    assert (unavailable.uri, unavailable.port) == (CAROL, carol_port + 1)
    assert unavailable.reason == "Address already in use"
    (left,) = [e for e in events if isinstance(e, ParticipantLeft)]
    assert left.uri == CAROL
    assert "unavailable" in left.reason
    assert carol_port not in focus.forwarding_plan.ports
    assert carol_port not in focus.ports_in_use
    (change,) = focus.take_changes()
    assert change.id == conference_of(node)
    assert change.record is not None
    assert [call["uri"] for call in change.record["calls"]] == [BOB]
    node.store[change.id] = change.record
    net.advance()
    assert carol.received("BYE")
    assert not bob.received("BYE")
    assert focus.conferences()[0].connected == (BOB,)


def test_a_bad_record_is_refused_and_changes_nothing() -> None:
    _, node, _, _ = a_live_conference()
    record = node.focus.snapshot(conference_of(node))
    fresh = ConferenceFocus(node.focus.config)

    def refused(change: Any, match: str) -> None:
        bad = copy.deepcopy(record)
        change(bad)
        with pytest.raises(LocalProtocolError, match=match):
            fresh.restore(bad, 0.0)
        assert fresh.conferences() == []
        assert fresh.ports_in_use == frozenset()
        assert fresh.get_timer() is None

    refused(lambda r: r.update(format=2), "unknown focus record format 2")
    refused(lambda r: r["invitees"][0].update(uri="sip:x@y\r\nX-Evil: 1"), "control character")
    refused(lambda r: r["subscriptions"][0].update(event="conference\r\nX: 1"), "control character")
    refused(lambda r: r["anchor"].update(remote_target="sip:a@b\nX: y"), "control character")
    refused(lambda r: r.update(state="ended"), "is over")
    refused(lambda r: r.update(uri="sip:conf-other@127.0.0.1:5080"), "does not name it")
    refused(lambda r: r.pop("calls"), "not a focus conference record")
    refused(lambda r: r["calls"][0].update(uri="sip:stranger@example.com"), "not a focus")
    refused(lambda r: r["calls"][1].update(dialog=r["calls"][0]["dialog"]), "live already")
    fresh.restore(copy.deepcopy(record), 0.0)
    with pytest.raises(LocalProtocolError, match="live already"):
        fresh.restore(copy.deepcopy(record), 0.0)
    # Another conference whose call names a port in use is refused as a whole.
    clash = copy.deepcopy(record)
    clash["user"] = "conf-clash"
    clash["uri"] = clash["uri"].replace(record["user"], "conf-clash")
    clash["anchor"]["call_id"] += "-x"
    for call in clash["calls"]:
        call["dialog"]["call_id"] += "-x"
    clash["subscriptions"] = []
    with pytest.raises(LocalProtocolError, match="RTP port"):
        fresh.restore(clash, 0.0)
    assert len(fresh.conferences()) == 1


def test_the_pool_holds_reserved_ports_apart() -> None:
    pool = PortPool(40000, 40007)  # pairs 40000, 40002, 40004, 40006
    pool.reserve(40002)
    pool.reserve(50000)  # a range since changed: held, never handed out
    with pytest.raises(ValueError, match="handed out already"):
        pool.reserve(40002)
    assert sorted(pool.allocate() for _ in range(3)) == [40000, 40004, 40006]
    assert pool.in_use == {40000, 40002, 40004, 40006, 50000}
    pool.release(50000)
    pool.release(40002)
    assert pool.allocate() == 40002
    assert len(pool) == 0
