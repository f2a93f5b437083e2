"""The focus's state tables, alone and as a conference moves through them."""

from __future__ import annotations

import pytest
from focus_peers import (
    FOCUS,
    AllocatorSide,
    Net,
    Softphone,
    baresip_offer,
    focus_world,
    make_conference,
)

from vidim.focus import (
    CONFERENCE_TRANSITIONS,
    PARTICIPANT_TRANSITIONS,
    ConferenceFocus,
    ConferenceInput,
    ConferenceSnapshot,
    ConferenceState,
    ParticipantInput,
    ParticipantState,
)
from vidim.focus.lifecycle import next_conference_state, next_participant_state
from vidim.sip import Address, LocalProtocolError
from vidim.vocabulary import Mode

BOB = "sip:bob@example.com"
CAROL = "sip:carol@example.com"


@pytest.mark.parametrize(("pair", "target"), list(CONFERENCE_TRANSITIONS.items()))
def test_every_conference_transition(
    pair: tuple[ConferenceState, ConferenceInput], target: ConferenceState
) -> None:
    assert next_conference_state(*pair) is target


@pytest.mark.parametrize(("pair", "target"), list(PARTICIPANT_TRANSITIONS.items()))
def test_every_participant_transition(
    pair: tuple[ParticipantState, ParticipantInput], target: ParticipantState
) -> None:
    assert next_participant_state(*pair) is target


@pytest.mark.parametrize(
    "pair",
    [
        (state, event)
        for state in ConferenceState
        for event in ConferenceInput
        if (state, event) not in CONFERENCE_TRANSITIONS
    ],
)
def test_a_conference_pair_not_in_the_table_is_refused(
    pair: tuple[ConferenceState, ConferenceInput],
) -> None:
    with pytest.raises(LocalProtocolError, match="a conference cannot take"):
        next_conference_state(*pair)


@pytest.mark.parametrize(
    "pair",
    [
        (state, event)
        for state in ParticipantState
        for event in ParticipantInput
        if (state, event) not in PARTICIPANT_TRANSITIONS
    ],
)
def test_a_participant_pair_not_in_the_table_is_refused(
    pair: tuple[ParticipantState, ParticipantInput],
) -> None:
    with pytest.raises(LocalProtocolError, match="a participant cannot take"):
        next_participant_state(*pair)


def test_the_tables_use_every_state_and_input() -> None:
    assert {s for s, _ in CONFERENCE_TRANSITIONS} == {ConferenceState.OPEN, ConferenceState.LIVE}
    assert set(CONFERENCE_TRANSITIONS.values()) == set(ConferenceState)
    assert {e for _, e in CONFERENCE_TRANSITIONS} == set(ConferenceInput)
    assert {s for s, _ in PARTICIPANT_TRANSITIONS} == set(ParticipantState)
    assert {e for _, e in PARTICIPANT_TRANSITIONS} == set(ParticipantInput)
    # Nothing leads back to "invited", and an ended conference takes nothing.
    assert ParticipantState.INVITED not in PARTICIPANT_TRANSITIONS.values()


# -- through the focus ----------------------------------------------------------------


def _world() -> tuple[Net, ConferenceFocus, AllocatorSide]:
    net, focus, _node, allocator = focus_world()
    allocator.create(make_conference([(BOB, Mode.VIDEO), (CAROL, Mode.AUDIO)]), net.now)
    net.advance()
    return net, focus, allocator


def _call(net: Net, allocator: AllocatorSide, uri: str, port: int) -> Softphone:
    softphone = Softphone(uri.removeprefix("sip:").split("@")[0], Address("127.0.0.1", port), b"")
    softphone.offer = baresip_offer(port, port + 2)
    net.add(softphone)
    softphone.call(allocator.join_uri(uri), net.now)
    return softphone


def _snapshot(focus: ConferenceFocus) -> ConferenceSnapshot:
    (snapshot,) = focus.conferences()
    return snapshot


def test_a_conference_and_its_participants_move_by_the_tables() -> None:
    net, focus, allocator = _world()
    first = _snapshot(focus)
    assert first.state is ConferenceState.OPEN
    assert dict(first.participants) == {
        BOB: ParticipantState.INVITED,
        CAROL: ParticipantState.INVITED,
    }
    # Bob's ACK is lost: his 200 is resent, he is "answering" until an ACK arrives.
    lose_ack = lambda source, _, line: source.port == 6000 and line.startswith("ACK")  # noqa: E731
    net.drop.append(lose_ack)
    bob = _call(net, allocator, BOB, 6000)
    net.advance(0.1)
    snapshot = _snapshot(focus)
    assert snapshot.state is ConferenceState.LIVE
    assert dict(snapshot.participants)[BOB] is ParticipantState.ANSWERING
    net.drop.remove(lose_ack)
    net.advance(1.0)  # the next resend of the 200 gets its ACK through
    assert dict(_snapshot(focus).participants)[BOB] is ParticipantState.CONNECTED
    carol = _call(net, allocator, CAROL, 6010)
    net.advance()
    assert dict(_snapshot(focus).participants)[CAROL] is ParticipantState.CONNECTED
    bob.hang_up(net.now)
    net.advance()
    snapshot = _snapshot(focus)
    assert snapshot.state is ConferenceState.LIVE
    assert dict(snapshot.participants) == {
        BOB: ParticipantState.LEFT,
        CAROL: ParticipantState.CONNECTED,
    }
    carol.hang_up(net.now)
    net.advance()
    assert focus.conferences() == []  # the last one left: ended
    assert len(net.sent(FOCUS, "BYE")) == 1  # to the anchor
    net.advance(60)  # the BYE's and the last transactions' timers run out
    assert focus.get_timer() is None  # no deadline of the conference's outlives it
