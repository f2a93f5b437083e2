"""Dialogs (RFC 3261 12-15) and subscriptions (RFC 6665), over hand-made peers.

No transaction layer: the tests play the TU, handing the dialog layer the
requests and responses a transaction layer would pass up.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable

import pytest
from dialog_helpers import (
    FOCUS_CONTACT,
    FOCUS_CONTACT_2,
    LOCAL_CONTACT,
    LOCAL_VIA,
    confirmed_invite_dialog,
    invite,
    manager,
    notify_for,
    peer_request,
    respond,
    subscribe,
    wire,
)

from vidim.sip import (
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    SipURI,
    Via,
    parse_message,
    parse_name_addr,
)
from vidim.sip.dialog import (
    TRANSITIONS,
    Dialog,
    DialogId,
    DialogInput,
    DialogRole,
    DialogState,
    Subscription,
    SubscriptionState,
    next_dialog_state,
    parse_event,
    parse_subscription_state,
    unknown_dialog_response,
)
from vidim.sip.dialog_manager import DialogManager
from vidim.sip.ids import new_branch, new_tag

BRANCH_RE = re.compile(r"z9hG4bK[0-9a-f]{32}")
# As the UAS sees them: the proxy nearest the UAS (p2) is on top.
RR_LOOSE = ("<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>")
RR_STRICT = ("<sip:p2.example.com>", "<sip:p1.example.com;method=INVITE>")


def uris(routes: Iterable[object]) -> list[str]:
    return [str(getattr(r, "uri", r)) for r in routes]


# -- identifiers -----------------------------------------------------------------


def test_tags_and_branches_are_random_and_well_formed() -> None:
    tags = {new_tag() for _ in range(50)}
    assert len(tags) == 50
    assert all(re.fullmatch(r"[0-9a-f]{16}", t) for t in tags)
    assert all(BRANCH_RE.fullmatch(new_branch()) for _ in range(20))


# -- UAC INVITE dialogs ----------------------------------------------------------


def test_uac_dialog_goes_early_then_confirmed() -> None:
    mgr = manager()
    request = invite(mgr)
    assert mgr.receive_response(request, respond(request, 100, tag=None, contact=None)) is None
    early = mgr.receive_response(request, respond(request, 180, tag="f1"))
    assert early is not None
    assert early.state is DialogState.EARLY
    assert early.role is DialogRole.UAC
    assert early.id == DialogId(request.call_id, request.from_addr.tag or "", "f1")
    assert str(early.remote_target) == "sip:conf42@192.0.2.50:5070;transport=udp"
    ok = respond(request, 200, tag="f1", contact=FOCUS_CONTACT_2, record_route=RR_LOOSE)
    assert mgr.receive_response(request, ok) is early
    assert early.state is DialogState.CONFIRMED
    # 13.2.2.4: route set and target recomputed from the 2xx.
    assert str(early.remote_target) == "sip:conf42@192.0.2.51:5070"
    assert uris(list(early.route_set)) == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert early.local_cseq == request.cseq.seq
    assert early.remote_cseq is None
    assert len(mgr) == 1


def test_forked_provisionals_make_separate_dialogs() -> None:
    mgr = manager()
    request = invite(mgr)
    a = mgr.receive_response(request, respond(request, 180, tag="fork-a"))
    b = mgr.receive_response(request, respond(request, 183, tag="fork-b", contact=FOCUS_CONTACT_2))
    assert a is not None
    assert b is not None
    assert a is not b
    assert {a.remote_tag, b.remote_tag} == {"fork-a", "fork-b"}
    assert set(mgr.dialogs_of(request)) == {a, b}
    assert mgr.receive_response(request, respond(request, 200, tag="fork-a")) is a
    assert a.state is DialogState.CONFIRMED
    assert b.state is DialogState.EARLY
    # The INVITE transaction ends: forks still early are gone (13.2.2.4).
    assert mgr.forget(request) == [b]
    assert b.state is DialogState.TERMINATED
    assert mgr.prune() == [b]
    assert list(mgr) == [a]


def test_non_2xx_final_ends_every_early_dialog_of_the_request() -> None:
    mgr = manager()
    request = invite(mgr)
    a = mgr.receive_response(request, respond(request, 180, tag="fork-a"))
    assert a is not None
    # The final answer comes from a third branch (or the proxy), with its own tag.
    assert mgr.receive_response(request, respond(request, 486, tag="proxy", contact=None)) is None
    assert a.state is DialogState.TERMINATED


def test_non_2xx_final_from_the_early_dialog_itself_terminates_it() -> None:
    mgr = manager()
    request = invite(mgr)
    a = mgr.receive_response(request, respond(request, 180, tag="fork-a"))
    assert mgr.receive_response(request, respond(request, 603, tag="fork-a", contact=None)) is a
    assert a is not None
    assert a.state is DialogState.TERMINATED


def test_loose_routing_keeps_the_target_in_the_request_uri() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager(), record_route=RR_LOOSE)
    bye = wire(dialog.create_request("BYE"))
    assert str(bye.uri) == "sip:conf42@192.0.2.50:5070;transport=udp"
    assert uris(bye.route) == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]


def test_strict_routing_puts_the_first_route_in_the_request_uri() -> None:
    # Record-Route as it arrives: strict p1 nearest to us, listed last.
    dialog, _, _ = confirmed_invite_dialog(manager(), record_route=RR_STRICT)
    info = wire(dialog.create_request("INFO"))
    # 12.2.1.1: first route as Request-URI (without the method parameter), the
    # rest of the route set, then the remote target, as Route.
    assert str(info.uri) == "sip:p1.example.com"
    assert uris(info.route) == [
        "sip:p2.example.com",
        "sip:conf42@192.0.2.50:5070;transport=udp",
    ]


def test_no_record_route_means_no_route_header() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    options = wire(dialog.create_request("OPTIONS"))
    assert "Route" not in options.headers
    assert str(options.uri) == str(dialog.remote_target)


def test_local_cseq_increments_and_headers_are_the_dialogs() -> None:
    dialog, request, _ = confirmed_invite_dialog(manager())
    first = request.cseq.seq
    built = [dialog.create_request(m) for m in ("OPTIONS", "INFO", "MESSAGE")]
    assert [r.cseq.seq for r in built] == [first + 1, first + 2, first + 3]
    assert [r.cseq.method for r in built] == ["OPTIONS", "INFO", "MESSAGE"]
    for r in built:
        assert r.call_id == request.call_id
        assert r.from_addr == request.from_addr
        assert r.to_addr.tag == "focus1"
        assert r.max_forwards == 70
        assert r.top_via.sent_by == ("10.0.0.1", 5060)
        assert r.top_via.has_rport
        assert BRANCH_RE.fullmatch(r.top_via.branch or "")
    assert len({r.top_via.branch for r in built}) == 3
    # Only target refresh requests carry our Contact.
    assert not built[0].contacts
    assert str(dialog.create_request("INVITE").contacts[0]) == LOCAL_CONTACT


def test_ack_for_2xx() -> None:
    dialog, request, ok = confirmed_invite_dialog(manager(), record_route=RR_LOOSE)
    ack = wire(dialog.create_ack(ok, body=b"v=0\r\n", content_type="application/sdp"))
    assert ack.method == "ACK"
    assert ack.cseq.seq == request.cseq.seq
    assert ack.cseq.method == "ACK"
    assert str(ack.uri) == str(dialog.remote_target)
    assert uris(ack.route) == uris(list(dialog.route_set))
    assert ack.top_via.branch != request.top_via.branch
    assert BRANCH_RE.fullmatch(ack.top_via.branch or "")
    assert ack.to_addr == ok.to_addr
    assert not ack.contacts
    assert ack.body == b"v=0\r\n"
    # The ACK takes no CSeq number of its own.
    assert dialog.local_cseq == request.cseq.seq
    assert dialog.create_request("BYE").cseq.seq == request.cseq.seq + 1


def test_ack_for_2xx_to_reinvite_uses_the_reinvite_cseq() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    reinvite = wire(
        dialog.create_request("INVITE", body=b"v=0\r\n", content_type="application/sdp")
    )
    ok = respond(reinvite, 200, tag=None)
    dialog.receive_response(reinvite, ok)
    assert dialog.create_ack(ok).cseq.seq == reinvite.cseq.seq


def test_ack_refused_for_an_early_dialog_or_a_non_2xx() -> None:
    mgr = manager()
    request = invite(mgr)
    ringing = respond(request, 180, tag="f1")
    dialog = mgr.receive_response(request, ringing)
    assert dialog is not None
    with pytest.raises(LocalProtocolError, match="only a 2xx"):
        dialog.create_ack(ringing)
    ok = respond(request, 200, tag="f1")
    with pytest.raises(LocalProtocolError, match="SEND_ACK"):
        dialog.create_ack(ok)  # receive_response(ok) first


def test_remote_target_refresh_on_2xx_to_reinvite() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    reinvite = dialog.create_request("INVITE")
    dialog.receive_response(reinvite, respond(reinvite, 200, tag=None, contact=FOCUS_CONTACT_2))
    assert str(dialog.remote_target) == "sip:conf42@192.0.2.51:5070"
    options = dialog.create_request("OPTIONS")
    dialog.receive_response(options, respond(options, 200, tag=None, contact=FOCUS_CONTACT))
    # OPTIONS is no target refresh request.
    assert str(dialog.remote_target) == "sip:conf42@192.0.2.51:5070"
    assert str(dialog.create_request("BYE").uri) == "sip:conf42@192.0.2.51:5070"


def test_remote_target_refresh_on_incoming_reinvite() -> None:
    mgr = manager()
    dialog, _, _ = confirmed_invite_dialog(mgr)
    reinvite = peer_request(dialog, "INVITE", 5, contact=FOCUS_CONTACT_2)
    assert mgr.receive_request(reinvite) == (dialog, None)  # the TU answers
    assert str(dialog.remote_target) == "sip:conf42@192.0.2.51:5070"
    assert dialog.remote_cseq == 5
    ok = wire(
        dialog.create_response(reinvite, 200, body=b"v=0\r\n", content_type="application/sdp")
    )
    assert ok.to_addr.tag == dialog.local_tag
    assert str(ok.contacts[0]) == LOCAL_CONTACT
    assert dialog.state is DialogState.CONFIRMED
    ack = peer_request(dialog, "ACK", 5, contact=None)
    assert mgr.receive_request(ack) == (dialog, None)


def test_reinvite_glare() -> None:
    mgr = manager()
    dialog, _, _ = confirmed_invite_dialog(mgr)
    ours = dialog.create_request("INVITE")
    with pytest.raises(LocalProtocolError, match="already in progress"):
        dialog.create_request("INVITE")
    _, answer = mgr.receive_request(peer_request(dialog, "INVITE", 7))
    assert answer is not None
    assert answer.status == 491
    dialog.receive_response(ours, respond(ours, 200, tag=None))
    assert dialog.create_request("INVITE").cseq.method == "INVITE"


def test_sending_bye_terminates() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    bye = dialog.create_request("BYE")
    assert dialog.state is DialogState.TERMINATED
    dialog.receive_response(bye, respond(bye, 200, tag=None, contact=None))
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(LocalProtocolError, match="SEND_REQUEST"):
        dialog.create_request("OPTIONS")


def test_caller_may_bye_an_early_dialog() -> None:
    mgr = manager()
    request = invite(mgr)
    dialog = mgr.receive_response(request, respond(request, 180, tag="f1"))
    assert dialog is not None
    bye = wire(dialog.create_request("BYE"))
    assert bye.cseq.seq == request.cseq.seq + 1
    assert dialog.state is DialogState.TERMINATED
    # A 200 that crosses the BYE is still ACKed.
    ok = respond(request, 200, tag="f1")
    assert mgr.receive_response(request, ok) is dialog
    assert dialog.create_ack(ok).method == "ACK"


def test_receiving_bye_terminates_and_answers_200() -> None:
    mgr = manager()
    dialog, _, _ = confirmed_invite_dialog(mgr)
    bye = peer_request(dialog, "BYE", 2, contact=None)
    found, answer = mgr.receive_request(bye)
    assert found is dialog
    assert answer is not None
    assert answer.status == 200
    assert wire(answer).to_addr.tag == dialog.local_tag
    assert dialog.state is DialogState.TERMINATED
    # Anything later in that dialog is answered 481.
    _, late = mgr.receive_request(peer_request(dialog, "INFO", 3))
    assert late is not None
    assert late.status == 481


def test_unknown_dialog_gets_481_with_warning() -> None:
    mgr = manager()
    dialog, _, _ = confirmed_invite_dialog(mgr)
    stray = peer_request(dialog, "NOTIFY", 1)
    stray.headers.set("To", str(dialog.local_party.with_tag("not-ours")))
    found, answer = mgr.receive_request(stray)
    assert found is None
    assert answer is not None
    parsed = wire(answer)
    assert (parsed.status, parsed.reason) == (481, "Call/Transaction Does Not Exist")
    warning = parsed.headers.get("Warning") or ""
    assert re.fullmatch(r'399 10\.0\.0\.1:5060 "[^"]+"', warning)
    assert parsed.to_addr.tag == "not-ours"
    # A stray ACK is dropped, never answered.
    ack = peer_request(dialog, "ACK", 1, contact=None)
    ack.headers.set("To", str(dialog.local_party.with_tag("not-ours")))
    assert mgr.receive_request(ack) == (None, None)
    # Without a To tag the request is out of dialog: the TU's business.
    fresh = peer_request(dialog, "OPTIONS", 1)
    fresh.headers.set("To", "<sip:vidim@example.com>")
    assert mgr.receive_request(fresh) == (None, None)


def test_unknown_dialog_response_helper() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    answer = unknown_dialog_response(peer_request(dialog, "BYE", 9), warn_agent="vidim.example")
    assert answer.status == 481
    assert answer.headers.get("Warning") == '399 vidim.example "no dialog matches this request"'


def test_lower_cseq_is_answered_500() -> None:
    mgr = manager()
    dialog, _, _ = confirmed_invite_dialog(mgr)
    assert mgr.receive_request(peer_request(dialog, "OPTIONS", 10)) == (dialog, None)
    _, answer = mgr.receive_request(peer_request(dialog, "INFO", 9))
    assert answer is not None
    assert answer.status == 500
    assert "Warning" in answer.headers
    assert dialog.remote_cseq == 10
    assert dialog.state is DialogState.CONFIRMED


@pytest.mark.parametrize("status", [481, 408])
def test_481_or_408_to_an_in_dialog_request_terminates(status: int) -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    options = dialog.create_request("OPTIONS")
    dialog.receive_response(options, respond(options, status, tag=None, contact=None))
    assert dialog.state is DialogState.TERMINATED


def test_other_failures_to_in_dialog_requests_keep_the_dialog() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    info = dialog.create_request("INFO")
    dialog.receive_response(info, respond(info, 415, tag=None, contact=None))
    assert dialog.state is DialogState.CONFIRMED


def test_impossible_response_is_a_remote_error() -> None:
    mgr = manager()
    dialog, request, _ = confirmed_invite_dialog(mgr)
    late = respond(request, 486, tag="focus1", contact=None)
    with pytest.raises(RemoteProtocolError, match="RECV_FAILURE"):
        dialog.receive_response(request, late)
    assert dialog.state is DialogState.CONFIRMED


def test_caller_defined_core_headers_are_refused() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    with pytest.raises(LocalProtocolError, match="writes the CSeq header"):
        dialog.create_request("INFO", headers=[("CSeq", "99 INFO")])
    with pytest.raises(LocalProtocolError, match="create_ack"):
        dialog.create_request("ACK")
    assert dialog.local_cseq == 1


def test_local_via_factory() -> None:
    calls = []

    def factory() -> Via:
        calls.append(1)
        return Via("TCP", "vidim.example.com", 5060, (("branch", "z9hG4bKold"),))

    mgr = DialogManager(local_via=factory)
    assert mgr.warn_agent == "vidim"
    dialog, _, _ = confirmed_invite_dialog(mgr)
    via = dialog.create_request("OPTIONS").top_via
    assert via.transport == "TCP"
    assert via.branch != "z9hG4bKold"
    assert BRANCH_RE.fullmatch(via.branch or "")
    assert len(calls) == 2  # the INVITE and the OPTIONS


# -- UAS INVITE dialogs ------------------------------------------------------------


def incoming_invite() -> Request:
    return wire(
        Request(
            "INVITE",
            "sip:conf42@10.0.0.1:5060",
            [
                ("Via", "SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1"),
                ("Via", "SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKua"),
                ("Max-Forwards", "69"),
                ("Record-Route", "<sip:p1.example.com;lr>"),
                ("Record-Route", "<sip:p0.example.com;lr>"),
                ("From", '"Bob" <sip:bob@example.com>;tag=bob1'),
                ("To", "<sip:conf42@focus.example.com>"),
                ("Call-ID", "abc@192.0.2.7"),
                ("CSeq", "314 INVITE"),
                ("Contact", "<sip:bob@192.0.2.7:5060>"),
            ],
            b"v=0\r\n",
        )
    )


def test_uas_dialog_from_invite() -> None:
    mgr = manager()
    request = incoming_invite()
    assert mgr.receive_request(request) == (None, None)  # no To tag: a new call
    dialog = mgr.accept(request, local_contact=LOCAL_CONTACT, local_tag="conf-tag")
    assert dialog.role is DialogRole.UAS
    assert dialog.state is DialogState.EARLY
    assert dialog.id == DialogId("abc@192.0.2.7", "conf-tag", "bob1")
    # 12.1.1: route set in Record-Route order, target from Contact.
    assert uris(list(dialog.route_set)) == ["sip:p1.example.com;lr", "sip:p0.example.com;lr"]
    assert str(dialog.remote_target) == "sip:bob@192.0.2.7:5060"
    assert dialog.remote_cseq == 314
    assert dialog.local_cseq is None
    ringing = wire(dialog.create_response(request, 180))
    assert ringing.to_addr.tag == "conf-tag"
    assert [str(r.uri) for r in ringing.record_route] == uris(list(dialog.route_set))
    assert str(ringing.contacts[0]) == LOCAL_CONTACT
    assert dialog.state is DialogState.EARLY
    with pytest.raises(
        LocalProtocolError, match="SEND_BYE is not allowed for a UAS dialog in state EARLY"
    ):
        dialog.create_request("BYE")
    ok = wire(dialog.create_response(request, 200, body=b"v=0\r\n", content_type="application/sdp"))
    assert dialog.state is DialogState.CONFIRMED
    assert ok.to_addr.tag == "conf-tag"
    ack = wire(
        Request(
            "ACK",
            "sip:vidim@10.0.0.1:5060",
            [
                ("Via", "SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKack"),
                ("Route", "<sip:p0.example.com;lr>, <sip:p1.example.com;lr>"),
                ("From", '"Bob" <sip:bob@example.com>;tag=bob1'),
                ("To", "<sip:conf42@focus.example.com>;tag=conf-tag"),
                ("Call-ID", "abc@192.0.2.7"),
                ("CSeq", "314 ACK"),
            ],
        )
    )
    assert mgr.receive_request(ack) == (dialog, None)
    bye = wire(dialog.create_request("BYE"))
    assert bye.cseq.seq == 1
    assert str(bye.uri) == "sip:bob@192.0.2.7:5060"
    assert uris(bye.route) == ["sip:p1.example.com;lr", "sip:p0.example.com;lr"]
    assert bye.from_addr.tag == "conf-tag"
    assert bye.to_addr.tag == "bob1"
    assert dialog.state is DialogState.TERMINATED


def test_uas_failure_terminates_the_dialog() -> None:
    request = incoming_invite()
    dialog = Dialog.from_uas(request, new_tag(), LOCAL_CONTACT)
    busy = dialog.create_response(request, 486)
    assert busy.to_addr.tag == dialog.local_tag
    assert not busy.contacts
    assert dialog.state is DialogState.TERMINATED


def test_uas_dialog_needs_contact_in_the_invite() -> None:
    request = incoming_invite()
    request.headers.remove("Contact")
    with pytest.raises(RemoteProtocolError, match="without Contact"):
        Dialog.from_uas(request, new_tag(), LOCAL_CONTACT)


# -- subscriptions -----------------------------------------------------------------


def test_notify_before_200_creates_the_dialog() -> None:
    mgr = manager()
    request = subscribe(mgr)
    notify = notify_for(request, tag="n1", record_route=("<sip:p1.example.com;lr>",))
    dialog, answer = mgr.receive_request(notify)
    assert dialog is not None
    assert answer is not None
    assert answer.status == 200
    assert wire(answer).to_addr.tag == request.from_addr.tag
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.role is DialogRole.UAC
    assert dialog.id == DialogId(request.call_id, request.from_addr.tag or "", "n1")
    # RFC 6665 4.1.2.4: built as a UAS would, from the NOTIFY.
    assert uris(list(dialog.route_set)) == ["sip:p1.example.com;lr"]
    assert str(dialog.remote_target) == "sip:conf42@192.0.2.50:5070;transport=udp"
    (sub,) = dialog.subscriptions
    assert (sub.event, sub.id, sub.state, sub.expires) == (
        "conference",
        None,
        SubscriptionState.ACTIVE,
        600,
    )
    assert not dialog.has_invite_usage
    # The 202 arrives afterwards and lands in the same dialog.
    accepted = respond(request, 202, tag="n1", headers=[("Expires", "1800")])
    assert mgr.receive_response(request, accepted) is dialog
    assert sub.expires == 1800
    assert sub.state is SubscriptionState.ACTIVE
    assert len(mgr) == 1


def test_200_before_notify_creates_the_dialog() -> None:
    mgr = manager()
    request = subscribe(mgr)
    ok = respond(request, 200, tag="n1", headers=[("Expires", "3600")])
    dialog = mgr.receive_response(request, ok)
    assert dialog is not None
    assert dialog.state is DialogState.CONFIRMED
    (sub,) = dialog.subscriptions
    assert sub.state is SubscriptionState.NOTIFY_WAIT
    assert sub.expires == 3600
    found, answer = mgr.receive_request(notify_for(request, tag="n1", state="pending"))
    assert found is dialog
    assert answer is not None
    assert answer.status == 200
    assert sub.state is SubscriptionState.PENDING
    mgr.receive_request(notify_for(request, tag="n1", seq=2, state="active;expires=100"))
    assert (sub.state, sub.expires) == (SubscriptionState.ACTIVE, 100)


def test_failed_subscribe_creates_no_dialog() -> None:
    mgr = manager()
    request = subscribe(mgr)
    assert mgr.receive_response(request, respond(request, 489, tag="n1", contact=None)) is None
    assert len(mgr) == 0


def test_notify_terminated_ends_the_subscription_and_its_dialog() -> None:
    mgr = manager()
    request = subscribe(mgr)
    dialog, _ = mgr.receive_request(notify_for(request, tag="n1"))
    assert dialog is not None
    final = notify_for(
        request, tag="n1", seq=2, state="terminated;reason=noresource;retry-after=30"
    )
    found, answer = mgr.receive_request(final)
    assert found is dialog
    assert answer is not None
    assert answer.status == 200
    (sub,) = dialog.subscriptions
    assert sub.state is SubscriptionState.TERMINATED
    assert (sub.reason, sub.retry_after) == ("noresource", 30)
    assert dialog.state is DialogState.TERMINATED


def test_notify_matching_no_subscription() -> None:
    mgr = manager()
    request = subscribe(mgr)
    # Wrong event package: it creates no dialog, so the To tag matches nothing.
    _, answer = mgr.receive_request(notify_for(request, tag="n1", event="presence"))
    assert answer is not None
    assert answer.status == 481
    dialog, _ = mgr.receive_request(notify_for(request, tag="n1"))
    assert dialog is not None
    _, answer = mgr.receive_request(notify_for(request, tag="n1", seq=2, event="conference;id=7"))
    assert answer is not None
    assert answer.status == 481
    bad = notify_for(request, tag="n1", seq=3)
    bad.headers.remove("Subscription-State")
    _, answer = mgr.receive_request(bad)
    assert answer is not None
    assert answer.status == 400
    assert dialog.state is DialogState.CONFIRMED


def test_subscribe_inside_an_invite_dialog_shares_it() -> None:
    mgr = manager()
    dialog, _, _ = confirmed_invite_dialog(mgr, record_route=RR_LOOSE)
    sub_request = wire(
        dialog.create_request("SUBSCRIBE", headers=[("Event", "conference"), ("Expires", "600")])
    )
    assert sub_request.to_addr.tag == dialog.remote_tag
    assert str(sub_request.contacts[0]) == LOCAL_CONTACT
    assert uris(sub_request.route) == uris(list(dialog.route_set))
    mgr.receive_response(
        sub_request, respond(sub_request, 200, tag=None, headers=[("Expires", "600")])
    )
    (sub,) = dialog.subscriptions
    assert sub.expires == 600
    notify = peer_request(
        dialog,
        "NOTIFY",
        2,
        headers=[("Event", "conference"), ("Subscription-State", "active;expires=599")],
    )
    assert mgr.receive_request(notify)[0] is dialog
    assert sub.state is SubscriptionState.ACTIVE
    final = peer_request(
        dialog,
        "NOTIFY",
        3,
        headers=[("Event", "conference"), ("Subscription-State", "terminated;reason=timeout")],
    )
    _, answer = mgr.receive_request(final)
    assert answer is not None
    assert answer.status == 200
    assert sub.state is SubscriptionState.TERMINATED
    # The INVITE usage keeps the dialog alive (RFC 5057).
    assert dialog.state is DialogState.CONFIRMED
    bye = dialog.create_request("BYE")
    assert bye.cseq.seq == sub_request.cseq.seq + 1


def test_bye_ends_every_usage() -> None:
    mgr = manager()
    dialog, _, _ = confirmed_invite_dialog(mgr)
    dialog.create_request("SUBSCRIBE", headers=[("Event", "conference")])
    mgr.receive_request(peer_request(dialog, "BYE", 2, contact=None))
    assert all(s.state is SubscriptionState.TERMINATED for s in dialog.subscriptions)


def test_subscribe_without_event_is_refused() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    with pytest.raises(LocalProtocolError, match="Event"):
        dialog.create_request("SUBSCRIBE")
    assert dialog.local_cseq == 1


def test_uas_subscription_ends_with_our_terminated_notify() -> None:
    request = subscribe(manager())
    dialog = Dialog.from_uas(
        request, "notifier", "<sip:conf42@192.0.2.50:5070>", local_via=LOCAL_VIA
    )
    assert dialog.create_response(request, 202).status == 202
    assert dialog.state is DialogState.CONFIRMED
    (sub,) = dialog.subscriptions
    assert sub.notifier
    assert sub.expires == 3600
    dialog.create_request(
        "NOTIFY", headers=[("Event", "conference"), ("Subscription-State", "active;expires=3600")]
    )
    assert sub.state is SubscriptionState.ACTIVE
    dialog.create_request(
        "NOTIFY",
        headers=[("Event", "conference"), ("Subscription-State", "terminated;reason=noresource")],
    )
    assert dialog.state is DialogState.TERMINATED


def test_event_and_subscription_state_parsers() -> None:
    event = parse_event("conference;id=42;foo")
    assert (event.package, event.id) == ("conference", "42")
    assert event.matches("Conference", "42")
    assert not event.matches("conference", None)
    status = parse_subscription_state("terminated;reason=rejected;retry-after=5")
    assert (status.state, status.reason, status.retry_after) == (
        SubscriptionState.TERMINATED,
        "rejected",
        5,
    )
    assert parse_subscription_state("weird-state").state is SubscriptionState.PENDING
    assert str(parse_subscription_state("active;expires=60")) == "active;expires=60"


# -- persistence -------------------------------------------------------------------


def test_serialization_round_trip() -> None:
    mgr = manager()
    dialog, _, _ = confirmed_invite_dialog(mgr, record_route=RR_STRICT)
    dialog.create_request("SUBSCRIBE", headers=[("Event", "conference;id=1")])
    mgr.receive_request(peer_request(dialog, "INFO", 12))
    data = json.loads(json.dumps(dialog.to_dict()))
    assert data == dialog.to_dict()
    again = Dialog.from_dict(data)
    assert again.to_dict() == dialog.to_dict()
    assert again.id == dialog.id
    # The revived dialog carries on where the old one stopped.
    a = dialog.create_request("INFO")
    b = again.create_request("INFO")
    assert (a.uri, a.route, a.cseq, a.from_addr, a.to_addr) == (
        b.uri,
        b.route,
        b.cseq,
        b.from_addr,
        b.to_addr,
    )
    assert again.subscriptions[0].id == "1"
    # The manager too, keeping only live dialogs.
    restored = DialogManager.from_dict(json.loads(json.dumps(mgr.to_dict())), local_via=LOCAL_VIA)
    revived = restored.get(dialog.id)
    assert revived is not None
    assert revived.remote_cseq == 12
    _, answer = restored.receive_request(peer_request(dialog, "INFO", 11))
    assert answer is not None
    assert answer.status == 500


def test_from_dict_refuses_garbage() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    data = dialog.to_dict()
    data["remote_target"] = "not a uri"
    with pytest.raises(LocalProtocolError, match="not a stored dialog"):
        Dialog.from_dict(data)
    with pytest.raises(LocalProtocolError, match="not a stored dialog"):
        Dialog.from_dict({"format": 1})


# -- the state table ---------------------------------------------------------------

ALL_MOVES = list(itertools.product(DialogRole, DialogState, DialogInput))
NOT_IN_TABLE = [move for move in ALL_MOVES if move not in TRANSITIONS]


def test_table_has_both_kinds_of_moves() -> None:
    assert NOT_IN_TABLE
    assert len(NOT_IN_TABLE) < len(ALL_MOVES)
    # Nothing leaves TERMINATED.
    assert all(
        new is DialogState.TERMINATED
        for (_, old, _), new in TRANSITIONS.items()
        if old is DialogState.TERMINATED
    )


@pytest.mark.parametrize(("role", "state", "event"), NOT_IN_TABLE)
def test_every_move_not_in_the_table_is_refused(
    role: DialogRole, state: DialogState, event: DialogInput
) -> None:
    with pytest.raises(LocalProtocolError, match=f"{event.name} is not allowed"):
        next_dialog_state(role, state, event)


@pytest.mark.parametrize(("role", "state", "event"), sorted(TRANSITIONS, key=str))
def test_every_move_in_the_table_is_allowed(
    role: DialogRole, state: DialogState, event: DialogInput
) -> None:
    assert next_dialog_state(role, state, event) is TRANSITIONS[(role, state, event)]


# -- wire round trip ---------------------------------------------------------------


@pytest.mark.parametrize(
    "record_route", [(), RR_LOOSE, RR_STRICT], ids=["direct", "loose", "strict"]
)
@pytest.mark.parametrize(
    "method", ["OPTIONS", "INFO", "INVITE", "SUBSCRIBE", "REFER", "MESSAGE", "ACK", "BYE"]
)
def test_every_built_request_parses_back(record_route: tuple[str, ...], method: str) -> None:
    dialog, _, ok = confirmed_invite_dialog(manager(), record_route=record_route)
    extra = {
        "SUBSCRIBE": [("Event", "conference")],
        "REFER": [("Refer-To", "<sip:carol@example.com>")],
    }.get(method, [])
    built = (
        dialog.create_ack(ok)
        if method == "ACK"
        else dialog.create_request(method, headers=extra, body=b"hello", content_type="text/plain")
    )
    parsed = parse_message(built.to_bytes())
    assert isinstance(parsed, Request)
    assert parsed.method == built.method
    assert parsed.uri == built.uri
    assert parsed.route == built.route
    assert parsed.cseq == built.cseq
    assert parsed.body == built.body
    # Serialization adds Content-Length; everything else comes back as built.
    assert [h for h in parsed.headers if h[0] != "Content-Length"] == list(built.headers)
    assert not isinstance(parsed.uri, SipURI) or not parsed.uri.headers
    expected_routes = len(record_route)
    assert len(parsed.route) == expected_routes


def test_add_subscription_for_refer() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    refer = dialog.create_request("REFER", headers=[("Refer-To", "<sip:carol@example.com>")])
    dialog.add_subscription(Subscription("refer", str(refer.cseq.seq)))
    notify = peer_request(
        dialog,
        "NOTIFY",
        2,
        headers=[
            ("Event", f"refer;id={refer.cseq.seq}"),
            ("Subscription-State", "terminated;reason=noresource"),
        ],
    )
    assert dialog.receive_request(notify) is not None
    assert dialog.subscriptions[0].state is SubscriptionState.TERMINATED
    assert dialog.state is DialogState.CONFIRMED
    assert parse_name_addr(str(dialog.local_contact)) == dialog.local_contact


# -- edges -------------------------------------------------------------------------


def test_later_provisional_refreshes_the_early_target() -> None:
    mgr = manager()
    request = invite(mgr)
    dialog = mgr.receive_response(request, respond(request, 180, tag="f1"))
    assert dialog is not None
    dialog.receive_response(request, respond(request, 100, tag=None, contact=None))
    assert (
        mgr.receive_response(request, respond(request, 183, tag="f1", contact=FOCUS_CONTACT_2))
        is dialog
    )
    assert str(dialog.remote_target) == "sip:conf42@192.0.2.51:5070"
    mgr.receive_response(request, respond(request, 200, tag="f1", contact=FOCUS_CONTACT_2))
    # A 1xx overtaken by the 2xx cannot move a confirmed dialog.
    with pytest.raises(RemoteProtocolError, match="RECV_PROVISIONAL"):
        dialog.receive_response(request, respond(request, 180, tag="f1"))
    other = respond(request, 200, tag="someone-else")
    with pytest.raises(LocalProtocolError, match="another dialog"):
        dialog.receive_response(request, other)
    options = dialog.create_request("OPTIONS")
    with pytest.raises(LocalProtocolError, match="CSeq does not match"):
        dialog.receive_response(options, other)


def test_terminated_dialog_answers_481_but_200_to_a_crossing_bye() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    dialog.create_request("BYE")
    info = dialog.receive_request(peer_request(dialog, "INFO", 2))
    assert info is not None
    assert info.status == 481
    bye = dialog.receive_request(peer_request(dialog, "BYE", 3, contact=None))
    assert bye is not None
    assert bye.status == 200


def test_failed_subscribe_refresh_ends_a_subscription_only_dialog() -> None:
    mgr = manager()
    request = subscribe(mgr)
    dialog = mgr.receive_response(request, respond(request, 202, tag="n1"))
    assert dialog is not None
    mgr.receive_request(notify_for(request, tag="n1"))
    refresh = dialog.create_request(
        "SUBSCRIBE", headers=[("Event", "conference"), ("Expires", "3600")]
    )
    # A 500 leaves the subscription as it was (RFC 6665 4.1.2.2) ...
    dialog.receive_response(refresh, respond(refresh, 500, tag=None, contact=None))
    assert dialog.subscriptions[0].state is SubscriptionState.ACTIVE
    # ... a 404 ends it, and with it this dialog.
    refresh = dialog.create_request(
        "SUBSCRIBE", headers=[("Event", "conference"), ("Expires", "3600")]
    )
    dialog.receive_response(refresh, respond(refresh, 404, tag=None, contact=None))
    assert dialog.subscriptions[0].reason == "rejected"
    assert dialog.state is DialogState.TERMINATED


def test_rejected_subscribe_in_an_invite_dialog_leaves_the_dialog() -> None:
    dialog, _, _ = confirmed_invite_dialog(manager())
    sub_request = dialog.create_request("SUBSCRIBE", headers=[("Event", "conference")])
    dialog.receive_response(sub_request, respond(sub_request, 489, tag=None, contact=None))
    assert dialog.subscriptions[0].state is SubscriptionState.TERMINATED
    assert dialog.state is DialogState.CONFIRMED
    # Subscribing again starts a fresh usage.
    dialog.create_request("SUBSCRIBE", headers=[("Event", "conference")])
    (sub,) = dialog.subscriptions
    assert sub.state is SubscriptionState.NOTIFY_WAIT


def test_notifier_sees_subscribe_refresh() -> None:
    request = subscribe(manager())
    dialog = Dialog.from_uas(
        request, "notifier", "<sip:conf42@192.0.2.50:5070>", local_via=LOCAL_VIA
    )
    dialog.create_response(request, 200)
    refresh = wire(
        Request(
            "SUBSCRIBE",
            str(dialog.local_contact.uri),
            [
                ("Via", f"SIP/2.0/UDP 10.0.0.1:5060;branch={new_branch()}"),
                ("From", str(dialog.remote_party)),
                ("To", str(dialog.local_party)),
                ("Call-ID", dialog.call_id),
                ("CSeq", f"{request.cseq.seq + 1} SUBSCRIBE"),
                ("Contact", LOCAL_CONTACT),
                ("Event", "conference"),
                ("Expires", "0"),
            ],
        )
    )
    assert dialog.receive_request(refresh) is None  # the TU answers, then sends a NOTIFY
    assert dialog.subscriptions[0].expires == 0


def test_manager_refuses_duplicates_and_unknown_formats() -> None:
    mgr = manager()
    dialog, _, _ = confirmed_invite_dialog(mgr)
    with pytest.raises(LocalProtocolError, match="exists already"):
        mgr.add(dialog)
    data = dialog.to_dict()
    data["format"] = 99
    with pytest.raises(LocalProtocolError, match="unknown dialog format"):
        Dialog.from_dict(data)


def test_manager_answers_a_crossing_bye_200_and_other_requests_481() -> None:
    mgr = manager()
    dialog, _, _ = confirmed_invite_dialog(mgr)
    dialog.create_request("BYE")  # ours is out: the dialog has ended here
    found, answer = mgr.receive_request(peer_request(dialog, "BYE", 2, contact=None))
    assert found is dialog
    assert answer is not None
    assert answer.status == 200
    found, answer = mgr.receive_request(peer_request(dialog, "INFO", 3))
    assert found is None
    assert answer is not None
    assert answer.status == 481


def test_retrack_a_request_sent_again_with_credentials() -> None:
    # RFC 3261 22.2: the INVITE challenged (401) goes again with CSeq + 1; only
    # answers to the new one make dialogs, with the From and Contact written first.
    mgr = manager()
    first = invite(mgr)
    headers = [(n, "2 INVITE" if n == "CSeq" else v) for n, v in first.headers]
    again = wire(
        Request("INVITE", first.uri, [*headers, ("Authorization", "Digest x")], first.body)
    )
    mgr.retrack(again)
    assert mgr.receive_response(first, respond(first, 200, tag="old")) is None
    dialog = mgr.receive_response(again, respond(again, 200, tag="new"))
    assert dialog is not None
    assert dialog.local_cseq == 2
    assert str(dialog.local_contact.uri) == "sip:vidim@10.0.0.1:5060"
    assert mgr.forget(again) == []
    # A request never tracked is tracked from scratch.
    fresh = DialogManager(local_via=LOCAL_VIA)
    fresh.retrack(again)
    assert fresh.receive_response(again, respond(again, 200, tag="new")) is not None
