"""Where and how a request goes (RFC 3263 4.1 without DNS, RFC 3261 18.1.1), and its Via."""

from __future__ import annotations

import pytest

from vidim.sip import (
    MAX_UDP_REQUEST,
    Address,
    Dialog,
    LocalProtocolError,
    Request,
    TransactionLayer,
    TransportFailed,
    make_response,
    new_branch,
    parse_uri,
    sendable_transports,
    sent_over,
    uri_destination,
)


@pytest.mark.parametrize(
    ("uri", "size", "default", "expected"),
    [
        ("sip:bob@192.0.2.5", 0, None, Address("192.0.2.5", 5060, "UDP")),
        ("sip:bob@192.0.2.5:6000;transport=tcp", 0, None, Address("192.0.2.5", 6000, "TCP")),
        ("sip:bob@192.0.2.5;transport=TCP", 0, None, Address("192.0.2.5", 5060, "TCP")),
        ("sip:bob@192.0.2.5;transport=udp", 0, None, Address("192.0.2.5", 5060, "UDP")),
        ("sips:bob@example.com", 0, None, Address("example.com", 5061, "TLS")),
        ("sips:bob@example.com;transport=tcp", 0, None, Address("example.com", 5061, "TLS")),
        ("sip:bob@example.com;transport=tls", 0, None, Address("example.com", 5061, "TLS")),
        ("sip:bob@[2001:db8::1]:5070", 0, None, Address("2001:db8::1", 5070, "UDP")),
        ("sip:bob@example.com;maddr=192.0.2.1", 0, None, Address("192.0.2.1", 5060, "UDP")),
        # A dialog's transport, when the remote target names none.
        ("sip:focus@192.0.2.5:5080", 0, "TCP", Address("192.0.2.5", 5080, "TCP")),
        ("sip:focus@192.0.2.5;transport=udp", 0, "TCP", Address("192.0.2.5", 5060, "UDP")),
        # RFC 3261 18.1.1: larger than 1300 bytes, the MTU unknown: TCP ...
        ("sip:bob@192.0.2.5", MAX_UDP_REQUEST, None, Address("192.0.2.5", 5060, "UDP")),
        ("sip:bob@192.0.2.5", MAX_UDP_REQUEST + 1, None, Address("192.0.2.5", 5060, "TCP")),
        # ... unless the URI says UDP.
        ("sip:bob@192.0.2.5;transport=udp", 60_000, None, Address("192.0.2.5", 5060, "UDP")),
    ],
)
def test_uri_destination(uri: str, size: int, default: str | None, expected: Address) -> None:
    assert uri_destination(parse_uri(uri), size=size, default_transport=default) == expected


def test_a_non_sip_uri_has_no_destination() -> None:
    with pytest.raises(LocalProtocolError, match="non-SIP URI"):
        uri_destination(parse_uri("tel:+15551234567"))


def request(vias: int = 1) -> Request:
    lines = [("Via", f"SIP/2.0/UDP 192.0.2.1:5070;branch={new_branch()};rport")] * vias
    return Request(
        "MESSAGE",
        "sip:bob@192.0.2.5",
        [
            *lines,
            ("Max-Forwards", "70"),
            ("From", "<sip:vidim@example.com>;tag=a"),
            ("To", "<sip:bob@192.0.2.5>"),
            ("Call-ID", "targets@test"),
            ("CSeq", "1 MESSAGE"),
        ],
    )


def test_sent_over_rewrites_the_top_via_transport_and_keeps_the_rest() -> None:
    message = request()
    before = message.top_via
    sent_over(message, "tcp")
    after = message.top_via
    assert after.transport == "TCP"
    assert (after.host, after.port, after.params) == (before.host, before.port, before.params)
    assert message.to_bytes().count(b"\r\nVia: SIP/2.0/TCP 192.0.2.1:5070;branch=") == 1
    sent_over(message, "TCP")  # already so: unchanged
    assert message.top_via == after


def test_sent_over_tls_names_the_tls_listener_s_port() -> None:
    message = request()
    before = message.top_via
    sent_over(message, "TLS", written="UDP", port=5071)
    after = message.top_via
    assert (after.transport, after.host, after.port) == ("TLS", "192.0.2.1", 5071)
    assert after.params == before.params
    sent_over(message, "TLS", written="TLS", port=5071)  # already so: unchanged
    assert message.top_via == after


def test_tls_is_sendable_only_with_a_tls_listener() -> None:
    assert sendable_transports(tls=False) == {"UDP", "TCP"}
    assert sendable_transports(tls=True) == {"UDP", "TCP", "TLS"}


def test_sent_over_refuses_a_request_we_did_not_originate() -> None:
    with pytest.raises(LocalProtocolError, match="one Via"):
        sent_over(request(vias=2), "TCP")


def test_a_send_failure_fails_the_client_transaction_with_transport_failed() -> None:
    layer = TransactionLayer()
    message = request()
    tid = layer.send_request(message, Address("192.0.2.5", 5060, "TCP"), 0.0)
    layer.messages_to_send()
    assert layer.report_send_failure(message, 0.1)
    events = []
    while (event := layer.next_event()) is not None:
        events.append(event)
    assert TransportFailed(transaction_id=tid, request=message, status_hint=503) in events
    assert not layer.report_send_failure(message, 0.2)  # over already
    assert not layer.report_send_failure(request(), 0.2)  # never sent


def test_a_dialog_remembers_the_transport_its_request_went_over() -> None:
    invite = Request(
        "INVITE",
        "sip:conference-factory@192.0.2.5:5080;transport=tcp",
        [
            ("Via", f"SIP/2.0/TCP 192.0.2.1:5070;branch={new_branch()}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:vidim@example.com>;tag=a"),
            ("To", "<sip:conference-factory@192.0.2.5>"),
            ("Call-ID", "dialog-transport@test"),
            ("CSeq", "1 INVITE"),
            ("Contact", "<sip:vidim@192.0.2.1:5070>"),
        ],
    )
    ok = make_response(
        invite, 200, to_tag="f", headers=[("Contact", "<sip:conf-1@192.0.2.5:5080>;isfocus")]
    )
    dialog = Dialog.from_uac(invite, ok)
    assert dialog.transport == "TCP"
    assert Dialog.from_dict(dialog.to_dict()).transport == "TCP"
    target, _ = dialog.request_target()
    assert uri_destination(target, default_transport=dialog.transport) == Address(
        "192.0.2.5", 5080, "TCP"
    )
