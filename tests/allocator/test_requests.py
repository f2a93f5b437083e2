"""vidim.allocator.requests: every request form, every refusal, identity and policy."""

from __future__ import annotations

import ipaddress

import pytest
from allocator_factory import ALICE, SERVICE, command_request, message_request, wire_request

from vidim.allocator.requests import (
    AddInvitees,
    Command,
    EndConference,
    Invitee,
    NewConference,
    RequestForm,
    RequestPolicy,
    RequestRefusedError,
    ShowHelp,
    ShowStatus,
    format_command,
    help_text,
    parse_command,
    parse_request,
    requester_identity,
)
from vidim.sip import (
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    SipURI,
    build_multipart,
    error_response,
    parse_uri,
)
from vidim.vocabulary import Mode

POLICY = RequestPolicy.for_domain("example.com")
LOCAL = "127.0.0.1"
REQUESTER = SipURI(host="example.com", user="alice")
RL_NS = "urn:ietf:params:xml:ns:resource-lists"


def aor(text: str) -> SipURI:
    uri = parse_uri(text)
    assert isinstance(uri, SipURI)
    return uri


def parse(request: Request, *, source: str = LOCAL, policy: RequestPolicy = POLICY) -> Command:
    return parse_request(request, source_host=source, policy=policy)


def refused(
    request: Request,
    status: int,
    match: str,
    *,
    source: str = LOCAL,
    policy: RequestPolicy = POLICY,
) -> RequestRefusedError:
    with pytest.raises(RequestRefusedError, match=match) as info:
        parse(request, source=source, policy=policy)
    assert info.value.status_hint == status, info.value.reason
    return info.value


def invitees(command: Command) -> list[tuple[str, Mode | None]]:
    assert isinstance(command, (NewConference, AddInvitees))
    return [(str(i.uri), i.mode) for i in command.invitees]


def resource_list(*uris: str, extra: str = "") -> bytes:
    entries = "".join(f'<entry uri="{u}"/>' for u in uris)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<resource-lists xmlns="{RL_NS}"><list>{entries}{extra}</list></resource-lists>'
    ).encode()


def multipart_request(
    parts: list[tuple[str, bytes]], uri: str = SERVICE, extra: list[tuple[str, str]] | None = None
) -> Request:
    ctype, body = build_multipart(parts, boundary="b0undary")
    return message_request(uri, body=body, content_type=ctype, extra=extra or [])


# -- policy ---------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = RequestPolicy()
    assert policy.domain == "localhost"
    assert policy.service_uri == SipURI(host="localhost", user="vidim")
    assert policy.max_invitees == 16
    assert policy.require_trusted_source
    assert policy.max_text_length == 2000
    assert ipaddress.ip_network("127.0.0.0/8") in policy.trusted_networks
    assert ipaddress.ip_network("::1/128") in policy.trusted_networks


def test_policy_service_uri_follows_domain() -> None:
    assert RequestPolicy(domain="Example.org").service_uri == SipURI(
        host="example.org", user="vidim"
    )
    explicit = SipURI(host="conf.example.org", user="meet")
    assert RequestPolicy(domain="example.org", service_uri=explicit).service_uri == explicit


def test_policy_for_domain() -> None:
    policy = RequestPolicy.for_domain(
        "example.net", "conf", max_invitees=3, trusted_networks=["10.0.0.0/8"]
    )
    assert policy.service_uri == SipURI(host="example.net", user="conf")
    assert policy.trusted_networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert policy.max_invitees == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"domain": "bad domain"}, "bad domain"),
        ({"max_invitees": 0}, "max_invitees must be at least 1"),
        ({"max_text_length": 0}, "length limits"),
        ({"service_uri": SipURI(host="example.com")}, "has no user part"),
    ],
)
def test_policy_refuses_nonsense(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RequestPolicy(**kwargs)  # type: ignore[arg-type]


# -- source, method, not ours ------------------------------------------------------


def test_untrusted_source_is_403_without_requester() -> None:
    error = refused(
        command_request("/video bob"), 403, "untrusted source 192.0.2.9", source="192.0.2.9"
    )
    assert error.requester is None


@pytest.mark.parametrize("source", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1"])
def test_trusted_sources(source: str) -> None:
    assert isinstance(parse(command_request("/video bob"), source=source), NewConference)


@pytest.mark.parametrize("source", ["10.0.0.1", "::2", "localhost", "", "127.0.0.1.evil", "\x00"])
def test_untrusted_sources(source: str) -> None:
    refused(command_request("/video bob"), 403, "untrusted source", source=source)


def test_trust_is_decided_per_policy_even_for_a_source_seen_before() -> None:
    """The per-source trust cache never answers for another policy's networks."""
    lan = RequestPolicy.for_domain("example.com", trusted_networks=["10.0.0.0/8"])
    assert isinstance(
        parse(command_request("/video bob"), source="10.1.2.3", policy=lan), NewConference
    )
    refused(command_request("/video bob"), 403, "untrusted source 10.1.2.3", source="10.1.2.3")
    assert isinstance(
        parse(command_request("/video bob"), source="10.1.2.3", policy=lan), NewConference
    )
    assert isinstance(parse(command_request("/video bob"), source="127.0.0.1"), NewConference)
    refused(command_request("/video bob"), 403, "untrusted source", source="127.0.0.1", policy=lan)


def test_untrusted_source_accepted_when_not_required() -> None:
    policy = RequestPolicy.for_domain("example.com", require_trusted_source=False)
    command = parse(command_request("/video bob"), source="198.51.100.7", policy=policy)
    assert isinstance(command, NewConference)


def test_source_check_comes_first() -> None:
    # Even a request that is not vidim's: the source is checked first.
    refused(message_request("sip:bob@example.com"), 403, "untrusted source", source="192.0.2.1")


def test_not_a_message_is_405_with_allow() -> None:
    error = refused(message_request(method="INVITE"), 405, "not INVITE")
    assert error.headers == (("Allow", "MESSAGE"),)


def test_ordinary_message_is_404() -> None:
    request = message_request("sip:bob@example.com", body=b"hello bob")
    error = refused(request, 404, "^not a vidim request$")
    assert error.requester is None


def test_multipart_to_someone_without_mode_is_404() -> None:
    refused(multipart_request([("application/resource-lists+xml", resource_list("sip:b@x.org"))],
                              uri="sip:bob@example.com"), 404, "not a vidim request")  # fmt: skip


def test_service_uri_compared_case_insensitively() -> None:
    request = message_request("sip:VIDIM@EXAMPLE.com", body=b"/chat bob")
    assert isinstance(parse(request), NewConference)
    request = message_request("sips:%76idim@example.com", body=b"/chat bob")
    assert isinstance(parse(request), NewConference)


def test_service_user_at_a_local_address_is_the_service() -> None:
    """Kamailio's ``myself``: vidim@ any address the allocator listens on or advertises."""
    policy = RequestPolicy(
        domain="example.com",
        local_addresses=(("127.0.0.1", 5070), ("2001:db8::1", 5070), ("sip.example.org", 5070)),
    )
    for uri in ("sip:vidim@127.0.0.1:5070", "sip:vidim@127.0.0.1", "sip:vidim@[2001:DB8:0::1]",
                "sip:Vidim@SIP.example.org:5070"):  # fmt: skip
        assert isinstance(parse(message_request(uri, body=b"/end"), policy=policy), EndConference)
    # Another port, another host, another user, or no local addresses: not vidim.
    for uri, with_policy in (("sip:vidim@127.0.0.1:5080", policy),
                             ("sip:vidim@127.0.0.2:5070", policy),
                             ("sip:bob@127.0.0.1:5070", policy),
                             ("sip:vidim@127.0.0.1:5070", POLICY)):  # fmt: skip
        refused(message_request(uri, body=b"/end"), 404, "not a vidim request", policy=with_policy)


def test_an_invitee_at_a_local_address_is_the_service_and_dropped() -> None:
    policy = RequestPolicy(domain="example.com", local_addresses=(("127.0.0.1", 5070),))
    command = parse(
        message_request(SERVICE, body=b"/chat bob, vidim@127.0.0.1:5070"), policy=policy
    )
    assert invitees(command) == [("sip:bob@example.com", None)]


# -- requester identity -------------------------------------------------------------


def test_requester_is_from_address_of_record() -> None:
    request = command_request("/help", from_uri="sip:Alice@Example.COM:5070;transport=tcp")
    assert parse(request) == ShowHelp(requester=SipURI(host="example.com", user="Alice"))


def test_pai_trusted_source_wins() -> None:
    request = command_request(
        "/help", extra=[("P-Asserted-Identity", '"Eve" <sip:eve@example.com>')]
    )
    assert requester_identity(request, source_host=LOCAL, policy=POLICY) == aor(
        "sip:eve@example.com"
    )
    assert parse(request) == ShowHelp(requester=aor("sip:eve@example.com"))


def test_pai_ignored_from_untrusted_source() -> None:
    policy = RequestPolicy.for_domain("example.com", require_trusted_source=False)
    request = command_request("/help", extra=[("P-Asserted-Identity", "<sip:eve@example.com>")])
    assert requester_identity(request, source_host="192.0.2.1", policy=policy) == REQUESTER
    # Not even read: a malformed one does not matter.
    request = command_request("/help", extra=[("P-Asserted-Identity", "<<<")])
    assert parse(request, source="192.0.2.1", policy=policy) == ShowHelp(requester=REQUESTER)


def test_pai_first_sip_value_and_tel_only_falls_back() -> None:
    both = command_request(
        "/help", extra=[("P-Asserted-Identity", "<tel:+15551234>, <sips:eve@Example.com>")]
    )
    assert requester_identity(both, source_host=LOCAL, policy=POLICY) == aor("sips:eve@example.com")
    tel = command_request("/help", extra=[("P-Asserted-Identity", "<tel:+15551234>")])
    assert requester_identity(tel, source_host=LOCAL, policy=POLICY) == REQUESTER


def test_bad_pai_and_from() -> None:
    error = refused(command_request("/help", extra=[("P-Asserted-Identity", "<sip:@@>")]), 400,
                    "malformed P-Asserted-Identity")  # fmt: skip
    assert error.requester is None
    refused(
        command_request("/help", from_uri="tel:+15551234"),
        400,
        "unsupported URI scheme tel: in From",
    )
    refused(command_request("/help", from_uri="sip:example.com"), 400, "From has no user part")
    refused(wire_request(from_uri="sip:al%00ice@example.com", body=b"/help"), 400,
            "control character in the user part of From")  # fmt: skip


def test_requester_gets_refusals_by_im() -> None:
    error = refused(command_request("/foo"), 400, "unknown command")
    assert error.requester == REQUESTER


def test_refusal_is_a_remote_protocol_error_with_warning() -> None:
    request = command_request('/video "bob"')
    with pytest.raises(RemoteProtocolError, match="malformed invitee") as info:
        parse(request)
    response = error_response(request, info.value, warning_host="example.com")
    assert response.status == 400
    assert response.headers.get("Warning") == '399 example.com "malformed invitee \\"\\"bob\\"\\""'


# -- header form ---------------------------------------------------------------------


def header_request(
    uri: str = "sip:bob@example.com", mode: str = "video", invite: str | None = None
) -> Request:
    extra = [("X-Vidim-Mode", mode)]
    if invite is not None:
        extra.append(("X-Vidim-Invite", invite))
    return message_request(uri, body=b"let's talk", extra=extra)


def test_header_form_as_in_the_design() -> None:
    request = header_request(invite="<sip:carol@example.com>;mode=audio, <sip:dan@example.com>")
    assert parse(request) == NewConference(
        requester=REQUESTER,
        mode=Mode.VIDEO,
        invitees=(
            Invitee(uri=aor("sip:bob@example.com")),
            Invitee(uri=aor("sip:carol@example.com"), mode=Mode.AUDIO),
            Invitee(uri=aor("sip:dan@example.com")),
        ),
        form=RequestForm.HEADER,
    )


@pytest.mark.parametrize(("text", "mode"), [("VIDEO", Mode.VIDEO), (" Audio ", Mode.AUDIO),
                                            ("wAtCh", Mode.WATCH), ("chat", Mode.CHAT)])  # fmt: skip
def test_header_mode_case_insensitive(text: str, mode: Mode) -> None:
    command = parse(header_request(mode=text, invite="<sip:carol@example.com>;MODE=Video"))
    assert isinstance(command, NewConference)
    assert command.mode is mode
    assert command.invitees[1].mode is Mode.VIDEO


def test_header_unknown_mode_exact_reason() -> None:
    error = refused(header_request(mode="hologram"), 400,
                    '^unknown mode "hologram"; use video, audio, watch or chat$')  # fmt: skip
    assert error.requester == REQUESTER


def test_header_mode_repeated_and_conflicting() -> None:
    request = message_request(
        "sip:bob@example.com", extra=[("X-Vidim-Mode", "video"), ("X-Vidim-Mode", "VIDEO")]
    )
    assert isinstance(parse(request), NewConference)
    request = message_request("sip:bob@example.com", extra=[("X-Vidim-Mode", "video, audio")])
    refused(request, 400, "more than one X-Vidim-Mode")


def test_header_empty_mode() -> None:
    refused(
        wire_request("sip:bob@example.com", extra=[("X-Vidim-Mode", b"")]),
        400,
        "empty X-Vidim-Mode",
    )


def test_header_invitee_unknown_mode_param() -> None:
    refused(header_request(invite="<sip:carol@example.com>;mode=hologram"), 400,
            'unknown mode "hologram" for invitee')  # fmt: skip
    refused(header_request(invite="<sip:carol@example.com>;mode"), 400, "empty mode parameter")


def test_header_invitee_mode_param_quoted_and_addr_spec() -> None:
    command = parse(header_request(invite='sip:carol@example.com;mode="watch"'))
    assert invitees(command)[1] == ("sip:carol@example.com", Mode.WATCH)


@pytest.mark.parametrize(
    ("invite", "match"),
    [
        ("<tel:+15551234>", "unsupported URI scheme tel: in invitee"),
        ("<mailto:carol@example.com>", "unsupported URI scheme mailto:"),
        ("<sip:carol@exa mple.com>", "malformed invitee"),
        ("<sip:example.com>", 'invitee "<sip:example.com>" has no user part'),
        ("<sip:carol@example.com", "malformed invitee"),
        ("<sip:a@b.com>,,<sip:c@d.com>", "malformed X-Vidim-Invite"),
        ("<sip:%0d%0aVia:x@example.com>", "control character in the user part of invitee"),
    ],
)
def test_header_bad_invitees(invite: str, match: str) -> None:
    refused(header_request(invite=invite), 400, match)


def test_header_duplicates_first_wins_and_normalized() -> None:
    request = header_request(
        invite="<sip:carol@example.com>;mode=audio, <sips:%63arol@EXAMPLE.COM:5061;transport=tls>;mode=chat,"
        " <sip:bob@Example.com>;mode=chat, <sip:carol@example.com>"
    )
    assert invitees(parse(request)) == [
        ("sip:bob@example.com", None),
        ("sip:carol@example.com", Mode.AUDIO),
    ]


def test_header_escapes_of_reserved_characters_kept_distinct() -> None:
    request = header_request(invite="<sip:a%3bb@example.com>, <sip:a;b@example.com>")
    assert invitees(parse(request))[1:] == [
        ("sip:a%3Bb@example.com", None),
        ("sip:a;b@example.com", None),
    ]


def test_header_requester_inviting_itself_is_dropped() -> None:
    command = parse(header_request(invite="<sip:alice@EXAMPLE.com>, <sip:carol@example.com>"))
    assert invitees(command) == [("sip:bob@example.com", None), ("sip:carol@example.com", None)]
    refused(header_request(uri=ALICE), 400, "no invitees: you cannot invite yourself")


def test_header_to_the_service_uri() -> None:
    command = parse(header_request(uri=SERVICE, mode="audio", invite="<sip:carol@example.com>"))
    assert invitees(command) == [("sip:carol@example.com", None)]
    refused(header_request(uri=SERVICE), 400, "^no invitees: add X-Vidim-Invite")


def test_header_request_uri_checks() -> None:
    refused(
        header_request(uri="tel:+15551234"), 416, "unsupported URI scheme tel: in the Request-URI"
    )
    refused(header_request(uri="sip:example.com"), 400, "the Request-URI has no user part")


def test_header_too_many_invitees() -> None:
    many = ", ".join(f"<sip:u{i}@example.com>" for i in range(16))
    refused(header_request(invite=many), 400, "^too many invitees: 17, at most 16$")
    assert len(invitees(parse(header_request(invite=many.rsplit(",", 1)[0])))) == 16
    small = RequestPolicy.for_domain("example.com", max_invitees=2)
    refused(header_request(invite=many), 400, "too many invitees: 17, at most 2", policy=small)


@pytest.mark.parametrize(
    ("name", "raw", "match"),
    [
        ("X-Vidim-Mode", b"vi\x00deo", "control character in X-Vidim-Mode"),
        ("X-Vidim-Mode", b"video\x7f", "control character in X-Vidim-Mode"),
        ("X-Vidim-Mode", b"vid\xffeo", "invalid UTF-8 in X-Vidim-Mode"),
        (
            "X-Vidim-Invite",
            b"<sip:carol@example.com>\x1b[2J",
            "control character in X-Vidim-Invite",
        ),
        ("X-Vidim-Invite", b"<sip:carol%00@example.com>", "control character in the user part"),
        (
            "X-Vidim-Invite",
            "<sip:carol@example.com>;mode=au\u0085dio".encode(),
            "control character",
        ),
    ],
)
def test_header_control_characters(name: str, raw: bytes, match: str) -> None:
    extra = [("X-Vidim-Mode", b"video")] if name != "X-Vidim-Mode" else []
    refused(wire_request("sip:bob@example.com", extra=[*extra, (name, raw)]), 400, match)


def test_header_form_tab_is_whitespace() -> None:
    request = wire_request("sip:bob@example.com", extra=[("X-Vidim-Mode", b"\tvideo")])
    assert isinstance(parse(request), NewConference)


# -- command form --------------------------------------------------------------------


def test_command_form_as_in_the_design() -> None:
    command = parse(command_request("/video bob carol;mode=audio"))
    assert command == NewConference(
        requester=REQUESTER,
        mode=Mode.VIDEO,
        invitees=(
            Invitee(uri=aor("sip:bob@example.com")),
            Invitee(uri=aor("sip:carol@example.com"), mode=Mode.AUDIO),
        ),
        form=RequestForm.COMMAND,
    )
    command = parse(command_request("/audio sip:dan@other.org"))
    assert command == NewConference(requester=REQUESTER, mode=Mode.AUDIO,
                                    invitees=(Invitee(uri=aor("sip:dan@other.org")),),
                                    form=RequestForm.COMMAND)  # fmt: skip


@pytest.mark.parametrize(("word", "mode"), [("/video", Mode.VIDEO), ("/AUDIO", Mode.AUDIO),
                                            ("/Watch", Mode.WATCH), ("/cHaT", Mode.CHAT)])  # fmt: skip
def test_mode_commands_case_insensitive(word: str, mode: Mode) -> None:
    command = parse(command_request(f"{word} bob;MODE=Chat"))
    assert isinstance(command, NewConference)
    assert command.mode is mode
    assert invitees(command) == [("sip:bob@example.com", Mode.CHAT)]


def test_bare_name_takes_the_requesters_domain_and_scheme() -> None:
    command = parse(command_request("/chat bob", from_uri="sips:zoe@Other.ORG"))
    assert invitees(command) == [("sips:bob@other.org", None)]
    pai = [("P-Asserted-Identity", "<sip:yann@third.example>")]
    assert invitees(parse(command_request("/chat bob", extra=pai))) == [
        ("sip:bob@third.example", None)
    ]


def test_address_forms() -> None:
    command = parse(command_request(
        "/video erin@Other.org sips:frank@other.org:5061;transport=tls;mode=watch "
        "SIP:gina@[2001:DB8::1] hal@192.0.2.7;mode=audio %69van"
    ))  # fmt: skip
    assert invitees(command) == [
        ("sip:erin@other.org", None),
        # An invitee's port and transport stay: they say how to reach it.
        ("sips:frank@other.org:5061;transport=tls", Mode.WATCH),
        ("sip:gina@[2001:db8::1]", None),
        ("sip:hal@192.0.2.7", Mode.AUDIO),
        ("sip:ivan@example.com", None),
    ]


def test_separators_and_surrounding_whitespace() -> None:
    text = "\ufeff \r\n /video\tbob,carol , ,dan,,\terin \r\n\r\n"
    assert [u for u, _ in invitees(parse(command_request(text)))] == [
        f"sip:{n}@example.com" for n in ("bob", "carol", "dan", "erin")
    ]
    assert isinstance(parse(command_request("/video,bob")), NewConference)


def test_command_duplicates_first_wins_self_and_service_dropped() -> None:
    command = parse(
        command_request(
            "/video bob;mode=audio alice bob@EXAMPLE.com;mode=chat vidim sip:bob@example.com carol"
        )
    )
    assert invitees(command) == [
        ("sip:bob@example.com", Mode.AUDIO),
        ("sip:carol@example.com", None),
    ]
    refused(
        command_request("/video alice vidim"),
        400,
        "no invitees: you cannot invite yourself or the vidim service",
    )


def test_follow_up_commands() -> None:
    assert parse(command_request("/add erin")) == AddInvitees(
        requester=REQUESTER, invitees=(Invitee(uri=aor("sip:erin@example.com")),)
    )
    assert parse(command_request("/ADD #Conf-1_x.y~ erin;mode=watch, frank")) == AddInvitees(
        requester=REQUESTER,
        invitees=(Invitee(uri=aor("sip:erin@example.com"), mode=Mode.WATCH),
                  Invitee(uri=aor("sip:frank@example.com"))),
        conference_id="Conf-1_x.y~",
    )  # fmt: skip
    assert parse(command_request("/end")) == EndConference(requester=REQUESTER)
    assert parse(command_request("/End #abc")) == EndConference(
        requester=REQUESTER, conference_id="abc"
    )
    assert parse(command_request("/status")) == ShowStatus(requester=REQUESTER)
    assert parse(command_request(" /STATUS  #abc ")) == ShowStatus(
        requester=REQUESTER, conference_id="abc"
    )
    assert parse(command_request("/help")) == ShowHelp(requester=REQUESTER)
    assert parse(command_request("/HELP me please")) == ShowHelp(requester=REQUESTER)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("/foo bob", '^unknown command "/foo"; send /help$'),
        ("/", '^unknown command "/"; send /help$'),
        ("/videobob", 'unknown command "/videobob"'),
        ("video bob", '^not a command: "video bob"; start with /video, /audio'),
        ("hello there", "not a command"),
        ("   ", "^empty command; send /help$"),
        ("\ufeff\r\n", "^empty command; send /help$"),
        ("/video", "^no invitees: name at least one, e.g. /video bob$"),
        ("/chat ,, ", "no invitees"),
        ("/add", "no invitees: /add needs at least one"),
        ("/add #abc", "no invitees: /add needs at least one"),
        ("/video bob #abc", "/video starts a new conference: no #conference-id"),
        ("/end bob", '^/end takes only an optional #conference-id, not "bob"$'),
        ("/status #a #b", "more than one #conference-id"),
        ("/end #", 'malformed conference id "#"'),
        ("/end #a/b", 'malformed conference id "#a/b"'),
        ("/end #" + "a" * 129, "malformed conference id"),
        ("/video bob;mode=hologram", 'unknown mode "hologram" for "bob;mode=hologram"; use video'),
        ("/video bob;mode=", 'empty ;mode= in "bob;mode="'),
        ("/video bob;mode", "empty ;mode="),
        ("/video bob;mode=audio;mode=chat", "more than one ;mode="),
        ("/video bob;lr", 'unknown parameter ";lr" in "bob;lr"; only ;mode=<mode>'),
        ("/video bob@example.com;x=1", 'unknown parameter ";x"'),
        ("/video tel:+15551234", "unsupported URI scheme tel: in invitee"),
        ("/video sip:example.com", 'invitee "sip:example.com" has no user part'),
        ("/video sip:bob@", 'malformed invitee "sip:bob@"'),
        ("/video bob@exa_mple.com", "malformed invitee"),
        ('/video "bob"', "malformed invitee"),
        ("/video b\u00f6b", "malformed invitee"),
        ("/video bob%0acarol", "control character in the user part"),
        ("/video bob\ncarol", "^control character in command text$"),
        ("/video bob\rcarol", "control character in command text"),
        ("/video bob\x00", "control character in command text"),
        ("/video bob\x7f", "control character in command text"),
        ("/video bob\u009b", "control character in command text"),
    ],
)
def test_command_refusals(text: str, match: str) -> None:
    error = refused(command_request(text), 400, match)
    assert error.requester == REQUESTER


def test_too_many_invitees_in_command() -> None:
    names = " ".join(f"u{i}" for i in range(17))
    refused(command_request(f"/video {names}"), 400, "^too many invitees: 17, at most 16$")
    # Duplicates do not count.
    assert len(invitees(parse(command_request(f"/video {names} u0 u1".replace("u16", "u0"))))) == 16


def test_over_long_text_is_413() -> None:
    text = "/video " + " ".join(["bob"] * 600)
    refused(command_request(text), 413, r"command text too long: 2406 bytes, at most 2000")
    small = RequestPolicy.for_domain("example.com", max_text_length=10)
    refused(command_request("/video bob carol"), 413, "at most 10", policy=small)
    with pytest.raises(RequestRefusedError, match="too long") as info:
        parse_command("/video " + "é" * 1000, requester=REQUESTER, policy=POLICY)
    assert info.value.status_hint == 413


def test_invalid_utf8_body() -> None:
    refused(message_request(body=b"/video b\xffb"), 400, "^invalid UTF-8 in command text$")


@pytest.mark.parametrize(
    ("content_type", "match"),
    [
        ("application/json", "unsupported body type application/json; send text/plain"),
        ("text/html", "unsupported body type text/html"),
        ("text/plain;charset=ISO-8859-1", "unsupported charset ISO-8859-1; send UTF-8"),
        (None, r"unsupported body type \(no Content-Type\)"),
    ],
)
def test_unsupported_content_type_is_415_with_accept(content_type: str | None, match: str) -> None:
    error = refused(command_request("/video bob", content_type=content_type), 415, match)
    assert error.headers == (("Accept", "text/plain, multipart/mixed"),)


def test_utf8_charsets_accepted() -> None:
    for ctype in ("text/plain;charset=UTF-8", 'Text/Plain; charset="us-ascii"', "TEXT/PLAIN"):
        assert isinstance(parse(command_request("/video bob", content_type=ctype)), NewConference)


def test_content_encoding_is_415() -> None:
    error = refused(command_request("/video bob", extra=[("Content-Encoding", "gzip")]), 415,
                    "unsupported Content-Encoding gzip")  # fmt: skip
    assert ("Accept-Encoding", "identity") in error.headers


def test_malformed_content_type() -> None:
    refused(command_request("/video bob", content_type="text"), 400, "malformed Content-Type")


def test_empty_message_to_service() -> None:
    refused(message_request(SERVICE), 400, "^empty command; send /help$")


def test_multipart_with_one_text_part_is_a_command() -> None:
    command = parse(multipart_request([("text/plain", b"/watch bob")]))
    assert isinstance(command, NewConference)
    assert command.form is RequestForm.COMMAND
    assert command.mode is Mode.WATCH
    refused(
        multipart_request([("image/png", b"\x89PNG")]),
        415,
        "no text/plain part and no resource list",
    )
    refused(
        multipart_request([("text/plain", b"/end"), ("text/plain", b"/help")]),
        400,
        "more than one text/plain part",
    )


def test_header_form_wins_over_a_command_body() -> None:
    request = message_request(SERVICE, body=b"/end", extra=[("X-Vidim-Mode", "chat"),
                                                             ("X-Vidim-Invite", "<sip:bob@example.com>")])  # fmt: skip
    command = parse(request)
    assert isinstance(command, NewConference)
    assert command.form is RequestForm.HEADER


# -- RFC 5365 form -------------------------------------------------------------------


def test_resource_lists_with_mode_header() -> None:
    request = multipart_request(
        [("text/plain", b"join us"),
         ("application/resource-lists+xml", resource_list("sip:carol@example.com", "sips:dan@Other.org"))],
        extra=[("X-Vidim-Mode", "audio")],
    )  # fmt: skip
    assert parse(request) == NewConference(
        requester=REQUESTER,
        mode=Mode.AUDIO,
        invitees=(
            Invitee(uri=aor("sip:carol@example.com")),
            Invitee(uri=aor("sips:dan@other.org")),
        ),
        form=RequestForm.RESOURCE_LISTS,
    )


def test_resource_lists_to_a_user_with_header_invitees() -> None:
    request = multipart_request(
        [
            (
                "application/resource-lists+xml",
                resource_list("sip:carol@example.com", "sip:bob@example.com"),
            )
        ],
        uri="sip:bob@example.com",
        extra=[("X-Vidim-Mode", "watch"), ("X-Vidim-Invite", "<sip:erin@example.com>;mode=chat")],
    )
    assert invitees(parse(request)) == [
        ("sip:bob@example.com", None),
        ("sip:erin@example.com", Mode.CHAT),
        ("sip:carol@example.com", None),
    ]


def test_resource_lists_mode_from_text_part() -> None:
    request = multipart_request([("text/plain", b"/Chat erin;mode=audio"),
                                 ("application/resource-lists+xml", resource_list("sip:carol@example.com"))])  # fmt: skip
    assert parse(request) == NewConference(
        requester=REQUESTER,
        mode=Mode.CHAT,
        invitees=(Invitee(uri=aor("sip:erin@example.com"), mode=Mode.AUDIO),
                  Invitee(uri=aor("sip:carol@example.com"))),
        form=RequestForm.RESOURCE_LISTS,
    )  # fmt: skip


def test_resource_lists_with_add() -> None:
    request = multipart_request([("application/resource-lists+xml", resource_list("sip:carol@example.com")),
                                 ("text/plain", b"/add #c0nf")])  # fmt: skip
    assert parse(request) == AddInvitees(
        requester=REQUESTER,
        invitees=(Invitee(uri=aor("sip:carol@example.com")),),
        conference_id="c0nf",
    )


def test_resource_lists_nested_lists_and_display_names() -> None:
    body = (
        f'<resource-lists xmlns="{RL_NS}"><list name="a"><display-name>A</display-name>'
        '<entry uri="sip:carol@example.com"><display-name>Carol</display-name></entry>'
        '<list><entry uri=" sip:dan@example.com "/></list></list><!-- c --></resource-lists>'
    ).encode()
    request = multipart_request(
        [("application/resource-lists+xml", body)], extra=[("X-Vidim-Mode", "video")]
    )
    assert invitees(parse(request)) == [
        ("sip:carol@example.com", None),
        ("sip:dan@example.com", None),
    ]


@pytest.mark.parametrize(
    ("parts", "match"),
    [
        ([("application/resource-lists+xml", resource_list("sip:carol@example.com"))],
         "^no mode: add X-Vidim-Mode or a text/plain part such as /video$"),
        ([("text/plain", b"/end"), ("application/resource-lists+xml", resource_list("sip:c@example.com"))],
         "a resource list goes with /video, /audio, /watch, /chat or /add, not /end"),
        ([("text/plain", b"/hologram"), ("application/resource-lists+xml", resource_list("sip:c@example.com"))],
         'unknown command "/hologram"'),
        ([("application/resource-lists+xml", resource_list("sip:a@example.com")),
          ("application/resource-lists+xml", resource_list("sip:b@example.com"))], "more than one resource list"),
    ],
)  # fmt: skip
def test_resource_lists_refusals_without_mode(parts: list[tuple[str, bytes]], match: str) -> None:
    refused(multipart_request(parts), 400, match)


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>'
    b'<entry uri="sip:&lol2;@example.com"/></list></resource-lists>'
)


@pytest.mark.parametrize(
    ("body", "status", "match"),
    [
        (BILLION_LAUGHS, 400, "^bad resource list: XML with a DTD is not accepted$"),
        (b'<!doctype x><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>', 400, "bad resource list: malformed XML"),
        (resource_list("sip:carol@example.com")[:-5], 400, "^bad resource list: malformed XML: "),
        (b"not xml at all", 400, "bad resource list: malformed XML"),
        (b'<resource-lists><list><entry uri="sip:c@example.com"/></list></resource-lists>', 400,
         "bad resource list: expected <resource-lists>"),
        (resource_list(extra="<entry/>"), 400, "^bad resource list: <entry> without a uri attribute$"),
        (resource_list("tel:+15551234"), 400, "unsupported URI scheme tel: in invitee"),
        (resource_list("sip:carol@exa mple.com"), 400, "bad entry uri 'sip:carol@exa mple.com'"),
        (resource_list("sip:carol@example.com&#10;x"), 400, "entry uri contains control"),
        (resource_list(extra='<external anchor="http://example.com/list"/>'), 400, "<external> references are not supported"),
        (resource_list(extra='<entry-ref ref="x"/>'), 400, "<entry-ref> references are not supported"),
        ("<résumé/>".encode("latin-1"), 400, "bad resource list: malformed XML"),
        (resource_list(*[f"sip:u{i}@example.com" for i in range(17)]), 400, "too many invitees: 17, at most 16"),
        (resource_list(), 400, "^no invitees: the resource list is empty$"),
        (resource_list(*[f"sip:u{i}@example.com" for i in range(3000)]), 413, "resource list too long"),
    ],
)  # fmt: skip
def test_resource_list_refusals(body: bytes, status: int, match: str) -> None:
    request = multipart_request(
        [("application/resource-lists+xml", body)], extra=[("X-Vidim-Mode", "video")]
    )
    refused(request, status, match)


def test_malformed_multipart_body() -> None:
    request = message_request(SERVICE, body=b"--b0undary\r\n\r\n/video bob\r\n",
                              content_type="multipart/mixed;boundary=b0undary")  # fmt: skip
    refused(request, 400, "^malformed multipart body: ")
    request = message_request(SERVICE, body=b"x", content_type="multipart/mixed")
    refused(request, 400, "malformed multipart body: multipart body without boundary")


# -- writing and help ----------------------------------------------------------------


def test_format_command_examples() -> None:
    command = parse(
        command_request("/VIDEO bob carol;mode=Audio sips:dan@Other.org erin@other.org")
    )
    assert (
        format_command(command) == "/video bob carol;mode=audio sips:dan@other.org erin@other.org"
    )
    assert format_command(AddInvitees(requester=REQUESTER, invitees=(Invitee(uri=aor("sip:a%2Cb@x.org")),),
                                      conference_id="k")) == "/add a%2Cb@x.org #k"  # fmt: skip
    assert format_command(EndConference(requester=REQUESTER)) == "/end"
    assert format_command(ShowStatus(requester=REQUESTER, conference_id="z")) == "/status #z"
    assert format_command(ShowHelp(requester=REQUESTER)) == "/help"


def test_format_command_refuses_a_comma_in_a_user() -> None:
    command = NewConference(requester=REQUESTER, mode=Mode.CHAT,
                            invitees=(Invitee(uri=aor("sip:a,b@x.org")),), form=RequestForm.COMMAND)  # fmt: skip
    with pytest.raises(LocalProtocolError, match="cannot be written"):
        format_command(command)


def test_help_text() -> None:
    text = help_text(RequestPolicy.for_domain("example.org", "meet", max_invitees=5))
    assert "sip:meet@example.org" in text
    assert "at most 5" in text
    for word in (
        "/video",
        "/audio",
        "/watch",
        "/chat",
        "/add",
        "/end",
        "/status",
        "/help",
        ";mode=",
        "#<conference-id>",
    ):
        assert word in text
    # The example in the help text is itself a valid command.
    example = text.rsplit("Example: ", 1)[1]
    assert isinstance(parse_command(example, requester=REQUESTER, policy=POLICY), NewConference)
    assert parse(command_request("/help")) == ShowHelp(requester=REQUESTER)


def test_invitee_effective_mode() -> None:
    assert Invitee(uri=REQUESTER).effective_mode(Mode.VIDEO) is Mode.VIDEO
    assert Invitee(uri=REQUESTER, mode=Mode.CHAT).effective_mode(Mode.VIDEO) is Mode.CHAT
