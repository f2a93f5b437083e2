"""The hand-written scanners agree with the fast regexes they stand in front of.

Each scanner (uri._scan_sip_uri, headers._scan_name_addr, headers._scan_via,
headers._scan_params, the request line in parser._parse_request_line) reads
the common forms with str methods and returns None for anything else, which
then goes through the regex path as before.  For generated inputs, valid and
not (and for every header value of the RFC 4475 / RFC 5118 torture
messages): either the scanner returns None, or the regex path gives an equal
result.  And the common forms do take the scanner.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fast_paths import name_addrs, outcome, sip_uris, via_items

from vidim.compiled import compiled_modules
from vidim.sip import headers, parser, uri
from vidim.sip.errors import LocalProtocolError, SIPParseError
from vidim.sip.headers import Headers
from vidim.sip.message import Request, Response

CORPUS = Path(__file__).parent.parent / "corpus"

# Characters that sit on the scanners' boundaries, for mutated inputs.
_EDGE = " \t<>\";:@=,[]\\/?%&$+'~*()!._-0aZ\u00e9\u0663\x7f\r\n"


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


# Mostly the common forms (which the scanners take), some near misses.
_ALNUM = "abcxyzABCXYZ0129"
_simple = st.text(_ALNUM, min_size=1, max_size=4)
_hosts = st.sampled_from(["127.0.0.1", "host.example", "a-b.c", "256.1.1.1", "x.", "-a", "1.2.3"])
_ports = st.sampled_from(["", ":5060", ":5\u0663", ":65535", ":65536", ":0", ":123456", ":"])
_uri_params = st.lists(
    st.sampled_from([";lr", ";transport=udp", ";x=[a]", ";a=b:c", ";=x", ";a=", ";a=b=c"]),
    max_size=2,
).map("".join)


@st.composite
def common_uris(draw: st.DrawFn) -> str:
    user = draw(st.sampled_from(["", "alice@", "a.b-c@", "x&y=z+$,@", "a;b@", "@"]))
    scheme = draw(st.sampled_from(["sip:", "sip:", "sips:", "SIP:"]))
    return scheme + user + draw(_hosts) + draw(_ports) + draw(_uri_params)


_header_params = st.lists(
    st.sampled_from(
        [";tag=1x", ";expires=60", ";q=0.5", ";lr", ";a=[::1]", ';a="q"', ";tag=", ";;", ";a b"]
    ),
    max_size=2,
).map("".join)
_displays = st.sampled_from(
    ["", '"Alice" ', '"A B"', '"" ', "Bob ", "Bob", "A B ", "A  B ", " ", '"a\\"b" ', '"x ']
)


@st.composite
def common_name_addrs(draw: st.DrawFn) -> str:
    return f"{draw(_displays)}<{draw(common_uris())}>{draw(_header_params)}"


@st.composite
def common_vias(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "tcp", "TLS-SCTP", "", "\u00e9"]))
    params = draw(
        st.lists(
            st.sampled_from(
                [";branch=z9hG4bK1", ";rport", ";rport=5060", ";rport=x", ";ttl=300", ";ttl=1",
                 ";branch", ";received=10.0.0.1", ";maddr=[::1]"]
            ),
            max_size=3,
        ).map("".join)
    )  # fmt: skip
    return f"SIP/2.0/{transport} {draw(_hosts)}{draw(_ports)}{params}"


def _same(a: object, b: object) -> None:
    """Equal, of the same type, and written the same."""
    assert type(a) is type(b)
    assert a == b
    assert str(a) == str(b)


def _agrees(
    scan: Callable[[str], object | None],
    regex_parse: Callable[[str], object],
    text: str,
    *fields: str,
) -> bool:
    """Whether ``scan`` read ``text``; when it did, the regex path read the same, field by field."""
    scanned = scan(text)
    if scanned is None:
        return False
    result, regex = outcome(regex_parse, text)
    assert result == "ok", text
    assert regex is not None, text
    _same(scanned, regex)
    for name in fields:
        _same(getattr(scanned, name), getattr(regex, name))
    return True


def check_uri(text: str) -> bool:
    return _agrees(uri._scan_sip_uri, uri._fast_sip_uri_regex, text, "user", "port", "params")


def check_name_addr(text: str) -> bool:
    return _agrees(
        headers._scan_name_addr, headers._parse_name_addr_regex, text,
        "display_name", "params", "uri",
    )  # fmt: skip


def check_via(text: str) -> bool:
    return _agrees(headers._scan_via, headers._parse_top_via_regex, text, "port", "params")


def check_params(text: str) -> bool:
    scanned = headers._scan_params(text)
    if scanned is None:
        return False
    match = re.fullmatch(headers._FAST_PARAMS, text)
    assert match is not None, text
    assert scanned == headers._fast_params(match.group(1))
    return True


def check_media_type(text: str) -> bool:
    scanned = headers._scan_media_type(text)
    match = headers._FAST_MEDIA_RE.fullmatch(text)
    assert headers._media_type_ok(text) == (match is not None)
    if scanned is None:
        return False
    assert match is not None, text
    type_, subtype, params = match.groups()
    _same(scanned, headers.MediaType(type_, subtype, headers._fast_params(params)))
    assert scanned.params == headers._fast_params(params)
    assert outcome(headers.parse_media_type, text) == ("ok", scanned)
    return True


def check_call_id(text: str) -> bool:
    ok = parser._call_id_ok(text)
    assert ok == (parser._CALL_ID_RE.fullmatch(text) is not None), text
    return ok


def check_request_line(line: str) -> None:
    scanned = outcome(lambda text: parser._parse_request_line(text, Headers()), line)
    regex = outcome(lambda text: parser._parse_request_line_regex(text, Headers()), line)
    assert scanned[0] == regex[0], line
    if scanned[0] == "ok":
        a, b = scanned[1], regex[1]
        assert isinstance(a, Request)
        assert isinstance(b, Request)
        assert a.method == b.method
        _same(a.uri, b.uri)


@settings(max_examples=500)
@given(sip_uris() | common_uris() | _mutations(common_uris()))
def test_uri_scanner_equals_regex_path(text: str) -> None:
    check_uri(text)
    assert outcome(uri.parse_uri, text) == outcome(uri._parse_uri_slow, text)


@settings(max_examples=500)
@given(name_addrs() | common_name_addrs() | _mutations(common_name_addrs()))
def test_name_addr_scanner_equals_regex_path(text: str) -> None:
    check_name_addr(text)
    assert outcome(headers.parse_name_addr, text) == outcome(headers._parse_name_addr_regex, text)


@settings(max_examples=500)
@given(via_items() | common_vias() | _mutations(common_vias()))
def test_via_scanner_equals_regex_path(text: str) -> None:
    check_via(text)
    assert outcome(headers._parse_top_via, text) == outcome(headers._parse_top_via_regex, text)


@settings(max_examples=300)
@given(
    st.sampled_from(["", ";", ";;", ";a", ";a=", ";=b", ";a=b", ";a;b=c", ";tag=1x", ';a="q"'])
    | _mutations(st.sampled_from([";tag=1234", ";branch=z9hG4bK-1;rport", ";a=[::1]:5;lr"]))
)
def test_params_scanner_equals_fast_params(text: str) -> None:
    check_params(text)


@settings(max_examples=300)
@given(
    _mutations(
        st.builds(
            lambda type_, subtype, params: f"{type_}/{subtype}{params}",
            st.sampled_from(["text", "application", "multipart", "a-b"]),
            st.sampled_from(["plain", "sdp", "mixed", "x+y"]),
            st.sampled_from(["", ";charset=utf-8", ";boundary=abc;a", ';q="x"', ";a="]),
        )
    )
)
def test_media_type_scanner_equals_regex_path(text: str) -> None:
    check_media_type(text)


@settings(max_examples=300)
@given(_mutations(st.sampled_from(["1-bench@127.0.0.1", "a84b4c76e66710", "x@y@z", "{a}<b>"])))
def test_call_id_scan_equals_regex(text: str) -> None:
    check_call_id(text)


@settings(max_examples=300)
@given(
    st.sampled_from(["INVITE", "MESSAGE", "M@SSAGE", "", "foo-bar"]),
    sip_uris() | common_uris() | _mutations(common_uris()),
    st.sampled_from([" SIP/2.0", " SIP/3.0", "  SIP/2.0", " SIP/2.0 ", "SIP/2.0"]),
)
def test_request_line_scanner_equals_regex_path(method: str, text: str, version: str) -> None:
    check_request_line(f"{method} {text}{version}")


def _status_outcome(func: Callable[[str, Headers], Response], line: str) -> tuple[str, object]:
    try:
        return ("ok", func(line, Headers()))
    except (SIPParseError, LocalProtocolError) as exc:  # a CR in the reason: the constructor's
        return ("error", type(exc))


def check_status_line(line: str) -> None:
    fast = _status_outcome(parser._parse_status_line, line)
    slow = _status_outcome(parser._parse_status_line_slow, line)
    assert fast[0] == slow[0], line
    if fast[0] == "error":
        assert fast == slow
    if fast[0] == "ok":
        a, b = fast[1], slow[1]
        assert isinstance(a, Response)
        assert isinstance(b, Response)
        assert (a.status, a.reason) == (b.status, b.reason)


@settings(max_examples=300)
@given(
    _mutations(
        st.builds(
            lambda code, reason: f"SIP/2.0 {code}{reason}",
            st.sampled_from(["200", "202", "100", "487", "699", "099", "700", "2000", "20"]),
            st.sampled_from(["", " ", " OK", "  OK", " Very Good"]),
        )
    )
)
def test_status_line_fast_path_equals_general_parser(line: str) -> None:
    check_status_line(line)


def _corpus_lines() -> list[str]:
    lines: list[str] = []
    for path in sorted(CORPUS.rglob("*.dat")):
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
        lines.extend(head.decode("utf-8", "surrogateescape").replace("\r\n", "\n").split("\n"))
    return lines


def test_corpus_values_scanned_or_left_to_the_regex_path() -> None:
    lines = _corpus_lines()
    assert len(lines) > 500
    scanned = 0
    for line in lines:
        check_request_line(line)
        check_status_line(line)
        _, _, value = line.partition(":")
        for text in {line, value, value.strip(" \t")}:
            scanned += check_uri(text) + check_name_addr(text) + check_via(text)
            check_params(text)
            check_media_type(text)
            check_call_id(text)
    assert scanned > 20  # the corpus has plain From, To and Via lines too


@pytest.mark.parametrize(
    "text",
    [
        "<sip:req1@127.0.0.1:5060>;tag=1SIPpTag001",
        "<sip:inv-a1@127.0.0.1:5070>",
        '"Alice Smith" <sip:alice@example.com>;tag=9fxced76sl',
        "Bob <sips:bob@biloxi.example.com;transport=tls>",
        "A B<sip:a@host.example;lr>;expires=60;q=0.5",
        '""<sip:host>',
    ],
)
def test_common_name_addrs_take_the_scanner(text: str) -> None:
    assert check_name_addr(text)


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1-1",
        "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;rport",
        "SIP/2.0/TCP host.example:5061;branch=z9hG4bKx;received=192.0.2.1;rport=5061",
        "SIP/2.0/udp 10.0.0.1",
    ],
)
def test_common_vias_take_the_scanner(text: str) -> None:
    assert check_via(text)


def test_request_line_takes_the_scanner() -> None:
    line = "MESSAGE sip:inv-a1@127.0.0.1:5070;transport=udp SIP/2.0"
    assert parser._only("MESSAGE", parser._TOKEN_SET)
    assert uri._scan_sip_uri(line[8:-8]) is not None
    check_request_line(line)


def test_single_contact_is_parsed_once_and_cached() -> None:
    data = (
        b"MESSAGE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n"
        b"From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: x\r\n"
        b"CSeq: 1 MESSAGE\r\nContact: <sip:b@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n"
    )
    message = parser.parse_message(data)
    if uri._COMPILED:  # the scanner's NameAddr, kept (interpreted: the regex validates only)
        assert message.headers._cache["*contact"] == headers.parse_name_addr_list(
            "<sip:b@127.0.0.1:5060>"
        )
    assert message.contacts == headers.parse_name_addr_list("<sip:b@127.0.0.1:5060>")
    two = parser.parse_message(
        data.replace(b"Content-Length", b"Contact: <sip:c@h>\r\nContent-Length")
    )
    assert "*contact" not in two.headers._cache
    assert [str(c.uri) for c in two.contacts] == ["sip:b@127.0.0.1:5060", "sip:c@h"]


# -- compact(): packed lines, and to_bytes from them --------------------------

header_values = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
).map(lambda text: text.strip())
header_names = st.sampled_from(
    ["Via", "From", "To", "Call-ID", "CSeq", "Content-Length", "Content-Type", "X-A", "x-b", "l",
     "Subject", "f"]
)  # fmt: skip


@settings(max_examples=300)
@given(st.lists(st.tuples(header_names, header_values), max_size=10), st.binary(max_size=8))
def test_compact_keeps_lines_and_bytes(items: list[tuple[str, str]], body: bytes) -> None:
    lines = Headers.trusted(items)
    expected = list(lines._items)
    request = Request("MESSAGE", "sip:a@example.com", lines, body)
    response = Response(200, None, Headers.trusted(items), body)
    plain = (request.to_bytes(), response.to_bytes())
    request.compact()
    response.compact()
    assert (request.to_bytes(), response.to_bytes()) == plain
    assert request.headers._items == expected
    assert request.headers._stored is not None  # read back: unpacked
    request.compact()
    assert request.to_bytes() == plain[0]


spellings = st.sampled_from(
    ["Via", "From", "To", "Call-ID", "CSeq", "X-A", "call-id", "CALL-ID", "cseq", "via", "i",
     "X-Call-ID"]
)  # fmt: skip


@settings(max_examples=300)
@given(st.lists(st.tuples(spellings, header_values), max_size=8))
def test_a_compacted_message_reads_its_first_values_as_before(
    items: list[tuple[str, str]],
) -> None:
    """Whatever the spellings given, the values read from the packed text (without
    unpacking) are the ones read before compaction."""
    lines = Headers.trusted(items)
    names = ("call-id", "cseq", "from", "to", "via", "x-a")
    before = [lines.get(name) for name in names]
    # Headers.trusted spells names canonically; as given, through the low-level door:
    raw = Headers(_lines=[(name.lower(), name, value) for name, value in items])
    raw_before = [raw._first(name) for name in names]
    for packed, expected in ((lines, before), (raw, raw_before)):
        packed.compact()
        assert [packed._first(name) for name in names] == expected


def test_a_compacted_message_reads_the_usual_names_without_unpacking() -> None:
    request = Request.trusted(
        "MESSAGE",
        "sip:a@example.com",
        [("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("From", "<sip:v@h>;tag=1"),
         ("To", "<sip:a@b>"), ("Call-ID", "c1@h"), ("CSeq", "1 MESSAGE")],
    )  # fmt: skip
    request.compact()
    assert (request.call_id, request.from_addr.tag, request.to_addr.tag) == ("c1@h", "1", None)
    assert request.cseq.method == "MESSAGE"
    assert request.headers._stored is None  # still packed


def test_compact_packs_as_written_and_to_bytes_keeps_it_packed() -> None:
    request = Request.trusted(
        "MESSAGE",
        "sip:a@example.com",
        [("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("To", "<sip:a@b>")],
    )
    request.compact()
    assert request.headers._packed == "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>"
    assert request.to_bytes() == (
        b"MESSAGE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"To: <sip:a@b>\r\nContent-Length: 0\r\n\r\n"
    )
    assert request.headers._stored is None  # still packed
    assert request.headers.get("to") == "<sip:a@b>"


def test_compact_leaves_lines_whose_lower_case_name_is_not_derived() -> None:
    lines = Headers(_lines=[("odd", "X-Name", "v")])
    lines.compact()
    assert lines._packed is None
    assert lines._items == [("odd", "X-Name", "v")]


def test_scanners_are_on_exactly_when_compiled() -> None:
    # Compiled, the parsers take the scanners; interpreted, the regexes (cheaper there).
    assert ("vidim.sip.uri" in compiled_modules()) == uri._COMPILED
