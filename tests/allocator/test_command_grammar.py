"""Property tests on the command grammar of vidim.allocator.requests.

(1) any text, body or mutated wire message gives a Command or a
RequestRefusedError, never another exception; (2) generated valid commands
parse to exactly the invitees and modes generated; (3) format_command then
parse_command is the identity.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from allocator_factory import SERVICE, command_request, message_request
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

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
    parse_command,
    parse_request,
)
from vidim.sip import Request, SIPParseError, SipURI, parse_message
from vidim.vocabulary import Mode

POLICY = RequestPolicy.for_domain("example.com")
REQUESTER = SipURI(host="example.com", user="alice")
SIPS_REQUESTER = SipURI(host="other.org", scheme="sips", user="zoe")

# -- (1) nothing but RequestRefusedError ----------------------------------------------

COMMAND_ALPHABET = st.sampled_from(
    [*"/ ,;=#@:%.-_!~*'`+abcdemosuvwhiltxyzADEVIW0123456789<>\"[]\t\r\n\x00\x7f",
       "video", "audio", "watch", "chat", "add", "end", "status", "help", "mode", "sip:", "sips:",
       "tel:", "example.com", "%0a", "%41", "é", "\ufeff", "\u0085", "\ud800"]
)  # fmt: skip
grammarish_text = st.lists(COMMAND_ALPHABET, max_size=40).map("".join)


def outcome(text: str, requester: SipURI = REQUESTER) -> Command | RequestRefusedError:
    try:
        return parse_command(text, requester=requester, policy=POLICY)
    except RequestRefusedError as exc:
        error = exc
    assert error.reason
    assert 400 <= error.status_hint <= 499
    return error


@given(st.one_of(st.text(), grammarish_text))
@example("/video sip:%00@example.com")
@example("/video 1.1.1.1@\u0661.\u0661.\u0661.\u0661")
def test_any_text_parses_or_is_refused(text: str) -> None:
    outcome(text)
    outcome(text, SIPS_REQUESTER)


@given(st.binary(max_size=300) | grammarish_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
       st.sampled_from([None, "text/plain", "text/plain;charset=latin1", "application/json",
                        "multipart/mixed;boundary=b", "multipart/mixed", "text"]))  # fmt: skip
def test_any_body_parses_or_is_refused(body: bytes, content_type: str | None) -> None:
    request = message_request(SERVICE, body=body, content_type=content_type)
    with contextlib.suppress(RequestRefusedError):
        parse_request(request, source_host="127.0.0.1", policy=POLICY)


SEEDS = [
    message_request(
        "sip:bob@example.com", body=b"hi",
        extra=[("X-Vidim-Mode", "video"), ("P-Asserted-Identity", "<sip:eve@example.com>"),
               ("X-Vidim-Invite", "<sip:carol@example.com>;mode=audio, sip:dan@example.com")],
    ).to_bytes(),
    command_request("/video bob carol;mode=audio sips:dan@other.org #x").to_bytes(),
    message_request(
        SERVICE,
        content_type="multipart/mixed;boundary=b",
        body=b"--b\r\nContent-Type: text/plain\r\n\r\n/audio erin\r\n--b\r\n"
        b"Content-Type: application/resource-lists+xml\r\n\r\n"
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>'
        b'<entry uri="sip:carol@example.com"/></list></resource-lists>\r\n--b--\r\n',
    ).to_bytes(),
]  # fmt: skip
MUTATION_BYTES = b' \t:;,<>"\\@=%#/[]!-_0123456789abcmodesipvxSIP\x00\x7f\xff\xc3\xa9'


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    # Without Content-Length the body is the rest of the datagram: edits there stay SIP.
    data = bytearray(re.sub(rb"Content-Length: \d+\r\n", b"", draw(st.sampled_from(SEEDS))))
    # Edits anywhere, or (more often) after the core headers, where vidim reads.
    start = draw(st.sampled_from([0, data.find(b"CSeq"), data.find(b"CSeq")]))
    for _ in range(draw(st.integers(1, 3))):
        if len(data) <= start:
            break
        pos = draw(st.integers(start, len(data) - 1))
        action = draw(st.sampled_from(["replace", "insert", "delete", "dup"]))
        byte = draw(st.sampled_from(MUTATION_BYTES))
        if action == "replace":
            data[pos] = byte
        elif action == "insert":
            data.insert(pos, byte)
        elif action == "delete":
            del data[pos]
        else:
            end = draw(st.integers(pos, min(len(data), pos + 40)))
            data[pos:pos] = data[pos:end]
    return bytes(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_messages(), st.sampled_from(["127.0.0.1", "::1"]))
def test_mutated_wire_messages_parse_or_are_refused(data: bytes, source: str) -> None:
    try:
        request = parse_message(data)
    except SIPParseError:
        event("not SIP")
        return
    if not isinstance(request, Request):
        return
    try:
        command = parse_request(request, source_host=source, policy=POLICY)
    except RequestRefusedError as exc:
        event(f"refused {exc.status_hint}")
        return
    event(type(command).__name__)
    if isinstance(command, (NewConference, AddInvitees)):
        assert 1 <= len(command.invitees) <= POLICY.max_invitees
        for invitee in command.invitees:
            assert invitee.uri.user
            # Only transport= is kept: it says how to reach the invitee (RFC 3263 4.1).
            assert all(name == "transport" for name, _ in invitee.uri.params)
            assert invitee.uri.port is None or 0 < invitee.uri.port <= 65535


# -- (2) generated valid commands --------------------------------------------------------

LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,6}[a-z0-9]", fullmatch=True)
HOSTNAME = st.lists(LABEL, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "org"]))
HOST = st.one_of(HOSTNAME, st.sampled_from(["192.0.2.7", "[2001:db8::1]", "example.com"]))
BARE_USER = st.from_regex(r"[A-Za-z0-9\-.!*_+`'~]{1,12}", fullmatch=True)
# A user part in normal form: unreserved and "&=+$;?/" as they are, others %-escaped.
USER = st.lists(
    st.one_of(st.sampled_from(list("abcXYZ019-_.!~*'()&=+$;?/")),
              st.sampled_from(["%2C", "%40", "%20", "%25", "%3A", "%C3%A9"])),
    min_size=1, max_size=10,
).map("".join)  # fmt: skip
MODES = st.sampled_from(list(Mode))


def random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(text, flips, strict=True))


@dataclass(frozen=True)
class Generated:
    text: str
    mode: Mode
    expected: tuple[Invitee, ...]


@st.composite
def invitee_args(draw: st.DrawFn, requester: SipURI) -> tuple[str, Invitee]:
    """One argument as written, and the invitee it means."""
    kind = draw(st.sampled_from(["bare", "user@host", "uri"]))
    if kind == "bare":
        user = draw(BARE_USER)
        written = user
        uri = SipURI(host=requester.host, scheme=requester.scheme,
                     user=user.replace("`", "%60"))  # fmt: skip
    elif kind == "user@host":
        user, host = draw(USER), draw(HOST)
        written = f"{user}@{random_case(draw, host)}"
        uri = SipURI(host=host, user=user)
    else:
        user, host = draw(USER), draw(HOST)
        scheme = draw(st.sampled_from(["sip", "sips"]))
        port = draw(st.sampled_from(["", ":5060", ":5061"]))
        params = draw(st.sampled_from(["", ";transport=tcp", ";lr"]))
        written = f"{random_case(draw, scheme)}:{user}@{host}{port}{params}"
        kept = (("transport", "tcp"),) if params == ";transport=tcp" else ()
        uri = SipURI(
            host=host, scheme=scheme, user=user, port=int(port[1:]) if port else None, params=kept
        )
    mode = draw(st.none() | MODES)
    if mode is not None:
        written += f";{random_case(draw, 'mode')}={random_case(draw, mode.value)}"
    return written, Invitee(uri=uri, mode=mode)


def person(uri: SipURI) -> tuple[str | None, str]:
    return uri.user, uri.host


@st.composite
def mode_commands(draw: st.DrawFn, requester: SipURI) -> Generated:
    mode = draw(MODES)
    args = draw(
        st.lists(
            invitee_args(requester),
            min_size=1,
            max_size=POLICY.max_invitees,
            unique_by=lambda a: person(a[1].uri),
        )
    )
    args = [
        (w, i)
        for w, i in args
        if person(i.uri) != person(requester) and (i.uri.user or "").lower() != "vidim"
    ]
    if not args:
        args = [
            ("bob", Invitee(uri=SipURI(host=requester.host, scheme=requester.scheme, user="bob")))
        ]
    seps = draw(st.lists(st.sampled_from([" ", ",", "\t", ", ", " ,\t", "  "]),
                         min_size=len(args), max_size=len(args)))  # fmt: skip
    lead = draw(st.sampled_from(["", " ", "\r\n", "\ufeff", "\t "]))
    trail = draw(st.sampled_from(["", " ", "\r\n", ",", " \r\n\r\n"]))
    word = "/" + random_case(draw, mode.value)
    text = lead + word + "".join(sep + w for sep, (w, _) in zip(seps, args, strict=True)) + trail
    return Generated(text=text, mode=mode, expected=tuple(i for _, i in args))


@given(st.data())
def test_generated_mode_commands_parse_to_what_was_generated(data: st.DataObject) -> None:
    requester = data.draw(st.sampled_from([REQUESTER, SIPS_REQUESTER]))
    generated = data.draw(mode_commands(requester))
    command = parse_command(generated.text, requester=requester, policy=POLICY)
    assert command == NewConference(
        requester=requester, mode=generated.mode, invitees=generated.expected,
        form=RequestForm.COMMAND,
    )  # fmt: skip


@given(mode_commands(REQUESTER))
def test_generated_commands_through_parse_request(generated: Generated) -> None:
    command = parse_request(command_request(generated.text), source_host="::1", policy=POLICY)
    assert isinstance(command, NewConference)
    assert command.invitees == generated.expected


# -- (3) round trip -------------------------------------------------------------------

CONF_ID = st.from_regex(r"[A-Za-z0-9\-_.~]{1,40}", fullmatch=True)


@st.composite
def invitee_lists(draw: st.DrawFn, requester: SipURI) -> tuple[Invitee, ...]:
    args = draw(
        st.lists(
            invitee_args(requester),
            min_size=1,
            max_size=POLICY.max_invitees,
            unique_by=lambda a: person(a[1].uri),
        )
    )
    kept = tuple(
        i for _, i in args
        if person(i.uri) != person(requester) and (i.uri.user or "").lower() != "vidim"
    )  # fmt: skip
    return kept or (Invitee(uri=SipURI(host="example.org", user="bob")),)


@st.composite
def commands(draw: st.DrawFn) -> Command:
    requester = draw(st.sampled_from([REQUESTER, SIPS_REQUESTER]))
    kind = draw(st.sampled_from(["new", "add", "end", "status", "help"]))
    conference_id = draw(st.none() | CONF_ID)
    if kind == "new":
        return NewConference(requester=requester, mode=draw(MODES),
                             invitees=draw(invitee_lists(requester)), form=RequestForm.COMMAND)  # fmt: skip
    if kind == "add":
        return AddInvitees(requester=requester, invitees=draw(invitee_lists(requester)),
                           conference_id=conference_id)  # fmt: skip
    if kind == "end":
        return EndConference(requester=requester, conference_id=conference_id)
    if kind == "status":
        return ShowStatus(requester=requester, conference_id=conference_id)
    return ShowHelp(requester=requester)


@given(commands())
def test_format_command_round_trips(command: Command) -> None:
    text = format_command(command)
    assert parse_command(text, requester=command.requester, policy=POLICY) == command
    assert "\n" not in text
