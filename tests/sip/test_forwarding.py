"""Stateless forwarding (RFC 3261 section 16.11): one Via more on the way, one less back."""

from __future__ import annotations

import pytest

from vidim.sip import (
    Address,
    RemoteProtocolError,
    Request,
    Via,
    forward_request,
    is_forwarded_answer,
    make_response,
    parse_message,
    unforward_response,
)

ME = Via("UDP", "127.0.0.1", 5071, (("rport", None),))
FROM = Address("192.0.2.1", 5060)


def message(max_forwards: str = "70", via: str = "") -> Request:
    wire = (
        "MESSAGE sip:vidim@example.com SIP/2.0\r\n"
        + (via or "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy;rport=5060\r\n")
        + f"Max-Forwards: {max_forwards}\r\n"
        "From: <sip:alice@example.com>;tag=a\r\n"
        "To: <sip:vidim@example.com>\r\n"
        "Call-ID: c1\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Length: 7\r\n\r\n/status"
    )
    parsed = parse_message(wire.encode())
    assert isinstance(parsed, Request)
    return parsed


def test_forwarding_adds_our_via_with_a_stable_branch_and_takes_a_hop() -> None:
    forwarded = forward_request(message(), ME, FROM)
    vias = forwarded.via
    assert [(v.host, v.port) for v in vias] == [("127.0.0.1", 5071), ("192.0.2.1", 5060)]
    assert vias[0].is_rfc3261_branch
    assert forwarded.max_forwards == 69
    # Seen from where it was sent: nothing to stamp but the rport it asked for.
    assert vias[1].rport == 5060
    assert forwarded.body == b"/status"
    # A retransmission is forwarded in the same transaction at the next hop.
    assert forward_request(message(), ME, FROM).top_via.branch == vias[0].branch
    other = message(via="Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKother\r\n")
    assert forward_request(other, ME, FROM).top_via.branch != vias[0].branch


def test_no_hop_left_is_483() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        forward_request(message(max_forwards="0"), ME, FROM)
    assert caught.value.status_hint == 483


@pytest.mark.parametrize(
    "via",
    [
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy;rport=5060\r\n",
        # Two entries on one line, and one more line: each kept in order.
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy, SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKx\r\n"
        "Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKy\r\n",
    ],
)
def test_the_answer_loses_our_via_and_goes_to_the_next(via: str) -> None:
    original = message(via=via)
    forwarded = forward_request(original, ME, FROM)
    answer = make_response(forwarded, 202, to_tag="t")
    assert is_forwarded_answer(answer, "127.0.0.1", 5071)
    assert not is_forwarded_answer(answer, "127.0.0.1", 5070)
    back, next_via = unforward_response(answer)
    assert back.via == original.via
    assert next_via == original.top_via
    assert back.status == 202
    reparsed = parse_message(back.to_bytes())
    assert reparsed.via == original.via


def test_an_answer_to_our_own_request_is_not_a_forwarded_one() -> None:
    answer = make_response(message(via=f"Via: {ME.with_params(branch='z9hG4bKmine')}\r\n"), 200)
    assert not is_forwarded_answer(answer, "127.0.0.1", 5071)


def test_the_sender_s_via_is_stamped_with_where_it_was_seen_from() -> None:
    behind_nat = Address("198.51.100.7", 40000)
    forwarded = forward_request(
        message(via="Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKn;rport\r\n"), ME, behind_nat
    )
    sender = forwarded.via[1]
    assert (sender.received, sender.rport) == ("198.51.100.7", 40000)
    _, next_via = unforward_response(make_response(forwarded, 202, to_tag="t"))
    assert (next_via.received, next_via.rport) == ("198.51.100.7", 40000)
