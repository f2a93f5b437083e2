"""The allocator's shared context: the requests it builds, where they go, deadlines, moves."""

from __future__ import annotations

from allocator_factory import make_context

from vidim.allocator.conference import (
    Conference,
    ConferenceInput,
    ConferenceState,
    Deadline,
)
from vidim.allocator.context import (
    Purpose,
    address_from_text,
    address_of,
    address_text,
    new_token,
)
from vidim.allocator.events import ConferenceStateChanged
from vidim.sip import Address, Via
from vidim.vocabulary import Mode

PROXY = Address("127.0.0.1", 5060)


def record(state: ConferenceState = ConferenceState.REQUESTED) -> Conference:
    return Conference(
        id="c1",
        requester="sip:alice@example.com",
        mode=Mode.VIDEO,
        requester_address="192.0.2.7|5062|UDP",
        participants=[],
        created_at=0.0,
        state=state,
    )


def test_out_of_dialog_lines_are_what_the_value_types_write() -> None:
    for local in (Address("127.0.0.1", 5070), Address("::1", 5075, "TCP")):
        context, _ = make_context(local=local)
        request = context.out_of_dialog("MESSAGE", "sip:bob@example.com")
        via = request.top_via
        assert via.branch is not None
        assert via.is_rfc3261_branch
        assert request.headers.get("Via") == str(
            Via(local.transport, local.host, local.port, (("rport", None),)).with_params(
                branch=via.branch
            )
        )
        tag = request.from_addr.tag
        assert tag is not None
        assert request.headers.get("From") == f"<sip:vidim@example.com>;tag={tag}"
        assert request.call_id.endswith(f"@{local.host}")
        assert request.headers.get("To") == "<sip:bob@example.com>"
        assert request.headers.get("CSeq") == "1 MESSAGE"


def test_out_of_dialog_requests_are_new_each_time() -> None:
    context, _ = make_context()
    one, two = (context.out_of_dialog("OPTIONS", "sip:bob@example.com") for _ in range(2))
    assert one.call_id != two.call_id
    assert one.top_via.branch != two.top_via.branch
    assert one.from_addr.tag != two.from_addr.tag


def test_requests_go_through_the_proxy_when_there_is_one() -> None:
    direct, _ = make_context()
    request = direct.out_of_dialog("MESSAGE", "sip:bob@192.0.2.5:6000")
    hop = direct.route("sip:bob@192.0.2.5:6000")
    assert direct.destination(request, hop) == Address("192.0.2.5", 6000)
    assert direct.route("sip:bob@example.com", Address("192.0.2.9", 5062)) == Address(
        "192.0.2.9", 5062
    )
    proxied, _ = make_context(proxy=PROXY)
    hop = proxied.route("sip:bob@192.0.2.5:6000", Address("192.0.2.9", 5062))
    assert proxied.destination(request, hop) == PROXY


def test_addresses_of_uris() -> None:
    assert address_of("sip:bob@[2001:db8::1]:5070") == Address("2001:db8::1", 5070)
    assert address_of("sips:bob@example.com") == Address("example.com", 5061, "TLS")
    assert address_of("sip:bob@example.com;transport=tcp") == Address("example.com", 5060, "TCP")
    assert address_of("sip:bob@example.com;maddr=192.0.2.1") == Address("192.0.2.1", 5060)
    for address in (Address("192.0.2.7", 5062), Address("::1", 5070, "TCP")):
        assert address_from_text(address_text(address)) == address


def test_tokens_are_url_safe_and_differ() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) == 22 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


def test_a_deadline_is_in_the_record_and_in_the_timers_alike() -> None:
    context, _ = make_context()
    conference = record()
    context.arm(conference, Deadline.PROBE, 2.0)
    context.arm(conference, Deadline.FOCUS, 8.0)
    context.arm(conference, Deadline.PROBE, 3.0)  # moved: one deadline per kind
    assert conference.deadlines == {Deadline.PROBE: 3.0, Deadline.FOCUS: 8.0}
    assert context.timers.next_deadline() == 3.0
    context.disarm(conference, Deadline.PROBE)
    assert conference.deadlines == {Deadline.FOCUS: 8.0}
    assert list(context.timers.pop_due(10.0)) == [("c1", Deadline.FOCUS)]


def test_a_move_reports_a_change_of_state_only() -> None:
    context, events = make_context()
    conference = record(ConferenceState.ACTIVE)
    context.move(conference, ConferenceInput.ROSTER_CHANGED)
    assert events == []
    context.move(conference, ConferenceInput.END_REQUESTED)
    assert events == [
        ConferenceStateChanged(
            conference_id="c1",
            old=ConferenceState.ACTIVE,
            new=ConferenceState.ENDING,
            reason="end requested",
        )
    ]


def test_the_requester_is_told_where_their_request_came_from() -> None:
    context, _ = make_context()
    context.tell_requester(record(), "hello", 0.0)
    ((message, destination),) = context.layer.messages_to_send()
    assert destination == Address("192.0.2.7", 5062)
    assert message.body == b"hello"
    assert message.headers.get("Content-Type") == "text/plain;charset=UTF-8"
    (pending,) = context.pending.values()
    assert pending.purpose is Purpose.NOTICE
    assert context.subscribes == {}
