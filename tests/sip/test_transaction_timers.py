"""Timers A to M on a virtual clock: exact deadlines and retransmission counts."""

from __future__ import annotations

import pytest
from transaction_helpers import (
    CLIENT,
    CLIENT_TCP,
    SERVER,
    SERVER_TCP,
    make_ack,
    make_request,
    respond,
    run_timers,
    sent,
)

from vidim.sip import LocalProtocolError
from vidim.sip.transaction import (
    AckReceived,
    InviteClientState,
    InviteServerState,
    NonInviteClientState,
    NonInviteServerState,
    RequestReceived,
    ResponseReceived,
    TransactionConfig,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
)


def quiet_layer(t1: float = 0.5, t2: float = 4.0, timer_d: float = 32.0) -> TransactionLayer:
    config = TransactionConfig(t1=t1, t2=t2, timer_d=timer_d, auto_100_trying=False)
    return TransactionLayer(config)


# -- client INVITE: Timers A, B, D, M ------------------------------------------------


def test_timer_a_doubles_and_timer_b_fires_at_64_t1() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    tid = layer.send_request(invite, SERVER, 0.0)
    assert layer.messages_to_send() == [(invite, SERVER)]
    assert layer.get_timer() == 0.5

    retransmissions = run_timers(layer, until=100.0)

    # Intervals 0.5, 1, 2, 4, 8, 16 (the next, 32, would pass Timer B).
    assert [t for t, _ in retransmissions] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(message is invite for _, message in retransmissions)
    assert layer.events() == [
        TransactionTimedOut(transaction_id=tid, request=invite, status_hint=408),
        TransactionTerminated(transaction_id=tid),
    ]
    assert layer.get_timer() is None
    assert layer.transaction(tid) is None
    assert len(layer) == 0


def test_timer_b_fires_exactly_at_32_seconds() -> None:
    layer = quiet_layer()
    tid = layer.send_request(make_request("INVITE"), SERVER, 0.0)
    run_timers(layer, until=31.9)
    assert layer.events() == []
    assert layer.get_timer() == 32.0
    layer.handle_timer(32.0)
    assert isinstance(layer.events()[0], TransactionTimedOut)
    assert layer.transaction(tid) is None


def test_timer_a_uses_configured_t1_without_cap() -> None:
    layer = quiet_layer(t1=1.0, t2=2.0)
    layer.send_request(make_request("INVITE"), SERVER, 10.0)
    sent(layer)
    times = [t for t, _ in run_timers(layer, until=1000.0)]
    # A does not stop at T2 (only E and G do); B fires at 10 + 64*T1 = 74.
    assert times == [11.0, 13.0, 17.0, 25.0, 41.0, 73.0]
    assert isinstance(layer.events()[0], TransactionTimedOut)


def test_provisional_stops_retransmissions_and_timer_b() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    tid = layer.send_request(invite, SERVER, 0.0)
    sent(layer)
    layer.receive(respond(invite, 180), SERVER, 0.7)
    assert [type(e) for e in layer.events()] == [ResponseReceived]
    # Timer A was re-armed at 0.5 for 1.5; both A and B are gone now.
    assert layer.get_timer() is None
    assert run_timers(layer, until=1000.0) == []
    txn = layer.transaction(tid)
    assert txn is not None
    assert txn.state is InviteClientState.PROCEEDING


def test_timer_d_after_non_2xx_over_udp() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    tid = layer.send_request(invite, SERVER, 0.0)
    sent(layer)
    layer.receive(respond(invite, 486), SERVER, 1.0)
    assert [m.method for m in sent(layer)] == ["ACK"]  # type: ignore[attr-defined]
    txn = layer.transaction(tid)
    assert txn is not None
    assert txn.state is InviteClientState.COMPLETED
    assert layer.get_timer() == 33.0
    layer.handle_timer(32.9)
    assert layer.transaction(tid) is txn
    layer.handle_timer(33.0)
    assert layer.transaction(tid) is None
    assert layer.events()[-1] == TransactionTerminated(transaction_id=tid)


def test_timer_d_is_configurable() -> None:
    layer = quiet_layer(timer_d=40.0)
    invite = make_request("INVITE")
    layer.send_request(invite, SERVER, 0.0)
    layer.receive(respond(invite, 603), SERVER, 2.0)
    assert layer.get_timer() == 42.0


def test_timer_m_keeps_accepted_client_for_64_t1() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    tid = layer.send_request(invite, SERVER, 0.0)
    sent(layer)
    ok = respond(invite, 200)
    layer.receive(ok, SERVER, 1.0)
    # No ACK from the transaction for a 2xx: the TU sends it.
    assert sent(layer) == []
    assert layer.events() == [ResponseReceived(response=ok, transaction_id=tid)]
    txn = layer.transaction(tid)
    assert txn is not None
    assert txn.state is InviteClientState.ACCEPTED
    assert layer.get_timer() == 33.0
    # RFC 6026: 2xx retransmissions in Accepted go to the TU (which re-ACKs).
    layer.receive(ok, SERVER, 2.0)
    assert layer.events() == [ResponseReceived(response=ok, transaction_id=tid)]
    layer.handle_timer(33.0)
    assert layer.events() == [TransactionTerminated(transaction_id=tid)]


def test_invite_client_over_tcp_never_retransmits_and_timer_d_is_zero() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE", transport="TCP")
    tid = layer.send_request(invite, SERVER_TCP, 0.0)
    assert sent(layer) == [invite]
    assert layer.get_timer() == 32.0  # only Timer B
    layer.receive(respond(invite, 486), SERVER_TCP, 1.0)
    assert [m.method for m in sent(layer)] == ["ACK"]  # type: ignore[attr-defined]
    assert layer.transaction(tid) is None  # Timer D = 0: terminated at once
    assert layer.get_timer() is None
    assert [type(e) for e in layer.events()] == [ResponseReceived, TransactionTerminated]


def test_invite_client_over_tcp_times_out_without_retransmitting() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE", transport="TCP")
    tid = layer.send_request(invite, SERVER_TCP, 0.0)
    sent(layer)
    assert run_timers(layer, until=100.0) == []
    assert layer.events() == [
        TransactionTimedOut(transaction_id=tid, request=invite),
        TransactionTerminated(transaction_id=tid),
    ]


def test_reliable_flag_overrides_destination_transport() -> None:
    layer = quiet_layer()
    layer.send_request(make_request("OPTIONS"), SERVER, 0.0, reliable=True)
    sent(layer)
    assert layer.get_timer() == 32.0  # F only, no E
    assert run_timers(layer, until=100.0) == []


# -- client non-INVITE: Timers E, F, K ------------------------------------------------


def test_timer_e_doubles_up_to_t2_then_timer_f() -> None:
    layer = quiet_layer()
    options = make_request("OPTIONS")
    tid = layer.send_request(options, SERVER, 0.0)
    sent(layer)
    times = [t for t, _ in run_timers(layer, until=100.0)]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert layer.events() == [
        TransactionTimedOut(transaction_id=tid, request=options, status_hint=408),
        TransactionTerminated(transaction_id=tid),
    ]


def test_timer_e_is_t2_in_proceeding() -> None:
    layer = quiet_layer()
    options = make_request("OPTIONS")
    tid = layer.send_request(options, SERVER, 0.0)
    sent(layer)
    assert [t for t, _ in run_timers(layer, until=1.6)] == [0.5, 1.5]
    layer.receive(respond(options, 100), SERVER, 2.0)
    txn = layer.transaction(tid)
    assert txn is not None
    assert txn.state is NonInviteClientState.PROCEEDING
    # The E armed at 1.5 (for 3.5) still fires; then every T2.
    times = [t for t, _ in run_timers(layer, until=100.0)]
    assert times == [3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert isinstance(layer.events()[1], TransactionTimedOut)


def test_timer_k_absorbs_retransmitted_finals() -> None:
    layer = quiet_layer()
    options = make_request("OPTIONS")
    tid = layer.send_request(options, SERVER, 0.0)
    sent(layer)
    ok = respond(options, 200)
    layer.receive(ok, SERVER, 1.0)
    assert layer.events() == [ResponseReceived(response=ok, transaction_id=tid)]
    assert layer.get_timer() == 6.0  # T4
    layer.receive(ok, SERVER, 2.0)
    layer.receive(respond(options, 404), SERVER, 2.5)
    assert layer.events() == []
    assert sent(layer) == []
    layer.handle_timer(6.0)
    assert layer.events() == [TransactionTerminated(transaction_id=tid)]


def test_non_invite_client_over_tcp_timer_k_is_zero() -> None:
    layer = quiet_layer()
    options = make_request("OPTIONS", transport="TCP")
    tid = layer.send_request(options, SERVER_TCP, 0.0)
    sent(layer)
    assert layer.get_timer() == 32.0
    layer.receive(respond(options, 200), SERVER_TCP, 0.1)
    assert layer.transaction(tid) is None
    assert layer.get_timer() is None


# -- server INVITE: Timers G, H, I, L -------------------------------------------------


def test_timer_g_doubles_up_to_t2_and_timer_h_times_out() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    layer.receive(invite, CLIENT, 0.0)
    (event,) = layer.events()
    assert isinstance(event, RequestReceived)
    busy = respond(invite, 486)
    layer.send_response(busy, 0.0)
    assert layer.messages_to_send() == [(busy, CLIENT)]
    retransmissions = run_timers(layer, until=100.0)
    assert [t for t, _ in retransmissions] == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5,
    ]  # fmt: skip
    assert all(message is busy for _, message in retransmissions)
    assert layer.events() == [
        TransactionTimedOut(transaction_id=event.transaction_id, request=invite),
        TransactionTerminated(transaction_id=event.transaction_id),
    ]


def test_timer_i_after_ack() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    layer.receive(invite, CLIENT, 0.0)
    tid = layer.events()[0].transaction_id  # type: ignore[attr-defined]
    busy = respond(invite, 486)
    layer.send_response(busy, 1.0)
    sent(layer)
    layer.receive(make_ack(invite, busy), CLIENT, 2.0)
    txn = layer.transaction(tid)
    assert txn is not None
    assert txn.state is InviteServerState.CONFIRMED
    assert layer.events() == []  # the ACK for a non-2xx stays in the transaction
    assert layer.get_timer() == 7.0  # T4 after the ACK; G and H are gone
    # Further ACKs and INVITEs are absorbed.
    layer.receive(make_ack(invite, busy), CLIENT, 3.0)
    layer.receive(invite, CLIENT, 3.0)
    assert sent(layer) == []
    assert layer.events() == []
    layer.handle_timer(7.0)
    assert layer.events() == [TransactionTerminated(transaction_id=tid)]


def test_invite_server_over_tcp_no_timer_g_and_timer_i_is_zero() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE", transport="TCP")
    layer.receive(invite, CLIENT_TCP, 0.0)
    tid = layer.events()[0].transaction_id  # type: ignore[attr-defined]
    busy = respond(invite, 486)
    layer.send_response(busy, 0.0)
    assert sent(layer) == [busy]
    assert layer.get_timer() == 32.0  # H only
    layer.receive(make_ack(invite, busy), CLIENT_TCP, 1.0)
    assert layer.transaction(tid) is None
    assert layer.events() == [TransactionTerminated(transaction_id=tid)]


def test_timer_l_absorbs_invites_and_passes_acks_up() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    layer.receive(invite, CLIENT, 0.0)
    tid = layer.events()[0].transaction_id  # type: ignore[attr-defined]
    ok = respond(invite, 200)
    layer.send_response(ok, 1.0)
    assert sent(layer) == [ok]
    txn = layer.transaction(tid)
    assert txn is not None
    assert txn.state is InviteServerState.ACCEPTED
    assert layer.get_timer() == 33.0
    # RFC 6026: no retransmission of the 2xx by the transaction...
    assert run_timers(layer, until=32.9) == []
    # ...INVITE retransmissions are absorbed, the TU's 2xx retransmissions sent.
    layer.receive(invite, CLIENT, 2.0)
    assert sent(layer) == []
    layer.send_response(ok, 2.0)
    assert sent(layer) == [ok]
    # An ACK reaching the transaction goes to the TU.
    ack = make_ack(invite, ok)
    layer.receive(ack, CLIENT, 3.0)
    assert layer.events() == [AckReceived(request=ack, source=CLIENT)]
    with pytest.raises(LocalProtocolError, match="cannot send 486"):
        layer.send_response(respond(invite, 486), 4.0)
    layer.handle_timer(33.0)
    assert layer.events() == [TransactionTerminated(transaction_id=tid)]


def test_timer_l_is_64_t1_over_tcp_too() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE", transport="TCP")
    layer.receive(invite, CLIENT_TCP, 0.0)
    layer.send_response(respond(invite, 200), 0.0)
    assert layer.get_timer() == 32.0


# -- server non-INVITE: Timer J -------------------------------------------------------


def test_timer_j_over_udp() -> None:
    layer = quiet_layer()
    message = make_request("MESSAGE")
    layer.receive(message, CLIENT, 0.0)
    tid = layer.events()[0].transaction_id  # type: ignore[attr-defined]
    ok = respond(message, 200)
    layer.send_response(ok, 1.0)
    assert sent(layer) == [ok]
    assert layer.get_timer() == 33.0
    layer.receive(message, CLIENT, 5.0)
    assert sent(layer) == [ok]  # retransmitted request: last response resent
    txn = layer.transaction(tid)
    assert txn is not None
    assert txn.state is NonInviteServerState.COMPLETED
    layer.handle_timer(33.0)
    assert layer.events() == [TransactionTerminated(transaction_id=tid)]


def test_timer_j_is_zero_over_tcp() -> None:
    layer = quiet_layer()
    message = make_request("MESSAGE", transport="TCP")
    layer.receive(message, CLIENT_TCP, 0.0)
    tid = layer.events()[0].transaction_id  # type: ignore[attr-defined]
    layer.send_response(respond(message, 200), 1.0)
    assert layer.transaction(tid) is None
    assert layer.get_timer() is None


def test_non_invite_server_trying_absorbs_and_proceeding_resends() -> None:
    layer = quiet_layer()
    message = make_request("MESSAGE")
    layer.receive(message, CLIENT, 0.0)
    layer.events()
    layer.receive(message, CLIENT, 0.5)
    assert sent(layer) == []  # Trying: absorbed
    assert layer.events() == []
    trying = respond(message, 100)
    layer.send_response(trying, 0.6)
    assert sent(layer) == [trying]
    layer.receive(message, CLIENT, 1.0)
    assert sent(layer) == [trying]


def test_config_rejects_nonsense() -> None:
    with pytest.raises(LocalProtocolError, match="t2 >= t1"):
        TransactionConfig(t1=1.0, t2=0.5)
