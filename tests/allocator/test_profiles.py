"""The focus profiles' text builders: the anchor offer, join URIs, dialplan conference URIs."""

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


def test_anchor_offer_is_one_inactive_audio_stream() -> None:
    assert anchor_offer("::1", 5) == (
        b"v=0\r\no=vidim 5 1 IN IP6 ::1\r\ns=vidim conference anchor\r\nc=IN IP6 ::1\r\n"
        b"t=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=inactive\r\n"
    )


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "192.0.2.10", "::1", "2001:db8::5", "vidim.example"]
)
@pytest.mark.parametrize(("session_id", "version"), [(0, 1), (1, 1), (2**40 - 1, 7)])
def test_anchor_offer_carries_its_address_and_numbers(
    address: str, session_id: int, version: int
) -> None:
    session = sdp_transform.parse(anchor_offer(address, session_id, version).decode())
    assert session["origin"]["address"] == session["connection"]["ip"] == address
    assert (session["origin"]["sessionId"], session["origin"]["sessionVersion"]) == (
        session_id,
        version,
    )
    assert [m["direction"] for m in session["media"]] == ["inactive"]


def test_anchor_session_id_is_stable_per_conference_and_fits_40_bits() -> None:
    ids = [anchor_session_id(f"conference-{n}") for n in range(1000)]
    assert ids == [anchor_session_id(f"conference-{n}") for n in range(1000)]
    assert len(set(ids)) == 1000
    assert all(0 <= i < 2**40 for i in ids)


@pytest.mark.parametrize(
    ("uri", "joined"),
    [
        ("sip:conf-abc_DEF-12@127.0.0.1:5080", "sip:conf-abc_DEF-12@127.0.0.1:5080;key=a-b_c"),
        ("sips:conf-1@[2001:db8::1]:5061", "sips:conf-1@[2001:db8::1]:5061;key=a-b_c"),
        (
            "sip:conf-1@focus.example.com;transport=tcp",
            "sip:conf-1@focus.example.com;transport=tcp;key=a-b_c",
        ),
        # a key already there: replaced
        ("sip:conf-1@focus.example.com;KEY=old;lr", "sip:conf-1@focus.example.com;lr;key=a-b_c"),
        (
            "sip:conf-1@focus.example.com;monkey=1",
            "sip:conf-1@focus.example.com;monkey=1;key=a-b_c",
        ),
        # URI headers stay after the parameters
        (
            "sip:conf-1@focus.example.com?subject=x",
            "sip:conf-1@focus.example.com;key=a-b_c?subject=x",
        ),
        ("tel:+15551234", "tel:+15551234"),
    ],
)
def test_join_uri_adds_the_credential(uri: str, joined: str) -> None:
    assert join_uri(uri, "a-b_c") == joined


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
