from __future__ import annotations

import pytest

from vidim.sip import (
    Headers,
    LocalProtocolError,
    SIPParseError,
    SipURI,
    canonical_name,
    parse_cseq,
    parse_media_type,
    parse_name_addr,
    parse_name_addr_list,
    parse_via_list,
    quote,
    split_list,
)


@pytest.mark.parametrize(
    ("compact", "full"),
    [
        ("i", "Call-ID"), ("m", "Contact"), ("e", "Content-Encoding"), ("l", "Content-Length"),
        ("f", "From"), ("t", "To"), ("v", "Via"), ("c", "Content-Type"), ("k", "Supported"),
        ("s", "Subject"), ("o", "Event"), ("u", "Allow-Events"), ("r", "Refer-To"),
        ("b", "Referred-By"), ("x", "Session-Expires"), ("y", "Identity"),
    ],
)  # fmt: skip
def test_compact_forms_expand(compact: str, full: str) -> None:
    assert canonical_name(compact) == full
    assert canonical_name(compact.upper()) == full
    headers = Headers([(compact, "x")])
    assert headers.get(full) == "x"
    assert list(headers) == [(full, "x")]


def test_header_names_are_case_insensitive_and_unknown_names_are_kept() -> None:
    headers = Headers([("cALL-id", "a@b"), ("X-Custom-Thing", "1"), ("x-custom-thing", "2")])
    assert headers.get("Call-ID") == "a@b"
    assert next(iter(headers)) == ("Call-ID", "a@b")
    assert headers.get_all("X-CUSTOM-THING") == ["1", "2"]
    assert "x-custom-thing" in headers
    assert "missing" not in headers


def test_headers_refuse_injection() -> None:
    headers = Headers()
    with pytest.raises(LocalProtocolError, match="control character"):
        headers.add("Subject", "hi\r\nX-Evil: 1")
    with pytest.raises(LocalProtocolError, match="control character"):
        headers.add("Subject", "nul\x00")
    with pytest.raises(LocalProtocolError, match="bad header name"):
        headers.add("Bad Name", "x")
    assert len(headers) == 0


def test_set_prepend_remove_and_the_parse_cache() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1"), ("CSeq", "1 INVITE")])
    assert headers.parsed("cseq", parse_cseq) == parse_cseq("1 INVITE")
    headers.set("CSeq", "2 INVITE")
    assert headers.parsed("cseq", parse_cseq) == parse_cseq("2 INVITE")
    assert [v.host for v in headers.parsed_all("via", parse_via_list)] == ["a.example.com"]
    headers.prepend("Via", "SIP/2.0/TCP b.example.com;branch=z9hG4bK2")
    assert [v.host for v in headers.parsed_all("via", parse_via_list)] == [
        "b.example.com",
        "a.example.com",
    ]
    assert next(iter(headers))[1].startswith("SIP/2.0/TCP b")
    headers.remove("via")
    assert headers.parsed_all("via", parse_via_list) == []
    assert list(headers) == [("CSeq", "2 INVITE")]


def test_lookups_follow_every_change_to_the_lines() -> None:
    headers = Headers([("Via", "v1"), ("Subject", "s"), ("v", "v2")])
    assert headers.get_all("VIA") == ["v1", "v2"]  # indexed on this first lookup
    assert headers.line_counts() == {"via": 2, "subject": 1}
    headers.add("Via", "v3")
    headers.prepend("Via", "v0")
    assert headers.get("via") == "v0"
    assert headers.get_all("via") == ["v0", "v1", "v2", "v3"]
    headers.set("Via", "only")
    assert headers.get_all("Via") == ["only"]
    assert list(headers) == [("Via", "only"), ("Subject", "s")]
    headers.remove("subject")
    assert headers.line_counts() == {"via": 1}
    assert "Subject" not in headers


def test_malformed_values_say_whether_the_parameters_are_at_fault() -> None:
    with pytest.raises(SIPParseError, match="bad parameters ';;x'"):
        parse_name_addr("<sip:a@b.com>;;x")
    with pytest.raises(SIPParseError, match="bad parameters ';=x'"):
        parse_via_list("SIP/2.0/UDP h.example.com;=x")
    with pytest.raises(SIPParseError, match="malformed name-addr"):
        parse_name_addr("Bob <sip:b@b.com")
    with pytest.raises(SIPParseError, match="malformed Via"):
        parse_via_list("SIP/2.0 h.example.com")


def test_split_list_respects_quotes_and_angle_brackets() -> None:
    value = '"Doe, John" <sip:j@a.com;x=1,2>;p=1, <sip:b@c.com>'
    assert split_list(value) == ['"Doe, John" <sip:j@a.com;x=1,2>;p=1', "<sip:b@c.com>"]
    assert split_list("a, b ,c") == ["a", "b", "c"]
    for bad in ("a,,b", ",a", "a,", '"open, quote'):
        with pytest.raises(SIPParseError):
            split_list(bad)


@pytest.mark.parametrize(
    ("value", "display", "uri", "params"),
    [
        ("<sip:a@b.com>", None, "sip:a@b.com", ()),
        ('"Alice" <sip:a@b.com>;tag=x', "Alice", "sip:a@b.com", (("tag", "x"),)),
        ("Alice Smith <sip:a@b.com>", "Alice Smith", "sip:a@b.com", ()),
        ("sip:a@b.com;tag=1", None, "sip:a@b.com", (("tag", "1"),)),
        ("sip:a@b.com ; tag = 1", None, "sip:a@b.com", (("tag", "1"),)),
        ('"q\\"uote\\\\" <sip:a@b.com>', 'q"uote\\', "sip:a@b.com", ()),
        ('"\u00c9lodie" <sip:e@b.com>', "\u00c9lodie", "sip:e@b.com", ()),
        ('<sip:a@b.com;lr>;p="x;y"', None, "sip:a@b.com;lr", (("p", '"x;y"'),)),
        ("<tel:+123>;tag=2", None, "tel:+123", (("tag", "2"),)),
    ],
)
def test_name_addr_forms(
    value: str, display: str | None, uri: str, params: tuple[tuple[str, str | None], ...]
) -> None:
    parsed = parse_name_addr(value)
    assert (parsed.display_name, str(parsed.uri), parsed.params) == (display, uri, params)
    assert parse_name_addr(str(parsed)) == parsed


@pytest.mark.parametrize(
    "value",
    [
        '"unterminated <sip:a@b.com>',
        "Bell, Alexander <sip:a@b.com>",
        "< sip:a@b.com >",
        "<sip:a@b.com",
        "sip:a@b.com?Route=x",
        "<sip:a@b.com>;;tag=1",
        "<sip:a@b.com>;tag=1;",
        "<sip:a@b.com> junk",
        '"Alice" sip:a@b.com',
        "",
    ],
)
def test_bad_name_addr(value: str) -> None:
    with pytest.raises(SIPParseError):
        parse_name_addr(value)


def test_with_tag() -> None:
    addr = parse_name_addr("<sip:a@b.com>;tag=old;x")
    assert str(addr.with_tag("new")) == "<sip:a@b.com>;x;tag=new"
    with pytest.raises(LocalProtocolError, match="token"):
        addr.with_tag("bad tag")
    assert isinstance(addr.uri, SipURI)


def test_contact_list() -> None:
    contacts = parse_name_addr_list('<sip:a@b.com>;expires=60, "B" <sip:b@b.com>;q=0.5')
    assert [c.param("expires") for c in contacts] == ["60", None]
    assert contacts[1].param("Q") == "0.5"


def test_via_values() -> None:
    (via,) = parse_via_list("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport;received=10.0.0.1")
    assert via.sent_by == ("192.0.2.1", 5060)
    assert via.branch == "z9hG4bKabc"
    assert via.has_rport
    assert via.rport is None
    assert via.received == "10.0.0.1"
    assert via.is_rfc3261_branch
    filled = via.with_params(rport="5062")
    assert filled.rport == 5062
    assert (
        str(filled) == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;received=10.0.0.1;rport=5062"
    )
    for bad in (
        "SIP/2.0/UDP",
        "SIP/3.0/UDP a.com",
        "HTTP/2.0/UDP a.com",
        "SIP/2.0/UDP a.com:70000",
        "SIP/2.0/UDP a.com;ttl=256",
        "SIP/2.0/UDP a.com;branch",
        "SIP/2.0/UDP a.com;rport=x",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP a.com;;",
    ):
        with pytest.raises(SIPParseError):
            parse_via_list(bad)


def test_cseq_and_media_type() -> None:
    assert parse_cseq(" 42   MESSAGE ").seq == 42
    for bad in ("x INVITE", "1", "2147483648 INVITE", "-1 INVITE", "1 INV ITE"):
        with pytest.raises(SIPParseError):
            parse_cseq(bad)
    media = parse_media_type('multipart/mixed;boundary="a b"')
    assert media.mime == "multipart/mixed"
    assert media.param("boundary") == "a b"
    assert parse_media_type("Application/SDP").mime == "application/sdp"
    with pytest.raises(SIPParseError):
        parse_media_type("text")


def test_quote() -> None:
    assert quote('a "b" \\c') == '"a \\"b\\" \\\\c"'
