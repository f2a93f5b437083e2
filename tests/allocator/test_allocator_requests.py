"""Requests to the allocator, end to end: every form, every refusal, retransmissions, follow-ups.

Each test drives a whole :class:`Allocator` with in-memory peers on the
virtual clock of :class:`SimNetwork` (no sockets, no sleeps).  Refusals are
checked on the wire (status and exact ``Warning``), as events, as the IM the
requester gets, and for the absence of any state change.  The conference
lifecycle (probing, failover, liveness, roster, save/restore) is covered in
test_allocator_lifecycle.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from peers import (
    ALLOCATOR,
    FOCUS,
    PROXY,
    Focus,
    FocusConference,
    Phone,
    SimNetwork,
    final_response,
    send_request,
)

from vidim.allocator.allocator import Allocator, AllocatorConfig
from vidim.allocator.conference import ConferenceState
from vidim.allocator.events import (
    ConferenceEnded,
    InvitationFailed,
    InvitationSent,
    MessageIgnored,
    MessageNotSent,
    RequestAccepted,
    RequestRefused,
)
from vidim.allocator.requests import RequestPolicy, help_text
from vidim.resource_lists import ListEntry, build_resource_list
from vidim.sip import Address, Message, Request, Response, build_multipart, parse_message
from vidim.vocabulary import Mode

DOMAIN = "example.com"
SERVICE = f"sip:vidim@{DOMAIN}"
FACTORY = f"sip:conference-factory@{FOCUS.host}:{FOCUS.port}"
UNTRUSTED = Address("192.0.2.10", 5062)
ALLOW = "MESSAGE, OPTIONS, NOTIFY, BYE, ACK, CANCEL"


@dataclass
class World:
    net: SimNetwork
    allocator: Allocator
    alice: Phone
    bob: Phone
    carol: Phone
    dan: Phone
    erin: Phone
    focus: Focus

    @property
    def invitees(self) -> tuple[Phone, ...]:
        return (self.bob, self.carol, self.dan, self.erin)


def make_world(
    *, policy: RequestPolicy | None = None, focus: Focus | None = None, **config: Any
) -> World:
    allocator = Allocator(
        AllocatorConfig(
            requests=policy or RequestPolicy.for_domain(DOMAIN),
            proxy=PROXY,
            focus_uris=(FACTORY,),
            **config,
        )
    )
    alice = Phone("alice", Address("127.0.0.1", 5062))
    bob = Phone("bob", Address("127.0.0.1", 5064))
    carol = Phone("carol", Address("127.0.0.1", 5066), video=False)
    dan = Phone("dan", Address("127.0.0.1", 5068))
    dan.uri = "sip:dan@other.org"
    erin = Phone("erin", Address("127.0.0.1", 5072))
    focus = focus or Focus()
    net = SimNetwork(allocator, alice, bob, carol, dan, erin, focus)
    for phone in (alice, bob, carol, dan, erin):
        net.register(phone.uri, phone)
    return World(net, allocator, alice, bob, carol, dan, erin, focus)


def warning(reason: str) -> str:
    """The exact Warning value for ``reason`` (RFC 3261 quoted-string)."""
    escaped = reason.replace("\\", "\\\\").replace('"', '\\"')
    return f'399 {DOMAIN} "{escaped}"'


def allocator_sent(net: SimNetwork, since: float = 0.0) -> list[tuple[Address, str]]:
    """(destination, first line) of what the allocator sent from ``since`` on."""
    return [(dst, line) for when, src, dst, line in net.log if src == ALLOCATOR and when >= since]


def only_conference(w: World) -> FocusConference:
    (conference,) = w.focus.conferences
    return conference


def roster(conference: FocusConference) -> dict[str, Mode | None]:
    return {entry.uri: entry.mode for entry in conference.participants}


def invitation_modes(phone: Phone) -> list[str]:
    """The ``;mode=`` of each invitation ``phone`` received."""
    out = []
    for message in phone.messages:
        header = message.headers.get("X-Vidim-Conference")
        assert header is not None
        assert "X-Vidim-Mode" not in message.headers
        out.append(header.split(";mode=")[1].split(";")[0])
    return out


def refusals(net: SimNetwork) -> list[RequestRefused]:
    return [e for e in net.events if isinstance(e, RequestRefused)]


def acceptances(net: SimNetwork) -> list[RequestAccepted]:
    return [e for e in net.events if isinstance(e, RequestAccepted)]


def assert_refused(
    w: World,
    phone: Phone,
    request: Request,
    status: int,
    reason: str,
    *,
    told: bool = True,
    since: float = 0.0,
) -> Response:
    """``request`` got ``status`` with the Warning for ``reason``, and nothing else happened."""
    response = final_response(phone, request)
    assert response.status == status
    assert response.headers.get_all("Warning") == [warning(reason)]
    requester = phone.uri if told else None
    assert refusals(w.net) == [
        RequestRefused(call_id=request.call_id, requester=requester, status=status, reason=reason)
    ]
    assert acceptances(w.net) == []
    # The requester is told in words, through the proxy; nobody else hears anything.
    expected = [(phone.address, f"SIP/2.0 {status} {response.reason}")]
    if told:
        expected.append((PROXY, f"MESSAGE {phone.uri} SIP/2.0"))
        assert phone.texts() == [f"vidim could not do that: {reason}."]
    else:
        assert phone.texts() == []
    assert allocator_sent(w.net, since) == expected
    # No state change: no conference, nothing to the focus, nobody probed or invited.
    assert w.allocator.conferences == {}
    assert w.focus.requests == []
    for invitee in w.invitees:
        assert invitee.requests == []
    return response


# -- the request forms --------------------------------------------------------------


def test_header_form_with_invite_list_and_mode_overrides() -> None:
    w = make_world()
    request = w.alice.send_message(
        0.0,
        to="sip:bob@example.com",
        text="let's see each other",
        headers=[
            ("X-Vidim-Mode", "video"),
            ("X-Vidim-Invite", "<sip:carol@example.com>;mode=audio, <sip:dan@other.org>"),
            ("X-Vidim-Invite", "<sip:erin@example.com>;mode=watch"),
        ],
    )
    w.net.run(5.0)
    assert final_response(w.alice, request).status == 202
    (accepted,) = acceptances(w.net)
    assert accepted.call_id == request.call_id
    assert accepted.requester == "sip:alice@example.com"
    assert accepted.command == "new"
    assert accepted.conference_id in w.allocator.conferences
    assert roster(only_conference(w)) == {
        "sip:alice@example.com": Mode.VIDEO,
        "sip:bob@example.com": Mode.VIDEO,
        "sip:carol@example.com": Mode.AUDIO,
        "sip:dan@other.org": Mode.VIDEO,
        "sip:erin@example.com": Mode.WATCH,
    }
    assert invitation_modes(w.bob) == ["video"]
    assert invitation_modes(w.carol) == ["audio"]
    assert invitation_modes(w.dan) == ["video"]
    assert invitation_modes(w.erin) == ["watch"]
    assert refusals(w.net) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "/video bob carol;mode=audio",
            {"alice": Mode.VIDEO, "bob": Mode.VIDEO, "carol": Mode.AUDIO},
        ),
        ("/audio sip:dan@other.org", {"alice": Mode.AUDIO, "dan": Mode.AUDIO}),
        (
            "/watch bob erin;mode=video",
            {"alice": Mode.WATCH, "bob": Mode.WATCH, "erin": Mode.VIDEO},
        ),
        ("/chat bob, carol", {"alice": Mode.CHAT, "bob": Mode.CHAT, "carol": Mode.CHAT}),
    ],
)
def test_command_form(text: str, expected: dict[str, Mode]) -> None:
    w = make_world()
    request = w.alice.send_message(0.0, text=text)
    w.net.run(5.0)
    assert final_response(w.alice, request).status == 202
    (accepted,) = acceptances(w.net)
    assert accepted.command == "new"
    uris = {name: "sip:dan@other.org" if name == "dan" else f"sip:{name}@example.com"
            for name in expected}  # fmt: skip
    assert roster(only_conference(w)) == {uris[name]: mode for name, mode in expected.items()}
    sent = {e.invitee: e.mode for e in w.net.events if isinstance(e, InvitationSent)}
    assert sent == {uris[name]: mode for name, mode in expected.items() if name != "alice"}
    for phone in w.invitees:
        if phone.user in expected:
            assert invitation_modes(phone) == [expected[phone.user].value]
        else:
            assert phone.requests == []
    # The requester hears that it is ready, with the machine-readable header.
    (ready,) = [m for m in w.alice.messages if "X-Vidim-Conference" in m.headers]
    assert ready.body.decode().startswith(f"Your {text.split()[0][1:]} conference is ready.")


def _resource_list_message(
    w: World, *, text: str | None, mode_header: str | None, entries: list[ListEntry]
) -> Request:
    parts = []
    if text is not None:
        parts.append(("text/plain", text.encode()))
    parts.append(("application/resource-lists+xml", build_resource_list(entries)))
    content_type, body = build_multipart(parts)
    headers = [("X-Vidim-Mode", mode_header)] if mode_header is not None else []
    return w.alice.send_message(0.0, body=body, content_type=content_type, headers=headers)


@pytest.mark.parametrize(
    ("text", "mode_header", "mode"),
    [("/video", None, Mode.VIDEO), (None, "audio", Mode.AUDIO), ("/watch carol", None, Mode.WATCH)],
)
def test_rfc5365_resource_list_form(text: str | None, mode_header: str | None, mode: Mode) -> None:
    w = make_world()
    entries = [
        ListEntry(uri="sip:bob@example.com"),
        ListEntry(uri="sip:dan@other.org", mode=Mode.CHAT),
    ]
    request = _resource_list_message(w, text=text, mode_header=mode_header, entries=entries)
    w.net.run(5.0)
    assert final_response(w.alice, request).status == 202
    expected = {"sip:alice@example.com": mode}
    if text is not None and "carol" in text:
        expected["sip:carol@example.com"] = mode
    expected |= {"sip:bob@example.com": mode, "sip:dan@other.org": Mode.CHAT}
    assert roster(only_conference(w)) == expected
    assert invitation_modes(w.bob) == [mode.value]
    assert invitation_modes(w.dan) == ["chat"]
    assert w.erin.requests == []


# -- refusals -----------------------------------------------------------------------

_MODES = "use video, audio, watch or chat"


@pytest.mark.parametrize(
    ("message", "status", "reason"),
    [
        pytest.param(
            {"to": "sip:bob@example.com", "headers": [("X-Vidim-Mode", "hologram")]},
            400,
            f'unknown mode "hologram"; {_MODES}',
            id="unknown-mode-header",
        ),
        pytest.param(
            {"text": "/hologram bob"},
            400,
            'unknown command "/hologram"; send /help',
            id="unknown-mode-command",
        ),
        pytest.param(
            {"text": "/video bob;mode=smell"},
            400,
            f'unknown mode "smell" for "bob;mode=smell"; {_MODES}',
            id="unknown-mode-parameter",
        ),
        pytest.param(
            {
                "to": "sip:bob@example.com",
                "headers": [
                    ("X-Vidim-Mode", "video"),
                    ("X-Vidim-Invite", "<sip:carol@example.com>;mode=smell"),
                ],
            },
            400,
            f'unknown mode "smell" for invitee "<sip:carol@example.com>;mode=smell"; {_MODES}',
            id="unknown-mode-invite-parameter",
        ),
        pytest.param(
            {"text": "/video"},
            400,
            "no invitees: name at least one, e.g. /video bob",
            id="no-invitees-command",
        ),
        pytest.param(
            {"headers": [("X-Vidim-Mode", "video")]},
            400,
            "no invitees: add X-Vidim-Invite entries or send to the person to invite",
            id="no-invitees-header",
        ),
        pytest.param(
            {"text": "/video alice vidim"},
            400,
            "no invitees: you cannot invite yourself or the vidim service",
            id="no-invitees-only-self",
        ),
        pytest.param(
            {"text": "/video " + " ".join(f"user{i}" for i in range(17))},
            400,
            "too many invitees: 17, at most 16",
            id="too-many-default-limit",
        ),
        pytest.param(
            {
                "to": "sip:bob@example.com",
                "headers": [("X-Vidim-Mode", "video"), ("X-Vidim-Invite", "<sip:carol@>")],
            },
            400,
            'malformed invitee "<sip:carol@>" in X-Vidim-Invite',
            id="malformed-uri-header",
        ),
        pytest.param(
            {"text": "/video bob@"}, 400, 'malformed invitee "bob@"', id="malformed-uri-command"
        ),
        pytest.param(
            {"text": "/video sip:@example.com"},
            400,
            'malformed invitee "sip:@example.com"',
            id="malformed-uri-no-user",
        ),
        pytest.param(
            {"text": "/video tel:+15551234"},
            400,
            'unsupported URI scheme tel: in invitee "tel:+15551234"; use sip: or sips:',
            id="non-sip-invitee",
        ),
        pytest.param(
            {
                "to": "sip:bob@example.com",
                "headers": [
                    ("X-Vidim-Mode", "video"),
                    ("X-Vidim-Invite", "<sip:car%0D%0Aol@example.com>"),
                ],
            },
            400,
            'control character in the user part of invitee "<sip:car%0D%0Aol@example.com>"',
            id="escaped-crlf-in-user",
        ),
        pytest.param(
            {"text": "/foo bob"}, 400, 'unknown command "/foo"; send /help', id="unknown-command"
        ),
        pytest.param(
            {"text": "hello vidim"},
            400,
            'not a command: "hello vidim"; start with '
            "/video, /audio, /watch, /chat, /add, /end, /status or /help",
            id="not-a-command",
        ),
    ],
)
def test_refusals_say_why_and_change_nothing(
    message: dict[str, Any], status: int, reason: str
) -> None:
    w = make_world()
    request = w.alice.send_message(0.0, **message)
    w.net.run(5.0)
    assert_refused(w, w.alice, request, status, reason)


def test_unknown_command_foo() -> None:
    w = make_world()
    request = w.alice.send_message(0.0, text="/foo")
    w.net.run(5.0)
    assert_refused(w, w.alice, request, 400, 'unknown command "/foo"; send /help')


def test_custom_invitee_limit() -> None:
    w = make_world(policy=RequestPolicy.for_domain(DOMAIN, max_invitees=2))
    request = w.alice.send_message(0.0, text="/video bob carol erin")
    w.net.run(5.0)
    assert_refused(w, w.alice, request, 400, "too many invitees: 3, at most 2")
    # At the limit it is accepted.
    accepted = w.alice.send_message(w.net.now, text="/video bob carol")
    w.net.advance(5.0)
    assert final_response(w.alice, accepted).status == 202
    assert len(roster(only_conference(w))) == 3


def test_default_limit_of_sixteen_invitees_is_accepted() -> None:
    w = make_world()
    request = w.alice.send_message(0.0, text="/audio " + " ".join(f"user{i}" for i in range(16)))
    w.net.run(5.0)
    assert final_response(w.alice, request).status == 202
    assert len(roster(only_conference(w))) == 17


def _raw_message(extra: bytes, *, uri: str = "sip:bob@example.com", body: bytes = b"") -> bytes:
    head = (
        f"MESSAGE {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKraw1;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=raw1\r\n"
        f"To: <{uri}>\r\n"
        "Call-ID: raw-1@127.0.0.1\r\n"
        "CSeq: 1 MESSAGE\r\n"
    ).encode()
    content_type = b"Content-Type: text/plain\r\n" if body else b""
    return head + extra + content_type + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.mark.parametrize(
    ("extra", "body", "reason"),
    [
        (b"X-Vidim-Mode: vid\x01eo\r\n", b"", "control character in X-Vidim-Mode"),
        (b"X-Vidim-Mode: video\x00\r\n", b"", "control character in X-Vidim-Mode"),
        (b"X-Vidim-Mode: video\x7f\r\n", b"", "control character in X-Vidim-Mode"),
        (
            b"X-Vidim-Mode: video\r\nX-Vidim-Invite: <sip:carol@example.com>\x0b\r\n",
            b"",
            "control character in X-Vidim-Invite",
        ),
        (
            b"X-Vidim-Mode: video\r\nX-Vidim-Invite: <sip:carol@example.com>, <sip:d\x1bn@x.org>\r\n",
            b"",
            "control character in X-Vidim-Invite",
        ),
    ],
)
def test_control_characters_through_the_parser(extra: bytes, body: bytes, reason: str) -> None:
    allocator = Allocator(AllocatorConfig(requests=RequestPolicy.for_domain(DOMAIN), proxy=PROXY))
    allocator.receive_datagram(_raw_message(extra, body=body), Address("127.0.0.1", 5062), 0.0)
    out = allocator.messages_to_send()
    assert [(dst, message.to_bytes().split(b"\r\n", 1)[0]) for message, dst in out] == [
        (Address("127.0.0.1", 5062), b"SIP/2.0 400 Bad Request"),
        (PROXY, b"MESSAGE sip:alice@example.com SIP/2.0"),
    ]
    response, notice = out[0][0], out[1][0]
    assert isinstance(response, Response)
    assert response.headers.get_all("Warning") == [warning(reason)]
    assert notice.body.decode() == f"vidim could not do that: {reason}."
    assert allocator.events() == [
        RequestRefused(
            call_id="raw-1@127.0.0.1",
            requester="sip:alice@example.com",
            status=400,
            reason=reason,
        )
    ]
    assert allocator.conferences == {}


def test_control_character_in_asserted_identity_is_refused_without_telling_anyone() -> None:
    # Who asks is unknown when the identity header is bad: nobody is told by IM.
    allocator = Allocator(AllocatorConfig(requests=RequestPolicy.for_domain(DOMAIN), proxy=PROXY))
    extra = b"P-Asserted-Identity: <sip:alice@example.com>\x08\r\nX-Vidim-Mode: video\r\n"
    allocator.receive_datagram(_raw_message(extra), Address("127.0.0.1", 5062), 0.0)
    ((response, destination),) = allocator.messages_to_send()
    assert isinstance(response, Response)
    assert destination == Address("127.0.0.1", 5062)
    assert response.status == 400
    reason = "control character in P-Asserted-Identity"
    assert response.headers.get_all("Warning") == [warning(reason)]
    assert allocator.events() == [
        RequestRefused(call_id="raw-1@127.0.0.1", requester=None, status=400, reason=reason)
    ]
    assert allocator.conferences == {}


def test_control_character_in_command_text_through_the_parser() -> None:
    allocator = Allocator(AllocatorConfig(requests=RequestPolicy.for_domain(DOMAIN), proxy=PROXY))
    wire = _raw_message(b"", uri=SERVICE, body=b"/video bob\x07 carol")
    allocator.receive_datagram(wire, Address("127.0.0.1", 5062), 0.0)
    out = allocator.messages_to_send()
    response = out[0][0]
    assert isinstance(response, Response)
    assert response.status == 400
    assert response.headers.get_all("Warning") == [warning("control character in command text")]
    assert len(out) == 2
    assert allocator.conferences == {}


def test_bare_cr_in_a_header_is_refused_with_a_warning_and_changes_nothing() -> None:
    allocator = Allocator(AllocatorConfig(requests=RequestPolicy.for_domain(DOMAIN), proxy=PROXY))
    wire = _raw_message(b"X-Vidim-Mode: video\rX-Injected: 1\r\n")
    allocator.receive_datagram(wire, Address("127.0.0.1", 5062), 0.0)
    assert allocator.events() == [
        MessageIgnored(
            reason="bare CR in the message headers", summary="MESSAGE sip:bob@example.com SIP/2.0"
        )
    ]
    ((response, destination),) = allocator.messages_to_send()
    assert destination == Address("127.0.0.1", 5062)
    assert isinstance(response, Response)
    assert response.status == 400
    assert response.headers.get_all("Warning") == [warning("bare CR in the message headers")]
    assert allocator.conferences == {}
    assert allocator.get_timer() is None  # stateless: nothing to retransmit


def test_untrusted_source_is_refused_and_nobody_is_told() -> None:
    w = make_world()
    mallory = Phone("mallory", UNTRUSTED)
    w.net.add(mallory)
    request = mallory.send_message(0.0, text="/video bob carol")
    w.net.run(5.0)
    assert_refused(w, mallory, request, 403, "untrusted source 192.0.2.10", told=False)
    assert w.net.sent("MESSAGE") == ["MESSAGE sip:vidim@example.com SIP/2.0"]
    assert w.alice.requests == []


def test_untrusted_but_allowed_source_gets_no_im_for_a_refusal() -> None:
    policy = RequestPolicy.for_domain(DOMAIN, require_trusted_source=False)
    w = make_world(policy=policy)
    mallory = Phone("mallory", UNTRUSTED)
    w.net.add(mallory)
    w.net.register(mallory.uri, mallory)
    request = mallory.send_message(0.0, text="/foo")
    w.net.run(5.0)
    response = final_response(mallory, request)
    assert response.status == 400
    assert response.headers.get_all("Warning") == [warning('unknown command "/foo"; send /help')]
    # The RequestRefused event names the requester (from the From), but no IM
    # goes out: vidim must not become a reflector for sources it does not trust.
    (refused,) = refusals(w.net)
    assert refused.requester == "sip:mallory@example.com"
    assert mallory.texts() == []
    assert allocator_sent(w.net) == [(UNTRUSTED, "SIP/2.0 400 Bad Request")]


def test_rate_limit_per_requester_and_window() -> None:
    w = make_world(rate_limit=2, rate_window=60.0, keepalive_interval=1000.0)
    first = w.alice.send_message(0.0, text="/video bob")
    w.net.run(1.0)
    second = w.alice.send_message(w.net.now, text="/audio carol")
    w.net.run(2.0)
    assert final_response(w.alice, first).status == 202
    assert final_response(w.alice, second).status == 202
    live = set(w.allocator.conferences)
    assert len(live) == 2
    texts_before = len(w.alice.texts())
    focus_requests = len(w.focus.requests)

    third = w.alice.send_message(w.net.now, text="/video erin")
    w.net.run(3.0)
    reason = "too many new conferences (at most 2 per 60 s)"
    response = final_response(w.alice, third)
    assert response.status == 403
    assert response.headers.get_all("Warning") == [warning(reason)]
    assert refusals(w.net) == [
        RequestRefused(
            call_id=third.call_id, requester="sip:alice@example.com", status=403, reason=reason
        )
    ]
    assert w.alice.texts()[texts_before:] == [f"vidim could not do that: {reason}."]
    assert set(w.allocator.conferences) == live
    assert len(w.focus.requests) == focus_requests
    assert w.erin.requests == []

    # Another requester is not limited by alice's count.
    other = w.bob.send_message(w.net.now, text="/chat carol")
    w.net.run(4.0)
    assert final_response(w.bob, other).status == 202

    # Still inside the window (the first was accepted at 0.001): refused again.
    w.net.run(59.0)
    fourth = w.alice.send_message(w.net.now, text="/video erin")
    w.net.run(60.0)
    assert final_response(w.alice, fourth).status == 403
    # Once the window has passed for the first two, a new one is accepted.
    w.net.run(61.5)
    fifth = w.alice.send_message(w.net.now, text="/video erin")
    w.net.run(65.0)
    assert final_response(w.alice, fifth).status == 202
    assert invitation_modes(w.erin) == ["video"]


def test_refused_requests_do_not_count_against_the_rate_limit() -> None:
    w = make_world(rate_limit=1, rate_window=60.0)
    bad = w.alice.send_message(0.0, text="/video")
    w.net.run(1.0)
    assert final_response(w.alice, bad).status == 400
    good = w.alice.send_message(w.net.now, text="/video bob")
    w.net.run(3.0)
    assert final_response(w.alice, good).status == 202


def test_max_conferences_answers_503_with_retry_after() -> None:
    w = make_world(max_conferences=1, keepalive_interval=1000.0)
    first = w.alice.send_message(0.0, text="/video bob")
    w.net.run(3.0)
    assert final_response(w.alice, first).status == 202
    (live,) = w.allocator.conferences
    texts_before = len(w.alice.texts())
    second = w.alice.send_message(w.net.now, text="/video carol")
    w.net.run(6.0)
    reason = "too many live conferences; try again later"
    response = final_response(w.alice, second)
    assert response.status == 503
    assert response.headers.get_all("Warning") == [warning(reason)]
    assert response.headers.get_all("Retry-After") == ["30"]
    assert [e.status for e in refusals(w.net)] == [503]
    assert w.alice.texts()[texts_before:] == [f"vidim could not do that: {reason}."]
    assert list(w.allocator.conferences) == [live]
    assert w.carol.requests == []
    assert len(w.focus.conferences) == 1


def test_unsupported_content_type_is_415_with_accept_and_told() -> None:
    w = make_world()
    request = w.alice.send_message(0.0, text='{"video": ["bob"]}', content_type="application/json")
    w.net.run(5.0)
    response = assert_refused(
        w, w.alice, request, 415, "unsupported body type application/json; send text/plain"
    )
    assert response.headers.get_all("Accept") == ["text/plain, multipart/mixed"]


def test_header_form_note_may_be_of_any_type() -> None:
    # The header form's body is a note for people; vidim does not read it.
    w = make_world()
    request = w.alice.send_message(
        0.0,
        to="sip:bob@example.com",
        text="<p>let's talk</p>",
        content_type="text/html",
        headers=[("X-Vidim-Mode", "audio")],
    )
    w.net.run(5.0)
    assert final_response(w.alice, request).status == 202
    assert roster(only_conference(w)) == {
        "sip:alice@example.com": Mode.AUDIO,
        "sip:bob@example.com": Mode.AUDIO,
    }


@pytest.mark.parametrize(
    ("content_type", "text"), [("text/plain", "hi bob"), ("text/html", "<p>hi</p>")]
)
def test_message_that_is_neither_form_is_404(content_type: str, text: str) -> None:
    w = make_world()
    request = w.alice.send_message(
        0.0, to="sip:bob@example.com", text=text, content_type=content_type
    )
    w.net.run(5.0)
    assert_refused(w, w.alice, request, 404, "not a vidim request", told=False)


# -- retransmissions ------------------------------------------------------------------


def test_retransmitted_message_makes_one_conference_and_gets_the_same_202() -> None:
    w = make_world()
    dropped: list[bytes] = []

    def drop_first_202(source: Address, destination: Address, wire: bytes) -> bool:
        if source == ALLOCATOR and wire.startswith(b"SIP/2.0 202") and not dropped:
            dropped.append(wire)
            return True
        return False

    w.net.drop.append(drop_first_202)
    request = w.alice.send_message(0.0, text="/video bob")
    w.net.run(5.0)
    # The phone sent the MESSAGE again after T1, and the allocator answered it again.
    assert (
        w.net.sent("MESSAGE sip:vidim@example.com") == ["MESSAGE sip:vidim@example.com SIP/2.0"] * 2
    )
    assert allocator_sent(w.net).count((w.alice.address, "SIP/2.0 202 Accepted")) == 2
    response = final_response(w.alice, request)
    first = parse_message(dropped[0])
    assert isinstance(first, Response)
    assert response.status == 202
    assert response.to_addr.tag == first.to_addr.tag
    assert response.to_bytes() == first.to_bytes()
    assert len(acceptances(w.net)) == 1
    assert len(w.allocator.conferences) == 1
    assert len(w.focus.conferences) == 1
    assert invitation_modes(w.bob) == ["video"]
    assert w.net.sent("OPTIONS sip:bob@example.com") == ["OPTIONS sip:bob@example.com SIP/2.0"]


# -- follow-ups --------------------------------------------------------------------------


def _live(w: World, text: str = "/video bob carol") -> str:
    """Alice starts a conference; returns its id once it is active."""
    before = set(w.allocator.conferences)
    w.alice.send_message(w.net.now, text=text)
    w.net.advance(5.0)
    (conference_id,) = set(w.allocator.conferences) - before
    assert w.allocator.conferences[conference_id].state is ConferenceState.ACTIVE
    return conference_id


def _reinvites(w: World) -> list[Request]:
    return [r for r in w.focus.requests if r.method == "INVITE" and r.to_addr.tag is not None]


def test_add_to_own_live_conference() -> None:
    w = make_world()
    conference_id = _live(w)
    request = w.alice.send_message(w.net.now, text="/add erin;mode=watch")
    w.net.advance(5.0)
    assert final_response(w.alice, request).status == 202
    assert acceptances(w.net)[-1] == RequestAccepted(
        call_id=request.call_id,
        requester="sip:alice@example.com",
        command="add",
        conference_id=conference_id,
    )
    # erin was probed, the focus got a re-INVITE listing her, and she was invited.
    assert [r.method for r in w.erin.requests] == ["OPTIONS", "MESSAGE"]
    (reinvite,) = _reinvites(w)
    assert reinvite.call_id == only_conference(w).invite.call_id
    assert roster(only_conference(w)) == {
        "sip:alice@example.com": Mode.VIDEO,
        "sip:bob@example.com": Mode.VIDEO,
        "sip:carol@example.com": Mode.AUDIO,
        "sip:erin@example.com": Mode.WATCH,
    }
    assert invitation_modes(w.erin) == ["watch"]
    header = w.erin.messages[0].headers.get("X-Vidim-Conference")
    assert header is not None
    assert header.endswith(f";id={conference_id}")
    # Those already invited are not invited again.
    assert len(w.bob.messages) == 1
    assert len(w.carol.messages) == 1


def test_add_with_conference_id_from_another_user() -> None:
    w = make_world()
    conference_id = _live(w, "/video bob")
    request = w.bob.send_message(w.net.now, text=f"/add #{conference_id} sip:dan@other.org")
    w.net.advance(5.0)
    assert final_response(w.bob, request).status == 202
    assert acceptances(w.net)[-1] == RequestAccepted(
        call_id=request.call_id,
        requester="sip:bob@example.com",
        command="add",
        conference_id=conference_id,
    )
    assert "sip:dan@other.org" in roster(only_conference(w))
    assert invitation_modes(w.dan) == ["video"]
    # It is still alice's conference.
    assert w.allocator.conferences[conference_id].requester == "sip:alice@example.com"


def test_add_without_id_from_someone_with_no_conference_is_404() -> None:
    w = make_world()
    _live(w, "/video bob")
    request = w.bob.send_message(w.net.now, text="/add erin")
    w.net.advance(5.0)
    response = final_response(w.bob, request)
    assert response.status == 404
    assert response.headers.get_all("Warning") == [warning("no live conference of yours")]
    assert w.erin.requests == []
    assert _reinvites(w) == []


def test_add_beyond_the_invitee_limit_is_refused() -> None:
    w = make_world(policy=RequestPolicy.for_domain(DOMAIN, max_invitees=2))
    conference_id = _live(w, "/video bob carol")
    request = w.alice.send_message(w.net.now, text="/add erin")
    w.net.advance(5.0)
    reason = "too many invitees: 3, at most 2"
    response = final_response(w.alice, request)
    assert response.status == 400
    assert response.headers.get_all("Warning") == [warning(reason)]
    assert w.alice.texts()[-1] == f"vidim could not do that: {reason}."
    assert len(w.allocator.conferences[conference_id].participants) == 3
    assert w.erin.requests == []
    assert _reinvites(w) == []


def test_add_while_the_conference_is_being_set_up_is_491() -> None:
    w = make_world(focus=Focus(behaviour="silent"), focus_timeout=30.0)
    w.alice.send_message(0.0, text="/video bob")
    w.net.run(3.0)
    (conference_id,) = w.allocator.conferences
    conference = w.allocator.conferences[conference_id]
    assert conference.state is ConferenceState.ALLOCATING
    participants = [p.uri for p in conference.participants]
    request = w.alice.send_message(w.net.now, text="/add erin")
    w.net.run(6.0)
    reason = f"conference #{conference_id} is allocating; try again in a moment"
    response = final_response(w.alice, request)
    assert response.status == 491
    assert response.headers.get_all("Warning") == [warning(reason)]
    assert refusals(w.net)[-1].reason == reason
    assert w.alice.texts() == [f"vidim could not do that: {reason}."]
    assert [p.uri for p in conference.participants] == participants
    assert conference.state is ConferenceState.ALLOCATING
    assert w.erin.requests == []


def test_end_by_someone_else_is_403_and_the_conference_lives_on() -> None:
    w = make_world()
    conference_id = _live(w, "/video bob")
    request = w.bob.send_message(w.net.now, text=f"/end #{conference_id}")
    w.net.advance(5.0)
    reason = "only sip:alice@example.com may end this conference"
    response = final_response(w.bob, request)
    assert response.status == 403
    assert response.headers.get_all("Warning") == [warning(reason)]
    assert refusals(w.net) == [
        RequestRefused(
            call_id=request.call_id, requester="sip:bob@example.com", status=403, reason=reason
        )
    ]
    assert w.bob.texts()[-1] == f"vidim could not do that: {reason}."
    assert w.allocator.conferences[conference_id].state is ConferenceState.ACTIVE
    assert not only_conference(w).ended
    assert w.net.sent("BYE") == []
    assert [e for e in w.net.events if isinstance(e, ConferenceEnded)] == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("/end", "no live conference of yours"),
        ("/status", "no live conference of yours"),
        ("/end #nosuchconference", "no live conference #nosuchconference"),
        ("/add erin #nosuchconference", "no live conference #nosuchconference"),
    ],
)
def test_follow_up_with_no_live_conference_is_404(text: str, reason: str) -> None:
    w = make_world()
    request = w.alice.send_message(0.0, text=text)
    w.net.run(5.0)
    assert_refused(w, w.alice, request, 404, reason)


def test_end_acts_on_the_latest_live_conference_then_the_one_before() -> None:
    w = make_world()
    first = _live(w, "/video bob")
    second = _live(w, "/audio carol")
    assert set(w.allocator.conferences) == {first, second}
    end = w.alice.send_message(w.net.now, text="/end")
    w.net.advance(5.0)
    assert final_response(w.alice, end).status == 202
    assert list(w.allocator.conferences) == [first]
    # alice still has a live conference: /status and /end act on it.
    status = w.alice.send_message(w.net.now, text="/status")
    w.net.advance(5.0)
    assert final_response(w.alice, status).status == 202
    assert w.alice.texts()[-1].startswith(f"Conference #{first} (video), active:")
    end_again = w.alice.send_message(w.net.now, text="/end")
    w.net.advance(5.0)
    assert final_response(w.alice, end_again).status == 202
    assert w.allocator.conferences == {}
    assert [e.conference_id for e in w.net.events if isinstance(e, ConferenceEnded)] == [
        second,
        first,
    ]


def test_status_lists_each_participant_with_mode_and_status() -> None:
    w = make_world()
    conference_id = _live(w, "/video bob carol erin;mode=watch")
    w.focus.join(only_conference(w), "sip:bob@example.com", Mode.VIDEO, w.net.now)
    w.net.advance(1.0)
    before = len(w.alice.texts())
    request = w.alice.send_message(w.net.now, text="/status")
    w.net.advance(5.0)
    assert final_response(w.alice, request).status == 202
    assert acceptances(w.net)[-1].command == "status"
    assert w.alice.texts()[before:] == [
        f"Conference #{conference_id} (video), active:\n"
        "- alice@example.com (requester): video, invited\n"
        "- bob@example.com: video, connected\n"
        "- carol@example.com: audio, invited\n"
        "- erin@example.com: watch, invited"
    ]
    # Nothing else moved.
    assert _reinvites(w) == []
    assert len(w.bob.messages) == 1


def test_status_by_id_from_an_invitee() -> None:
    w = make_world()
    conference_id = _live(w, "/audio bob")
    request = w.bob.send_message(w.net.now, text=f"/status #{conference_id}")
    w.net.advance(5.0)
    assert final_response(w.bob, request).status == 202
    assert w.bob.texts()[-1] == (
        f"Conference #{conference_id} (audio), active:\n"
        "- alice@example.com (requester): audio, invited\n"
        "- bob@example.com: audio, invited"
    )


def test_help_answers_202_and_the_help_text() -> None:
    policy = RequestPolicy.for_domain(DOMAIN)
    w = make_world(policy=policy)
    request = w.alice.send_message(0.0, text="/help")
    w.net.run(5.0)
    assert final_response(w.alice, request).status == 202
    assert acceptances(w.net) == [
        RequestAccepted(
            call_id=request.call_id,
            requester="sip:alice@example.com",
            command="help",
            conference_id=None,
        )
    ]
    assert w.alice.texts() == [help_text(policy)]
    assert w.allocator.conferences == {}
    assert w.focus.requests == []


# -- other methods and other input -------------------------------------------------


def test_options_to_the_allocator_is_200_with_allow() -> None:
    w = make_world()
    request = send_request(w.alice, "OPTIONS", 0.0)
    w.net.run(2.0)
    response = final_response(w.alice, request)
    assert response.status == 200
    assert response.headers.get_all("Allow") == [ALLOW]
    assert response.headers.get_all("Accept") == ["text/plain, multipart/mixed"]
    assert w.allocator.conferences == {}


def test_invite_to_the_allocator_is_405_with_allow_and_warning() -> None:
    w = make_world()
    request = send_request(
        w.alice,
        "INVITE",
        0.0,
        to="sip:bob@example.com",
        headers=[("X-Vidim-Mode", "video")],
        body=b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n",
        content_type="application/sdp",
    )
    w.net.run(40.0)
    response = final_response(w.alice, request)
    assert response.status == 405
    assert response.headers.get_all("Allow") == [ALLOW]
    assert response.headers.get_all("Warning") == [warning("vidim takes no calls")]
    # The phone's transaction ACKed the 405; nothing was started.
    assert w.net.sent("ACK") == ["ACK sip:bob@example.com SIP/2.0"]
    assert w.allocator.conferences == {}
    assert w.focus.requests == []
    assert w.bob.requests == []
    assert acceptances(w.net) == []


def test_request_missing_core_headers_is_reported_not_answered() -> None:
    allocator = Allocator(AllocatorConfig(requests=RequestPolicy.for_domain(DOMAIN), proxy=PROXY))
    wire = b"MESSAGE sip:vidim@example.com SIP/2.0\r\nVia: nonsense\r\n\r\n"
    allocator.receive_datagram(wire, Address("127.0.0.1", 5062), 0.0)
    (event,) = allocator.events()
    assert isinstance(event, MessageIgnored)
    assert event.summary == "MESSAGE sip:vidim@example.com SIP/2.0"
    # (The parser lists the missing headers in set order: compare them as a set.)
    assert event.reason.startswith("missing ")
    assert set(event.reason.removeprefix("missing ").split(", ")) == {
        "From",
        "To",
        "CSeq",
        "Call-ID",
    }
    assert allocator.messages_to_send() == []
    assert allocator.conferences == {}


@pytest.mark.parametrize(
    ("wire", "reason", "summary"),
    [
        (
            b"this is not SIP\r\n\r\n",
            "malformed request line: expected 'Method SP Request-URI SP SIP/2.0'",
            "this is not SIP",
        ),
        (b"\x00\x01\x02\xff", "no empty line after the headers", "\x00\x01\x02\ufffd"),
        (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKnone\r\n"
            b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>;tag=2\r\n"
            b"Call-ID: stray@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            "matches no client transaction",
            "200 OK",
        ),
    ],
)
def test_malformed_or_stray_datagram_is_reported_not_raised(
    wire: bytes, reason: str, summary: str
) -> None:
    allocator = Allocator(AllocatorConfig(requests=RequestPolicy.for_domain(DOMAIN), proxy=PROXY))
    allocator.receive_datagram(wire, Address("127.0.0.1", 5062), 0.0)
    assert allocator.events() == [MessageIgnored(reason=reason, summary=summary)]
    assert allocator.messages_to_send() == []
    assert allocator.conferences == {}
    assert allocator.get_timer() is None


@pytest.mark.parametrize(
    ("to_tag", "reason"),
    [(None, "no subscription matches this NOTIFY"), ("stray", "no dialog matches this request")],
)
def test_notify_for_no_subscription_is_481(to_tag: str | None, reason: str) -> None:
    w = make_world()
    request = send_request(
        w.alice,
        "NOTIFY",
        0.0,
        to="sip:vidim@127.0.0.1:5070",
        to_tag=to_tag,
        headers=[("Event", "conference"), ("Subscription-State", "active;expires=60")],
    )
    w.net.run(2.0)
    response = final_response(w.alice, request)
    assert response.status == 481
    assert response.headers.get_all("Warning") == [warning(reason)]
    assert w.allocator.conferences == {}


# -- who asks ------------------------------------------------------------------------


def test_asserted_identity_from_a_trusted_peer_is_the_requester() -> None:
    w = make_world()
    zoe = Phone("zoe", Address("127.0.0.1", 5076))
    w.net.add(zoe)
    w.net.register(zoe.uri, zoe)
    request = w.alice.send_message(
        0.0, text="/video bob", headers=[("P-Asserted-Identity", "<sip:zoe@example.com>")]
    )
    w.net.run(5.0)
    assert final_response(w.alice, request).status == 202
    (accepted,) = acceptances(w.net)
    assert accepted.requester == "sip:zoe@example.com"
    assert roster(only_conference(w)) == {
        "sip:zoe@example.com": Mode.VIDEO,
        "sip:bob@example.com": Mode.VIDEO,
    }
    # Follow-ups are zoe's: alice (by her From) has no conference.
    end = w.alice.send_message(w.net.now, text="/end")
    w.net.advance(2.0)
    assert final_response(w.alice, end).status == 404


def test_asserted_identity_from_an_untrusted_peer_is_ignored() -> None:
    w = make_world(policy=RequestPolicy.for_domain(DOMAIN, require_trusted_source=False))
    mallory = Phone("mallory", UNTRUSTED)
    w.net.add(mallory)
    request = mallory.send_message(
        0.0, text="/video bob", headers=[("P-Asserted-Identity", "<sip:alice@example.com>")]
    )
    w.net.run(5.0)
    assert final_response(mallory, request).status == 202
    (accepted,) = acceptances(w.net)
    assert accepted.requester == "sip:mallory@example.com"


def test_refusal_im_goes_straight_back_to_the_source_without_a_proxy() -> None:
    w = make_world()
    allocator = Allocator(
        AllocatorConfig(requests=RequestPolicy.for_domain(DOMAIN), focus_uris=(FACTORY,))
    )
    net = SimNetwork(allocator, w.alice, w.focus)
    request = w.alice.send_message(0.0, text="/video")
    net.run(5.0)
    reason = "no invitees: name at least one, e.g. /video bob"
    response = final_response(w.alice, request)
    assert response.status == 400
    assert response.headers.get_all("Warning") == [warning(reason)]
    assert w.alice.texts() == [f"vidim could not do that: {reason}."]
    assert [dst for _, src, dst, _ in net.log if src == ALLOCATOR] == [w.alice.address] * 2


def test_unsupported_required_extension_is_420_and_changes_nothing() -> None:
    w = make_world()
    request = w.alice.send_message(0.0, text="/video bob", headers=[("Require", "foo")])
    w.net.run(5.0)
    response = assert_refused(w, w.alice, request, 420, "unsupported extension foo", told=False)
    assert response.headers.get_all("Unsupported") == ["foo"]


# -- oversized values (issue 18) -----------------------------------------------------------


@pytest.mark.parametrize("length", [60_000, 65_000])
def test_header_form_with_a_huge_user_part_in_the_request_uri_is_414(length: int) -> None:
    """Issue 18: 202 and a 61 KB INVITE (60,000), or 202 and then nothing (65,000)."""
    w = make_world()
    to = f"sip:{'b' * length}@example.com"
    request = w.alice.send_message(0.0, to=to, text="hi", headers=[("X-Vidim-Mode", "video")])
    w.net.run(5.0)
    reason = f"Request-URI of {len(to)} characters; at most 2048"
    assert_refused(w, w.alice, request, 414, reason, told=False)


@pytest.mark.parametrize("length", [60_000, 65_000])
def test_header_form_with_a_huge_invitee_header_is_400(length: int) -> None:
    w = make_world()
    value = f"<sip:{'c' * length}@example.com>;mode=audio"
    request = w.alice.send_message(
        0.0,
        to="sip:bob@example.com",
        text="hi",
        headers=[("X-Vidim-Mode", "video"), ("X-Vidim-Invite", value)],
    )
    w.net.run(5.0)
    reason = f"X-Vidim-Invite value of {len(value)} characters; at most 8192"
    assert_refused(w, w.alice, request, 400, reason, told=False)


def test_an_invitee_uri_over_2_kib_is_400_and_the_requester_is_told() -> None:
    w = make_world()
    uri = f"sip:{'c' * 3000}@example.com"
    request = w.alice.send_message(
        0.0,
        to="sip:bob@example.com",
        text="hi",
        headers=[("X-Vidim-Mode", "video"), ("X-Vidim-Invite", f"<{uri}>")],
    )
    w.net.run(5.0)
    response = final_response(w.alice, request)
    assert response.status == 400
    assert f"of {len(uri)} characters; at most 2048" in (response.headers.get("Warning") or "")
    assert w.allocator.conferences == {}
    assert w.focus.requests == []
    assert all(len(line) < 200 for _, line in allocator_sent(w.net))


def test_a_resource_list_entry_over_2_kib_is_400() -> None:
    w = make_world()
    uri = f"sip:{'d' * 3000}@example.com"
    request = _resource_list_message(w, text="/video", mode_header=None, entries=[ListEntry(uri)])
    w.net.run(5.0)
    response = final_response(w.alice, request)
    assert response.status == 400
    assert f"of {len(uri)} characters; at most 2048" in (response.headers.get("Warning") or "")
    assert w.focus.requests == []


# -- send failures (issue 18) ---------------------------------------------------------------


def test_an_invitation_the_transport_cannot_send_is_reported_and_the_requester_told() -> None:
    w = make_world()

    def too_big_for_bob(message: Message, destination: Address) -> str | None:
        if (
            isinstance(message, Request)
            and message.method == "MESSAGE"
            and "bob@" in str(message.uri)
        ):
            return "[Errno 90] Message too long"
        return None

    w.net.fail.append(too_big_for_bob)
    w.alice.send_message(0.0, text="/video bob carol")
    w.net.run(10.0)
    (not_sent,) = [e for e in w.net.events if isinstance(e, MessageNotSent)]
    assert not_sent.summary == "MESSAGE sip:bob@example.com"
    assert not_sent.destination == PROXY
    assert not_sent.reason == "[Errno 90] Message too long"
    (failed,) = [e for e in w.net.events if isinstance(e, InvitationFailed)]
    assert failed.invitee == "sip:bob@example.com"
    assert "503" in failed.reason
    assert "The invitation to bob@example.com was not delivered (503 Local transport error)." in (
        w.alice.texts()
    )
    assert invitation_modes(w.carol) == ["audio"]  # the others go on (carol has no video)
    assert [r.method for r in w.bob.requests] == ["OPTIONS"]  # the probe; no invitation
    # Told at once, not after Timer F: nothing more went to bob.
    assert w.net.sent("MESSAGE sip:bob@") == []


def test_a_response_the_transport_cannot_send_is_an_event_only() -> None:
    w = make_world()

    def no_202(message: Message, destination: Address) -> str | None:
        return "Connection refused" if isinstance(message, Response) else None

    w.net.fail.append(no_202)
    w.alice.send_message(0.0, text="/status")
    w.net.run(5.0)
    not_sent = [e for e in w.net.events if isinstance(e, MessageNotSent)]
    assert not_sent
    assert all(e.reason == "Connection refused" for e in not_sent)
    assert not_sent[0].summary == "404 Not Found"  # no conference of alice's
