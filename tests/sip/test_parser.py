"""The parser beyond the torture corpus: forms real phones send, and refusals."""

from __future__ import annotations

import pytest
from sip_factory import MESSAGE_WITH_MODE, request_bytes, response_bytes

from vidim.sip import Request, Response, SIPParseError, parse_message


def test_message_with_vidim_headers() -> None:
    msg = parse_message(MESSAGE_WITH_MODE)
    assert isinstance(msg, Request)
    assert msg.method == "MESSAGE"
    assert msg.headers.get("x-vidim-mode") == "video"
    assert msg.headers.values("X-Vidim-Invite") == [
        "<sip:carol@example.com>;mode=audio",
        "<sip:dan@example.com>",
    ]
    assert msg.body == b"let's talk"
    assert msg.content_type is not None
    assert msg.content_type.mime == "text/plain"
    assert msg.from_addr.display_name == "Alice"
    assert msg.top_via.has_rport


def test_response() -> None:
    msg = parse_message(response_bytes(202, "Accepted"))
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (202, "Accepted")
    assert msg.to_addr.tag == "a6c85cf"
    assert msg.top_via.rport == 5060


def test_bare_lf_line_ends_and_leading_crlf_are_tolerated() -> None:
    wire = b"\r\n\r\n" + MESSAGE_WITH_MODE.replace(b"\r\n", b"\n")
    msg = parse_message(wire)
    assert isinstance(msg, Request)
    assert msg.body == b"let's talk"


def test_folded_header_values_are_unfolded() -> None:
    wire = request_bytes(extra=[("Subject", "one\r\n two\r\n\tthree")])
    assert parse_message(wire).headers.get("Subject") == "one two three"


def test_missing_content_length_over_udp_takes_the_rest() -> None:
    wire = request_bytes(body=b"hello", content_length=False)
    assert parse_message(wire).body == b"hello"


def test_content_length_shorter_than_datagram_truncates() -> None:
    wire = request_bytes(body=b"hello") + b"trailing garbage"
    assert parse_message(wire).body == b"hello"


def test_utf8_in_display_names_survives_round_trip() -> None:
    wire = request_bytes(
        headers=[
            ("Via", "SIP/2.0/UDP h.example.com;branch=z9hG4bKx"),
            ("From", '"J\u00fcrgen \u6771\u4eac" <sip:j@example.com>;tag=9'),
            ("To", "<sip:bob@example.com>"),
            ("Call-ID", "c@h"),
            ("CSeq", "1 MESSAGE"),
        ]
    )
    msg = parse_message(wire)
    assert msg.from_addr.display_name == "J\u00fcrgen \u6771\u4eac"
    assert parse_message(msg.to_bytes()).from_addr.display_name == "J\u00fcrgen \u6771\u4eac"


def test_invalid_utf8_survives_round_trip_byte_for_byte() -> None:
    wire = request_bytes().replace(b"Max-Forwards: 70", b"Subject: \xff\xfe\r\nMax-Forwards: 70")
    msg = parse_message(wire)
    assert b"Subject: \xff\xfe\r\n" in msg.to_bytes()


@pytest.mark.parametrize(
    ("wire", "status", "match"),
    [
        (b"", 400, "empty line"),
        (b"MESSAGE sip:a@b SIP/2.0\r\n", 400, "empty line"),
        (b"garbage\r\n\r\n", 400, "request line"),
        (request_bytes().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505, "version"),
        (request_bytes().replace(b"SIP/2.0\r\n", b"HTTP/1.1\r\n", 1), 400, "version"),
        (request_bytes().replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400, "Max-Forwards"),
        (request_bytes().replace(b"Max-Forwards: 70", b"Max-Forwards: -1"), 400, "Max-Forwards"),
        (request_bytes().replace(b"Max-Forwards: 70", b"NoColonHere"), 400, "header line"),
        (request_bytes().replace(b"Max-Forwards: 70", b"Bad Name: 1"), 400, "header name"),
        (request_bytes().replace(b"Max-Forwards: 70", b": 1"), 400, "header line"),
        (request_bytes().replace(b"Max-Forwards: 70", b"Max-Forwards: 7\r0"), 400, "bare CR"),
        (request_bytes().replace(b"CSeq: 314159 MESSAGE", b"CSeq: 1 INVITE"), 400, "CSeq"),
        (request_bytes().replace(b"Call-ID: a84b", b"Call-ID: a8 4b"), 400, "Call-ID"),
        (request_bytes().replace(b"Call-ID: a84b4c76e66710@pc33.example.com", b"Call-ID:"),
         400, "Call-ID"),
        (b" Via: x\r\n" + request_bytes(), 400, "malformed"),
        (request_bytes(body=b"x", content_length=False).replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n"),
         400, "Content-Length"),
        (request_bytes().replace(b"MESSAGE sip", b"MESS@GE sip"), 400, "method"),
        (response_bytes().replace(b"200 OK", b"99 Low"), 400, "status code"),
        (response_bytes().replace(b"200 OK", b"700 High"), 400, "status code"),
        (response_bytes().replace(b"SIP/2.0 200 OK", b"SIP/2.0"), 400, "status line"),
        (request_bytes(extra=[("Content-Type", "text")]), 400, "media type"),
        (request_bytes(extra=[("Contact", "<sip:a@b.com>,,")]), 400, "empty element"),
    ],
)  # fmt: skip
def test_malformed_messages(wire: bytes, status: int, match: str) -> None:
    with pytest.raises(SIPParseError, match=match) as info:
        parse_message(wire)
    assert info.value.status_hint == status


@pytest.mark.parametrize("missing", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_each_mandatory_header_is_required(missing: str) -> None:
    wire = b"\r\n".join(
        line
        for line in request_bytes().split(b"\r\n")
        if not line.startswith(missing.encode() + b":")
    )
    with pytest.raises(SIPParseError, match=f"missing {missing}"):
        parse_message(wire)


def test_parse_message_refuses_str() -> None:
    with pytest.raises(TypeError):
        parse_message("INVITE sip:a@b SIP/2.0")  # type: ignore[arg-type]


def test_empty_continuation_line_adds_no_space() -> None:
    # Found by fuzz/fuzz_parser.py (seed 2026): "a,\r\n     \r\n" used to unfold
    # to "a, " and serialize to something that parsed back as "a,".
    wire = request_bytes().replace(b"Max-Forwards: 70", b"Subject: a,\r\n     \r\nMax-Forwards: 70")
    message = parse_message(wire)
    assert message.headers.get("Subject") == "a,"
    assert parse_message(message.to_bytes()).to_bytes() == message.to_bytes()
