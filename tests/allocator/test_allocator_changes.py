"""What the allocator gives a state store: every change, before the messages it causes.

The simulated network sends what the allocator queued in ``flush``; the
store here takes the allocator's changes just before each flush, as
``vidim.aio.SipServer`` does (write-ahead).  The invariant checked at every
flush: what the store holds is exactly the snapshot of every live
conference, and nothing else.  A change the allocator forgot to note breaks it.
"""

from __future__ import annotations

import json
from typing import Any

from peers import Focus
from test_allocator_lifecycle import FOCUS2, S, World, active, make_world

from vidim.allocator.allocator import Allocator
from vidim.allocator.events import ConferenceEnded
from vidim.core import RecordChange


class StoreAtEveryFlush:
    """Applies ``take_changes`` before each flush and checks the store against the allocator."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.records: dict[str, dict[str, Any]] = {}
        self.index: dict[str, str] = {}
        self.checks = 0
        world.allocator.record_changes()
        flush = world.net.flush

        def flush_after_storing() -> None:
            self.store(world.allocator.take_changes())
            self.check()
            flush()

        world.net.flush = flush_after_storing  # type: ignore[method-assign]

    def store(self, changes: list[RecordChange]) -> None:
        for change in changes:
            if change.record is None:
                self.records.pop(change.id, None)
                self.index.pop(change.id, None)
            else:
                # As a store would keep it: JSON.
                self.records[change.id] = json.loads(json.dumps(change.record))
                self.index[change.id] = dict(change.index)["requester"]

    def check(self) -> None:
        allocator = self.world.allocator
        live = {
            cid: json.loads(json.dumps(allocator.snapshot(cid))) for cid in allocator.conferences
        }
        assert self.records == live
        assert self.index == {cid: c.requester for cid, c in allocator.conferences.items()}
        self.checks += 1

    def restart(self) -> Allocator:
        """A new allocator restored from the store alone (what a restart after kill -9 has)."""
        world = self.world
        world.net.events.extend(world.allocator.events())
        fresh = Allocator(world.config)
        fresh.record_changes()
        world.net.allocator = fresh
        for record in self.records.values():
            fresh.restore(record, world.net.now)
        world.allocator = fresh
        return fresh


def test_nothing_is_noted_until_record_changes_is_called() -> None:
    w = make_world()
    active(w)
    assert w.allocator.take_changes() == []


def test_the_store_matches_the_live_conferences_at_every_send_through_a_whole_life() -> None:
    w = make_world(phones={"bob": {}, "carol": {}}, keepalive_interval=10.0)
    store = StoreAtEveryFlush(w)
    cid, ready = active(w)
    assert store.records[cid]["state"] == "active"
    conference = w.focus.conferences[0]
    w.focus.join(conference, "sip:bob@example.com", w.allocator.conferences[cid].mode, w.net.now)
    w.net.run(ready + 25.0)  # two keepalives: the anchor's CSeq moves
    assert store.records[cid]["anchor"]["local_cseq"] == 3
    w.alice.send_message(w.net.now, text="/add carol")
    w.net.advance(2.0)
    w.alice.send_message(w.net.now, text="/status")
    w.net.advance(1.0)
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(5.0)
    assert conference.ended
    assert store.records == {}
    assert store.checks > 20


def test_a_failed_request_leaves_nothing_in_the_store() -> None:
    w = make_world(foci=None)
    w.focus.behaviour = "486"
    store = StoreAtEveryFlush(w)
    w.start()
    w.net.advance(5.0)
    assert w.allocator.conferences == {}
    assert store.records == {}


def test_a_restart_from_the_store_alone_ends_the_conference_on_the_same_dialog() -> None:
    w = make_world(keepalive_interval=10.0)
    store = StoreAtEveryFlush(w)
    cid, ready = active(w)
    w.net.run(ready + 12.0)
    fresh = store.restart()
    assert fresh.conferences[cid].state is S.ACTIVE
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(5.0)
    conference = w.focus.conferences[0]
    (bye,) = [r for r in w.focus.requests if r.method == "BYE"]
    assert bye.call_id == conference.anchor.call_id
    assert conference.ended
    assert store.records == {}


def test_a_restored_conference_whose_anchor_is_gone_ends_with_a_notice() -> None:
    w = make_world()
    store = StoreAtEveryFlush(w)
    cid, _ready = active(w)
    conference = w.focus.conferences[0]
    # The focus lost the conference while vidim was down: its dialog answers 481.
    w.focus.dialogs.remove(conference.anchor)
    texts_before = len(w.alice.texts())
    store.restart()
    w.net.advance(1.0)
    options = [r for r in w.focus.requests if r.method == "OPTIONS"]
    assert len(options) == 1  # checked at once, not at the next keepalive
    ended = [e for e in w.net.of_type(ConferenceEnded) if isinstance(e, ConferenceEnded)]
    assert [e.conference_id for e in ended] == [cid]
    assert w.allocator.conferences == {}
    assert store.records == {}
    notices = w.alice.texts()[texts_before:]
    assert notices == ["Your video conference has ended: the conference focus stopped answering."]


def test_the_store_matches_through_probes_a_failover_joins_leaves_and_the_focus_s_bye() -> None:
    w = make_world(
        phones={"bob": {"video": False}, "carol": {"options": "silent", "message_status": 480}},
        foci=[Focus(behaviour="503"), Focus(FOCUS2)],
        keepalive_interval=10.0,
    )
    store = StoreAtEveryFlush(w)
    cid = w.start("/video bob carol")
    w.net.run(4.0)  # probes (carol silent), the first focus refuses, the second answers
    assert store.records[cid]["state"] == "active"
    assert store.records[cid]["focus_index"] == 1
    conference = w.foci[1].conferences[0]
    w.foci[1].join(conference, "sip:bob@example.com", w.allocator.conferences[cid].mode, w.net.now)
    w.net.advance(1.0)
    w.foci[1].leave(conference, "sip:bob@example.com", w.net.now)
    w.net.advance(15.0)  # and a keepalive
    w.foci[1].hang_up(conference, w.net.now)
    w.net.advance(5.0)
    assert w.allocator.conferences == {}
    assert store.records == {}
    assert store.checks > 10


def test_the_store_matches_through_the_idle_end() -> None:
    w = make_world(idle_timeout=20.0)
    store = StoreAtEveryFlush(w)
    cid, _ = active(w)
    assert store.records[cid]["idle_deadline"] is not None
    w.net.advance(30.0)
    assert store.records == {}
