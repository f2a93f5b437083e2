"""What the built-in focus refuses (issue 18, docs/security.md): who may create a conference."""

from __future__ import annotations

from focus_peers import (
    UNTRUSTED_HOST,
    AllocatorSide,
    Softphone,
    baresip_offer,
    focus_world,
    make_conference,
)

from vidim.focus import ConferenceFocus, FocusConfig, MessageIgnored, MessageNotSent
from vidim.sip import Address, Request, Response
from vidim.vocabulary import Mode, parse_networks

BOB = "sip:bob@example.com"


def warning_of(response: Response) -> str:
    return response.headers.get("warning") or ""


def test_factory_invite_from_an_untrusted_source_is_403_and_creates_nothing() -> None:
    net, focus, node, _ = focus_world()
    outsider = AllocatorSide(Address(UNTRUSTED_HOST, 5070))
    net.add(outsider)
    invite = outsider.create(make_conference([(BOB, Mode.VIDEO)]), net.now)
    net.advance()
    refused = outsider.final(invite)
    assert refused.status == 403
    assert "only the conference allocator may create conferences" in warning_of(refused)
    assert UNTRUSTED_HOST in warning_of(refused)
    assert focus.conferences() == []
    assert focus.ports_in_use == frozenset()
    assert not [m for m in outsider.responses if m.status == 200]
    assert any(isinstance(e, MessageIgnored) and "allocator" in e.reason for e in node.events)


def test_the_attack_of_issue_18_gets_no_media_port() -> None:
    """An untrusted "allocator" cannot create a conference, so its own key joins nothing."""
    net, focus, _, _ = focus_world()
    outsider = AllocatorSide(Address(UNTRUSTED_HOST, 5070))
    net.add(outsider)
    outsider.create(make_conference([(BOB, Mode.VIDEO)]), net.now)
    net.advance()
    assert outsider.conference_uri is None
    attacker = Softphone("bob", Address(UNTRUSTED_HOST, 6000), baresip_offer(6000, 6002))
    net.add(attacker)
    # A guessed conference URI with the attacker's own key: no such conference.
    call = attacker.call(f"sip:conf-{'0' * 32}@127.0.0.1:5080;key=mine", net.now)
    net.advance()
    assert attacker.final(call).status == 404
    assert focus.ports_in_use == frozenset()


def test_a_separate_allocator_host_is_let_in_by_trusted_networks() -> None:
    config = FocusConfig(trusted_networks=parse_networks(["127.0.0.0/8", "192.0.2.0/28"]))
    net, focus, _, _ = focus_world(config=config)
    allocator = AllocatorSide(Address(UNTRUSTED_HOST, 5070))
    net.add(allocator)
    invite = allocator.create(make_conference([(BOB, Mode.VIDEO)]), net.now)
    net.advance()
    assert allocator.final(invite).status == 200
    assert len(focus.conferences()) == 1


def test_trust_reloaded_at_runtime_decides_the_next_factory_invite() -> None:
    net, focus, _, _ = focus_world()
    allocator = AllocatorSide(Address(UNTRUSTED_HOST, 5070))
    net.add(allocator)
    first = allocator.create(make_conference([(BOB, Mode.VIDEO)]), net.now)
    net.advance()
    assert allocator.final(first).status == 403
    focus.trust(parse_networks(["192.0.2.10/32"]))
    second = allocator.create(make_conference([(BOB, Mode.VIDEO)], conference_id="c2"), net.now)
    net.advance()
    assert allocator.final(second).status == 200


def test_participant_without_a_valid_key_is_still_refused() -> None:
    net, focus, _, allocator = focus_world()
    allocator.create(make_conference([(BOB, Mode.VIDEO)]), net.now)
    net.advance()
    uri = allocator.conference_uri
    assert uri is not None
    stranger = Softphone("bob", Address(UNTRUSTED_HOST, 6000), baresip_offer(6000, 6002))
    net.add(stranger)
    call = stranger.call(f"{uri};key=wrong", net.now)
    net.advance()
    assert stranger.final(call).status == 403
    assert focus.ports_in_use == frozenset()


def test_factory_invite_from_trusted_with_a_malformed_resource_list_is_400() -> None:
    net, focus, _, allocator = focus_world()
    for body in (
        b"<resource-lists xmlns='urn:ietf:params:xml:ns:resource-lists'><list>",
        b"not xml at all",
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>",
    ):
        invite = allocator.create(
            make_conference([(BOB, Mode.VIDEO)]),
            net.now,
            body=body,
            content_type="application/resource-lists+xml",
        )
        net.advance()
        refused = allocator.final(invite)
        assert refused.status == 400, body
        assert warning_of(refused), body
    assert focus.conferences() == []


def test_the_default_focus_trusts_this_host_only() -> None:
    assert ConferenceFocus().config.trusted_networks == parse_networks(["127.0.0.0/8", "::1/128"])


def test_oversized_values_get_414_and_400_at_the_focus() -> None:
    net, focus, _, allocator = focus_world()
    allocator.create(make_conference([(BOB, Mode.VIDEO)]), net.now)
    net.advance()
    uri = allocator.conference_uri
    assert uri is not None
    phone = Softphone("bob", Address("127.0.0.1", 6000), baresip_offer(6000, 6002))
    net.add(phone)
    long_uri = phone.call(f"{allocator.join_uri(BOB)};x={'y' * 3000}", net.now)
    long_header = phone.call(allocator.join_uri(BOB), net.now, headers=[("Subject", "z" * 9000)])
    net.advance()
    refused = phone.final(long_uri)
    assert refused.status == 414
    assert "Request-URI of" in warning_of(refused)
    assert "at most 2048" in warning_of(refused)
    refused = phone.final(long_header)
    assert refused.status == 400
    assert "Subject value of 9000 characters; at most 8192" in warning_of(refused)
    assert focus.ports_in_use == frozenset()
    assert focus.conferences()[0].connected == ()


def test_messages_the_focus_cannot_send_are_reported_and_not_retransmitted() -> None:
    net, focus, node, allocator = focus_world()
    allocator.create(
        make_conference([(BOB, Mode.VIDEO), ("sip:carol@example.com", Mode.AUDIO)]), net.now
    )
    net.advance()
    phone = Softphone("bob", Address("127.0.0.1", 6000), baresip_offer(6000, 6002))
    net.add(phone)
    phone.call(allocator.join_uri(BOB), net.now)
    allocator.subscribe(net.now)
    net.advance()
    node.events.clear()
    focus.end_all(net.now)  # BYE to bob and to the anchor, the terminated NOTIFY
    out = focus.messages_to_send()
    assert sorted(m.method for m, _ in out if isinstance(m, Request)) == ["BYE", "BYE", "NOTIFY"]
    for message, destination in out:
        focus.send_failed(message, destination, "Connection refused", net.now)
    not_sent = [e for e in focus.events() if isinstance(e, MessageNotSent)]
    assert [(e.destination, e.reason) for e in not_sent] == [
        (d, "Connection refused") for _, d in out
    ]
    # Their transactions failed at once: nothing is sent again, Timer E or not.
    focus.handle_timer(net.now + 1.0)
    focus.handle_timer(net.now + 40.0)
    assert focus.messages_to_send() == []
    assert focus.conferences() == []
