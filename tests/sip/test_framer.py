"""The TCP stream framer: splitting by Content-Length, limits, errors."""

from __future__ import annotations

import pytest
from sip_factory import MESSAGE_WITH_MODE, request_bytes, response_bytes

from vidim.sip import Request, Response, SIPParseError, StreamFramer


def drain(framer: StreamFramer) -> list[Request | Response]:
    out = []
    while (message := framer.next_message()) is not None:
        out.append(message)
    return out


def test_two_messages_in_one_segment() -> None:
    framer = StreamFramer()
    framer.receive_data(MESSAGE_WITH_MODE + response_bytes(202, "Accepted", body=b"ok"))
    first, second = drain(framer)
    assert isinstance(first, Request)
    assert first.body == b"let's talk"
    assert isinstance(second, Response)
    assert second.body == b"ok"
    assert framer.buffered == 0


def test_message_split_across_segments() -> None:
    framer = StreamFramer()
    wire = MESSAGE_WITH_MODE
    framer.receive_data(wire[:40])
    assert framer.next_message() is None
    framer.receive_data(wire[40:-3])
    assert framer.next_message() is None  # headers complete, body not yet
    framer.receive_data(wire[-3:])
    message = framer.next_message()
    assert isinstance(message, Request)
    assert message.body == b"let's talk"


def test_keepalive_crlfs_are_skipped() -> None:
    framer = StreamFramer()
    framer.receive_data(b"\r\n\r\n" + MESSAGE_WITH_MODE + b"\r\n")
    assert len(drain(framer)) == 1
    assert framer.buffered == 0


def test_missing_content_length_means_no_body() -> None:
    framer = StreamFramer()
    framer.receive_data(request_bytes(content_length=False) + request_bytes())
    assert [m.body for m in drain(framer)] == [b"", b""]


def test_malformed_message_is_reported_and_framing_continues() -> None:
    framer = StreamFramer()
    bad = request_bytes().replace(b"CSeq: 314159 MESSAGE", b"CSeq: x")
    framer.receive_data(bad + MESSAGE_WITH_MODE)
    with pytest.raises(SIPParseError, match="CSeq"):
        framer.next_message()
    assert not framer.broken
    assert isinstance(framer.next_message(), Request)


@pytest.mark.parametrize(
    ("wire", "status", "match"),
    [
        (request_bytes().replace(b"Content-Length: 0", b"Content-Length: -5"), 400, "Content-Length"),
        (request_bytes().replace(b"Content-Length: 0", b"l: 1\r\nContent-Length: 2"), 400,
         "conflicting"),
        (request_bytes().replace(b"Content-Length: 0", b"Content-Length: 99999999999"), 400,
         "Content-Length"),
        (request_bytes().replace(b"Content-Length: 0", b"Content-Length: 70000"), 513, "over"),
        (b"INVITE sip:a@b SIP/2.0\r\nX-Long: " + b"a" * 70000, 513, "limit"),
    ],
)  # fmt: skip
def test_framing_errors_are_fatal(wire: bytes, status: int, match: str) -> None:
    framer = StreamFramer()
    framer.receive_data(wire)
    with pytest.raises(SIPParseError, match=match) as info:
        framer.next_message()
    assert info.value.status_hint == status
    assert framer.broken
    with pytest.raises(SIPParseError, match=match):
        framer.next_message()
    with pytest.raises(SIPParseError, match=match):
        framer.receive_data(MESSAGE_WITH_MODE)


def test_the_size_limit_is_configurable() -> None:
    framer = StreamFramer(max_message_size=100)
    framer.receive_data(MESSAGE_WITH_MODE)
    with pytest.raises(SIPParseError) as info:
        framer.next_message()
    assert info.value.status_hint == 513


def test_end_of_stream() -> None:
    framer = StreamFramer()
    framer.receive_data(MESSAGE_WITH_MODE[:10])
    framer.receive_data(b"")
    assert framer.eof
    assert framer.next_message() is None
    with pytest.raises(SIPParseError, match="after the end"):
        framer.receive_data(b"more")
