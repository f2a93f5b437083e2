"""Messages built in code: serialization, responses, multipart bodies."""

from __future__ import annotations

import pytest

from vidim.sip import (
    Headers,
    LocalProtocolError,
    Request,
    Response,
    SipURI,
    build_multipart,
    make_response,
    parse_message,
    parse_multipart,
)
from vidim.sip.checks import warning_value


def _invite() -> Request:
    return Request(
        "INVITE",
        "sip:focus@127.0.0.1:5080",
        [
            ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc;rport"),
            ("Max-Forwards", "70"),
            ("From", "<sip:vidim@example.com>;tag=a1"),
            ("To", "<sip:focus@127.0.0.1:5080>"),
            ("Call-ID", "x1@127.0.0.1"),
            ("CSeq", "1 INVITE"),
            ("Content-Type", "application/sdp"),
        ],
        b"v=0\r\n",
    )


def test_request_serializes_with_content_length() -> None:
    wire = _invite().to_bytes()
    assert wire.startswith(b"INVITE sip:focus@127.0.0.1:5080 SIP/2.0\r\nVia: ")
    assert b"\r\nContent-Length: 5\r\n\r\nv=0\r\n" in wire
    again = parse_message(wire)
    assert isinstance(again, Request)
    assert isinstance(again.uri, SipURI)
    assert again.uri.port == 5080
    assert again.body == b"v=0\r\n"
    assert bytes(again) == wire


def test_stale_content_length_is_rewritten() -> None:
    request = _invite()
    request.headers.add("Content-Length", "999")
    wire = request.to_bytes()
    assert wire.count(b"Content-Length") == 1
    assert parse_message(wire).content_length == 5


def test_make_response_copies_the_right_headers() -> None:
    request = _invite()
    request.headers.add("Subject", "not copied")
    response = make_response(request, 200, to_tag="z9", headers=[("Contact", "<sip:c@h>;isfocus")])
    assert [n for n, _ in response.headers] == ["Via", "From", "To", "Call-ID", "CSeq", "Contact"]
    assert response.reason == "OK"
    assert response.to_addr.tag == "z9"
    assert response.cseq == request.cseq
    trying = make_response(request, 100, to_tag="z9")
    assert trying.to_addr.tag is None  # 100 Trying carries no To tag
    assert trying.reason == "Trying"
    parsed = parse_message(response.to_bytes())
    assert isinstance(parsed, Response)
    assert parsed.status == 200


def test_response_keeps_an_existing_to_tag() -> None:
    request = _invite()
    request.headers.set("To", "<sip:focus@127.0.0.1:5080>;tag=keep")
    assert make_response(request, 486, to_tag="other").to_addr.tag == "keep"


def test_building_refuses_bad_input() -> None:
    with pytest.raises(LocalProtocolError, match="token"):
        Request("BAD METHOD", "sip:a@b.com")
    with pytest.raises(LocalProtocolError, match="100-699"):
        Response(99)
    with pytest.raises(LocalProtocolError, match="CR or LF"):
        Response(200, "OK\r\nX-Injected: 1")
    with pytest.raises(LocalProtocolError, match="bytes"):
        Request("MESSAGE", "sip:a@b.com", body="text")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="control character"):
        Request("MESSAGE", "sip:a@b.com", [("Subject", "a\nb")])


def test_unknown_status_gets_a_generic_reason() -> None:
    assert Response(499).reason == "Unknown"
    assert Response(202).reason == "Accepted"


def test_multipart_round_trip() -> None:
    sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    xml = b'<?xml version="1.0"?><resource-lists/>'
    ctype, body = build_multipart(
        [("application/sdp", sdp), ("application/resource-lists+xml", xml)], boundary="b0"
    )
    assert ctype == "multipart/mixed;boundary=b0"
    request = _invite()
    request.headers.set("Content-Type", ctype)
    request.body = body
    parts = parse_message(request.to_bytes()).body_parts()
    assert [(p.content_type.mime if p.content_type else None, p.body) for p in parts] == [
        ("application/sdp", sdp),
        ("application/resource-lists+xml", xml),
    ]


def test_multipart_errors() -> None:
    with pytest.raises(LocalProtocolError, match="boundary"):
        build_multipart([("text/plain", b"--b0 inside")], boundary="b0")
    for bad in (b"no boundaries", b"--b0\r\nContent-Type: text/plain\r\n\r\nunclosed\r\n--b0"):
        with pytest.raises(Exception, match="multipart"):
            parse_multipart(bad, "b0")


def test_single_part_body() -> None:
    request = _invite()
    (part,) = request.body_parts()
    assert part.body == b"v=0\r\n"
    assert part.headers == Headers([("Content-Type", "application/sdp")])


def test_warning_values_are_safe() -> None:
    assert warning_value("vidim.example.com", 'bad "mode"\r\nX: y') == (
        '399 vidim.example.com "bad \\"mode\\"??X: y"'
    )


def test_headers_constructor_checks_every_line() -> None:
    for _ in range(2):
        headers = Headers([("i", " a@b "), ("Subject", "x")])
        assert list(headers) == [("Call-ID", "a@b"), ("Subject", "x")]
        with pytest.raises(LocalProtocolError, match="bad header name"):
            Headers([("Bad Name", "x")])
        with pytest.raises(LocalProtocolError, match="control character"):
            Headers([("Subject", "x\r\nX-Evil: 1")])


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        # a name-addr keeps its text as the request wrote it, display name and all
        ("Focus <sip:focus@127.0.0.1:5080>", "Focus <sip:focus@127.0.0.1:5080>;tag=z9"),
        ('"A \\"B\\"" <sip:f@h>;x=1', '"A \\"B\\"" <sip:f@h>;x=1;tag=z9'),
        # an addr-spec goes in <>: a parameter after it belongs to the header
        ("sip:focus@127.0.0.1", "<sip:focus@127.0.0.1>;tag=z9"),
        ("sip:focus@127.0.0.1;x=1", "<sip:focus@127.0.0.1>;x=1;tag=z9"),
    ],
)
def test_make_response_adds_the_tag_to_the_to_value_as_received(to: str, expected: str) -> None:
    request = _invite()
    request.headers.set("To", to)
    response = make_response(request, 200, to_tag="z9")
    assert response.headers.get("To") == expected
    assert response.to_addr.tag == "z9"
    assert response.to_addr.uri == request.to_addr.uri
    with pytest.raises(LocalProtocolError, match="token"):
        make_response(request, 200, to_tag="bad tag")


def test_make_response_refuses_what_it_cannot_copy() -> None:
    wire = (
        _invite().to_bytes().replace(b"<sip:vidim@example.com>", b'"a\x01" <sip:vidim@example.com>')
    )
    request = parse_message(wire)
    assert isinstance(request, Request)
    with pytest.raises(LocalProtocolError, match="control character"):
        make_response(request, 200, to_tag="z9")


def test_make_response_copies_values_that_parse_as_the_request_s() -> None:
    request = parse_message(_invite().to_bytes())
    assert isinstance(request, Request)
    response = make_response(request, 200, to_tag="z9")
    again = parse_message(response.to_bytes())
    assert (response.top_via, response.from_addr, response.cseq) == (
        request.top_via, request.from_addr, request.cseq
    )  # fmt: skip
    assert (response.top_via, response.from_addr, response.to_addr, response.cseq) == (
        again.top_via, again.from_addr, again.to_addr, again.cseq
    )  # fmt: skip
    # a line the caller adds comes after the copied one
    other = make_response(request, 200, to_tag="z9", headers=[("CSeq", "7 INVITE")])
    assert other.headers.get_all("CSeq") == ["1 INVITE", "7 INVITE"]
    assert other.cseq.seq == 1  # the first line, parsed


def test_typed_values_follow_changes_to_their_lines() -> None:
    request = parse_message(_invite().to_bytes())
    assert request.cseq.seq == 1
    request.headers.set("CSeq", "2 INVITE")
    assert request.cseq.seq == 2
    request.headers.prepend("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp")
    assert request.top_via.host == "proxy.example.com"
    assert request.via[0].transport == "TCP"


def test_to_bytes_is_kept_until_the_headers_or_the_body_change() -> None:
    """Serialized to choose its transport, then sent: the second call reuses the first's bytes."""
    request = Request(
        "MESSAGE",
        "sip:bob@192.0.2.5",
        [("Via", "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKkept"), ("CSeq", "1 MESSAGE")],
        b"hello",
    )
    first = request.to_bytes()
    assert request.to_bytes() is first
    request.headers.set("Via", "SIP/2.0/TCP 192.0.2.1:5070;branch=z9hG4bKkept")
    second = request.to_bytes()
    assert b"SIP/2.0/TCP" in second
    assert b"SIP/2.0/UDP" not in second
    request.headers.prepend("Via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKproxy")
    assert request.to_bytes().index(b"192.0.2.9") < request.to_bytes().index(b"192.0.2.1")
    request.body = b"bye"
    assert request.to_bytes().endswith(b"Content-Length: 3\r\n\r\nbye")
    request.headers = request.headers.copy()
    request.headers.remove("CSeq")
    assert b"CSeq" not in request.to_bytes()
