"""Malformed requests still get a clear answer when one can be built."""

from __future__ import annotations

import pytest
from sip_factory import request_bytes

from vidim.sip import Response, SIPParseError, parse_message, salvage_response


def refused(wire: bytes) -> SIPParseError:
    with pytest.raises(SIPParseError) as info:
        parse_message(wire)
    return info.value


@pytest.mark.parametrize(
    ("wire", "status", "reason"),
    [
        (request_bytes().replace(b"Max-Forwards: 70", b"Subject: a\rb"), 400, "bare CR"),
        (request_bytes().replace(b"Max-Forwards: 70", b"Max-Forwards: 300"), 400, "Max-Forwards"),
        (request_bytes().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505, "version"),
        (request_bytes(extra=[("Contact", "<sip:a@b.com>;;x")]), 400, "parameters"),
    ],
)
def test_answerable_requests_get_status_and_warning(wire: bytes, status: int, reason: str) -> None:
    error = refused(wire)
    response = salvage_response(wire, error, warning_host="vidim.test")
    assert isinstance(response, Response)
    assert response.status == status
    warning = response.headers.get("Warning")
    assert warning is not None
    assert warning.startswith("399 vidim.test ")
    assert reason in warning
    again = parse_message(response.to_bytes())  # the answer is valid SIP
    assert isinstance(again, Response)
    assert again.to_addr.tag is not None
    assert again.call_id == "a84b4c76e66710@pc33.example.com"


@pytest.mark.parametrize(
    "wire",
    [
        b"garbage",
        request_bytes().replace(b"Call-ID: a84b4c76e66710@pc33.example.com\r\n", b""),
        request_bytes().replace(b"CSeq: 314159 MESSAGE", b"CSeq: x\rMESSAGE"),
        request_bytes(method="ACK").replace(b"Max-Forwards: 70", b"Max-Forwards: 300"),
        request_bytes().replace(b"Max-Forwards: 70", b"Max-Forwards: 300\r\nTo: <sip:x@y>"),
        b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n",
    ],
)
def test_unanswerable_input_gets_nothing(wire: bytes) -> None:
    error = refused(wire)
    assert salvage_response(wire, error, warning_host="vidim.test") is None
