"""What a dialog keeps: its parties, target and routes as values, its size, the table.

These tests hold a live dialog to its memory budget and check that what it
says and sends is what it was given: the parties read back equal to what was
received, requests carry the same lines, odd forms (a tag that is not the
last parameter, no tag, a comma in a display name) included.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from dialog_helpers import (
    FOCUS_AOR,
    FOCUS_CONTACT,
    LOCAL_CONTACT,
    LOCAL_VIA,
    confirmed_invite_dialog,
    invite,
    manager,
    peer_request,
    respond,
    subscribe,
    wire,
)

from vidim.sip import LocalProtocolError, NameAddr, Request, Response, make_response
from vidim.sip.dialog import (
    Dialog,
    DialogId,
    DialogRole,
    DialogState,
    Subscription,
    parse_event,
)
from vidim.sip.dialog_manager import DialogManager
from vidim.sip.uri import parse_uri


def _answer(request: Request, to: str, contact: str = FOCUS_CONTACT) -> Response:
    """A 200 whose To is written as ``to`` (the peer's own spelling)."""
    ok = make_response(request, 200, headers=[("Contact", contact)])
    ok.headers.set("To", to)
    return wire(ok)


# -- size ----------------------------------------------------------------------------


def test_a_live_dialog_fits_the_conference_budget() -> None:
    """Confirmed INVITE dialogs with one focus: under 3 KiB each.

    A live conference may cost 8 KiB (docs/performance.md, "Memory"), and
    the allocator holds two dialogs per conference (the focus INVITE and
    the conference-event subscription); a dialog keeps its parsed From, To,
    Contact and target, about 2.1 KiB here, where every request is built from
    text (less in the allocator, whose From and Contact are shared values).
    """
    mgr = manager()
    count = 300

    def make(number: int) -> None:
        request = invite(mgr)
        ok = respond(
            request, 200, tag=f"focus{number}", contact=f"<sip:conf-{number}@192.0.2.50:5070>"
        )
        dialog = mgr.receive_response(request, ok)
        assert dialog is not None
        mgr.forget(request)

    make(0)  # warm the parser's caches, as a long-running UA has them
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(1, count + 1):
            make(number)
        gc.collect()
        per_dialog = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    assert len(mgr) == count + 1
    assert per_dialog < 3 * 1024, per_dialog


# -- the parties read back as received -----------------------------------------------


@pytest.mark.parametrize(
    "to",
    [
        f"{FOCUS_AOR};tag=plain",
        f"{FOCUS_AOR};tag=first;foo=bar",  # the tag is not the last parameter
        f'"Focus, the" {FOCUS_AOR};tag=quoted',  # a comma inside the display name
        f"{FOCUS_AOR} ;tag=spaced",
        "sip:conf-factory@focus.example.com;tag=spec",  # addr-spec form
    ],
)
def test_remote_party_reads_back_as_received(to: str) -> None:
    mgr = manager()
    request = invite(mgr)
    ok = _answer(request, to)
    dialog = mgr.receive_response(request, ok)
    assert dialog is not None
    assert dialog.remote_party == ok.to_addr
    assert dialog.remote_tag == ok.to_addr.tag
    bye = wire(dialog.create_request("BYE"))
    assert bye.to_addr == ok.to_addr
    assert bye.from_addr == request.from_addr
    assert dialog.local_party == request.from_addr
    assert dialog.local_contact == request.contacts[0]
    assert mgr.get(dialog.id) is dialog


def test_dialogs_keep_the_values_their_request_was_written_from() -> None:
    """Our From and Contact are the TU's values, not copies parsed back from the request."""
    mgr = manager()
    contact = NameAddr(parse_uri("sip:vidim@10.0.0.1:5060"))
    service = NameAddr(parse_uri("sip:vidim@example.com"), "Vidim")
    dialogs = []
    for tag in ("a", "b"):
        request = mgr.create_initial_request(
            "INVITE", "sip:focus@example.com", from_addr=service, to_addr=FOCUS_AOR, contact=contact
        )
        dialog = mgr.receive_response(request, respond(wire(request), 200, tag=tag))
        assert dialog is not None
        assert dialog.local_contact is contact
        assert dialog.local_party == wire(request).from_addr
        dialogs.append(dialog)
    assert dialogs[0].local_party.uri is dialogs[1].local_party.uri is service.uri


def test_a_to_without_tag_stays_without_tag() -> None:
    """An RFC 2543 peer's 200 without a To tag still makes a dialog, tag ""."""
    mgr = manager()
    request = invite(mgr)
    ok = respond(request, 200, tag=None)
    dialog = mgr.receive_response(request, ok)
    assert dialog is not None
    assert dialog.remote_tag == ""
    assert dialog.remote_party.tag is None
    assert wire(dialog.create_ack(ok)).to_addr == ok.to_addr


def test_setting_the_parties_and_target() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    new_target = parse_uri("sip:conf42@192.0.2.99:5070")
    dialog.remote_target = new_target
    assert dialog.remote_target == new_target
    assert dialog.request_target()[0] == new_target
    route = NameAddr(parse_uri("sip:p9.example.com;lr"))
    dialog.route_set = [route]
    assert dialog.route_set == (route,)
    assert str(wire(dialog.create_request("INFO")).route[0]) == str(route)
    with pytest.raises(LocalProtocolError):
        dialog.local_party = NameAddr(parse_uri("sip:someone@example.com"))


def test_dialog_from_parts_keeps_what_it_was_given() -> None:
    local = NameAddr(parse_uri("sip:vidim@example.com"), "Vidim", (("tag", "l1"),))
    remote = NameAddr(parse_uri("sip:bob@example.com"), None, (("tag", "r1"), ("x", "y")))
    contact = NameAddr(parse_uri("sip:vidim@10.0.0.1:5060"))
    dialog = Dialog(
        role=DialogRole.UAC,
        state=DialogState.CONFIRMED,
        call_id="c1",
        local_party=local,
        remote_party=remote,
        local_contact=contact,
        remote_target=parse_uri("sip:bob@192.0.2.7"),
        local_cseq=1,
        remote_cseq=None,
        initial_cseq=1,
        initial_method="INVITE",
        local_via=LOCAL_VIA,
    )
    assert dialog.local_party == local
    assert dialog.remote_party == remote
    assert dialog.local_contact == contact
    assert dialog.id == DialogId("c1", "l1", "r1")
    again = Dialog.from_dict(dialog.to_dict())
    assert again.to_dict() == dialog.to_dict()
    assert again.remote_party == remote


# -- subscriptions -------------------------------------------------------------------


def test_subscriptions_list_is_the_dialogs() -> None:
    mgr = manager()
    request = subscribe(mgr)
    dialog = mgr.receive_response(request, respond(request, 200, tag="n1"))
    assert dialog is not None
    subs = dialog.subscriptions
    assert [s.event for s in subs] == ["conference"]
    assert dialog.subscriptions is subs
    extra = Subscription("refer", "7")
    subs.append(extra)
    assert dialog.find_subscription(parse_event("refer;id=7"), notifier=False) is extra
    again = Dialog.from_dict(dialog.to_dict())
    assert [s.to_dict() for s in again.subscriptions] == [s.to_dict() for s in subs]


def test_invite_dialog_subscriptions_start_empty() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    assert dialog.subscriptions == []
    dialog.subscriptions.append(Subscription("conference"))
    assert len(dialog.to_dict()["subscriptions"]) == 1


# -- the table -----------------------------------------------------------------------


def test_table_with_forks_sharing_a_call_id() -> None:
    mgr = manager()
    request = invite(mgr)
    a = mgr.receive_response(request, respond(request, 180, tag="fork-a"))
    b = mgr.receive_response(request, respond(request, 180, tag="fork-b"))
    c = mgr.receive_response(request, respond(request, 180, tag="fork-c"))
    assert a is not None
    assert b is not None
    assert c is not None
    assert len(mgr) == 3
    assert set(mgr) == {a, b, c}
    assert set(mgr.dialogs_of(request)) == {a, b, c}
    assert mgr.get(b.id) is b
    assert mgr.get(DialogId(request.call_id, a.local_tag, "nobody")) is None
    with pytest.raises(LocalProtocolError, match="exists already"):
        mgr.add(b)
    mgr.remove(b)
    assert len(mgr) == 2
    assert mgr.get(b.id) is None
    assert set(mgr) == {a, c}
    mgr.remove(b)  # not there: nothing happens
    assert len(mgr) == 2
    mgr.remove(a)
    assert list(mgr) == [c]
    assert mgr.get(c.id) is c
    mgr.add(a)
    assert set(mgr) == {a, c}


def test_one_call_id_two_local_tags() -> None:
    """Our UAC dialog and a UAS dialog on the same Call-ID (a loop) are two entries."""
    mgr = manager()
    request = invite(mgr)
    ours = mgr.receive_response(request, respond(request, 200, tag="far"))
    assert ours is not None
    # The same INVITE arriving back at us, as a UAS.
    theirs = mgr.accept(request, local_contact=LOCAL_CONTACT, local_tag="near")
    assert len(mgr) == 2
    assert mgr.get(ours.id) is ours
    assert mgr.get(theirs.id) is theirs
    assert mgr.dialogs_of(request) == [ours]
    ours.create_request("BYE")
    assert mgr.prune() == [ours]
    assert list(mgr) == [theirs]


def test_manager_round_trip_keeps_every_dialog() -> None:
    mgr = manager()
    request = invite(mgr)
    a = mgr.receive_response(request, respond(request, 200, tag="a"))
    b = mgr.receive_response(request, respond(request, 200, tag="b"))
    assert a is not None
    assert b is not None
    restored = DialogManager.from_dict(mgr.to_dict(), local_via=LOCAL_VIA)
    assert len(restored) == 2
    assert {d.id for d in restored} == {a.id, b.id}
    revived = restored.get(a.id)
    assert revived is not None
    _, answer = restored.receive_request(peer_request(a, "INFO", 5))
    assert answer is None  # the TU answers an INFO


# -- checks before the state moves ---------------------------------------------------


def test_bad_extra_headers_are_refused_before_anything_changes() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    seq = dialog.local_cseq
    with pytest.raises(LocalProtocolError):
        dialog.create_request("INFO", headers=[("X-Bad", "a\r\nInjected: yes")])
    with pytest.raises(LocalProtocolError):
        dialog.create_request("INFO", content_type="text/plain\r\nX: y")
    with pytest.raises(LocalProtocolError):
        dialog.create_request("BAD METHOD")
    with pytest.raises(LocalProtocolError):
        dialog.create_request("BYE", headers=[("Bad Name", "x")])
    assert dialog.local_cseq == seq
    assert dialog.state is DialogState.CONFIRMED
    # Values are stripped as Headers() strips them.
    info = wire(dialog.create_request("INFO", headers=[("X-Note", "  spaced  ")]))
    assert info.headers.get("x-note") == "spaced"


def test_initial_request_checks_what_the_tu_gives() -> None:
    mgr = manager()
    with pytest.raises(LocalProtocolError):
        mgr.create_initial_request(
            "INVITE",
            "sip:focus@example.com",
            from_addr="<sip:vidim@example.com>",
            to_addr="<sip:focus@example.com>",
            contact=LOCAL_CONTACT,
            call_id="abc\r\nX: y",
        )
    with pytest.raises(LocalProtocolError, match="no To tag"):
        mgr.create_initial_request(
            "INVITE",
            "sip:focus@example.com",
            from_addr="<sip:vidim@example.com>",
            to_addr="<sip:focus@example.com>;tag=x",
            contact=LOCAL_CONTACT,
        )
    # A From that has a tag keeps it.
    tagged = wire(
        mgr.create_initial_request(
            "OPTIONS",
            "sip:focus@example.com",
            from_addr="<sip:vidim@example.com>;tag=mine",
            to_addr="<sip:focus@example.com>",
            contact=LOCAL_CONTACT,
            call_id="given@example.com",
        )
    )
    assert tagged.from_addr.tag == "mine"
    assert tagged.call_id == "given@example.com"
    # The same values given as objects or as text give the same lines.
    as_text = mgr.create_initial_request(
        "OPTIONS",
        "sip:focus@example.com",
        from_addr='"Vidim" <sip:vidim@example.com>',
        to_addr="sip:focus@example.com",
        contact=LOCAL_CONTACT,
    )
    as_objects = mgr.create_initial_request(
        "OPTIONS",
        parse_uri("sip:focus@example.com"),
        from_addr=NameAddr(parse_uri("sip:vidim@example.com"), "Vidim"),
        to_addr=parse_uri("sip:focus@example.com"),
        contact=NameAddr(parse_uri("sip:vidim@10.0.0.1:5060")),
    )
    for name in ("To", "Contact"):
        assert as_text.headers.get(name) == as_objects.headers.get(name)
    assert as_text.from_addr.uri == as_objects.from_addr.uri
    assert str(as_text.uri) == str(as_objects.uri)


def test_requests_read_back_their_top_via_and_cseq() -> None:
    """What the transaction layer reads from a request is what its lines say on the wire."""
    mgr = manager()
    dialog, _, _ = confirmed_invite_dialog(mgr)
    requests = [invite(mgr), dialog.create_request("INFO"), dialog.create_request("BYE")]
    for request in requests:
        reparsed = wire(request)
        assert request.top_via == reparsed.top_via
        assert request.cseq == reparsed.cseq
        assert str(request.top_via) == reparsed.headers.get("via")
