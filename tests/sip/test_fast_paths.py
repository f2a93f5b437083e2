"""The parser's fast paths agree with its general (slow) parsers.

Each fast path covers the forms phones send with one regular expression and
hands everything else to the general parser.  For generated header values,
valid and not: whatever a fast path accepts, the general parser accepts with
an equal result, and a line that a validate-only pattern accepts is one the
general parser accepts (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from vidim.sip import headers, parser, uri
from vidim.sip.errors import SIPParseError
from vidim.sip.headers import split_list

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TOKEN = _ALNUM + "-.!%*_+`'~"

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
header_params = st.lists(st.tuples(tokens | st.sampled_from(["tag", "TAG", "q"]),
                                   st.none() | values), max_size=3)  # fmt: skip


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


def outcome(func: Callable[[str], object], text: str) -> tuple[str, object]:
    """('ok', the value) or ('error', None): two parsers agree when their outcomes do."""
    try:
        value = func(text)
    except SIPParseError:
        return ("error", None)
    return ("ok", value)


def _slow_name_addr_list(line: str) -> list[headers.NameAddr]:
    return [headers._parse_name_addr_slow(item) for item in split_list(line)]


def _slow_via_list(line: str) -> list[headers.Via]:
    return [headers._parse_via_slow(item, line) for item in split_list(line)]


@settings(max_examples=400)
@given(sip_uris())
def test_sip_uri_fast_path_equals_general_parser(text: str) -> None:
    fast = uri._fast_sip_uri(text)
    if fast is not None:
        slow = uri._parse_uri_slow(text)
        assert fast == slow
        assert str(fast) == str(slow)
    assert outcome(uri.parse_uri, text) == outcome(uri._parse_uri_slow, text)


@settings(max_examples=400)
@given(name_addrs())
def test_name_addr_fast_paths_equal_general_parser(text: str) -> None:
    assert outcome(headers.parse_name_addr, text) == outcome(headers._parse_name_addr_slow, text)


@settings(max_examples=300)
@given(st.lists(name_addrs(), min_size=1, max_size=3), st.sampled_from([",", ", ", " , "]))
def test_name_addr_line_validation_implies_general_parser(items: list[str], sep: str) -> None:
    line = sep.join(items)
    if headers._name_addr_line_ok(line):
        _slow_name_addr_list(line)  # must not raise
    assert outcome(headers.parse_name_addr_list, line) == outcome(_slow_name_addr_list, line)


@settings(max_examples=400)
@given(st.lists(via_items(), min_size=1, max_size=3), st.sampled_from([",", ", ", " ,\t"]))
def test_via_fast_paths_equal_general_parser(items: list[str], sep: str) -> None:
    line = sep.join(items)
    slow = outcome(_slow_via_list, line)
    assert outcome(headers.parse_via_list, line) == slow
    top = outcome(headers._parse_top_via, line)
    assert top == (slow if slow[0] == "error" else ("ok", slow[1][0]))  # type: ignore[index]
    if headers._via_line_ok(line):
        assert slow[0] == "ok"


@settings(max_examples=200)
@given(tokens, tokens, header_params)
def test_media_type_fast_path_equals_general_parser(
    type_: str, subtype: str, params: list[tuple[str, str | None]]
) -> None:
    text = f"{type_}/{subtype}{_params(params)}"
    slow = outcome(headers._parse_media_type_slow, text)
    assert outcome(headers.parse_media_type, text) == slow
    if headers._media_type_ok(text):
        assert slow[0] == "ok"


@settings(max_examples=300)
@given(tokens | st.sampled_from(["INVITE", "M@SSAGE"]), sip_uris(),
       st.sampled_from(["SIP/2.0", "SIP/3.0", "sip/2.0"]))  # fmt: skip
def test_request_line_fast_path_equals_general_parser(method: str, text: str, version: str) -> None:
    line = f"{method} {text} {version}"
    fast = outcome(lambda line: parser._parse_request_line(line, headers.Headers()), line)
    slow = outcome(parser._parse_request_line_slow, line)
    assert fast[0] == slow[0]
    if fast[0] == "ok":
        assert (fast[1].method, fast[1].uri) == slow[1]  # type: ignore[attr-defined]


def _slow_cseq(value: str) -> headers.CSeq:
    match = headers._CSEQ_RE.fullmatch(value)
    if match is None or int(match.group(1)) >= 2**31:
        raise SIPParseError("malformed")
    return headers.CSeq(int(match.group(1)), match.group(2))


@settings(max_examples=300)
@given(
    st.text("0123456789", min_size=0, max_size=12)
    | st.sampled_from(["\u0661", "2147483648", "007"]),
    st.sampled_from([" ", "  ", "\t", ""]),
    st.sampled_from(["INVITE", "MESSAGE", "ACK", "invite", "FOO-BAR", "M@SSAGE", "", "INVITE "]),
)
def test_cseq_fast_path_equals_general_parser(number: str, space: str, method: str) -> None:
    text = f"{number}{space}{method}"
    assert outcome(headers.parse_cseq, text) == outcome(_slow_cseq, text)
