"""The grammar parsers on generated and edge-case inputs.

Inputs kept from the tests that compared the old fast paths and scanners with
these parsers: the near misses at each part's boundaries, generated values
(valid and not), and every header value of the RFC 4475 / RFC 5118 torture
messages.  Whatever the input, a parser returns a value that writes out to
text which parses back to the same value, or raises SIPParseError.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidim.sip import (
    CSeq,
    NameAddr,
    SIPParseError,
    SipURI,
    Via,
    parse_cseq,
    parse_media_type,
    parse_message,
    parse_name_addr,
    parse_name_addr_list,
    parse_uri,
    parse_via_list,
)

CORPUS = Path(__file__).parent.parent / "corpus"

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TOKEN = _ALNUM + "-.!%*_+`'~"
# Characters that sit on the boundaries of the grammar's parts, for mutated inputs.
_EDGE = " \t<>\";:@=,[]\\/?%&$+'~*()!._-0aZ\u00e9\u0663\x7f\r\n"

labels = st.text(_ALNUM + "-", min_size=1, max_size=8)
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join) | st.lists(
    labels, min_size=1, max_size=3
).map(lambda parts: ".".join(parts) + ".")
octets = st.integers(0, 300).map(str) | st.sampled_from(["007", "00", "0255", "256"])
ipv4 = st.lists(octets, min_size=3, max_size=5).map(".".join)
ipv6 = st.sampled_from(
    ["[::1]", "[2001:db8::10]", "[2001:db8:0:0:0:0:0:1]", "[::ffff:192.0.2.1]", "[zz::1]",
     "[1:2:3]", "[::1", "[2001:DB8::A]"]
)  # fmt: skip
hosts = hostnames | ipv4 | ipv6
ports = st.none() | st.integers(0, 99999).map(str) | st.sampled_from(["05060", "65535", "65536"])
users = st.none() | st.text(_ALNUM + "-_.!~*'()&=+$,;?/%@:", min_size=0, max_size=10)
pchars = st.text(_ALNUM + "-_.!~*'()[]/:&+$%=", min_size=0, max_size=8)
uri_params = st.lists(st.tuples(pchars, st.none() | pchars), max_size=3)
tokens = st.text(_TOKEN, min_size=1, max_size=8)
values = (
    tokens
    | st.text(_TOKEN + "[]:", min_size=1, max_size=10)
    | st.text(_ALNUM + ' ,;<>\\"', max_size=8).map(lambda t: '"' + t.replace('"', '\\"') + '"')
    | st.sampled_from(["", '"unterminated', "a b", "x,y"])
)
header_params = st.lists(
    st.tuples(tokens | st.sampled_from(["tag", "TAG", "q"]), st.none() | values), max_size=3
)


def _params(items: list[tuple[str, str | None]]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in items)


@st.composite
def sip_uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sip", "sips", "SIP", "tel"]))
    user = draw(users)
    port = draw(ports)
    text = f"{scheme}:" + (f"{user}@" if user is not None else "") + draw(hosts)
    return text + (f":{port}" if port is not None else "") + _params(draw(uri_params))


displays = (
    st.none()
    | st.lists(tokens, min_size=1, max_size=3).map(" ".join)
    | st.text(_ALNUM + ' <>,;:"\\\t', max_size=10).map(
        lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'
    )
    | st.sampled_from(['"bad', '"a"b', "a\tb", "\u00e9l\u00e8ve"])
)


@st.composite
def name_addrs(draw: st.DrawFn) -> str:
    display = draw(displays)
    space = draw(st.sampled_from(["", " ", "  "]))
    head = "" if display is None else display + space
    return f"{head}<{draw(sip_uris())}>" + _params(draw(header_params))


via_params = st.lists(
    st.tuples(
        tokens | st.sampled_from(["branch", "Branch", "rport", "ttl", "TTL", "received", "maddr"]),
        st.none() | values | st.integers(0, 70000).map(str),
    ),
    max_size=4,
)


@st.composite
def via_items(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "TCP", "tls", "SCTP", "WS", "TLS-SCTP"]))
    port = draw(ports)
    text = f"SIP/2.0/{transport} {draw(hosts)}" + (f":{port}" if port is not None else "")
    return text + _params(draw(via_params))


def _mutations(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``base`` with one character inserted, replaced or deleted somewhere."""

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        text = draw(base)
        pos = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from(_EDGE))
        how = draw(st.sampled_from(["insert", "replace", "delete"]))
        if how == "insert":
            return text[:pos] + char + text[pos:]
        if how == "replace":
            return text[:pos] + char + text[pos + 1 :]
        return text[:pos] + text[pos + 1 :]

    return mutate()


def round_trips(parse: Callable[[str], object], text: str) -> None:
    """``parse(text)`` raises SIPParseError, or gives a value that its text parses back to."""
    try:
        value = parse(text)
    except SIPParseError:
        return
    again = parse(", ".join(map(str, value)) if isinstance(value, list) else str(value))
    assert again == value, text


@settings(max_examples=400)
@given(sip_uris() | _mutations(sip_uris()))
def test_uris_round_trip_or_raise(text: str) -> None:
    round_trips(parse_uri, text)


@settings(max_examples=400)
@given(name_addrs() | _mutations(name_addrs()))
def test_name_addrs_round_trip_or_raise(text: str) -> None:
    round_trips(parse_name_addr, text)


@settings(max_examples=200)
@given(st.lists(name_addrs(), min_size=1, max_size=3), st.sampled_from([",", ", ", " , "]))
def test_name_addr_lists_round_trip_or_raise(items: list[str], sep: str) -> None:
    round_trips(parse_name_addr_list, sep.join(items))


@settings(max_examples=400)
@given(
    st.lists(via_items() | _mutations(via_items()), min_size=1, max_size=3),
    st.sampled_from([",", ", ", " ,\t"]),
)
def test_via_lines_round_trip_or_raise(items: list[str], sep: str) -> None:
    round_trips(parse_via_list, sep.join(items))


@settings(max_examples=200)
@given(tokens, tokens, header_params)
def test_media_types_round_trip_or_raise(
    type_: str, subtype: str, params: list[tuple[str, str | None]]
) -> None:
    round_trips(parse_media_type, f"{type_}/{subtype}{_params(params)}")


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:a@127.0.0.1:5060", "127.0.0.1", 5060),
        ("sip:a@host.example:65535", "host.example", 65535),
        ("sip:a@host.example:0", "host.example", 0),
        ("sip:a@x.", "x.", None),
        ("sip:a@a-b.c", "a-b.c", None),
        ("sip:x&y=z+$,@h", "h", None),
        ("sip:a;b@h", "h", None),
    ],
)
def test_uri_edges_accepted(text: str, host: str, port: int | None) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, SipURI)
    assert (uri.host, uri.port) == (host, port)


@pytest.mark.parametrize(
    "text",
    [
        "sip:a@256.1.1.1", "sip:a@-a", "sip:a@1.2.3", "sip:a@h:65536", "sip:a@h:123456",
        "sip:a@h:", "sip:a@h:5\u0663", "sip:@h", "sip:a@h;=x", "sip:a@h;a=", "sip:a@h;a=b=c",
        "sip:a@h;", "sips:a@[::1", "sip:a@[zz::1]",
    ],
)  # fmt: skip
def test_uri_edges_refused(text: str) -> None:
    with pytest.raises(SIPParseError):
        parse_uri(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<sip:req1@127.0.0.1:5060>;tag=1SIPpTag001",
         NameAddr(SipURI("127.0.0.1", user="req1", port=5060), None, (("tag", "1SIPpTag001"),))),
        ('"Alice Smith" <sip:alice@example.com>;tag=9fxced76sl',
         NameAddr(SipURI("example.com", user="alice"), "Alice Smith", (("tag", "9fxced76sl"),))),
        ("Bob <sips:bob@biloxi.example.com;transport=tls>",
         NameAddr(SipURI("biloxi.example.com", "sips", "bob", params=(("transport", "tls"),)),
                  "Bob")),
        ("A B<sip:a@host.example;lr>;expires=60;q=0.5",
         NameAddr(SipURI("host.example", user="a", params=(("lr", None),)), "A B",
                  (("expires", "60"), ("q", "0.5")))),
        ('""<sip:host>', NameAddr(SipURI("host"), "")),
        ('"a\\"b" <sip:h>;a=[::1];a="q"', NameAddr(SipURI("h"), 'a"b', (("a", "[::1]"), ("a", '"q"')))),
    ],
)  # fmt: skip
def test_common_name_addrs(text: str, expected: NameAddr) -> None:
    assert parse_name_addr(text) == expected


@pytest.mark.parametrize(
    "text", ['"x <sip:h>', "<sip:h>;tag=", "<sip:h>;;", "<sip:h>;a b", " <sip:h"]
)
def test_name_addr_edges_refused(text: str) -> None:
    with pytest.raises(SIPParseError):
        parse_name_addr(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1-1",
         Via("UDP", "127.0.0.1", 5060, (("branch", "z9hG4bK-1-1"),))),
        ("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;rport",
         Via("UDP", "pc33.atlanta.com", None, (("branch", "z9hG4bK776asdhds"), ("rport", None)))),
        ("SIP/2.0/TCP host.example:5061;branch=z9hG4bKx;received=192.0.2.1;rport=5061",
         Via("TCP", "host.example", 5061,
             (("branch", "z9hG4bKx"), ("received", "192.0.2.1"), ("rport", "5061")))),
        ("SIP/2.0/udp 10.0.0.1", Via("UDP", "10.0.0.1")),
        ("SIP/2.0/TLS-SCTP h;ttl=1;maddr=[::1]",
         Via("TLS-SCTP", "h", None, (("ttl", "1"), ("maddr", "[::1]")))),
    ],
)  # fmt: skip
def test_common_vias(text: str, expected: Via) -> None:
    assert parse_via_list(text) == [expected]


@pytest.mark.parametrize(
    "text",
    ["SIP/2.0/ h", "SIP/2.0/\u00e9 h", "SIP/2.0/UDP h;ttl=300", "SIP/2.0/UDP h;rport=x",
     "SIP/2.0/UDP h;branch", "SIP/2.0/UDP h;rport=70000", "SIP/2.0/UDP h:65536"],
)  # fmt: skip
def test_via_edges_refused(text: str) -> None:
    with pytest.raises(SIPParseError):
        parse_via_list(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("007 INVITE", CSeq(7, "INVITE")), ("1\tINVITE", CSeq(1, "INVITE")),
     ("1  FOO-BAR", CSeq(1, "FOO-BAR")), ("2147483647 invite", CSeq(2147483647, "invite"))],
)  # fmt: skip
def test_cseq_edges_accepted(text: str, expected: CSeq) -> None:
    assert parse_cseq(text) == expected


@pytest.mark.parametrize(
    "text", ["\u0661 INVITE", "2147483648 INVITE", "1INVITE", "1 M@SSAGE", "1 ", " INVITE"]
)
def test_cseq_edges_refused(text: str) -> None:
    with pytest.raises(SIPParseError):
        parse_cseq(text)


def _message(start_line: str, call_id: str = "a84b4c76e66710") -> bytes:
    method = start_line.split(" ")[0] if not start_line.startswith("SIP/") else "INVITE"
    return (
        f"{start_line}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
        f"To: <sip:b@h>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [("SIP/2.0 200 OK", 200, "OK"), ("SIP/2.0 200", 200, ""), ("SIP/2.0 699  Very Good", 699,
      " Very Good"), ("SIP/2.0 100 ", 100, "")],
)  # fmt: skip
def test_status_lines_accepted(line: str, status: int, reason: str) -> None:
    response = parse_message(_message(line))
    assert (response.status, response.reason) == (status, reason)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "line", ["SIP/2.0 099 Low", "SIP/2.0 700 High", "SIP/2.0 2000 OK", "SIP/2.0 20 OK", "SIP/2.0"]
)
def test_status_lines_refused(line: str) -> None:
    with pytest.raises(SIPParseError):
        parse_message(_message(line))


@pytest.mark.parametrize(
    "line",
    ["MESSAGE sip:a@h SIP/3.0", "MESSAGE sip:a@h  SIP/2.0", "MESSAGE sip:a@h SIP/2.0 ",
     "M@SSAGE sip:a@h SIP/2.0", " sip:a@h SIP/2.0", "MESSAGE sip:a@h?x=y SIP/2.0"],
)  # fmt: skip
def test_request_lines_refused(line: str) -> None:
    with pytest.raises(SIPParseError):
        parse_message(_message(line))


@pytest.mark.parametrize("call_id", ["1-bench@127.0.0.1", "a84b4c76e66710", "{a}<b>", "a@b"])
def test_call_ids_accepted(call_id: str) -> None:
    assert parse_message(_message("MESSAGE sip:a@h SIP/2.0", call_id)).call_id == call_id


@pytest.mark.parametrize("call_id", ["x@y@z", "a b", "@a", "a@", "\u00e9"])
def test_call_ids_refused(call_id: str) -> None:
    with pytest.raises(SIPParseError, match="Call-ID"):
        parse_message(_message("MESSAGE sip:a@h SIP/2.0", call_id))


def _corpus_values() -> list[str]:
    values: set[str] = set()
    for path in sorted(CORPUS.rglob("*.dat")):
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
        for line in head.decode("utf-8", "surrogateescape").replace("\r\n", "\n").split("\n"):
            _, _, value = line.partition(":")
            values.update((line, value, value.strip(" \t")))
    return sorted(values)


def test_corpus_values_parse_or_raise_parse_errors() -> None:
    values = _corpus_values()
    assert len(values) > 500
    parsers = (parse_uri, parse_name_addr, parse_name_addr_list, parse_via_list, parse_media_type,
               parse_cseq)  # fmt: skip
    parsed = 0
    for text in values:
        for parse in parsers:
            try:
                round_trips(parse, text)
                parse(text)
            except SIPParseError:
                continue
            parsed += 1
    assert parsed > 100  # the corpus has plain From, To and Via lines too
