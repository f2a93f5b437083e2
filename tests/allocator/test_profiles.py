"""The focus profiles' text builders: the templated and fast paths write what the slow ones did."""

from __future__ import annotations

import pytest
import sdp_transform

from vidim.allocator.conference import Conference
from vidim.allocator.profiles import (
    FocusProfile,
    anchor_offer,
    anchor_session_id,
    conference_uri,
    join_uri,
)
from vidim.sip import Response, SipURI, parse_uri
from vidim.vocabulary import Mode


def _written(address: str, session_id: int, version: int) -> bytes:
    """The anchor offer as sdp_transform writes it from the whole description."""
    ip = 6 if ":" in address else 4
    session = {
        "version": 0,
        "origin": {"username": "vidim", "sessionId": session_id, "sessionVersion": version,
                   "netType": "IN", "ipVer": ip, "address": address},
        "name": "vidim conference anchor",
        "connection": {"version": ip, "ip": address},
        "timing": {"start": 0, "stop": 0},
        "media": [{"type": "audio", "port": 9, "protocol": "RTP/AVP", "payloads": "0",
                   "rtp": [{"payload": 0, "codec": "PCMU", "rate": 8000}],
                   "direction": "inactive"}],
    }  # fmt: skip
    text: str = sdp_transform.write(session)
    return text.encode("ascii")


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "192.0.2.10", "::1", "2001:db8::5", "vidim.example"]
)
@pytest.mark.parametrize(("session_id", "version"), [(0, 1), (1, 1), (2**40 - 1, 7)])
def test_anchor_offer_template_writes_what_sdp_transform_writes(
    address: str, session_id: int, version: int
) -> None:
    assert anchor_offer(address, session_id, version) == _written(address, session_id, version)


def test_anchor_session_id_is_stable_per_conference_and_fits_40_bits() -> None:
    ids = [anchor_session_id(f"conference-{n}") for n in range(1000)]
    assert ids == [anchor_session_id(f"conference-{n}") for n in range(1000)]
    assert len(set(ids)) == 1000
    assert all(0 <= i < 2**40 for i in ids)


def _slow_join(text: str, credential: str) -> str:
    uri = parse_uri(text)
    return str(uri.with_params(key=credential)) if isinstance(uri, SipURI) else text


@pytest.mark.parametrize(
    "uri",
    [
        "sip:conf-abc_DEF-12@127.0.0.1:5080",
        "sip:conf-1@focus.example.com",
        "sips:conf-1@[2001:db8::1]:5061",
        "sip:conf-1@focus.example.com;transport=tcp",
        "sip:conf-1@focus.example.com;KEY=old;lr",  # a key already there: replaced
        "sip:conf-1@focus.example.com;monkey=1",
        "sip:conf-1@focus.example.com?subject=x",  # URI headers stay after the parameters
        "tel:+15551234",
    ],
)
@pytest.mark.parametrize("credential", ["Zm9vYmFyYmF6cXV4MTIzNA", "a-b_c", "x.y~z"])
def test_join_uri_fast_path_writes_what_the_parser_writes(uri: str, credential: str) -> None:
    assert join_uri(uri, credential) == _slow_join(uri, credential)


@pytest.mark.parametrize(
    "focus", ["sip:conference@127.0.0.1:5080", "sip:conf@focus.example.com", "sips:f@[::1]:5061"]
)
@pytest.mark.parametrize("conference_id", ["Zm9vYmFyYmF6cXV4MTIzNA", "a-b_c", "odd.id~1"])
def test_dialplan_conference_uri_is_written_as_the_uri_type_writes_it(
    focus: str, conference_id: str
) -> None:
    conference = Conference(
        id=conference_id,
        requester="sip:alice@example.com",
        mode=Mode.VIDEO,
        requester_address="127.0.0.1|5060|UDP",
        participants=[],
        created_at=0.0,
    )
    parsed = parse_uri(focus)
    assert isinstance(parsed, SipURI)
    expected = str(SipURI(host=parsed.host, port=parsed.port, user=f"conf-{conference_id}"))
    answer = Response(200)
    written = conference_uri(FocusProfile.ASTERISK, answer, focus_uri=focus, conference=conference)
    assert written == expected
    assert (
        conference_uri(FocusProfile.FREESWITCH, answer, focus_uri="tel:+1", conference=conference)
        is None
    )
