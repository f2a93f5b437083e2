"""The built-in focus on a virtual clock: creation, admission, SDP per mode, roster, ending."""

from __future__ import annotations

import re

import pytest
from focus_peers import (
    FOCUS,
    UNTRUSTED_HOST,
    AllocatorSide,
    FocusNode,
    Net,
    Softphone,
    baresip_offer,
    focus_world,
    make_conference,
    pjsua2_offer,
    predictable_config,
)

from vidim.focus import (
    ConferenceCreated,
    ConferenceEnded,
    ConferenceFocus,
    FocusConfig,
    InviteesAdded,
    KeyframeWanted,
    MediaPlanChanged,
    ParticipantAdmitted,
    ParticipantLeft,
    ParticipantRefused,
)
from vidim.focus.keyframes import MEDIA_CONTROL_TYPE, picture_fast_update_body
from vidim.sdp import media_summary
from vidim.sip import Address
from vidim.vocabulary import Mode

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
CAROL = "sip:carol@example.com"
DAVE = "sip:dave@example.com"
ERIN = "sip:erin@example.com"
WARN_NOT_INVITED = '399 127.0.0.1:5080 "not invited to this conference"'


def of_type(node: FocusNode, kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in node.events if isinstance(e, kind)]


def created(
    entries: list[tuple[str, Mode]] | None = None, *, config: FocusConfig | None = None
) -> tuple[Net, ConferenceFocus, FocusNode, AllocatorSide]:
    """A world with one conference created by the allocator side."""
    net, focus, node, allocator = focus_world(config=config)
    conference = make_conference(
        entries
        or [(ALICE, Mode.VIDEO), (BOB, Mode.VIDEO), (CAROL, Mode.AUDIO), (DAVE, Mode.WATCH),
            (ERIN, Mode.CHAT)]
    )  # fmt: skip
    allocator.create(conference, net.now)
    net.advance()
    assert allocator.conference_uri is not None
    return net, focus, node, allocator


def phone(net: Net, user: str, port: int, offer: bytes, host: str = "127.0.0.1") -> Softphone:
    softphone = Softphone(user, Address(host, port), offer)
    net.add(softphone)
    return softphone


def join(net: Net, allocator: AllocatorSide, uri: str, port: int, offer: bytes) -> Softphone:
    user = uri.removeprefix("sip:").split("@")[0]
    softphone = phone(net, user, port, offer)
    softphone.call(allocator.join_uri(uri), net.now)
    net.advance()
    return softphone


# -- creation ---------------------------------------------------------------------------


def test_factory_invite_creates_a_conference() -> None:
    net, focus, node, allocator = created()
    assert allocator.invite is not None
    response = allocator.final(allocator.invite)
    assert response.status == 200
    assert re.fullmatch(r"sip:conf-[0-9a-f]{32}@127\.0\.0\.1:5080", allocator.conference_uri or "")
    contact = response.contacts[0]
    assert contact.has_param("isfocus")
    # The anchor carries no media: every offered line is rejected.
    assert [(kind, port) for kind, port, _ in media_summary(response.body)] == [("audio", 0)]
    (event,) = of_type(node, ConferenceCreated)
    assert event.conference_uri == allocator.conference_uri
    assert event.invitees == (ALICE, BOB, CAROL, DAVE, ERIN)
    assert [s.uri for s in focus.conferences()] == [allocator.conference_uri]
    # The ACK arrived: no retransmission of the 200 later.
    net.advance(40)
    assert len(net.sent(FOCUS, "SIP/2.0 200")) == 1


def test_two_conferences_get_different_unguessable_uris() -> None:
    net, focus, _, first = created()
    second = AllocatorSide(Address("127.0.0.1", 5071))
    net.add(second)
    second.create(make_conference([(ALICE, Mode.AUDIO), (BOB, Mode.AUDIO)]), net.now)
    net.advance()
    assert second.conference_uri is not None
    assert second.conference_uri != first.conference_uri
    assert len(focus.conferences()) == 2


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status", "warning"),
    [
        (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", "application/sdp", None, 400,
         "no application/resource-lists+xml part"),
        (b"<resource-lists", "application/resource-lists+xml", None, 400, ""),
        (b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list/></resource-lists>',
         "application/resource-lists+xml", None, 400, "names nobody"),
        (b"hello", "text/html", None, 415, "unsupported body type"),
        (b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n", "multipart/mixed", None, 400,
         "without boundary"),
        (None, None, [("Require", "recipient-list-invite, foo")], 420, "unsupported extension"),
    ],
)  # fmt: skip
def test_factory_invite_without_a_usable_list_is_refused(
    body: bytes | None,
    content_type: str | None,
    headers: list[tuple[str, str]] | None,
    status: int,
    warning: str,
) -> None:
    net, focus, _node, allocator = focus_world()
    invite = allocator.create(
        make_conference([(ALICE, Mode.VIDEO), (BOB, Mode.VIDEO)]),
        net.now,
        body=body,
        content_type=content_type,
        headers=headers,
    )
    net.advance()
    response = allocator.final(invite)
    assert response.status == status
    assert warning in (response.headers.get("warning") or "")
    assert focus.conferences() == []


def test_factory_invite_with_bad_sdp_gets_488() -> None:
    net, focus, _, allocator = focus_world()
    conference = make_conference([(ALICE, Mode.VIDEO), (BOB, Mode.VIDEO)])
    from vidim.allocator.profiles import FocusProfile, focus_request
    from vidim.resource_lists import RESOURCE_LISTS_TYPE
    from vidim.sip import build_multipart

    good = focus_request(FocusProfile.RFC4579, conference, address="127.0.0.1", session_id=1)
    list_body = good.body.split(b"application/resource-lists+xml\r\n\r\n", 1)[1].rsplit(
        b"\r\n--", 1
    )[0]
    ctype, body = build_multipart(
        [("application/sdp", b"v=1\r\nnonsense\r\n"), (RESOURCE_LISTS_TYPE, list_body)]
    )
    invite = allocator.create(conference, net.now, body=body, content_type=ctype)
    net.advance()
    assert allocator.final(invite).status == 488
    assert focus.conferences() == []


def test_options_in_and_out_of_dialog() -> None:
    net, _, _, allocator = created()
    keepalive = allocator.in_dialog("OPTIONS", net.now)
    net.advance()
    assert allocator.final(keepalive).status == 200
    probe = AllocatorSide(Address("127.0.0.1", 5099))
    net.add(probe)
    from vidim.sip import Request, new_branch

    options = Request(
        "OPTIONS",
        "sip:conference-factory@127.0.0.1:5080",
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5099;branch={new_branch()}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:probe@example.com>;tag=1"),
            ("To", "<sip:conference-factory@127.0.0.1:5080>"),
            ("Call-ID", "probe-1"),
            ("CSeq", "1 OPTIONS"),
        ],
    )
    probe.send(options, net.now)
    net.advance()
    answer = probe.final(options)
    assert answer.status == 200
    assert "SUBSCRIBE" in (answer.headers.get("allow") or "")


# -- admission ------------------------------------------------------------------------------


def test_invitee_with_its_key_is_admitted() -> None:
    net, focus, node, allocator = created()
    bob = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    assert bob.final(bob.invite).status == 200  # type: ignore[arg-type]
    (event,) = of_type(node, ParticipantAdmitted)
    assert (event.uri, event.mode, event.how) == (BOB, Mode.VIDEO, "key")
    assert event.conference_uri == allocator.conference_uri
    assert focus.conferences()[0].connected == (BOB,)
    # The participant's dialog has the conference URI as its remote target.
    assert bob.dialog is not None
    assert str(bob.dialog.remote_target) == allocator.conference_uri


def test_trusted_proxy_asserted_identity_admits_without_key() -> None:
    net, _, node, allocator = created()
    carol = phone(net, "carol", 6010, pjsua2_offer(6010))
    invite = carol.call(
        allocator.conference_uri or "", net.now, headers=[("P-Asserted-Identity", f"<{CAROL}>")]
    )
    net.advance()
    assert carol.final(invite).status == 200
    (event,) = of_type(node, ParticipantAdmitted)
    assert (event.uri, event.mode, event.how) == (CAROL, Mode.AUDIO, "asserted")


def test_asserted_identity_from_an_untrusted_source_is_not_believed() -> None:
    net, _, node, allocator = created()
    carol = phone(net, "carol", 6010, pjsua2_offer(6010), host=UNTRUSTED_HOST)
    invite = carol.call(
        allocator.conference_uri or "", net.now, headers=[("P-Asserted-Identity", f"<{CAROL}>")]
    )
    net.advance()
    response = carol.final(invite)
    assert response.status == 403
    assert response.headers.get("warning") == WARN_NOT_INVITED
    assert of_type(node, ParticipantAdmitted) == []


@pytest.mark.parametrize("key", [None, "wrong-key", "key-1-bo", "KEY-1-BOB", "key-1-bob%00"])
def test_strangers_and_wrong_keys_get_403(key: str | None) -> None:
    net, focus, node, allocator = created()
    mallory = phone(net, "mallory", 6020, baresip_offer(6020, 6022), host=UNTRUSTED_HOST)
    uri = allocator.conference_uri or ""
    invite = mallory.call(uri if key is None else f"{uri};key={key}", net.now)
    net.advance()
    response = mallory.final(invite)
    assert response.status == 403
    assert response.headers.get("warning") == WARN_NOT_INVITED
    (refused,) = of_type(node, ParticipantRefused)
    assert (refused.status, refused.reason) == (403, "not invited to this conference")
    assert focus.ports_in_use == frozenset()


def test_unknown_conference_gets_404() -> None:
    net, _, node, allocator = created()
    bob = phone(net, "bob", 6000, baresip_offer(6000, 6002))
    real = allocator.join_uri(BOB)
    forged = re.sub(r"conf-[0-9a-f]+", "conf-" + "0" * 32, real)
    invite = bob.call(forged, net.now)
    net.advance()
    assert bob.final(invite).status == 404
    assert of_type(node, ParticipantRefused)[0].conference_uri is None


def test_chat_participant_calling_in_gets_488() -> None:
    net, _, _, allocator = created()
    erin = join(net, allocator, ERIN, 6030, baresip_offer(6030, 6032))
    response = erin.final(erin.invite)  # type: ignore[arg-type]
    assert response.status == 488
    assert "chat participants take part by IM" in (response.headers.get("warning") or "")


def test_invite_without_usable_audio_gets_488_and_frees_ports() -> None:
    net, focus, _, allocator = created()
    offer = baresip_offer(6000, 6002).replace(
        b"m=audio 6000 RTP/AVP 96 0 8 101", b"m=audio 6000 RTP/AVP 3"
    )  # GSM only: a codec the mixer does not have
    bob = join(net, allocator, BOB, 6000, offer)
    assert bob.final(bob.invite).status == 488  # type: ignore[arg-type]
    assert focus.ports_in_use == frozenset()


# -- SDP per mode and ports ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "offer", "expected"),
    [
        (BOB, baresip_offer(6000, 6002), [("audio", 40000, "sendrecv"), ("video", 40002, "sendrecv")]),
        (CAROL, baresip_offer(6000, 6002), [("audio", 40000, "sendrecv"), ("video", 0, "sendrecv")]),
        (DAVE, baresip_offer(6000, 6002), [("audio", 40000, "sendonly"), ("video", 40002, "sendonly")]),
        (BOB, pjsua2_offer(6000), [("audio", 40000, "sendrecv"), ("video", 0, "sendrecv")]),
        (CAROL, pjsua2_offer(6000), [("audio", 40000, "sendrecv"), ("video", 0, "sendrecv")]),
        (DAVE, pjsua2_offer(6000), [("audio", 40000, "sendonly"), ("video", 0, "sendrecv")]),
    ],
)  # fmt: skip
def test_answer_per_mode(uri: str, offer: bytes, expected: list[tuple[str, int, str]]) -> None:
    net, focus, _, allocator = created()
    softphone = join(net, allocator, uri, 6000, offer)
    response = softphone.final(softphone.invite)  # type: ignore[arg-type]
    assert response.status == 200
    assert [(k, p) for k, p, _ in media_summary(response.body)] == [(k, p) for k, p, _ in expected]
    # A rejected line's direction is meaningless; compare the ones that flow.
    assert [d for _, p, d in media_summary(response.body) if p] == [d for _, p, d in expected if p]
    assert focus.ports_in_use == frozenset(p for _, p, _ in expected if p)


def test_watch_participant_cannot_raise_its_mode_by_offering_sendrecv() -> None:
    net, _, _, allocator = created()
    dave = join(net, allocator, DAVE, 6000, baresip_offer(6000, 6002, direction="sendrecv"))
    summary = media_summary(dave.answer())
    assert [d for _, _, d in summary] == ["sendonly", "sendonly"]


def test_ports_are_allocated_per_stream_and_released_on_bye() -> None:
    net, focus, _, allocator = created()
    bob = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    carol = join(net, allocator, CAROL, 6010, pjsua2_offer(6010))
    assert focus.ports_in_use == {40000, 40002, 40004}
    bob.hang_up(net.now)
    net.advance()
    assert focus.ports_in_use == {40004}
    assert carol.dialog is not None


def test_port_range_exhausted_gets_503() -> None:
    net, focus, _node, allocator = created(config=predictable_config(rtp_ports=(40000, 40003)))
    join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    carol = join(net, allocator, CAROL, 6010, pjsua2_offer(6010))
    response = carol.final(carol.invite)  # type: ignore[arg-type]
    assert response.status == 503
    assert "no media ports left" in (response.headers.get("warning") or "")
    assert focus.ports_in_use == {40000, 40002}


def test_media_plan_follows_modes() -> None:
    net, focus, node, allocator = created()
    join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    join(net, allocator, CAROL, 6010, pjsua2_offer(6010))
    join(net, allocator, DAVE, 6020, baresip_offer(6020, 6022))
    plan = of_type(node, MediaPlanChanged)[-1].plan
    assert plan == focus.forwarding_plan
    routes = plan.as_dict()
    # Audio is mixed: every audio port goes to the mixer, none is forwarded.
    for port in (40000, 40001, 40004, 40005, 40006, 40007):
        assert routes[port].terminated
        assert routes[port].destinations == ()
    [mix] = plan.mixes
    members = {m.participant: (m.mode, m.port, m.codec, m.sends, m.receives) for m in mix.members}
    assert members == {
        BOB: (Mode.VIDEO, 40000, "pcmu/8000/1", True, True),
        CAROL: (Mode.AUDIO, 40004, "pcmu/8000/1", True, True),
        DAVE: (Mode.WATCH, 40006, "pcmu/8000/1", False, True),  # watch: its audio is not taken
    }
    # Video is switched: bob's and dave's video ports go to the switch (carol has none).
    for port in (40002, 40003, 40008, 40009):
        assert routes[port].terminated
        assert routes[port].destinations == ()
    [switch] = plan.switches
    viewers = {m.participant: (m.mode, m.port, m.codec.name, m.sends) for m in switch.members}
    assert viewers == {
        BOB: (Mode.VIDEO, 40002, "vp8", True),
        DAVE: (Mode.WATCH, 40008, "vp8", False),  # watch: its video is not taken
    }


def test_the_first_video_participants_codec_is_the_conferences() -> None:
    """Video is forwarded, not transcoded: later phones get the first one's codec."""
    net, focus, _node, allocator = created()
    h264_only = re.sub(rb"m=video (\d+) RTP/AVP 97 98 99", rb"m=video \1 RTP/AVP 98",
                       baresip_offer(6000, 6002))  # fmt: skip
    join(net, allocator, BOB, 6000, h264_only)
    join(net, allocator, DAVE, 6020, baresip_offer(6020, 6022))  # offers VP8 and H.264
    [switch] = focus.forwarding_plan.switches
    codecs = {m.participant: (m.codec.name, m.codec.payload) for m in switch.members}
    assert codecs == {BOB: ("h264", 98), DAVE: ("h264", 98)}  # not the focus's own first, VP8


def test_a_keyframe_asked_by_sip_info_goes_in_the_participants_dialog() -> None:
    """RFC 5168: for a phone that negotiated no RTCP PLI/FIR; nothing for a call gone."""
    net, focus, _node, allocator = created()
    bob = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    [switch] = focus.forwarding_plan.switches
    focus.request_keyframe(switch.conference, BOB, net.now)
    focus.request_keyframe(switch.conference, CAROL, net.now)  # not in the conference
    focus.request_keyframe("sip:nobody@focus", BOB, net.now)
    net.advance()
    [info] = [r for r in bob.requests if r.method == "INFO"]
    assert bob.dialog is not None
    assert info.call_id == bob.dialog.id.call_id
    assert info.headers.get("content-type") == "application/media_control+xml"
    assert b"<picture_fast_update/>" in info.body


# -- roster ---------------------------------------------------------------------------------


def test_subscribe_gets_full_then_partial_notifies() -> None:
    net, _, _, allocator = created()
    subscribe = allocator.subscribe(net.now)
    net.advance()
    assert allocator.final(subscribe).status == 200
    assert [d.version for d in allocator.roster.documents] == [1]
    assert allocator.roster.documents[0].state == "full"
    bob = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    join(net, allocator, CAROL, 6010, pjsua2_offer(6010))
    docs = allocator.roster.documents
    assert [(d.version, d.state) for d in docs] == [(1, "full"), (2, "partial"), (3, "partial")]
    user = docs[1].users[0]
    assert (user.entity, user.status, user.mode, user.media) == (
        BOB,
        "connected",
        Mode.VIDEO,
        ("audio", "video"),
    )
    assert docs[2].users[0].media == ("audio",)
    bob.hang_up(net.now)
    net.advance()
    assert allocator.roster.documents[-1].version == 4
    view = allocator.roster.view
    assert view is not None
    assert {u.entity: u.status for u in view.users} == {BOB: "disconnected", CAROL: "connected"}
    assert view.user_count == 1
    assert all(s.startswith("active;expires=") for s in allocator.roster.states)


def test_subscribe_from_untrusted_source_without_key_is_403_and_wrong_event_489() -> None:
    net, _, _, allocator = created()
    outsider = AllocatorSide(Address(UNTRUSTED_HOST, 5070))
    net.add(outsider)
    outsider.conference_uri = allocator.conference_uri
    refused = outsider.subscribe(net.now)
    net.advance()
    assert outsider.final(refused).status == 403
    from vidim.sip import Request, new_branch

    presence = Request(
        "SUBSCRIBE",
        allocator.conference_uri or "",
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch={new_branch()}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:vidim@example.com>;tag=77"),
            ("To", f"<{allocator.conference_uri}>"),
            ("Call-ID", "presence-1"),
            ("CSeq", "1 SUBSCRIBE"),
            ("Contact", "<sip:vidim@127.0.0.1:5070>"),
            ("Event", "presence"),
        ],
    )
    allocator.send(presence, net.now)
    net.advance()
    assert allocator.final(presence).status == 489


def test_subscription_expires_with_a_terminated_notify() -> None:
    net, _, _, allocator = created()
    allocator.subscribe(net.now, expires=60)
    net.advance(61)
    assert allocator.roster.states[-1] == "terminated;reason=timeout"


# -- ending -------------------------------------------------------------------------------


def test_participant_bye_and_last_one_left_ends_the_conference() -> None:
    net, focus, node, allocator = created()
    allocator.subscribe(net.now)
    net.advance()
    bob = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    carol = join(net, allocator, CAROL, 6010, pjsua2_offer(6010))
    bye = bob.hang_up(net.now)
    net.advance()
    assert bob.final(bye).status == 200
    assert [e.uri for e in of_type(node, ParticipantLeft)] == [BOB]
    assert focus.conferences()  # carol is still there
    carol.hang_up(net.now)
    net.advance()
    (ended,) = of_type(node, ConferenceEnded)
    assert ended.reason == "the last participant left"
    # The anchor gets BYE, the subscriber the final NOTIFY, nobody else a BYE.
    assert len(allocator.received("BYE")) == 1
    assert allocator.roster.states[-1] == "terminated;reason=noresource"
    view = allocator.roster.view
    assert view is not None
    assert view.active is False
    assert all(u.status == "disconnected" for u in view.users)
    assert focus.conferences() == []
    assert focus.ports_in_use == frozenset()
    assert focus.forwarding_plan.routes == ()
    assert of_type(node, MediaPlanChanged)[-1].plan.routes == ()


def test_anchor_bye_ends_the_conference_with_bye_to_everyone() -> None:
    net, focus, node, allocator = created()
    allocator.subscribe(net.now)
    net.advance()
    bob = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    carol = join(net, allocator, CAROL, 6010, pjsua2_offer(6010))
    bye = allocator.in_dialog("BYE", net.now)
    net.advance()
    assert allocator.final(bye).status == 200
    assert len(bob.received("BYE")) == 1
    assert len(carol.received("BYE")) == 1
    assert allocator.received("BYE") == []  # the allocator ended it: no BYE back
    assert allocator.roster.states[-1] == "terminated;reason=noresource"
    (ended,) = of_type(node, ConferenceEnded)
    assert ended.reason == "the allocator ended the conference"
    assert focus.ports_in_use == frozenset()
    # The participants answered the BYEs: nothing is retransmitted afterwards.
    before = len(net.log)
    net.advance(60)
    assert len(net.log) == before
    # The conference URI is gone.
    late = phone(net, "bob2", 6100, baresip_offer(6100, 6102))
    invite = late.call(allocator.join_uri(BOB), net.now)
    net.advance()
    assert late.final(invite).status == 404


def test_ttl_ends_the_conference() -> None:
    net, focus, node, allocator = created(config=predictable_config(conference_ttl=60.0))
    bob = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    net.advance(59)
    assert focus.conferences()
    net.advance(2)
    assert of_type(node, ConferenceEnded)[0].reason == "the conference time limit was reached"
    assert len(bob.received("BYE")) == 1
    assert len(allocator.received("BYE")) == 1


def test_end_all_byes_every_participant_and_anchor() -> None:
    net, focus, node, allocator = created()
    second = AllocatorSide(Address("127.0.0.1", 5071))
    net.add(second)
    second.create(make_conference([(ALICE, Mode.AUDIO), (BOB, Mode.AUDIO)]), net.now)
    net.advance()
    bob = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    focus.end_all(net.now)
    net.advance()
    assert len(bob.received("BYE")) == 1
    assert len(allocator.received("BYE")) == 1
    assert len(second.received("BYE")) == 1
    assert len(of_type(node, ConferenceEnded)) == 2
    assert focus.conferences() == []


def test_calling_again_replaces_the_previous_call() -> None:
    net, focus, node, allocator = created()
    first = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    second = join(net, allocator, BOB, 6100, baresip_offer(6100, 6102))
    assert second.final(second.invite).status == 200  # type: ignore[arg-type]
    assert len(first.received("BYE")) == 1
    assert focus.conferences()[0].connected == (BOB,)
    assert focus.ports_in_use == {40004, 40006}
    assert [e.reason for e in of_type(node, ParticipantLeft)] == ["replaced by a new call"]


# -- updates ---------------------------------------------------------------------------------


def test_reinvite_on_the_anchor_adds_invitees() -> None:
    net, _, node, allocator = created([(ALICE, Mode.VIDEO), (BOB, Mode.VIDEO)])
    frank = "sip:frank@example.com"
    updated = make_conference([(ALICE, Mode.VIDEO), (BOB, Mode.VIDEO), (frank, Mode.AUDIO)])
    # The allocator keeps the credentials of the invitees it had.
    assert allocator.conference is not None
    for old, new in zip(allocator.conference.participants, updated.participants, strict=False):
        new.credential = old.credential
    reinvite = allocator.reinvite(updated, net.now)
    net.advance()
    assert allocator.final(reinvite).status == 200
    (added,) = of_type(node, InviteesAdded)
    assert added.invitees == (frank,)
    joined = join(net, allocator, frank, 6040, baresip_offer(6040, 6042))
    assert joined.final(joined.invite).status == 200  # type: ignore[arg-type]
    assert [(k, p) for k, p, _ in media_summary(joined.answer())] == [
        ("audio", 40000),
        ("video", 0),
    ]


def test_participant_hold_by_reinvite_changes_the_plan() -> None:
    net, focus, _node, allocator = created()
    bob = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    join(net, allocator, CAROL, 6010, pjsua2_offer(6010))

    def audio(uri: str) -> tuple[bool, bool]:
        [mix] = focus.forwarding_plan.mixes
        member = next(m for m in mix.members if m.participant == uri)
        return member.sends, member.receives

    assert audio(BOB) == (True, True)
    reinvite = bob.reinvite(baresip_offer(6000, 6002, direction="sendonly"), net.now)
    net.advance()
    response = bob.final(reinvite)
    assert response.status == 200
    assert [d for _, _, d in media_summary(response.body)] == ["recvonly", "recvonly"]
    # Same ports; the mix no longer goes to bob (on hold), bob's audio still feeds it.
    assert focus.ports_in_use == {40000, 40002, 40004}
    assert audio(BOB) == (True, False)
    assert audio(CAROL) == (True, True)


def test_unacknowledged_200_is_retransmitted_then_the_call_is_dropped() -> None:
    net, focus, node, allocator = created()
    allocator.subscribe(net.now)
    net.advance()
    join(net, allocator, CAROL, 6000, pjsua2_offer(6000))
    dave = phone(net, "dave", 6010, pjsua2_offer(6010))
    net.drop.append(lambda source, _, line: source == dave.address and line.startswith("ACK"))
    dave.call(allocator.join_uri(DAVE), net.now)
    net.advance(40)
    oks = [line for _, s, d, line in net.log if s == FOCUS and d == dave.address and "200" in line]
    # T1, 2T1, 4T1, then every T2 (4 s) until 64*T1 = 32 s: 1 + 10 retransmissions.
    assert len(oks) == 11
    left = [e for e in of_type(node, ParticipantLeft) if e.uri == DAVE]
    assert [e.reason for e in left] == ["no ACK for the 200"]
    assert len(dave.received("BYE")) == 1
    assert focus.conferences()[0].connected == (CAROL,)
    assert allocator.roster.view is not None
    assert {u.entity: u.status for u in allocator.roster.view.users}[DAVE] == "disconnected"


def test_subscription_refresh_and_unsubscribe() -> None:
    net, _, _, allocator = created()
    subscribe = allocator.subscribe(net.now, expires=600)
    net.advance()
    (dialog,) = allocator.dialogs.dialogs_of(subscribe)
    refresh = allocator.send(
        dialog.create_request("SUBSCRIBE", headers=[("Event", "conference"), ("Expires", "300")]),
        net.now,
    )
    net.advance()
    assert allocator.final(refresh).headers.get("expires") == "300"
    # A refresh brings full state again, with the next version.
    assert [(d.version, d.state) for d in allocator.roster.documents] == [(1, "full"), (2, "full")]
    unsubscribe = allocator.send(
        dialog.create_request("SUBSCRIBE", headers=[("Event", "conference"), ("Expires", "0")]),
        net.now,
    )
    net.advance()
    assert allocator.final(unsubscribe).status == 200
    assert allocator.roster.states[-1] == "terminated;reason=timeout"
    net.advance(400)  # no expiry NOTIFY for a subscription that is gone
    assert len(allocator.roster.states) == 3


def test_fetch_with_expires_zero_gets_one_terminated_notify() -> None:
    net, _, _, allocator = created()
    bob = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    assert bob.dialog is not None
    allocator.subscribe(net.now, expires=0)
    net.advance()
    assert allocator.roster.states == ["terminated;reason=timeout"]
    view = allocator.roster.view
    assert view is not None
    assert [(u.entity, u.status) for u in view.users] == [(BOB, "connected")]


def test_an_opus_only_phone_is_answered_with_the_focus_s_own_opus_parameters() -> None:
    """RFC 7587: the answer says the focus sends and prefers mono, not the offer's stereo."""
    net, focus, _node, allocator = created()
    opus_only = re.sub(rb"m=audio (\d+) RTP/AVP 96 0 8 101", rb"m=audio \1 RTP/AVP 96 101",
                       baresip_offer(6000, 6002))  # fmt: skip
    bob = join(net, allocator, BOB, 6000, opus_only)
    answer = bob.answer().decode()
    assert "a=rtpmap:96 opus/48000/2" in answer
    assert "a=fmtp:96 stereo=0;sprop-stereo=0" in answer
    assert "a=ptime:20" in answer  # the mixer's packets: what it prefers to get too
    assert "sprop-stereo=1" not in answer
    [mix] = focus.forwarding_plan.mixes
    assert [m.codec for m in mix.members] == ["opus/48000/2"]


def test_an_opus_phones_maxaveragebitrate_reaches_its_mix_and_its_record() -> None:
    net, focus, _node, allocator = created()
    offer = re.sub(rb"m=audio (\d+) RTP/AVP 96 0 8 101", rb"m=audio \1 RTP/AVP 96 101",
                   baresip_offer(6000, 6002))  # fmt: skip
    offer = offer.replace(b"a=fmtp:96 stereo=1;sprop-stereo=1",
                          b"a=fmtp:96 stereo=1;maxaveragebitrate=12000")  # fmt: skip
    join(net, allocator, BOB, 6000, offer)
    [mix] = focus.forwarding_plan.mixes
    assert [(m.codec, m.max_bit_rate) for m in mix.members] == [("opus/48000/2", 12000)]
    [conference] = focus.conferences()
    again = ConferenceFocus(focus.config)
    again.restore(focus.snapshot(conference.uri.split(":")[1].split("@")[0]), net.now)
    [restored] = again.forwarding_plan.mixes
    assert restored.members[0].max_bit_rate == 12000


def test_a_participants_info_asking_for_a_keyframe_is_reported_and_answered() -> None:
    """RFC 5168 the other way: a phone without RTCP feedback asks the focus for a keyframe."""
    net, focus, node, allocator = created()
    bob = join(net, allocator, BOB, 6000, baresip_offer(6000, 6002))
    assert bob.dialog is not None
    asks = bob.send(bob.dialog.create_request("INFO", body=picture_fast_update_body(),
                                              content_type=MEDIA_CONTROL_TYPE), net.now)  # fmt: skip
    other = bob.send(bob.dialog.create_request("INFO", body=b"Signal=5\r\n",
                                               content_type="application/dtmf-relay"), net.now)  # fmt: skip
    net.advance()
    assert bob.final(asks).status == 200
    assert bob.final(other).status == 200
    [conference] = focus.conferences()
    assert of_type(node, KeyframeWanted) == [KeyframeWanted(conference_uri=conference.uri, uri=BOB)]
