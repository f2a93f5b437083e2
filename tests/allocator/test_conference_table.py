"""The conference transition table: its closure, and that the allocator takes every edge."""

from __future__ import annotations

from collections.abc import Callable
from types import FunctionType

import pytest
from peers import FOCUS, Focus, LateFocus
from test_allocator_lifecycle import FOCUS2, World, active, make_world

from vidim.allocator.conference import (
    FINAL_STATES,
    TRANSITIONS,
    Conference,
    ConferenceInput,
    ConferenceState,
    next_state,
)
from vidim.allocator.events import ConferenceStateChanged
from vidim.sip import LocalProtocolError
from vidim.vocabulary import Mode

S = ConferenceState
I = ConferenceInput  # noqa: E741
Edge = tuple[ConferenceState, ConferenceInput]

MISSING = [(s, i) for s in ConferenceState for i in ConferenceInput if (s, i) not in TRANSITIONS]


def record(state: ConferenceState) -> Conference:
    return Conference(
        id="c1",
        requester="sip:alice@example.com",
        mode=Mode.VIDEO,
        requester_address="127.0.0.1|5062|UDP",
        participants=[],
        created_at=0.0,
        state=state,
    )


@pytest.mark.parametrize(("state", "event"), MISSING)
def test_every_pair_not_in_the_table_is_a_local_error(
    state: ConferenceState, event: ConferenceInput
) -> None:
    with pytest.raises(LocalProtocolError, match=f"cannot take '{event.value}' while"):
        next_state(state, event)
    conference = record(state)
    with pytest.raises(LocalProtocolError, match=state.value):
        conference.move(event)
    assert conference.state is state  # unchanged


@pytest.mark.parametrize(("edge", "target"), list(TRANSITIONS.items()))
def test_every_pair_in_the_table_moves_as_it_says(edge: Edge, target: ConferenceState) -> None:
    state, event = edge
    assert next_state(state, event) is target
    conference = record(state)
    assert conference.move(event) is target
    assert conference.state is target


def test_the_table_covers_every_state_and_input() -> None:
    assert len(MISSING) + len(TRANSITIONS) == len(ConferenceState) * len(ConferenceInput)
    assert {s for s, _ in TRANSITIONS} | set(TRANSITIONS.values()) == set(ConferenceState)
    assert {i for _, i in TRANSITIONS} == set(ConferenceInput)


def test_every_state_is_reachable_from_requested() -> None:
    seen = {S.REQUESTED}
    frontier = [S.REQUESTED]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(ConferenceState)


def test_final_states_have_no_exits() -> None:
    assert {S.ENDED, S.FAILED} == FINAL_STATES
    assert [edge for edge in TRANSITIONS if edge[0] in FINAL_STATES] == []
    # ... and every live state can still get to one
    for state in set(ConferenceState) - FINAL_STATES:
        reach, frontier = {state}, [state]
        while frontier:
            current = frontier.pop()
            for (source, _), target in TRANSITIONS.items():
                if source is current and target not in reach:
                    reach.add(target)
                    frontier.append(target)
        assert reach & FINAL_STATES, state


# -- the allocator takes every edge ---------------------------------------------------------


def normal_life(w: World) -> None:
    _cid, _ready = active(w, "/video bob")
    host = next(f for f in w.foci if f.conferences)
    host.join(host.conferences[0], "sip:bob@example.com", Mode.VIDEO, w.net.now)
    w.net.advance(1.0)
    w.alice.send_message(w.net.now, text="/add carol")
    w.net.advance(3.0)
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(3.0)


def end_while_probing(w: World) -> None:
    w.phone("bob").options = "silent"
    w.start()
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(3.0)


def end_while_allocating(w: World) -> None:
    w.focus.behaviour = "silent"
    w.start()
    w.net.advance(1.0)
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(3.0)


def fails(w: World) -> None:
    w.start()
    w.net.advance(5.0)
    assert w.allocator.conferences == {}


def idle(w: World) -> None:
    active(w)
    w.net.advance(400.0)


def focus_hangs_up(w: World) -> None:
    active(w)
    w.focus.hang_up(w.focus.conferences[0], w.net.now)
    w.net.advance(1.0)


def focus_dies(w: World) -> None:
    active(w)
    w.focus.alive = False
    w.net.advance(100.0)


def roster_then_hang_up_while_ending(w: World) -> None:
    active(w)
    conference = w.focus.conferences[0]
    w.net.drop.append(lambda _s, dest, wire: dest == FOCUS and wire.startswith(b"BYE"))
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(1.0)
    w.focus.join(conference, "sip:bob@example.com", Mode.VIDEO, w.net.now)
    w.net.advance(1.0)
    w.focus.hang_up(conference, w.net.now)  # its BYE crosses ours
    w.net.advance(1.0)
    # The focus's BYE crossed ours: it is answered 200 (RFC 3261 15.1.2) and
    # ends the conference at once, without waiting for our own (lost) BYE.
    assert [r.status for r in w.focus.responses if r.cseq.method == "BYE"] == [200]
    assert w.allocator.conferences == {}


def late_focus_ends_while_allocating(w: World) -> None:
    # /end while ALLOCATING, then the INVITE's late 200: ACKed and hung up
    w.start()
    w.net.advance(1.0)
    w.alice.send_message(w.net.now, text="/end")
    w.net.advance(1.0)
    late = w.focus
    assert isinstance(late, LateFocus)
    late.answer_held(w.net.now)
    w.net.advance(2.0)
    assert late.conferences[0].ended


SCENARIOS: list[tuple[Callable[[], World], Callable[[World], None]]] = [
    (lambda: make_world({"bob": {}, "carol": {}}), normal_life),
    (lambda: make_world(probe=False), normal_life),
    (lambda: make_world(), end_while_probing),
    (lambda: make_world(), end_while_allocating),
    (lambda: make_world(foci=[LateFocus()]), late_focus_ends_while_allocating),
    (lambda: make_world(foci=[Focus(behaviour="503"), Focus(FOCUS2)]), normal_life),
    (lambda: make_world(foci=[Focus(behaviour="503"), Focus(FOCUS2, behaviour="502")]), fails),
    (lambda: make_world(), idle),
    (lambda: make_world(), focus_hangs_up),
    (lambda: make_world(keepalive_interval=10.0), focus_dies),
    (lambda: make_world(), roster_then_hang_up_while_ending),
]

#: Edges no allocator input reaches: none.
UNREACHABLE: set[Edge] = set()


#: Whether ``Conference.move`` is a Python function (not compiled by mypyc):
#: only then can a test spy on it (compiled callers bind it natively).
INTERPRETED = isinstance(Conference.__dict__["move"], FunctionType)


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Edge, ConferenceState]]:
    """Every move any conference makes, self-loops included (they emit no event)."""
    if not INTERPRETED:
        pytest.skip("compiled: Conference.move cannot be spied on (the same code runs interpreted)")
    moves: list[tuple[Edge, ConferenceState]] = []
    original = Conference.move

    def spy(self: Conference, event: ConferenceInput) -> ConferenceState:
        old = self.state
        new = original(self, event)
        moves.append(((old, event), new))
        return new

    monkeypatch.setattr(Conference, "move", spy)
    return moves


def changes_in_every_scenario() -> set[Edge]:
    """The edges the ConferenceStateChanged events of every scenario report."""
    changed: set[Edge] = set()
    for build, scenario in SCENARIOS:
        w = build()
        scenario(w)
        changed |= {
            (e.old, ConferenceInput(e.reason))
            for e in w.net.events
            if isinstance(e, ConferenceStateChanged)
        }
    return changed


def test_the_allocator_takes_every_edge_of_the_table(
    taken: list[tuple[Edge, ConferenceState]],
) -> None:
    changed = changes_in_every_scenario()
    edges = {edge for edge, _ in taken}
    assert all(TRANSITIONS[edge] is new for edge, new in taken)
    assert set(TRANSITIONS) - edges == UNREACHABLE
    # ConferenceStateChanged reports exactly the moves that change the state
    assert changed == {edge for edge in edges if TRANSITIONS[edge] is not edge[0]}


def test_the_allocator_takes_every_edge_that_changes_the_state() -> None:
    """Seen through the events alone: in both modes, compiled or interpreted."""
    changed = changes_in_every_scenario()
    changing = {edge for edge, target in TRANSITIONS.items() if target is not edge[0]}
    assert changed == changing - UNREACHABLE


def test_a_state_change_event_names_the_input() -> None:
    w = make_world()
    cid, _ready = active(w)
    changes = [e for e in w.net.events if isinstance(e, ConferenceStateChanged)]
    assert changes == [
        ConferenceStateChanged(
            conference_id=cid, old=S.REQUESTED, new=S.PROBING, reason="start probing"
        ),
        ConferenceStateChanged(
            conference_id=cid, old=S.PROBING, new=S.ALLOCATING, reason="probes done"
        ),
        ConferenceStateChanged(
            conference_id=cid, old=S.ALLOCATING, new=S.ACTIVE, reason="focus answered"
        ),
    ]
