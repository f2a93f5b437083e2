"""Every RFC 4475 and RFC 5118 torture message: valid ones parse and round-trip,
invalid ones raise the error with the status the RFC expects.

The RFC text is the authority; the section of each message is in the table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vidim.sip import (
    RequestRejectedError,
    Response,
    SIPParseError,
    SipURI,
    check_request,
    error_response,
    parse_message,
    unescape,
)
from vidim.sip.message import Request

CORPUS = Path(__file__).parent.parent / "corpus"

# file -> ("valid", None) | ("parse", status) | ("check", status)
# "parse": parse_message raises SIPParseError with that status_hint.
# "check": the message parses; check_request refuses it with that status.
EXPECTED: dict[str, tuple[str, int | None]] = {
    # 3.1.1 valid messages
    "rfc4475/wsinv.dat": ("valid", None),
    "rfc4475/intmeth.dat": ("valid", None),
    "rfc4475/esc01.dat": ("valid", None),
    "rfc4475/escnull.dat": ("valid", None),
    "rfc4475/esc02.dat": ("valid", None),
    "rfc4475/lwsdisp.dat": ("valid", None),
    "rfc4475/longreq.dat": ("valid", None),
    "rfc4475/dblreq.dat": ("valid", None),
    "rfc4475/semiuri.dat": ("valid", None),
    "rfc4475/transports.dat": ("valid", None),
    "rfc4475/mpart01.dat": ("valid", None),
    "rfc4475/unreason.dat": ("valid", None),
    "rfc4475/noreason.dat": ("valid", None),
    # 3.1.2 invalid messages
    "rfc4475/badinv01.dat": ("parse", 400),
    "rfc4475/clerr.dat": ("parse", 400),
    "rfc4475/ncl.dat": ("parse", 400),
    "rfc4475/scalar02.dat": ("parse", 400),
    "rfc4475/scalarlg.dat": ("parse", 400),  # a response: discarded
    "rfc4475/quotbal.dat": ("parse", 400),
    "rfc4475/ltgtruri.dat": ("parse", 400),
    "rfc4475/lwsruri.dat": ("parse", 400),
    "rfc4475/lwsstart.dat": ("parse", 400),
    "rfc4475/trws.dat": ("parse", 400),  # 3.1.2.10: accepting or rejecting both allowed
    "rfc4475/escruri.dat": ("parse", 400),  # 3.1.2.11: should be rejected with 400
    "rfc4475/baddate.dat": ("valid", None),  # 3.1.2.12: a UA may ignore the bad Date
    "rfc4475/regbadct.dat": ("parse", 400),  # 3.1.2.13: URI with ? must be in <>
    "rfc4475/badaspec.dat": ("parse", 400),
    "rfc4475/baddn.dat": ("parse", 400),
    "rfc4475/badvers.dat": ("parse", 505),
    "rfc4475/mismatch01.dat": ("parse", 400),
    "rfc4475/mismatch02.dat": ("parse", 400),
    "rfc4475/bigcode.dat": ("parse", 400),  # a response: discarded
    # 3.2 transaction layer semantics (matching tested in test_transaction*)
    "rfc4475/badbranch.dat": ("valid", None),
    # 3.3 application layer semantics
    "rfc4475/insuf.dat": ("parse", 400),
    "rfc4475/unkscm.dat": ("check", 416),
    "rfc4475/novelsc.dat": ("check", 416),
    "rfc4475/unksm2.dat": ("valid", None),
    "rfc4475/bext01.dat": ("check", 420),
    "rfc4475/invut.dat": ("check", 415),
    "rfc4475/regaut01.dat": ("valid", None),  # 401 only where authentication is required
    "rfc4475/multi01.dat": ("parse", 400),
    "rfc4475/mcl01.dat": ("parse", 400),
    "rfc4475/bcast.dat": ("valid", None),  # discarded by Via matching, not by the parser
    "rfc4475/zeromf.dat": ("valid", None),  # 483 is a proxy's answer; a UAS serves it
    "rfc4475/cparam01.dat": ("valid", None),
    "rfc4475/cparam02.dat": ("valid", None),
    "rfc4475/regescrt.dat": ("valid", None),
    "rfc4475/sdp01.dat": ("check", 406),
    # 3.4 backward compatibility
    "rfc4475/inv2543.dat": ("valid", None),
    # RFC 5118
    "rfc5118/ipv6-good": ("valid", None),
    "rfc5118/ipv6-bad": ("parse", 400),  # 4.2: IPv6 host without brackets
    "rfc5118/port-ambiguous": ("valid", None),
    "rfc5118/port-unambiguous": ("valid", None),
    "rfc5118/via-received-param-with-delim": ("valid", None),
    "rfc5118/via-received-param-no-delim": ("valid", None),
    "rfc5118/ipv6-in-sdp": ("valid", None),
    "rfc5118/mult-ip-in-header": ("valid", None),
    "rfc5118/mult-ip-in-sdp": ("valid", None),
    "rfc5118/ipv4-mapped-ipv6": ("valid", None),
    "rfc5118/ipv6-bug-abnf-3-colons": ("parse", 400),  # 4.10: three colons are wrong
    "rfc5118/ipv6-correct-abnf-2-colons": ("valid", None),
}


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_every_corpus_file_has_an_expectation() -> None:
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.glob("rfc*/*")}
    assert on_disk == set(EXPECTED)
    assert len([n for n in on_disk if n.startswith("rfc4475/")]) == 49
    assert len([n for n in on_disk if n.startswith("rfc5118/")]) == 12


def _same(a: Request | Response, b: Request | Response) -> None:
    assert type(a) is type(b)
    if isinstance(a, Request):
        assert isinstance(b, Request)
        assert (a.method, str(a.uri)) == (b.method, str(b.uri))
    else:
        assert isinstance(b, Response)
        assert (a.status, a.reason) == (b.status, b.reason)
    strip = [(n, v) for n, v in a.headers if n != "Content-Length"]
    assert strip == [(n, v) for n, v in b.headers if n != "Content-Length"]
    assert a.body == b.body


@pytest.mark.parametrize(
    "name", sorted(n for n, (kind, _) in EXPECTED.items() if kind in ("valid", "check"))
)
def test_valid_message_parses_and_round_trips(name: str) -> None:
    message = parse_message(load(name))
    wire = message.to_bytes()
    again = parse_message(wire)
    _same(message, again)
    assert again.to_bytes() == wire  # serialization is a fixed point
    # Also through the stream framer, which splits by Content-Length.
    assert message.content_length is None or len(message.body) == message.content_length


@pytest.mark.parametrize("name", sorted(n for n, (kind, _) in EXPECTED.items() if kind == "valid"))
def test_valid_request_passes_the_server_checks(name: str) -> None:
    message = parse_message(load(name))
    if isinstance(message, Request):
        check_request(message)


@pytest.mark.parametrize(
    ("name", "status"),
    sorted((n, s) for n, (kind, s) in EXPECTED.items() if kind == "parse"),
)
def test_invalid_message_is_refused(name: str, status: int) -> None:
    with pytest.raises(SIPParseError) as info:
        parse_message(load(name))
    assert info.value.status_hint == status
    assert info.value.reason  # fit for a Warning header


@pytest.mark.parametrize(
    ("name", "status"),
    sorted((n, s) for n, (kind, s) in EXPECTED.items() if kind == "check"),
)
def test_unprocessable_request_is_rejected_by_the_checks(name: str, status: int) -> None:
    request = parse_message(load(name))
    assert isinstance(request, Request)
    with pytest.raises(RequestRejectedError) as info:
        check_request(request)
    assert info.value.status_hint == status
    response = error_response(request, info.value, warning_host="vidim.test", to_tag="t1")
    assert response.status == status
    warning = response.headers.get("Warning")
    assert warning is not None
    assert warning.startswith("399 vidim.test ")
    assert response.to_addr.tag == "t1"
    parse_message(response.to_bytes())  # the answer itself is valid SIP


# -- what the valid messages mean ----------------------------------------------


def test_wsinv_tortuous_whitespace() -> None:
    msg = parse_message(load("rfc4475/wsinv.dat"))
    assert isinstance(msg, Request)
    assert msg.to_addr.tag == "1918181833n"
    assert msg.from_addr.display_name == 'J Rosenberg \\"'
    assert msg.from_addr.tag == "98asjd8"
    assert msg.max_forwards == 68
    assert (msg.cseq.seq, msg.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in msg.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    (contact,) = msg.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.param("newparam") == "newvalue"
    assert contact.has_param("secondparam")
    assert contact.param("q") == "0.33"
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.headers.get("Subject") == ""
    (route,) = msg.route
    assert isinstance(route.uri, SipURI)
    assert route.uri.has_param("lr")
    assert len(msg.body) == 150


def test_intmeth_unusual_characters() -> None:
    msg = parse_message(load("rfc4475/intmeth.dat"))
    assert isinstance(msg, Request)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.cseq.method == msg.method
    assert isinstance(msg.uri, SipURI)
    assert msg.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_addr.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_addr.tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == (
        b"\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb".decode()
    )


def test_escapes_in_uris() -> None:
    esc01 = parse_message(load("rfc4475/esc01.dat"))
    assert isinstance(esc01, Request)
    assert isinstance(esc01.uri, SipURI)
    assert unescape(esc01.uri.user or "") == "sips:user@example.com"
    escnull = parse_message(load("rfc4475/escnull.dat"))
    assert isinstance(escnull.to_addr.uri, SipURI)
    assert unescape(escnull.to_addr.uri.user or "") == "null-\x00-null"
    esc02 = parse_message(load("rfc4475/esc02.dat"))
    assert isinstance(esc02, Request)
    assert esc02.method == "RE%47IST%45R"  # not unescaped: methods are tokens
    assert len(esc02.contacts) == 2  # C%6Fntact is another header, not Contact
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    semi = parse_message(load("rfc4475/semiuri.dat"))
    assert isinstance(semi, Request)
    assert isinstance(semi.uri, SipURI)
    assert semi.uri.user == "user;par=u%40example.net"
    assert semi.uri.host == "example.com"


def test_dblreq_ignores_extra_octets_of_a_datagram() -> None:
    msg = parse_message(load("rfc4475/dblreq.dat"))
    assert isinstance(msg, Request)
    assert msg.method == "REGISTER"
    assert msg.body == b""


def test_mpart01_multipart_body() -> None:
    msg = parse_message(load("rfc4475/mpart01.dat"))
    parts = msg.body_parts()
    assert [p.content_type.mime for p in parts if p.content_type] == [
        "text/plain",
        "application/octet-stream",
    ]
    assert parts[0].body == b"Hello"
    assert parts[1].body.startswith(b"0\x82")


def test_reason_phrases() -> None:
    unreason = parse_message(load("rfc4475/unreason.dat"))
    assert isinstance(unreason, Response)
    assert unreason.reason.endswith("\u043f\u0440\u043e\u0441\u0442\u043e\u0435")
    noreason = parse_message(load("rfc4475/noreason.dat"))
    assert isinstance(noreason, Response)
    assert (noreason.status, noreason.reason) == (100, "")


def test_transports_and_rfc2543_branches() -> None:
    msg = parse_message(load("rfc4475/transports.dat"))
    assert [v.transport for v in msg.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    old = parse_message(load("rfc4475/inv2543.dat"))
    assert old.top_via.branch is None
    assert not old.top_via.is_rfc3261_branch
    bad = parse_message(load("rfc4475/badbranch.dat"))
    assert bad.top_via.branch == "z9hG4bK"
    assert not bad.top_via.is_rfc3261_branch


def test_unknown_schemes_in_headers() -> None:
    msg = parse_message(load("rfc4475/unksm2.dat"))
    assert msg.to_addr.uri.scheme == "isbn"
    assert msg.from_addr.uri.scheme == "http"
    assert [c.uri.scheme for c in msg.contacts] == ["name"]


def test_bext01_lists_every_unsupported_require_tag() -> None:
    request = parse_message(load("rfc4475/bext01.dat"))
    assert isinstance(request, Request)
    with pytest.raises(RequestRejectedError, match="nothingSupportsThis") as info:
        check_request(request)
    assert dict(info.value.headers)["Unsupported"] == (
        "nothingSupportsThis, nothingSupportsThisEither"
    )


def test_ipv6_references() -> None:
    good = parse_message(load("rfc5118/ipv6-good"))
    assert isinstance(good, Request)
    assert isinstance(good.uri, SipURI)
    assert (good.uri.host, good.uri.port) == ("[2001:db8::10]", None)
    ambiguous = parse_message(load("rfc5118/port-ambiguous"))
    assert isinstance(ambiguous, Request)
    assert isinstance(ambiguous.uri, SipURI)
    assert (ambiguous.uri.host, ambiguous.uri.port) == ("[2001:db8::10:5070]", None)
    unambiguous = parse_message(load("rfc5118/port-unambiguous"))
    assert isinstance(unambiguous, Request)
    assert isinstance(unambiguous.uri, SipURI)
    assert (unambiguous.uri.host, unambiguous.uri.port) == ("[2001:db8::10]", 5070)
    with_delim = parse_message(load("rfc5118/via-received-param-with-delim"))
    assert with_delim.top_via.received == "[2001:db8::9:255]"
    no_delim = parse_message(load("rfc5118/via-received-param-no-delim"))
    assert no_delim.top_via.received == "2001:db8::9:255"
    mult = parse_message(load("rfc5118/mult-ip-in-header"))
    assert [(v.host, v.port) for v in mult.via] == [
        ("[2001:db8::9:1]", 6050),
        ("192.0.2.1", None),
        ("[2001:db8::9:255]", None),
    ]
