"""The four transition tables as data, and random input sequences against them.

As in h2's ``test_state_machines.py``: whatever the order of inputs, a
transaction only moves forward along its table, only API misuse raises (and
only ``LocalProtocolError``), and a terminated transaction leaves the layer.
"""

from __future__ import annotations

from enum import Enum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transaction_helpers import (
    CLIENT,
    CLIENT_TCP,
    SERVER,
    SERVER_TCP,
    make_ack,
    make_cancel,
    make_request,
    respond,
)

from vidim.sip import LocalProtocolError, Message, Request, Response
from vidim.sip.ids import new_branch
from vidim.sip.transaction import (
    InviteClientState,
    InviteClientTransaction,
    InviteServerState,
    InviteServerTransaction,
    NonInviteClientState,
    NonInviteClientTransaction,
    NonInviteServerState,
    NonInviteServerTransaction,
    RequestReceived,
    Transaction,
    TransactionConfig,
    TransactionId,
    TransactionInput,
    TransactionLayer,
    TransactionTerminated,
    describe_transitions,
)

Machine = (
    type[InviteClientTransaction]
    | type[NonInviteClientTransaction]
    | type[InviteServerTransaction]
    | type[NonInviteServerTransaction]
)

#: Each machine: its state enum, initial state and the rank of each state
#: (Completed and Accepted are alternatives, hence the same rank).
MACHINES: dict[Machine, tuple[type[Enum], Enum, dict[Enum, int]]] = {
    InviteClientTransaction: (
        InviteClientState,
        InviteClientState.CALLING,
        {
            InviteClientState.CALLING: 0,
            InviteClientState.PROCEEDING: 1,
            InviteClientState.COMPLETED: 2,
            InviteClientState.ACCEPTED: 2,
            InviteClientState.TERMINATED: 3,
        },
    ),
    NonInviteClientTransaction: (
        NonInviteClientState,
        NonInviteClientState.TRYING,
        {
            NonInviteClientState.TRYING: 0,
            NonInviteClientState.PROCEEDING: 1,
            NonInviteClientState.COMPLETED: 2,
            NonInviteClientState.TERMINATED: 3,
        },
    ),
    InviteServerTransaction: (
        InviteServerState,
        InviteServerState.PROCEEDING,
        {
            InviteServerState.PROCEEDING: 0,
            InviteServerState.COMPLETED: 1,
            InviteServerState.ACCEPTED: 1,
            InviteServerState.CONFIRMED: 2,
            InviteServerState.TERMINATED: 3,
        },
    ),
    NonInviteServerTransaction: (
        NonInviteServerState,
        NonInviteServerState.TRYING,
        {
            NonInviteServerState.TRYING: 0,
            NonInviteServerState.PROCEEDING: 1,
            NonInviteServerState.COMPLETED: 2,
            NonInviteServerState.TERMINATED: 3,
        },
    ),
}


def successors(machine: Machine) -> dict[Enum, set[Enum]]:
    """Every state reachable from each state (itself included)."""
    states, _, _ = MACHINES[machine]
    reach: dict[Enum, set[Enum]] = {state: {state} for state in states}
    changed = True
    while changed:
        changed = False
        for (source, _event), (target, _action) in machine.TRANSITIONS.items():
            for state in states:
                if source in reach[state] and not reach[target] <= reach[state]:
                    reach[state] |= reach[target]
                    changed = True
    return reach


# -- the tables themselves -------------------------------------------------------------


@pytest.mark.parametrize("machine", list(MACHINES))
def test_table_is_well_formed(machine: Machine) -> None:
    states, initial, rank = MACHINES[machine]
    terminated = machine.TERMINATED
    assert set(rank) == set(states)
    for (source, event), (target, action) in machine.TRANSITIONS.items():
        assert isinstance(source, states)
        assert isinstance(target, states)
        assert isinstance(event, TransactionInput)
        # Only forward: a row never goes back to an earlier state.
        assert rank[target] >= rank[source], (source, event, target)
        # Every side effect is a method of this machine.
        if action is not None:
            assert getattr(machine, action.__name__) is action
    # Nothing leaves Terminated; everything else can reach it and can fail.
    assert not any(source is terminated for source, _ in machine.TRANSITIONS)
    reach = successors(machine)
    assert reach[initial] == set(states)
    for state in states:
        assert terminated in reach[state]
        if state is not terminated:
            assert (state, TransactionInput.TRANSPORT_ERROR) in machine.TRANSITIONS


@pytest.mark.parametrize("machine", list(MACHINES))
def test_describe_transitions(machine: Machine) -> None:
    rows = describe_transitions(machine)
    assert len(rows) == len(machine.TRANSITIONS)
    names = {state.value for state in MACHINES[machine][0]}
    for state, event, target, _effect in rows:
        assert state in names
        assert target in names
        assert event in {member.value for member in TransactionInput}


def test_describe_transitions_uses_rfc_names_and_docstrings() -> None:
    rows = describe_transitions(InviteClientTransaction)
    assert (
        "Calling",
        "Timer A",
        "Calling",
        "Timer A: resend the INVITE and double the interval (no cap).",
    ) in rows
    assert ("Completed", "Timer D", "Terminated", "") in rows


# -- random inputs against each machine ------------------------------------------------


class Checker:
    """Watches every transaction of a layer between two inputs."""

    def __init__(self, layer: TransactionLayer) -> None:
        self.layer = layer
        self.seen: dict[TransactionId, tuple[Transaction, Enum]] = {}
        self.terminated_events: list[TransactionId] = []

    def check(self, now: float) -> None:
        layer = self.layer
        for tid, txn in layer._transactions.items():
            if tid not in self.seen:
                machine = type(txn)
                assert txn.state is not machine.TERMINATED
                self.seen[tid] = (txn, txn.state)
        for event in layer.events():
            if isinstance(event, TransactionTerminated):
                self.terminated_events.append(event.transaction_id)
        assert len(self.terminated_events) == len(set(self.terminated_events))
        armed = layer._armed_timers()
        for tid, (txn, before) in self.seen.items():
            machine = type(txn)
            after = txn.state
            assert after in successors(machine)[before], (before, after)
            self.seen[tid] = (txn, after)
            if after is machine.TERMINATED:
                assert layer.transaction(tid) is None
                assert tid in self.terminated_events
            else:
                assert layer.transaction(tid) is txn
                # Only what absorbing retransmissions needs, once the request is done
                # with (RFC 2543 server transactions keep it: matching reads it).
                done_with = after in _REQUEST_DONE and len(txn.key) != 5
                assert (txn.request is None) is done_with, (type(txn).__name__, after)
        live = set(map(id, layer._transactions.values()))
        assert all(id(t) in live for t in layer._client_index.values())
        assert all(id(t) in live for t in layer._server_index.values())
        assert all(id(t) in live for b in layer._server_2543.values() for t in b)
        # Only live transactions have timers, and every deadline is ahead.
        for tid in armed:
            assert tid in layer._transactions
        deadline = layer.get_timer()
        assert deadline is None or deadline > now


#: The states in which a transaction no longer holds its request.
_REQUEST_DONE = {
    InviteClientState.COMPLETED,
    InviteClientState.ACCEPTED,
    NonInviteClientState.COMPLETED,
    InviteServerState.ACCEPTED,
    InviteServerState.CONFIRMED,
    NonInviteServerState.COMPLETED,
}

TIMES = st.floats(min_value=0.0, max_value=40.0, allow_nan=False)
CLIENT_OPS = st.one_of(
    st.tuples(
        st.just("response"),
        st.sampled_from([100, 180, 183, 200, 202, 302, 404, 486, 487, 500, 603]),
        st.sampled_from(["t1", "t2"]),
    ),
    st.tuples(st.just("duplicate")),
    st.tuples(st.just("advance"), TIMES),
    st.tuples(st.just("next_timer")),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("cancel_response"), st.sampled_from([200, 481])),
    st.tuples(st.just("transport_error")),
)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["INVITE", "OPTIONS"]),
    tcp=st.booleans(),
    ops=st.lists(CLIENT_OPS, max_size=25),
)
def test_client_transactions_under_random_input(
    method: str, tcp: bool, ops: list[tuple[object, ...]]
) -> None:
    layer = TransactionLayer(TransactionConfig(auto_100_trying=False))
    checker = Checker(layer)
    server = SERVER_TCP if tcp else SERVER
    request = make_request(method, transport="TCP" if tcp else "UDP")
    now = 0.0
    tid = layer.send_request(request, server, now)
    assert layer.messages_to_send() == [(request, server)]
    checker.check(now)
    last: Message | None = None
    cancel: Request | None = None
    for op in ops:
        kind = op[0]
        if kind == "response":
            last = respond(request, op[1], to_tag=op[2])  # type: ignore[arg-type]
            layer.receive(last, server, now)
        elif kind == "duplicate" and last is not None:
            layer.receive(last, server, now)
        elif kind == "advance":
            now += op[1]  # type: ignore[operator]
            layer.handle_timer(now)
        elif kind == "next_timer":
            deadline = layer.get_timer()
            if deadline is not None:
                now = deadline
                layer.handle_timer(now)
        elif kind == "cancel":
            if method == "INVITE":
                cancel_id = layer.cancel(tid, now)
                txn = layer.transaction(cancel_id) if cancel_id is not None else None
                if txn is not None:
                    cancel = txn.request
            elif layer.transaction(tid) is None:
                assert layer.cancel(tid, now) is None  # terminated: a harmless race
            else:
                with pytest.raises(LocalProtocolError, match="client INVITE"):
                    layer.cancel(tid, now)
        elif kind == "cancel_response" and cancel is not None:
            last = respond(cancel, op[1])  # type: ignore[arg-type]
            layer.receive(last, server, now)
        elif kind == "transport_error":
            layer.report_transport_error(tid, now)
        checker.check(now)
        for message, destination in layer.messages_to_send():
            assert destination == server
            assert isinstance(message, Request)
            if tcp:  # over TCP, only new requests: ACK and CANCEL, once each
                assert message.method in ("ACK", "CANCEL")
    # Left alone, everything ends, except an INVITE in Proceeding: only the
    # TU (with a CANCEL) or the server (with a final) can end that one.
    now += 1000.0
    layer.handle_timer(now)
    checker.check(now)
    for txn in layer._transactions.values():
        assert isinstance(txn, InviteClientTransaction)
        assert txn.state is InviteClientState.PROCEEDING
        assert txn._cancel_id is None


SERVER_OPS = st.one_of(
    st.tuples(st.just("retransmit")),
    st.tuples(st.just("ack"), st.booleans()),
    st.tuples(st.just("ack_2xx")),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("respond"), st.sampled_from([100, 180, 200, 202, 404, 486, 487, 603])),
    st.tuples(st.just("duplicate")),
    st.tuples(st.just("advance"), TIMES),
    st.tuples(st.just("next_timer")),
    st.tuples(st.just("transport_error")),
)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["INVITE", "MESSAGE"]),
    tcp=st.booleans(),
    rfc2543=st.booleans(),
    auto_100=st.booleans(),
    ops=st.lists(SERVER_OPS, max_size=25),
)
def test_server_transactions_under_random_input(
    method: str, tcp: bool, rfc2543: bool, auto_100: bool, ops: list[tuple[object, ...]]
) -> None:
    layer = TransactionLayer(TransactionConfig(auto_100_trying=auto_100))
    checker = Checker(layer)
    client = CLIENT_TCP if tcp else CLIENT
    request = make_request(
        method, transport="TCP" if tcp else "UDP", branch="old-1" if rfc2543 else None
    )
    now = 0.0
    layer.receive(request, client, now)
    [received] = [e for e in layer.events() if isinstance(e, RequestReceived)]
    tid = received.transaction_id
    assert layer.transaction(tid) is not None
    checker.check(now)

    first = layer.transaction(tid)
    assert first is not None
    key = first.key

    def current() -> InviteServerTransaction | NonInviteServerTransaction | None:
        # After a termination, a retransmission starts a new transaction (with
        # the same key; a completed one no longer holds the request).
        for txn in layer._transactions.values():
            if txn.key == key:
                assert isinstance(txn, (InviteServerTransaction, NonInviteServerTransaction))
                return txn
        return None

    last: Message = request
    answered: Response | None = None
    for op in ops:
        kind = op[0]
        if kind == "retransmit":
            last = request
            layer.receive(request, client, now)
        elif kind == "ack":
            tagged = (
                answered if answered is not None and op[1] else respond(request, 486, to_tag="x")
            )
            last = make_ack(request, tagged)
            layer.receive(last, client, now)
        elif kind == "ack_2xx":
            last = make_ack(request, respond(request, 200), branch=new_branch())
            layer.receive(last, client, now)
        elif kind == "cancel":
            last = make_cancel(request)
            layer.receive(last, client, now)
        elif kind == "respond":
            response = respond(request, op[1])  # type: ignore[arg-type]
            status_input = (
                TransactionInput.SEND_1XX if response.status < 200
                else TransactionInput.SEND_2XX if response.status < 300
                else TransactionInput.SEND_3XX_6XX
            )  # fmt: skip
            txn = current()
            allowed = txn is not None and (txn.state, status_input) in type(txn).TRANSITIONS
            if allowed:
                layer.send_response(response, now)
                answered = response
            else:
                with pytest.raises(LocalProtocolError, match=r"no server transaction|cannot send"):
                    layer.send_response(response, now)
        elif kind == "duplicate":
            layer.receive(last, client, now)
        elif kind == "advance":
            now += op[1]  # type: ignore[operator]
            layer.handle_timer(now)
        elif kind == "next_timer":
            deadline = layer.get_timer()
            if deadline is not None:
                now = deadline
                layer.handle_timer(now)
        elif kind == "transport_error":
            txn = current()
            layer.report_transport_error(txn.id if txn is not None else tid, now)
        checker.check(now)
        for message, destination in layer.messages_to_send():
            assert destination == client
            assert isinstance(message, Response)
    # Once the TU has answered, everything ends on its own.
    txn = current()
    if txn is not None and txn.state in (
        InviteServerState.PROCEEDING,
        NonInviteServerState.TRYING,
        NonInviteServerState.PROCEEDING,
    ):
        layer.send_response(respond(request, 500), now)
    now += 1000.0
    layer.handle_timer(now)
    checker.check(now)
    assert len(layer) == 0
    assert layer.get_timer() is None


# -- scale ---------------------------------------------------------------------------


def test_a_final_response_cancels_the_retransmission_and_timeout_timers() -> None:
    layer = TransactionLayer(TransactionConfig(auto_100_trying=False))
    for i in range(3000):
        request = make_request("OPTIONS", seq=i + 1)
        layer.send_request(request, SERVER, 0.0)
        layer.receive(respond(request, 200), SERVER, 0.0)
    layer.messages_to_send()
    layer.events()
    assert len(layer) == 3000
    armed = layer._armed_timers()
    assert len(armed) == 3000
    # One Timer K each: E and F were cancelled.
    assert all(timers == [TransactionInput.TIMER_K] for timers in armed.values())
    assert layer.get_timer() == 5.0
    layer.handle_timer(5.0)
    assert len(layer) == 0
    assert layer.get_timer() is None  # the cancelled E and F: nothing is live
    assert not layer._armed_timers()


def test_timers_fire_in_deadline_order_across_durations_and_a_clock_that_goes_back() -> None:
    layer = TransactionLayer(TransactionConfig(auto_100_trying=False))
    sent = []
    for i, now in enumerate([10.0, 2.0, 7.0]):  # the clock goes back
        request = make_request("OPTIONS", seq=i + 1)
        layer.send_request(request, SERVER, now)
        sent.append(request)
    layer.messages_to_send()
    assert layer.get_timer() == 2.5  # Timer E of the request sent at 2.0
    layer.handle_timer(2.5)
    (retransmission,) = layer.messages_to_send()
    assert retransmission[0] is sent[1]
    assert layer.get_timer() == 3.5  # its E again, doubled to 1 s
    layer.handle_timer(100.0)  # every F: three timeouts, oldest deadline first
    timed_out = [e.request for e in layer.events() if type(e).__name__ == "TransactionTimedOut"]
    assert timed_out == [sent[1], sent[2], sent[0]]
    assert layer.get_timer() is None
