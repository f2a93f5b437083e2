"""Garbage, strays and races: the focus answers or reports, and never raises."""

from __future__ import annotations

from focus_peers import FOCUS, Softphone, baresip_offer, focus_world, make_conference
from hypothesis import given, settings
from hypothesis import strategies as st

from vidim.focus import ConferenceFocus, MessageIgnored
from vidim.sip import Address, Request, Response, new_branch
from vidim.vocabulary import Mode

SOURCE = Address("127.0.0.1", 7000)


def request(
    method: str, uri: str, *extra: tuple[str, str], body: bytes = b"", to_tag: str = ""
) -> Request:
    return Request(
        method,
        uri,
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:7000;branch={new_branch()}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:x@example.com>;tag=abc"),
            (
                "To",
                "<sip:conference-factory@127.0.0.1:5080>" + (f";tag={to_tag}" if to_tag else ""),
            ),
            ("Call-ID", "garbage-1"),
            ("CSeq", f"1 {method}"),
            ("Contact", "<sip:x@127.0.0.1:7000>"),
            *extra,
        ],
        body,
    )


def status_of(focus: ConferenceFocus) -> list[int]:
    return [m.status for m, _ in focus.messages_to_send() if isinstance(m, Response)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    focus = ConferenceFocus()
    focus.receive_datagram(data, SOURCE, 0.0)
    focus.handle_timer(100.0)
    focus.messages_to_send()
    focus.events()


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["INVITE", "SUBSCRIBE", "BYE", "OPTIONS", "ACK", "NOTIFY", "INFO", "CANCEL"]),
    st.sampled_from(
        [
            "sip:conference-factory@127.0.0.1:5080",
            "sip:conf-00@127.0.0.1:5080;key=x",
            "sip:127.0.0.1:5080",
        ]
    ),
    st.binary(max_size=200),
    st.sampled_from(
        ["", "application/sdp", "multipart/mixed;boundary=x", "application/resource-lists+xml"]
    ),
    st.sampled_from(["", "t1"]),
)
def test_parsable_requests_with_junk_bodies_never_raise(
    method: str, uri: str, body: bytes, content_type: str, to_tag: str
) -> None:
    focus = ConferenceFocus()
    extra = [("Content-Type", content_type)] if content_type else []
    extra.append(("Event", "conference"))
    message = request(method, uri, *extra, body=body, to_tag=to_tag)
    focus.receive_datagram(message.to_bytes(), SOURCE, 0.0)
    focus.handle_timer(100.0)
    focus.messages_to_send()


def test_unparsable_datagram_is_reported() -> None:
    focus = ConferenceFocus()
    focus.receive_datagram(b"\x00\xffnot sip at all\r\n\r\n", SOURCE, 0.0)
    (event,) = focus.events()
    assert isinstance(event, MessageIgnored)
    assert focus.messages_to_send() == []


def test_stray_response_and_ack_are_ignored() -> None:
    focus = ConferenceFocus()
    stray = Response(
        200,
        headers=[
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5080;branch={new_branch()}"),
            ("From", "<sip:a@example.com>;tag=1"),
            ("To", "<sip:b@example.com>;tag=2"),
            ("Call-ID", "stray"),
            ("CSeq", "1 NOTIFY"),
        ],
    )
    focus.receive(stray, SOURCE, 0.0)
    assert [type(e) for e in focus.events()] == [MessageIgnored]
    focus.receive(request("ACK", "sip:conf-1@127.0.0.1:5080", to_tag="zz"), SOURCE, 0.0)
    assert focus.messages_to_send() == []


def test_in_dialog_request_for_no_dialog_gets_481() -> None:
    focus = ConferenceFocus()
    focus.receive(request("BYE", "sip:conf-1@127.0.0.1:5080", to_tag="nope"), SOURCE, 0.0)
    assert status_of(focus) == [481]


def test_other_methods_get_405_and_bad_event_400() -> None:
    focus = ConferenceFocus()
    focus.receive(request("MESSAGE", "sip:conference-factory@127.0.0.1:5080"), SOURCE, 0.0)
    assert status_of(focus) == [405]
    net, real, _, allocator = focus_world()
    allocator.create(make_conference([("sip:a@example.com", Mode.AUDIO)]), net.now)
    net.advance()
    uri = allocator.conference_uri or ""
    real.receive(request("SUBSCRIBE", uri, ("Event", "conf;=")), SOURCE, net.now)
    assert 400 in status_of(real)


def test_cancel_of_an_answered_invite_changes_nothing() -> None:
    net, focus, _, allocator = focus_world()
    allocator.create(make_conference([("sip:a@example.com", Mode.AUDIO)]), net.now)
    net.advance()
    phone = Softphone("a", Address("127.0.0.1", 6000), baresip_offer(6000, 6002))
    net.add(phone)
    invite = phone.call(allocator.join_uri("sip:a@example.com"), net.now)
    net.advance()
    cancel_id = phone.layer.cancel(phone.tids[invite], net.now)
    net.advance()
    assert phone.final(invite).status == 200
    assert cancel_id is None  # the INVITE had its final answer: nothing to cancel
    assert focus.conferences()[0].connected == ("sip:a@example.com",)
    # A CANCEL that arrives anyway (it crossed the 200) is answered by the layer.
    cancel = Request(
        "CANCEL",
        invite.uri,
        [(name, invite.headers.get(name) or "") for name in ("Via", "From", "To", "Call-ID")]
        + [("Max-Forwards", "70"), ("CSeq", f"{invite.cseq.seq} CANCEL")],
    )
    phone.send(cancel, net.now)
    net.advance()
    assert phone.final(cancel).status == 200
    assert focus.conferences()[0].connected == ("sip:a@example.com",)
    assert net.sent(FOCUS, "SIP/2.0 487") == []
