"""The transaction layer: ACK and CANCEL, matching, discards, API misuse, lossy pairs."""

from __future__ import annotations

import dataclasses
import sys

import pytest
from transaction_helpers import (
    CLIENT,
    SERVER,
    Link,
    corpus_message,
    make_ack,
    make_cancel,
    make_request,
    respond,
    run_timers,
    sent,
)

from vidim.sip import LocalProtocolError, Request, Response, make_response, parse_message
from vidim.sip.ids import MAGIC_COOKIE, new_branch
from vidim.sip.transaction import (
    AckReceived,
    Address,
    Event,
    InviteClientState,
    InviteServerState,
    MessageDiscarded,
    RequestCancelled,
    RequestReceived,
    ResponseReceived,
    TransactionConfig,
    TransactionId,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)


def quiet_layer(**options: object) -> TransactionLayer:
    return TransactionLayer(TransactionConfig(auto_100_trying=False, **options))  # type: ignore[arg-type]


def only(events: list[Event], kind: type[Event]) -> list[Event]:
    return [event for event in events if isinstance(event, kind)]


def test_new_branch() -> None:
    branch = new_branch()
    assert branch.startswith(MAGIC_COOKIE)
    assert len(branch) == len(MAGIC_COOKIE) + 32
    assert new_branch() != branch


def test_address_reliability() -> None:
    assert not Address("h", 1).reliable
    assert Address("h", 1, "tcp").reliable
    assert Address("h", 1, "TLS").reliable


# -- ACK for non-2xx (RFC 3261 section 17.1.1.3) --------------------------------------


def test_events_are_frozen_keyword_only_values() -> None:
    request = make_request("OPTIONS")
    event = TransactionTimedOut(transaction_id=TransactionId(3), request=request)
    assert event.status_hint == 408
    assert event == TransactionTimedOut(
        transaction_id=TransactionId(3), request=request, status_hint=408
    )
    assert "status_hint=408" in repr(event)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.status_hint = 487  # type: ignore[misc]
    with pytest.raises(TypeError):
        TransactionTerminated(TransactionId(3))  # type: ignore[misc]


def test_ack_for_non_2xx_is_built_by_the_client_transaction() -> None:
    layer = quiet_layer()
    routes = ("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>")
    invite = make_request("INVITE", seq=314, routes=routes)
    tid = layer.send_request(invite, SERVER, 0.0)
    sent(layer)
    busy = respond(invite, 486, to_tag="xyz")
    layer.receive(busy, SERVER, 0.2)

    [(ack, destination)] = layer.messages_to_send()
    assert destination == SERVER
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.uri == invite.uri
    assert ack.via == [invite.top_via]
    assert ack.headers.get_all("Route") == list(routes)
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.headers.get("To") == busy.headers.get("To")
    assert ack.to_addr.tag == "xyz"
    assert ack.call_id == invite.call_id
    assert (ack.cseq.seq, ack.cseq.method) == (314, "ACK")
    assert ack.max_forwards == 70
    assert ack.body == b""
    # It is valid on the wire.
    reparsed = parse_message(ack.to_bytes())
    assert list(reparsed.headers) == [*ack.headers, ("Content-Length", "0")]
    assert layer.events() == [ResponseReceived(response=busy, transaction_id=tid)]

    # A retransmitted final is absorbed, and the same ACK goes out again.
    layer.receive(busy, SERVER, 0.4)
    assert sent(layer) == [ack]
    assert layer.events() == []


def test_2xx_goes_to_the_tu_and_its_ack_is_sent_stateless() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    tid = layer.send_request(invite, SERVER, 0.0)
    sent(layer)
    ok = respond(invite, 200)
    layer.receive(ok, SERVER, 0.1)
    assert sent(layer) == []
    assert layer.events() == [ResponseReceived(response=ok, transaction_id=tid)]
    ack = make_ack(invite, ok, branch=new_branch())
    layer.send_stateless(ack, SERVER)
    assert layer.messages_to_send() == [(ack, SERVER)]
    with pytest.raises(LocalProtocolError, match="send_stateless"):
        layer.send_request(ack, SERVER, 0.2)


def test_late_or_unexpected_responses_are_discarded_with_a_reason() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    layer.send_request(invite, SERVER, 0.0)
    layer.receive(respond(invite, 486), SERVER, 0.1)
    layer.events()
    late = respond(invite, 180)
    layer.receive(late, SERVER, 0.2)
    [event] = layer.events()
    assert isinstance(event, MessageDiscarded)
    assert event.message is late
    assert "Completed" in event.reason


# -- CANCEL, client side (RFC 3261 section 9.1) ---------------------------------------


def test_cancel_after_provisional() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE", routes=("<sip:p1.example.com;lr>",))
    tid = layer.send_request(invite, SERVER, 0.0)
    sent(layer)
    layer.receive(respond(invite, 180), SERVER, 0.3)
    layer.events()

    cancel_id = layer.cancel(tid, 1.0)
    assert cancel_id is not None
    assert cancel_id != tid
    [(cancel, destination)] = layer.messages_to_send()
    assert destination == SERVER
    assert isinstance(cancel, Request)
    assert cancel.method == "CANCEL"
    assert cancel.uri == invite.uri
    assert cancel.via == [invite.top_via]  # same branch
    assert cancel.headers.get_all("Route") == invite.headers.get_all("Route")
    for name in ("From", "To", "Call-ID"):
        assert cancel.headers.get(name) == invite.headers.get(name)
    assert (cancel.cseq.seq, cancel.cseq.method) == (1, "CANCEL")
    assert layer.cancel(tid, 1.1) == cancel_id  # idempotent
    assert sent(layer) == []

    # The CANCEL is a non-INVITE client transaction: Timer E retransmits it.
    assert layer.get_timer() == 1.5
    layer.handle_timer(1.5)
    assert sent(layer) == [cancel]

    cancel_ok = respond(cancel, 200)
    layer.receive(cancel_ok, SERVER, 1.6)
    terminated = respond(invite, 487)
    layer.receive(terminated, SERVER, 1.7)
    assert [m.method for m in sent(layer)] == ["ACK"]  # type: ignore[attr-defined]
    assert layer.events() == [
        ResponseReceived(response=cancel_ok, transaction_id=cancel_id),
        ResponseReceived(response=terminated, transaction_id=tid),
    ]


def test_cancel_before_provisional_waits_for_one() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    tid = layer.send_request(invite, SERVER, 0.0)
    sent(layer)
    cancel_id = layer.cancel(tid, 0.2)
    assert cancel_id is not None
    assert sent(layer) == []  # "the CANCEL request MUST NOT be sent"
    # The INVITE keeps being retransmitted meanwhile.
    layer.handle_timer(0.5)
    assert sent(layer) == [invite]
    layer.receive(respond(invite, 100), SERVER, 0.8)
    [cancel] = sent(layer)
    assert isinstance(cancel, Request)
    assert cancel.method == "CANCEL"
    txn = layer.transaction(cancel_id)
    assert txn is not None
    assert txn.request is cancel


def test_cancel_held_back_is_dropped_when_a_final_arrives_first() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    tid = layer.send_request(invite, SERVER, 0.0)
    cancel_id = layer.cancel(tid, 0.2)
    assert cancel_id is not None
    sent(layer)
    layer.receive(respond(invite, 486), SERVER, 0.8)
    assert [m.method for m in sent(layer)] == ["ACK"]  # type: ignore[attr-defined]
    assert TransactionTerminated(transaction_id=cancel_id) in layer.events()


def test_cancel_after_final_is_a_no_op() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    tid = layer.send_request(invite, SERVER, 0.0)
    layer.receive(respond(invite, 200), SERVER, 0.1)
    sent(layer)
    assert layer.cancel(tid, 0.2) is None
    assert sent(layer) == []
    layer.handle_timer(100.0)
    assert layer.transaction(tid) is None
    assert layer.cancel(tid, 101.0) is None  # terminated meanwhile: a harmless race


def test_cancel_misuse() -> None:
    layer = quiet_layer()
    options_id = layer.send_request(make_request("OPTIONS"), SERVER, 0.0)
    with pytest.raises(LocalProtocolError, match="client INVITE"):
        layer.cancel(options_id, 0.0)
    with pytest.raises(LocalProtocolError, match="no transaction"):
        layer.cancel(TransactionId(99), 0.0)


def test_unanswered_cancel_gives_up_on_the_invite_after_64_t1() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    tid = layer.send_request(invite, SERVER, 0.0)
    layer.receive(respond(invite, 180), SERVER, 0.1)
    cancel_id = layer.cancel(tid, 1.0)
    assert cancel_id is not None
    layer.events()
    layer.handle_timer(33.0)
    events = layer.events()
    assert TransactionTimedOut(transaction_id=tid, request=invite, status_hint=487) in events
    assert TransactionTerminated(transaction_id=tid) in events
    assert layer.transaction(tid) is None


# -- CANCEL, server side (RFC 3261 section 9.2) ---------------------------------------


def test_cancel_is_answered_200_and_reported() -> None:
    layer = TransactionLayer()  # auto 100 Trying on
    invite = make_request("INVITE")
    layer.receive(invite, CLIENT, 0.0)
    [received] = layer.events()
    assert isinstance(received, RequestReceived)
    [trying] = sent(layer)
    assert isinstance(trying, Response)
    assert trying.status == 100
    ringing = respond(invite, 180, to_tag="srv")
    layer.send_response(ringing, 0.1)
    sent(layer)

    cancel = make_cancel(invite)
    layer.receive(cancel, CLIENT, 0.5)
    [(cancel_ok, destination)] = layer.messages_to_send()
    assert destination == CLIENT
    assert isinstance(cancel_ok, Response)
    assert (cancel_ok.status, cancel_ok.cseq.method) == (200, "CANCEL")
    assert cancel_ok.to_addr.tag == "srv"  # same To tag as the INVITE's responses
    assert layer.events() == [
        RequestCancelled(transaction_id=received.transaction_id, request=cancel)
    ]

    # A retransmitted CANCEL gets the 200 again, and no second event.
    layer.receive(cancel, CLIENT, 0.6)
    assert sent(layer) == [cancel_ok]
    assert layer.events() == []

    # The TU answers 487; the client's ACK completes the INVITE transaction.
    terminated = respond(invite, 487, to_tag="srv")
    layer.send_response(terminated, 0.7)
    assert sent(layer) == [terminated]
    layer.receive(make_ack(invite, terminated), CLIENT, 0.8)
    txn = layer.transaction(received.transaction_id)
    assert txn is not None
    assert txn.state is InviteServerState.CONFIRMED


def test_cancel_after_final_is_answered_200_without_event() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    layer.receive(invite, CLIENT, 0.0)
    layer.events()
    layer.send_response(respond(invite, 200), 0.1)
    sent(layer)
    layer.receive(make_cancel(invite), CLIENT, 0.2)
    [cancel_ok] = sent(layer)
    assert isinstance(cancel_ok, Response)
    assert cancel_ok.status == 200
    assert layer.events() == []


def test_unmatched_cancel_is_answered_481() -> None:
    layer = quiet_layer()
    cancel = make_cancel(make_request("INVITE"))
    layer.receive(cancel, CLIENT, 0.0)
    [(response, destination)] = layer.messages_to_send()
    assert destination == CLIENT
    assert isinstance(response, Response)
    assert response.status == 481
    assert response.to_addr.tag  # a tag, as for any non-100 response
    assert layer.events() == []
    layer.receive(cancel, CLIENT, 0.1)
    assert sent(layer) == [response]


# -- server matching ------------------------------------------------------------------


def test_rfc3261_matching_uses_branch_sent_by_and_method() -> None:
    layer = quiet_layer()
    options = make_request("OPTIONS", branch="z9hG4bKone")
    layer.receive(options, CLIENT, 0.0)
    # Same branch but another sent-by, or another method: new transactions.
    layer.receive(make_request("OPTIONS", branch="z9hG4bKone", via_host="192.0.2.9"), CLIENT, 0.1)
    layer.receive(make_request("MESSAGE", branch="z9hG4bKone"), CLIENT, 0.2)
    assert len(only(layer.events(), RequestReceived)) == 3
    # Same branch and sent-by (the host compared without case): a retransmission.
    layer.receive(make_request("OPTIONS", branch="z9hG4bKone", via_host="192.0.2.1"), CLIENT, 0.3)
    assert layer.events() == []


def test_badbranch_goes_through_rfc2543_matching() -> None:
    # RFC 4475 section 3.3.9: "branch=z9hG4bK" with nothing after the cookie.
    layer = quiet_layer()
    request = corpus_message("badbranch.dat")
    assert isinstance(request, Request)
    assert not request.top_via.is_rfc3261_branch
    layer.receive(request, CLIENT, 0.0)
    [received] = layer.events()
    assert isinstance(received, RequestReceived)
    ok = respond(request, 200)
    layer.send_response(ok, 0.1)
    assert sent(layer) == [ok]

    layer.receive(corpus_message("badbranch.dat"), CLIENT, 0.5)
    assert layer.events() == []  # absorbed: no second RequestReceived
    assert sent(layer) == [ok]  # and the last response resent


def test_rfc2543_matching_compares_request_uri_and_tags() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE", branch="1234")
    layer.receive(invite, CLIENT, 0.0)
    [received] = layer.events()
    assert isinstance(received, RequestReceived)
    # Another Request-URI or To tag: not the same transaction.
    layer.receive(make_request("INVITE", branch="1234", uri="sip:carol@192.0.2.2"), CLIENT, 0.1)
    layer.receive(make_request("INVITE", branch="1234", to_tag="other"), CLIENT, 0.1)
    assert len(only(layer.events(), RequestReceived)) == 2

    busy = respond(invite, 486, to_tag="srv")
    # Nothing in the response tells the bob and carol INVITEs apart: name it.
    layer.send_response(busy, 0.2, transaction_id=received.transaction_id)
    assert layer.messages_to_send() == [(busy, CLIENT)]
    # An ACK with another To tag is not for this transaction: it goes to the TU.
    stray = make_ack(invite, respond(invite, 486, to_tag="nope"))
    layer.receive(stray, CLIENT, 0.3)
    assert layer.events() == [AckReceived(request=stray, source=CLIENT)]
    # The ACK with the To tag of the response sent matches.
    layer.receive(make_ack(invite, busy), CLIENT, 0.4)
    assert layer.events() == []
    txn = layer.transaction(received.transaction_id)
    assert txn is not None
    assert txn.state is InviteServerState.CONFIRMED


def test_rfc2543_cancel_matches_the_invite() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE", branch="old-style")
    layer.receive(invite, CLIENT, 0.0)
    [received] = layer.events()
    assert isinstance(received, RequestReceived)
    cancel = make_cancel(invite)
    layer.receive(cancel, CLIENT, 0.1)
    [cancel_ok] = sent(layer)
    assert isinstance(cancel_ok, Response)
    assert cancel_ok.status == 200
    assert layer.events() == [
        RequestCancelled(transaction_id=received.transaction_id, request=cancel)
    ]


def test_ack_for_2xx_matches_no_transaction_and_goes_to_the_tu() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    layer.receive(invite, CLIENT, 0.0)
    layer.events()
    ok = respond(invite, 200)
    layer.send_response(ok, 0.1)
    ack = make_ack(invite, ok, branch=new_branch())
    layer.receive(ack, CLIENT, 0.2)
    assert layer.events() == [AckReceived(request=ack, source=CLIENT)]


def test_responses_go_to_the_source_of_the_request() -> None:
    layer = TransactionLayer()
    natted = Address("203.0.113.7", 40123)
    invite = make_request("INVITE")
    layer.receive(invite, natted, 0.0)
    [(trying, destination)] = layer.messages_to_send()
    assert destination == natted
    assert isinstance(trying, Response)
    assert trying.status == 100
    assert trying.to_addr.tag is None


def test_auto_100_trying_copies_timestamp() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    invite.headers.add("Timestamp", "54")
    layer.receive(invite, CLIENT, 0.0)
    [trying] = sent(layer)
    assert trying.headers.get("Timestamp") == "54"
    # A retransmitted INVITE gets the 100 again.
    layer.receive(invite, CLIENT, 0.5)
    assert sent(layer) == [trying]


# -- discards ----------------------------------------------------------------------


def test_stray_response_is_discarded() -> None:
    layer = quiet_layer()
    stray = respond(make_request("OPTIONS"), 200)
    layer.receive(stray, SERVER, 0.0)
    [event] = layer.events()
    assert event == MessageDiscarded(message=stray, reason="matches no client transaction")


def test_bcast_response_with_foreign_sent_by_is_discarded() -> None:
    # RFC 4475 section 3.1.2.18: a 200 whose second Via is 255.255.255.255.
    # Its top Via (192.0.2.198) is not ours, so RFC 3261 section 18.1.2
    # says to discard it: it must not be forwarded anywhere.
    layer = quiet_layer(sent_by=(("192.0.2.1", 5060),))
    response = corpus_message("bcast.dat")
    layer.receive(response, Address("192.0.2.198", 5060), 0.0)
    [event] = layer.events()
    assert isinstance(event, MessageDiscarded)
    assert event.message is response
    assert "sent-by 192.0.2.198 is not ours" in event.reason
    assert sent(layer) == []


def test_bcast_response_without_sent_by_check_is_a_stray() -> None:
    layer = quiet_layer()
    layer.receive(corpus_message("bcast.dat"), Address("192.0.2.198", 5060), 0.0)
    [event] = layer.events()
    assert isinstance(event, MessageDiscarded)
    assert event.reason == "matches no client transaction"
    assert sent(layer) == []


def test_sent_by_check_accepts_our_own_via_with_default_port() -> None:
    layer = quiet_layer(sent_by=(("192.0.2.1", 5060),))
    invite = make_request("INVITE")
    invite.headers.set("Via", f"SIP/2.0/UDP 192.0.2.1;branch={new_branch()}")
    tid = layer.send_request(invite, SERVER, 0.0)
    response = respond(invite, 180)
    layer.receive(response, SERVER, 0.1)
    assert layer.events() == [ResponseReceived(response=response, transaction_id=tid)]


def test_malformed_message_is_discarded_not_raised() -> None:
    layer = quiet_layer()
    response = Response(200, headers=[("Via", "garbage"), ("CSeq", "1 OPTIONS")])
    layer.receive(response, SERVER, 0.0)
    request = Request("OPTIONS", "sip:bob@example.com", [("CSeq", "1 OPTIONS")])
    layer.receive(request, CLIENT, 0.0)
    events = layer.events()
    assert [type(e) for e in events] == [MessageDiscarded, MessageDiscarded]
    assert all(e.reason.startswith("malformed") for e in events)  # type: ignore[attr-defined]


# -- API misuse and transport errors -----------------------------------------------


def test_send_request_misuse() -> None:
    layer = quiet_layer()
    with pytest.raises(LocalProtocolError, match="branch from new_branch"):
        layer.send_request(make_request("OPTIONS", branch="1234"), SERVER, 0.0)
    with pytest.raises(LocalProtocolError, match="branch from new_branch"):
        layer.send_request(make_request("OPTIONS", branch="z9hG4bK"), SERVER, 0.0)
    bad_cseq = make_request("OPTIONS")
    bad_cseq.headers.set("CSeq", "1 INVITE")
    with pytest.raises(LocalProtocolError, match="CSeq method"):
        layer.send_request(bad_cseq, SERVER, 0.0)
    no_via = make_request("OPTIONS")
    no_via.headers.remove("Via")
    with pytest.raises(LocalProtocolError, match="missing Via"):
        layer.send_request(no_via, SERVER, 0.0)
    options = make_request("OPTIONS")
    layer.send_request(options, SERVER, 0.0)
    with pytest.raises(LocalProtocolError, match="already exists"):
        layer.send_request(options, SERVER, 0.0)


def test_send_response_misuse() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    with pytest.raises(LocalProtocolError, match="no server transaction"):
        layer.send_response(respond(invite, 200), 0.0)
    layer.receive(invite, CLIENT, 0.0)
    layer.send_response(respond(invite, 486), 0.1)
    with pytest.raises(LocalProtocolError, match="in state Completed"):
        layer.send_response(respond(invite, 200), 0.2)
    with pytest.raises(LocalProtocolError, match="no server transaction 99"):
        layer.send_response(respond(invite, 200), 0.2, transaction_id=TransactionId(99))
    client_id = layer.send_request(make_request("OPTIONS"), SERVER, 0.3)
    with pytest.raises(LocalProtocolError, match="no server transaction"):
        layer.send_response(respond(invite, 200), 0.3, transaction_id=client_id)


def test_transport_error_before_final_reports_503() -> None:
    layer = quiet_layer()
    invite = make_request("INVITE")
    tid = layer.send_request(invite, SERVER, 0.0)
    assert layer.report_transport_error(tid, 0.1)
    assert layer.events() == [
        TransportFailed(transaction_id=tid, request=invite, status_hint=503),
        TransactionTerminated(transaction_id=tid),
    ]
    assert layer.get_timer() is None
    assert not layer.report_transport_error(tid, 0.2)


def test_transport_error_after_final_terminates_quietly() -> None:
    layer = quiet_layer()
    options = make_request("OPTIONS")
    tid = layer.send_request(options, SERVER, 0.0)
    layer.receive(respond(options, 200), SERVER, 0.1)
    layer.events()
    assert layer.report_transport_error(tid, 0.2)
    assert layer.events() == [TransactionTerminated(transaction_id=tid)]


# -- back-to-back pairs over a lossy network ------------------------------------------


def make_link(*, tcp: bool = False) -> Link:
    return Link(TransactionLayer(), TransactionLayer(), tcp=tcp)


def test_lost_invite_is_recovered_by_timer_a() -> None:
    link = make_link()
    invite = make_request("INVITE")
    tid = link.client.send_request(invite, link.server_address, 0.0)
    link.drop(link.client)  # the INVITE is lost
    now = link.client.get_timer()
    assert now == 0.5
    link.client.handle_timer(now)
    link.transfer(link.client, now)
    [received] = link.server.events()
    assert isinstance(received, RequestReceived)
    link.transfer(link.server, now)  # the automatic 100 Trying
    [trying] = link.client.events()
    assert isinstance(trying, ResponseReceived)
    assert trying.response.status == 100
    assert link.client.get_timer() is None  # Proceeding: A and B stopped
    txn = link.client.transaction(tid)
    assert txn is not None
    assert txn.state is InviteClientState.PROCEEDING


def test_lost_final_response_is_recovered_by_timer_g() -> None:
    link = make_link()
    invite = make_request("INVITE")
    tid = link.client.send_request(invite, link.server_address, 0.0)
    link.transfer(link.client, 0.0)
    [received] = link.server.events()
    assert isinstance(received, RequestReceived)
    link.transfer(link.server, 0.0)
    link.client.events()
    link.server.send_response(respond(received.request, 486), 1.0)
    link.drop(link.server)  # the 486 is lost
    assert link.client.events() == []
    assert link.server.get_timer() == 1.5
    link.server.handle_timer(1.5)  # Timer G
    link.transfer(link.server, 1.5)
    [final] = link.client.events()
    assert isinstance(final, ResponseReceived)
    assert final.response.status == 486
    link.transfer(link.client, 1.5)  # the ACK
    server_txn = link.server.transaction(received.transaction_id)
    assert server_txn is not None
    assert server_txn.state is InviteServerState.CONFIRMED
    # Both sides wind down on their own: client Timer D, server Timer I.
    for layer in (link.client, link.server):
        layer.handle_timer(100.0)
        assert len(layer) == 0
    assert link.client.events() == [TransactionTerminated(transaction_id=tid)]


def test_lost_ack_is_recovered_by_retransmitted_final() -> None:
    link = make_link()
    invite = make_request("INVITE")
    link.client.send_request(invite, link.server_address, 0.0)
    link.transfer(link.client, 0.0)
    [received] = link.server.events()
    assert isinstance(received, RequestReceived)
    link.transfer(link.server, 0.0)
    link.server.send_response(respond(received.request, 603), 0.1)
    link.transfer(link.server, 0.1)
    assert [m.method for m in link.drop(link.client)] == ["ACK"]  # type: ignore[attr-defined]
    link.server.handle_timer(0.6)  # Timer G resends the 603...
    link.transfer(link.server, 0.6)
    resent = link.transfer(link.client, 0.6)  # ...and the client resends its ACK
    assert [m.method for m in resent] == ["ACK"]  # type: ignore[attr-defined]
    server_txn = link.server.transaction(received.transaction_id)
    assert server_txn is not None
    assert server_txn.state is InviteServerState.CONFIRMED
    # The client saw the 603 once.
    finals = [
        e
        for e in only(link.client.events(), ResponseReceived)
        if e.response.status == 603  # type: ignore[attr-defined]
    ]
    assert len(finals) == 1


def test_lost_non_invite_request_and_response() -> None:
    link = make_link()
    message = make_request("MESSAGE")
    tid = link.client.send_request(message, link.server_address, 0.0)
    link.drop(link.client)
    link.client.handle_timer(0.5)
    link.transfer(link.client, 0.5)
    [received] = link.server.events()
    assert isinstance(received, RequestReceived)
    link.server.send_response(respond(received.request, 202), 0.6)
    link.drop(link.server)  # the 202 is lost
    link.client.handle_timer(1.5)  # Timer E: the MESSAGE again...
    link.transfer(link.client, 1.5)
    assert link.server.events() == []  # ...absorbed by the server transaction...
    [resent] = link.transfer(link.server, 1.5)  # ...which resends its 202
    assert isinstance(resent, Response)
    assert resent.status == 202
    [final] = link.client.events()
    assert isinstance(final, ResponseReceived)
    assert final.transaction_id == tid
    assert final.response.status == 202
    # Further retransmissions of the 202 are absorbed by the client (Completed).
    link.server.receive(received.request, link.client_address, 2.0)
    link.transfer(link.server, 2.0)
    assert link.client.events() == []


@pytest.mark.parametrize(("method", "status"), [("INVITE", 486), ("MESSAGE", 200)])
def test_duplicated_messages_yield_one_event_each(method: str, status: int) -> None:
    link = make_link()
    request = make_request(method)
    tid = link.client.send_request(request, link.server_address, 0.0)
    link.transfer(link.client, 0.0, duplicate=True)
    server_events = link.server.events()
    assert [type(e) for e in server_events] == [RequestReceived]
    [received] = server_events
    assert isinstance(received, RequestReceived)
    # The duplicated request made the server resend its last response (the
    # automatic 100 for INVITE): drop those, the originals are enough here.
    link.drop(link.server)
    link.server.send_response(respond(received.request, status), 0.2)
    link.transfer(link.server, 0.2, duplicate=True)
    link.transfer(link.client, 0.2, duplicate=True)  # the ACK for a 486, twice
    [final] = link.client.events()
    assert isinstance(final, ResponseReceived)
    assert (final.transaction_id, final.response.status) == (tid, status)
    assert link.server.events() == []
    # Both sides terminate, each transaction reporting it exactly once.
    link.client.handle_timer(100.0)
    link.server.handle_timer(100.0)
    assert link.client.events() == [TransactionTerminated(transaction_id=tid)]
    assert link.server.events() == [TransactionTerminated(transaction_id=received.transaction_id)]


def test_duplicated_provisionals_are_passed_up_per_copy() -> None:
    # RFC 3261 sections 17.1.1.2 and 17.1.2.2: in Proceeding, every 1xx
    # "MUST be passed up to the TU"; telling a retransmission from a new
    # 1xx (RSeq, To tag) is the TU's business.
    link = make_link()
    tid = link.client.send_request(make_request("INVITE"), link.server_address, 0.0)
    link.transfer(link.client, 0.0)
    [received] = link.server.events()
    assert isinstance(received, RequestReceived)
    link.transfer(link.server, 0.0, duplicate=True)
    statuses = [e.response.status for e in link.client.events()]  # type: ignore[attr-defined]
    assert statuses == [100, 100]
    txn = link.client.transaction(tid)
    assert txn is not None
    assert txn.state is InviteClientState.PROCEEDING


def test_duplicated_2xx_to_invite_is_passed_up_per_rfc_6026() -> None:
    link = make_link()
    tid = link.client.send_request(make_request("INVITE"), link.server_address, 0.0)
    link.transfer(link.client, 0.0)
    [received] = link.server.events()
    assert isinstance(received, RequestReceived)
    link.transfer(link.server, 0.0)
    link.client.events()
    link.server.send_response(respond(received.request, 200), 0.1)
    link.transfer(link.server, 0.1, duplicate=True)
    # RFC 6026 section 7.2: in Accepted, each 2xx goes to the TU, which
    # must ACK every one (the ACK for 2xx is not the transaction's job).
    statuses = [e.response.status for e in link.client.events()]  # type: ignore[attr-defined]
    assert statuses == [200, 200]
    txn = link.client.transaction(tid)
    assert txn is not None
    assert txn.state is InviteClientState.ACCEPTED


def test_pair_over_tcp_never_retransmits() -> None:
    link = make_link(tcp=True)
    request = make_request("MESSAGE", transport="TCP")
    tid = link.client.send_request(request, link.server_address, 0.0)
    link.transfer(link.client, 0.0)
    [received] = link.server.events()
    assert isinstance(received, RequestReceived)
    link.server.send_response(respond(received.request, 200), 0.1)
    link.transfer(link.server, 0.1)
    # Timers J and K are zero: both transactions are gone already.
    assert len(link.server) == 0
    assert len(link.client) == 0
    assert link.client.get_timer() is None
    assert link.server.get_timer() is None
    assert TransactionTerminated(transaction_id=tid) in link.client.events()


def test_server_fills_in_received_and_rport_for_the_response() -> None:
    request = parse_message(
        b"MESSAGE sip:vidim@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKrport1;rport, "
        b"SIP/2.0/UDP proxy.example.com;branch=z9hG4bKnext\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\n"
        b"To: <sip:vidim@example.com>\r\nCall-ID: rport1\r\nCSeq: 1 MESSAGE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    layer = TransactionLayer()
    layer.receive(request, Address("192.0.2.7", 40123), 0.0)
    (event,) = layer.events()
    assert isinstance(event, RequestReceived)
    layer.send_response(make_response(event.request, 202, to_tag="t1"), 0.0)
    ((sent_response, destination),) = layer.messages_to_send()
    assert destination == Address("192.0.2.7", 40123)
    top, second = sent_response.via
    assert (top.received, top.rport) == ("192.0.2.7", 40123)
    assert second.host == "proxy.example.com"  # the rest of the line is untouched


def test_pending_work_ignores_timers_that_only_absorb_retransmissions() -> None:
    layer = TransactionLayer()
    assert not layer.has_pending_work()
    request = parse_message(
        b"OPTIONS sip:vidim@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKwork1\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\n"
        b"To: <sip:vidim@example.com>\r\nCall-ID: work1\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    layer.receive(request, Address("10.0.0.5", 5060), 0.0)
    (event,) = layer.events()
    assert isinstance(event, RequestReceived)
    assert layer.has_pending_work()  # the TU owes an answer
    layer.send_response(make_response(event.request, 200, to_tag="t1"), 0.0)
    assert layer.get_timer() == 32.0  # Timer J: absorbing retransmissions
    assert not layer.has_pending_work()  # ... which a shutdown need not wait for


def test_stamped_top_via_reads_as_its_line_parses() -> None:
    # The layer keeps the Via it stamped instead of parsing its own line
    # back: what it keeps must be what the line parses to.
    from vidim.sip import parse_via_list

    layer = quiet_layer()
    wire = (
        b"MESSAGE sip:a@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP phone.example.com;rport;branch=z9hG4bKst1, SIP/2.0/UDP p2;branch=z9hG4bKx\r\n"
        b"Via: SIP/2.0/UDP p3;branch=z9hG4bKy\r\n"
        b"From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\n"
        b"Call-ID: st1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    request = parse_message(wire)
    assert isinstance(request, Request)
    layer.receive(request, Address("10.0.0.9", 5099), 0.0)
    lines = request.headers.get_all("Via")
    assert len(lines) == 2
    assert request.top_via == parse_via_list(lines[0])[0]
    assert (request.top_via.received, request.top_via.rport) == ("10.0.0.9", 5099)
    response = make_response(request, 200, to_tag="t")
    assert response.top_via == request.top_via
    assert parse_message(response.to_bytes()).top_via == request.top_via


def test_tables_of_a_burst_are_given_back_once_every_transaction_has_ended() -> None:
    """A dict never shrinks: the layer starts over with empty tables when it is empty."""
    layer = quiet_layer()
    empty = sys.getsizeof(layer._transactions)
    for n in range(5000):
        request = make_request("MESSAGE", call_id=f"burst-{n}@192.0.2.1")
        layer.send_request(request, SERVER, 0.0)
        layer.receive(respond(request, 200), SERVER, 0.01)
    layer.messages_to_send()
    layer.events()
    assert len(layer) == 5000  # completed, absorbing retransmissions (Timer K)
    assert sys.getsizeof(layer._transactions) > 100 * empty
    run_timers(layer, 100.0)
    assert len(layer) == 0
    assert sys.getsizeof(layer._transactions) == empty
    assert sys.getsizeof(layer._client_index) == empty
    # and the layer still works
    request = make_request("MESSAGE", call_id="after@192.0.2.1")
    tid = layer.send_request(request, SERVER, 200.0)
    assert layer.transaction(tid) is not None


def test_a_completed_server_transaction_keeps_only_its_last_response() -> None:
    # Timer J keeps it 32 s: the request is let go of, retransmissions still
    # get the final response, and a transport error is reported without it.
    layer = TransactionLayer()
    request = make_request("MESSAGE")
    layer.receive(request, CLIENT, 0.0)
    [received] = layer.events()
    assert isinstance(received, RequestReceived)
    txn = layer.transaction(received.transaction_id)
    assert txn is not None
    assert txn.request is request  # until the final response
    ok = respond(request, 200)
    layer.send_response(ok, 0.1)
    assert sent(layer) == [ok]
    assert txn.request is None
    assert txn.last_response is ok
    layer.receive(request, CLIENT, 1.0)  # a retransmission: matched by its key, answered again
    assert sent(layer) == [ok]
    assert layer.events() == []
    assert layer.report_transport_error(txn.id, 2.0)
    assert layer.events() == [
        TransportFailed(transaction_id=txn.id, request=None, status_hint=503),
        TransactionTerminated(transaction_id=txn.id),
    ]
