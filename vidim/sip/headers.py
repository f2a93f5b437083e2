"""Header names, the header container and the typed header values.

Headers are kept as they arrived (one entry per header line, unfolded), so
that unknown headers pass through untouched; the values the protocol needs
(Via, From/To, CSeq...) are parsed into small frozen types on demand and
cached until that header changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, TypeVar

from . import abnf
from .errors import LocalProtocolError, SIPParseError
from .uri import (
    _COMPILED,
    _DIGIT_SET,
    _FAST_HOST,
    _FAST_PORT,
    _HOST_SET,
    _LOOSE_HOST,
    _LOOSE_PORT,
    URI,
    _CharSet,
    _fast_sip_uri_from_groups,
    _fast_sip_uri_pattern,
    _only,
    _parse_uri_slow,
    _port_number,
    _scan_port,
    _scan_sip_uri,
    parse_uri,
    valid_host,
)
from .value import ValueType

__all__ = [
    "CSeq",
    "Headers",
    "MediaType",
    "NameAddr",
    "Params",
    "Via",
    "canonical_name",
    "format_params",
    "parse_content_length",
    "parse_cseq",
    "parse_max_forwards",
    "parse_media_type",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_token_list",
    "parse_via_list",
    "quote",
    "split_list",
]

T = TypeVar("T")
Params = tuple[tuple[str, "str | None"], ...]

# RFC 3261 section 7.3.3 and later RFCs' compact forms.
COMPACT_FORMS: Final = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "y": "Identity",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "n": "Identity-Info",
}
_KNOWN: Final = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info",
    "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
    "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
    "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info",
    "Event", "Expires", "From", "Identity", "Identity-Info", "In-Reply-To",
    "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version", "Organization", "Path",
    "P-Asserted-Identity", "P-Preferred-Identity", "Priority", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route",
    "Refer-To", "Referred-By", "Reject-Contact", "Reply-To", "Request-Disposition",
    "Require", "Retry-After", "Route", "RSeq", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State",
    "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate", "X-Vidim-Mode", "X-Vidim-Invite", "X-Vidim-Conference",
    "X-Vidim-Participants",
]  # fmt: skip
_CANONICAL: Final = {name.lower(): name for name in _KNOWN}
_CANONICAL.update(COMPACT_FORMS)

#: Headers whose value is a comma-separated list (RFC 3261 section 7.3.1).
LIST_HEADERS: Final = frozenset(
    name.lower()
    for name in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language",
        "Error-Info", "In-Reply-To", "Path", "P-Asserted-Identity", "Proxy-Require",
        "Record-Route", "Require", "Route", "Service-Route", "Supported", "Unsupported",
        "Via", "Warning", "X-Vidim-Invite",
    )
)  # fmt: skip
#: Headers that may appear at most once (RFC 3261 section 20, "single value").
SINGLE_HEADERS: Final = frozenset(
    ("call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type")
)

_TOKEN_RE: Final = re.compile(abnf.TOKEN)
_DISPLAY_TOKENS_RE: Final = re.compile(rf"{abnf.TOKEN}(?:{abnf.LWS}{abnf.TOKEN})*")
_QUOTED_RE: Final = re.compile(abnf.QUOTED_STRING)
_PARAM_RE: Final = re.compile(
    rf"{abnf.SWS};{abnf.SWS}({abnf.TOKEN})"
    rf"(?:{abnf.SWS}={abnf.SWS}({abnf.QUOTED_STRING}|{abnf.GEN_VALUE}))?{abnf.SWS}"
)
_VIA_RE: Final = re.compile(
    rf"{abnf.SWS}({abnf.TOKEN}){abnf.SWS}/{abnf.SWS}({abnf.TOKEN}){abnf.SWS}/"
    rf"{abnf.SWS}({abnf.TOKEN}){abnf.LWS}(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
    rf"(?:{abnf.SWS}:{abnf.SWS}([0-9]{{1,5}}))?{abnf.SWS}"
)
_CSEQ_RE: Final = re.compile(rf"{abnf.SWS}([0-9]{{1,10}}){abnf.LWS}({abnf.TOKEN}){abnf.SWS}")
_MEDIA_RE: Final = re.compile(rf"{abnf.SWS}({abnf.TOKEN}){abnf.SWS}/{abnf.SWS}({abnf.TOKEN})")
_QUOTED_PAIR_RE: Final = re.compile(r"\\(.)", re.DOTALL)
# Fast paths: the compact forms every phone sends (no LWS inside, one space
# where the grammar needs one).  Anything they do not match goes through the
# general parsers above, which decide; tests/sip/test_fast_paths.py checks
# that both give equal results.
_TOKEN_CHARS: Final = r"A-Za-z0-9\-.!%*_+`'~"
# quoted-string as abnf.QUOTED_STRING, unrolled: four times faster in re.
_FAST_QUOTED: Final = r'"[^"\\\r\n]*+(?:\\[^\r\n][^"\\\r\n]*+)*+"'
_FAST_VALUE: Final = rf"(?:[A-Za-z0-9\-.!%*_+`'~\[\]:]++|{_FAST_QUOTED})"  # gen-value
#: *( SEMI generic-param ), one group.
_FAST_PARAMS: Final = rf"((?:;[{_TOKEN_CHARS}]++(?:={_FAST_VALUE})?)*+)"
#: via-params (RFC 3261 section 20.42) as the general parser checks them:
#: branch needs a value, ttl is 0-255, rport is a port or empty; any other
#: name is a generic-param.  For lines that are validated, not built.
_FAST_VIA_PARAMS_EXACT: Final = (
    rf"(?:;(?:(?!(?i:branch|rport|ttl)(?![{_TOKEN_CHARS}]))[{_TOKEN_CHARS}]++(?:={_FAST_VALUE})?"
    rf"|(?i:branch)={_FAST_VALUE}"
    rf"|(?i:rport)(?:={_FAST_PORT})?"
    rf"|(?i:ttl)=(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])))*+"
)
_FAST_VIA_ITEM_EXACT: Final = (
    rf"SIP/2\.0/[A-Za-z]++ {_FAST_HOST}(?::{_FAST_PORT})?{_FAST_VIA_PARAMS_EXACT}"
)

#: One via-parm: groups transport, host, port, params (checked by _fast_via).
_FAST_VIA_RE: Final = re.compile(
    rf"SIP/2\.0/([A-Za-z]++) ({_LOOSE_HOST})(?::({_LOOSE_PORT}))?{_FAST_PARAMS}"
)
#: The rest of a Via line after its first via-parm, validated only.
_FAST_VIA_MORE_RE: Final = re.compile(rf"(?:[ \t]*,[ \t]*{_FAST_VIA_ITEM_EXACT})*+")
#: A whole Via line, validated only.
_FAST_VIA_LINE_RE: Final = re.compile(
    rf"{_FAST_VIA_ITEM_EXACT}(?:[ \t]*,[ \t]*{_FAST_VIA_ITEM_EXACT})*+"
)
#: display-name (quoted, or tokens separated by single spaces): groups quoted, tokens.
_FAST_DISPLAY: Final = (
    rf'(?:"([^"\\\r\n]*+(?:\\[^\r\n][^"\\\r\n]*+)*+)" ?|({abnf.TOKEN}(?: {abnf.TOKEN})*) ?)?'
)
#: name-addr with a SIP URI, then parameters: groups quoted, tokens, the
#: five of the URI (scheme, user, host, port, URI params), header params.
_FAST_NAME_ADDR_SIP_RE: Final = re.compile(
    rf"{_FAST_DISPLAY}<{_fast_sip_uri_pattern()}>{_FAST_PARAMS}"
)
_FAST_NAME_ADDR_ITEM: Final = (
    rf"{_FAST_DISPLAY}<{_fast_sip_uri_pattern(_FAST_HOST, _FAST_PORT)}>{_FAST_PARAMS}"
)
#: A Contact (Route...) line of such name-addrs, validated only (no IPv6).
_FAST_NAME_ADDR_LINE_RE: Final = re.compile(
    rf"{_FAST_NAME_ADDR_ITEM}(?:[ \t]*,[ \t]*{_FAST_NAME_ADDR_ITEM})*+"
)
#: name-addr with any other URI, and addr-spec (no <>).
_FAST_NAME_ADDR_RE: Final = re.compile(rf"{_FAST_DISPLAY}<([^<>\s\"]+)>{_FAST_PARAMS}")
_FAST_ADDR_SPEC_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*:[^;?,\s<>\"]+)" + _FAST_PARAMS)
#: type/subtype *(;param)
_FAST_MEDIA_RE: Final = re.compile(rf"({abnf.TOKEN})/({abnf.TOKEN}){_FAST_PARAMS}")


def _fast_params(text: str) -> Params:
    """Split parameters already validated by a fast-path regex."""
    if not text:
        return ()
    if '"' not in text:
        if text.find(";", 1) < 0:  # one parameter (a tag, a branch): the usual case
            name, eq, value = text[1:].partition("=")
            return ((name, value if eq else None),)
        items = text[1:].split(";")
    else:
        items = _split_quoted_params(text)
    out: list[tuple[str, str | None]] = []
    for item in items:
        name, eq, value = item.partition("=")
        out.append((name, value if eq else None))
    return tuple(out)


#: token characters, and those of a gen-value without quotes (_FAST_VALUE).
_TOKEN_CHARSET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~"
_TOKEN_SET: Final = _CharSet(_TOKEN_CHARSET)
_VALUE_SET: Final = _CharSet(_TOKEN_CHARSET + "[]:")
_DISPLAY_SET: Final = _CharSet(_TOKEN_CHARSET + " ")
_ALPHA_SET: Final = _CharSet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _scan_params(text: str) -> Params | None:
    """:data:`_FAST_PARAMS` without quoted values, scanned and split as
    :func:`_fast_params` splits them; None: not of that form."""
    if not text:
        return ()
    if not text.startswith(";"):
        return None
    if text.find(";", 1) < 0:  # one parameter (a tag, a branch): the usual case
        name, eq, value = text[1:].partition("=")
        if not _only(name, _TOKEN_SET):
            return None
        if eq:
            return ((name, value),) if _only(value, _VALUE_SET) else None
        return ((name, None),)
    out: list[tuple[str, str | None]] = []
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        if not _only(name, _TOKEN_SET):
            return None
        if eq:
            if not _only(value, _VALUE_SET):
                return None
            out.append((name, value))
        else:
            out.append((name, None))
    return tuple(out)


def _split_quoted_params(text: str) -> list[str]:
    return [f"{m.group(1)}={m.group(2)}" if m.group(2) is not None else m.group(1)
            for m in _PARAM_RE.finditer(text)]  # fmt: skip


_CTL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def canonical_name(name: str) -> str:
    """Return the usual spelling of a header name, expanding compact forms."""
    return _CANONICAL.get(name.lower(), name)


def quote(text: str) -> str:
    """Return ``text`` as a SIP quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(text: str) -> str:
    return _QUOTED_PAIR_RE.sub(r"\1", text[1:-1])


def split_list(value: str) -> list[str]:
    """Split a header value at the commas that are outside quotes and ``<>``.

    Empty elements are an error: ``a,,b`` is not a list of SIP values.
    """
    if "," not in value:
        single = value.strip()
        if not single:
            raise SIPParseError("empty header value where a list was expected")
        return [single]
    if '"' not in value and "<" not in value:
        items = value.split(",")
    else:
        items = []
        start = 0
        in_quotes = in_angle = False
        i = 0
        length = len(value)
        while i < length:
            char = value[i]
            if in_quotes:
                if char == "\\":
                    i += 1
                elif char == '"':
                    in_quotes = False
            elif char == '"':
                in_quotes = True
            elif char == "<":
                in_angle = True
            elif char == ">":
                in_angle = False
            elif char == "," and not in_angle:
                items.append(value[start:i])
                start = i + 1
            i += 1
        if in_quotes:
            raise SIPParseError(f"unterminated quoted string in {value!r}")
        items.append(value[start:])
    stripped = [item.strip() for item in items]
    if any(not item for item in stripped):
        raise SIPParseError(f"empty element in list {value!r}")
    return stripped


def parse_params(text: str, context: str) -> Params:
    """Parse ``*( SEMI generic-param )``; the whole of ``text`` must be consumed."""
    params: list[tuple[str, str | None]] = []
    pos = 0
    end = len(text.rstrip())
    while pos < end:
        match = _PARAM_RE.match(text, pos)
        if match is None:
            raise SIPParseError(f"bad parameters {text[pos:]!r} in {context}")
        params.append((match.group(1), match.group(2)))
        pos = match.end()
    return tuple(params)


def format_params(params: Params) -> str:
    if not params:
        return ""
    return "".join([f";{k}" if v is None else f";{k}={v}" for k, v in params])


def _param(params: Params, name: str) -> str | None:
    """The value of the first parameter ``name`` (lower case), compared case-insensitively."""
    for key, value in params:
        if key == name or key.lower() == name:
            return value
    return None


class NameAddr(ValueType):
    """A From, To, Contact, Route... value: display name, URI and parameters.

    Immutable and hashable, like every value type here: a ``__slots__``
    class with read-only properties, which the parser builds three times
    faster than a frozen dataclass (see docs/performance.md).
    """

    __slots__ = ("_display_name", "_params", "_uri")
    __match_args__ = ("uri", "display_name", "params")

    _uri: URI
    _display_name: str | None
    _params: Params

    def __init__(self, uri: URI, display_name: str | None = None, params: Params = ()) -> None:
        self._uri = uri
        self._display_name = display_name
        self._params = tuple(params)

    @property
    def uri(self) -> URI:
        return self._uri

    @property
    def display_name(self) -> str | None:
        return self._display_name

    @property
    def params(self) -> Params:
        """Header parameters (``tag``, ``expires``...) as written, quoted values kept quoted."""
        return self._params

    def _key(self) -> tuple[object, ...]:
        return (self._uri, self._display_name, self._params)

    def __repr__(self) -> str:
        return (
            f"NameAddr(uri={self._uri!r}, display_name={self._display_name!r}, "
            f"params={self._params!r})"
        )

    @property
    def tag(self) -> str | None:
        return _param(self._params, "tag")

    def param(self, name: str) -> str | None:
        return _param(self._params, name.lower())

    def has_param(self, name: str) -> bool:
        lname = name.lower()
        return any(key.lower() == lname for key, _ in self._params)

    def with_tag(self, tag: str) -> NameAddr:
        if not _TOKEN_RE.fullmatch(tag):
            raise LocalProtocolError(f"a tag must be a token, not {tag!r}")
        kept = tuple(p for p in self._params if p[0].lower() != "tag")
        return NameAddr(self._uri, self._display_name, (*kept, ("tag", tag)))

    def __str__(self) -> str:
        if self._display_name is not None:
            head = f"{quote(self._display_name)} <{self._uri}>"
        else:
            head = f"<{self._uri}>"
        return head + format_params(self._params) if self._params else head


def _name_addr(uri: URI, display_name: str | None, params: Params) -> NameAddr:
    """A NameAddr from parsed parts, without going through ``__init__``."""
    return NameAddr(uri, display_name, params)


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``( name-addr / addr-spec ) *( SEMI param )`` (RFC 3261 section 20.10)."""
    if _COMPILED:
        scanned = _scan_name_addr(value)
        if scanned is not None:  # From and To of every message come here
            return scanned
    return _parse_name_addr_regex(value)


def _scan_name_addr(value: str) -> NameAddr | None:
    """``[display] <sip-URI> *(;param)`` as :data:`_FAST_NAME_ADDR_SIP_RE` reads it,
    scanned (no escapes in the display name, no quoted parameter value, no
    IPv6 host); None: not of that form."""
    display: str | None = None
    if value.startswith("<"):
        lt = 0
    elif value.startswith('"'):
        close = value.find('"', 1)
        if close < 0:
            return None
        display = value[1:close]
        if "\\" in display or "\r" in display or "\n" in display:
            return None
        lt = close + 1
        if value.startswith(" ", lt):
            lt += 1
        if not value.startswith("<", lt):
            return None
    else:
        lt = value.find("<")
        if lt <= 0:
            return None
        # tokens separated by single spaces, then at most one space
        display = value[: lt - 1] if value[lt - 1] == " " else value[:lt]
        if (
            not _only(display, _DISPLAY_SET)
            or display.startswith(" ")
            or display.endswith(" ")
            or "  " in display
        ):
            return None
    gt = value.find(">", lt)
    if gt < 0:
        return None
    uri = _scan_sip_uri(value[lt + 1 : gt])
    if uri is None:
        return None
    params = _scan_params(value[gt + 1 :])
    if params is None:
        return None
    return NameAddr(uri, display, params)


def _parse_name_addr_regex(value: str) -> NameAddr:
    """parse_name_addr without the scanner: the fast regexes, then the general parser."""
    match = _FAST_NAME_ADDR_SIP_RE.fullmatch(value)
    if match is not None:
        quoted, tokens, scheme, user, host, port, uri_params, params = match.groups()
        uri = _fast_sip_uri_from_groups(scheme, user, host, port, uri_params)
        if uri is not None:  # From and To of every message come here
            return NameAddr(
                uri,
                _unquote_inner(quoted) if quoted is not None else tokens,
                _fast_params(params) if params else (),
            )
    match = _FAST_NAME_ADDR_RE.fullmatch(value)
    if match is not None:
        quoted, tokens, uri_text, params = match.groups()
        display = _unquote_inner(quoted) if quoted is not None else tokens
        return _name_addr(parse_uri(uri_text), display, _fast_params(params))
    match = _FAST_ADDR_SPEC_RE.fullmatch(value)
    if match is not None:
        return _name_addr(parse_uri(match.group(1)), None, _fast_params(match.group(2)))
    return _parse_name_addr_slow(value)


def _unquote_inner(text: str) -> str:
    return _QUOTED_PAIR_RE.sub(r"\1", text) if "\\" in text else text


def _parse_name_addr_slow(value: str) -> NameAddr:
    """The general parser: every form the grammar allows (and no fast path)."""
    text = value.strip()
    display: str | None = None
    if text.startswith('"'):
        match = _QUOTED_RE.match(text)
        if match is None:
            raise SIPParseError(f"unterminated quoted display name in {value!r}")
        display = _unquote(match.group(0))
        text = text[match.end() :].lstrip()
        if not text.startswith("<"):
            raise SIPParseError(f"quoted display name without <URI> in {value!r}")
    lt = text.find("<")
    if lt >= 0:
        if display is None:
            before = text[:lt].strip()
            if before:
                if not _DISPLAY_TOKENS_RE.fullmatch(before):
                    raise SIPParseError(f"display name must be tokens or quoted in {value!r}")
                display = before
        gt = text.find(">", lt)
        if gt < 0:
            raise SIPParseError(f"missing '>' in {value!r}")
        uri = _parse_uri_slow(text[lt + 1 : gt])
        rest = text[gt + 1 :]
    else:
        # addr-spec: the URI ends at the first ';' or space; a URI holding
        # ',', '?' or ';' must be in <> (RFC 3261 section 20.10).
        end = len(text)
        for stop in (";", " ", "\t"):
            index = text.find(stop)
            if 0 <= index < end:
                end = index
        spec = text[:end]
        if "?" in spec or "," in spec:
            raise SIPParseError(f"a URI with '?' or ',' must be enclosed in <> in {value!r}")
        uri = _parse_uri_slow(spec)
        rest = text[end:]
    params = parse_params(rest, value) if rest.strip() else ()
    return NameAddr(uri=uri, display_name=display, params=params)


def parse_name_addr_list(value: str) -> list[NameAddr]:
    return [parse_name_addr(item) for item in split_list(value)]


def _name_addr_line_ok(value: str) -> bool:
    """True when the fast grammar covers the whole list: valid without building it."""
    return _FAST_NAME_ADDR_LINE_RE.fullmatch(value) is not None


class Via(ValueType):
    """One Via entry (RFC 3261 section 20.42)."""

    __slots__ = ("_host", "_params", "_port", "_transport")
    __match_args__ = ("transport", "host", "port", "params")

    _transport: str
    _host: str
    _port: int | None
    _params: Params

    def __init__(
        self, transport: str, host: str, port: int | None = None, params: Params = ()
    ) -> None:
        self._transport = transport
        self._host = host
        self._port = port
        self._params = tuple(params)

    @property
    def transport(self) -> str:
        return self._transport

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def params(self) -> Params:
        return self._params

    def _key(self) -> tuple[object, ...]:
        return (self._transport, self._host, self._port, self._params)

    def __repr__(self) -> str:
        return (
            f"Via(transport={self._transport!r}, host={self._host!r}, port={self._port!r}, "
            f"params={self._params!r})"
        )

    @property
    def branch(self) -> str | None:
        return _param(self._params, "branch")

    @property
    def received(self) -> str | None:
        return _param(self._params, "received")

    @property
    def rport(self) -> int | None:
        value = _param(self._params, "rport")
        return int(value) if value and value.isdigit() else None

    @property
    def has_rport(self) -> bool:
        return any(key.lower() == "rport" for key, _ in self._params)

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return (self._host.lower(), self._port)

    @property
    def is_rfc3261_branch(self) -> bool:
        """True when the branch carries the magic cookie and something after it."""
        branch = self.branch
        return branch is not None and branch.startswith("z9hG4bK") and len(branch) > 7

    def with_params(self, **params: str | None) -> Via:
        lowered = {k.lower() for k in params}
        kept = tuple(p for p in self._params if p[0].lower() not in lowered)
        return _via(self._transport, self._host, self._port, kept + tuple(params.items()))

    def __str__(self) -> str:
        host = self._host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        if self._port is not None:
            return f"SIP/2.0/{self._transport} {host}:{self._port}{format_params(self._params)}"
        return f"SIP/2.0/{self._transport} {host}{format_params(self._params)}"


def _via(transport: str, host: str, port: int | None, params: Params) -> Via:
    """A Via from parsed parts, without going through ``__init__``."""
    return Via(transport, host, port, params)


def _parse_via(text: str, value: str) -> Via:
    """One via-parm (``text``) of the Via line ``value``."""
    match = _FAST_VIA_RE.fullmatch(text)
    if match is not None:
        transport, host, port, params = match.groups()
        via = _fast_via(transport, host, port, params)
        if via is not None:
            return via
    return _parse_via_slow(text, value)


def _fast_via(transport: str, host: str, port: str | None, params_text: str) -> Via | None:
    """The Via a :data:`_FAST_VIA_RE` match describes (None: let the general parser decide)."""
    return _fast_via_params(transport, host, port, _fast_params(params_text))


def _fast_via_params(transport: str, host: str, port: str | None, params: Params) -> Via | None:
    if not valid_host(host):
        return None
    port_number = None
    if port is not None:
        port_number = _port_number(port)
        if port_number > 65535:
            return None
    if not _via_params_ok(params):
        return None
    upper = _UPPER_TRANSPORTS.get(transport)
    if upper is None:
        upper = transport.upper()
    return _via(upper, host, port_number, params)


#: The usual transports, upper-cased without a new string.
_UPPER_TRANSPORTS: Final = {
    name: name.upper()
    for name in ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp", "tcp", "tls", "sctp", "ws", "wss")
}


def _via_params_ok(params: Params) -> bool:
    """The checks the general parser makes on via-params (branch, ttl, rport)."""
    for key, pvalue in params:
        lkey = key if key == "branch" or key == "rport" else key.lower()
        if lkey == "ttl" and (pvalue is None or not pvalue.isdigit() or int(pvalue) > 255):
            return False
        if lkey == "rport" and pvalue is not None and (not pvalue.isdigit() or int(pvalue) > 65535):
            return False
        if lkey == "branch" and pvalue is None:
            return False
    return True


def _parse_top_via(line: str) -> Via:
    """The first via-parm of a Via line, the whole line validated, the rest not built."""
    if _COMPILED:
        via = _scan_via(line)
        if via is not None:
            return via
    return _parse_top_via_regex(line)


def _scan_via(line: str) -> Via | None:
    """A Via line of one via-parm as :data:`_FAST_VIA_RE` reads it, scanned
    (no quoted parameter value, no IPv6 host); None: not of that form."""
    if not line.startswith("SIP/2.0/"):
        return None
    space = line.find(" ", 8)
    if space < 0:
        return None
    transport = line[8:space]
    if not _only(transport, _ALPHA_SET):
        return None
    semi = line.find(";", space)
    params: Params = ()
    if semi < 0:
        hostport = line[space + 1 :]
    else:
        hostport = line[space + 1 : semi]
        scanned = _scan_params(line[semi:])
        if scanned is None:
            return None
        params = scanned
    host, colon, port = hostport.partition(":")
    if not _only(host, _HOST_SET):
        return None
    if colon:
        if not _scan_port(port):
            return None
        return _fast_via_params(transport, host, port, params)
    return _fast_via_params(transport, host, None, params)


def _parse_top_via_regex(line: str) -> Via:
    """_parse_top_via without the scanner: the fast regexes, then the general parser."""
    # One via-parm per line is the usual case: fullmatch (cheaper in re than
    # match, and no end() call); else the first via-parm and the rest.
    match = _FAST_VIA_RE.fullmatch(line)
    if match is None:
        match = _FAST_VIA_RE.match(line)
        if match is not None and _FAST_VIA_MORE_RE.fullmatch(line, match.end()) is None:
            match = None
    if match is not None:
        transport, host, port, params = match.groups()
        via = _fast_via(transport, host, port, params)
        if via is not None:
            return via
    return parse_via_list(line)[0]


def _parse_via_slow(text: str, value: str) -> Via:
    """The general parser: every via-parm the grammar allows (and no fast path)."""
    match = _VIA_RE.match(text)
    if match is None:
        raise SIPParseError(f"malformed Via {value!r}")
    name, version, transport, host, port_text = match.groups()
    if name.upper() != "SIP" or version != "2.0":
        raise SIPParseError(f"Via with unknown protocol {name}/{version}")
    port = int(port_text) if port_text is not None else None
    if port is not None and port > 65535:
        raise SIPParseError(f"Via port out of range in {value!r}")
    params = parse_params(text[match.end() :], f"Via {value!r}")
    for key, pvalue in params:
        lkey = key.lower()
        if lkey == "ttl" and (pvalue is None or not pvalue.isdigit() or int(pvalue) > 255):
            raise SIPParseError(f"Via ttl out of range in {value!r}")
        if lkey == "rport" and pvalue is not None and (not pvalue.isdigit() or int(pvalue) > 65535):
            raise SIPParseError(f"bad Via rport in {value!r}")
        if lkey == "branch" and pvalue is None:
            raise SIPParseError(f"Via branch without value in {value!r}")
    if not valid_host(host):
        raise SIPParseError(f"bad Via host in {value!r}")
    return _via(transport.upper(), host, port, params)


def parse_via_list(value: str) -> list[Via]:
    return [_parse_via(item, value) for item in split_list(value)]


def _via_line_ok(value: str) -> bool:
    """True when the fast grammar covers the whole Via line: valid without building it."""
    return _FAST_VIA_LINE_RE.fullmatch(value) is not None


class CSeq(ValueType):
    """The CSeq header: sequence number and method."""

    __slots__ = ("_method", "_seq")
    __match_args__ = ("seq", "method")

    _seq: int
    _method: str

    def __init__(self, seq: int, method: str) -> None:
        self._seq = seq
        self._method = method

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def method(self) -> str:
        return self._method

    def _key(self) -> tuple[object, ...]:
        return (self._seq, self._method)

    def __repr__(self) -> str:
        return f"CSeq(seq={self._seq!r}, method={self._method!r})"

    def __str__(self) -> str:
        return f"{self._seq} {self._method}"


#: Methods every SIP element sees, for the CSeq fast path (any token is valid).
_COMMON_METHODS: Final = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "SUBSCRIBE",
     "NOTIFY", "REFER", "INFO", "UPDATE", "PRACK", "PUBLISH")
)  # fmt: skip


def parse_cseq(value: str) -> CSeq:
    # Fast path, no regex: "<digits> <common method>", one space.
    seq_text, _, method = value.partition(" ")
    if method in _COMMON_METHODS and _only(seq_text, _DIGIT_SET):  # ASCII digits
        if len(seq_text) > 10:
            raise SIPParseError(f"malformed CSeq {value!r}")
    else:
        match = _CSEQ_RE.fullmatch(value)
        if match is None:
            raise SIPParseError(f"malformed CSeq {value!r}")
        seq_text, method = match.group(1, 2)
    seq = int(seq_text)
    if seq >= 2**31:
        raise SIPParseError(f"CSeq number {seq} is not below 2**31")
    return CSeq(seq, method)


class MediaType(ValueType):
    """A Content-Type value: type, subtype and parameters."""

    __slots__ = ("_params", "_subtype", "_type")
    __match_args__ = ("type", "subtype", "params")

    _type: str
    _subtype: str
    _params: Params

    def __init__(self, type: str, subtype: str, params: Params = ()) -> None:
        self._type = type
        self._subtype = subtype
        self._params = tuple(params)

    @property
    def type(self) -> str:
        return self._type

    @property
    def subtype(self) -> str:
        return self._subtype

    @property
    def params(self) -> Params:
        return self._params

    def _key(self) -> tuple[object, ...]:
        return (self._type, self._subtype, self._params)

    def __repr__(self) -> str:
        return f"MediaType(type={self._type!r}, subtype={self._subtype!r}, params={self._params!r})"

    @property
    def mime(self) -> str:
        """``type/subtype`` in lower case, for comparisons."""
        return f"{self._type}/{self._subtype}".lower()

    def param(self, name: str) -> str | None:
        value = _param(self._params, name.lower())
        if value is not None and value.startswith('"'):
            return _unquote(value)
        return value

    def __str__(self) -> str:
        return f"{self._type}/{self._subtype}{format_params(self._params)}"


def _scan_media_type(value: str) -> MediaType | None:
    """``type/subtype *(;param)`` as :data:`_FAST_MEDIA_RE` reads it, scanned (no
    quoted parameter value); None: not of that form."""
    slash = value.find("/")
    semi = value.find(";", slash)
    subtype = value[slash + 1 :] if semi < 0 else value[slash + 1 : semi]
    type_ = value[:slash]
    if slash < 0 or not _only(type_, _TOKEN_SET) or not _only(subtype, _TOKEN_SET):
        return None
    if semi < 0:
        return MediaType(type_, subtype)
    params = _scan_params(value[semi:])
    return None if params is None else MediaType(type_, subtype, params)


def parse_media_type(value: str) -> MediaType:
    if _COMPILED:
        scanned = _scan_media_type(value)
        if scanned is not None:
            return scanned
    match = _FAST_MEDIA_RE.fullmatch(value)
    if match is not None:
        type_, subtype, params = match.groups()
        return MediaType(type_, subtype, _fast_params(params))
    return _parse_media_type_slow(value)


def _media_type_ok(value: str) -> bool:
    """True when the fast grammar covers the value: valid without building it."""
    if _COMPILED and _scan_media_type(value) is not None:
        return True
    return _FAST_MEDIA_RE.fullmatch(value) is not None


def _parse_media_type_slow(value: str) -> MediaType:
    """The general parser (and no fast path)."""
    match = _MEDIA_RE.match(value)
    if match is None:
        raise SIPParseError(f"malformed media type {value!r}")
    params = parse_params(value[match.end() :], f"media type {value!r}")
    return MediaType(match.group(1), match.group(2), params)


def parse_max_forwards(value: str) -> int:
    if not _only(value, _DIGIT_SET):  # ASCII digits
        raise SIPParseError(f"malformed Max-Forwards {value!r}")
    number = int(value)
    if number > 255:
        raise SIPParseError(f"Max-Forwards {number} is above 255")
    return number


def parse_content_length(value: str) -> int:
    if not _only(value, _DIGIT_SET):  # ASCII digits
        raise SIPParseError(f"malformed Content-Length {value!r}")
    return int(value)


def parse_token_list(value: str) -> list[str]:
    items = split_list(value)
    for item in items:
        if not _TOKEN_RE.fullmatch(item):
            raise SIPParseError(f"expected a token, got {item!r}")
    return items


class Headers:
    """An ordered multi-map of header lines, case-insensitive by name.

    Every entry is ``(name, value)`` with the canonical name (compact forms
    expanded) and the value unfolded.  Parsed values are cached per name and
    dropped when that name changes.  Lookups go through an index of the
    first value of each name, which the parser builds as it reads the lines
    and which is rebuilt on demand after a change.
    """

    __slots__ = ("_cache", "_index", "_packed", "_stored")

    #: The lines as (lower-case name, name, value), or None while packed.
    _stored: list[tuple[str, str, str]] | None
    #: The lines of a compacted message, as one string (see compact()).
    _packed: str | None
    _cache: dict[str, Any]
    _index: dict[str, str] | None

    def __init__(
        self,
        items: Iterable[tuple[str, str]] = (),
        *,
        _lines: list[tuple[str, str, str]] | None = None,
        _index: dict[str, str] | None = None,
    ) -> None:
        # ``_lines`` (for code inside vidim): (lower-case name, name, value)
        # entries already checked, taken as they are, with ``_index`` the
        # first value of each name when the caller has it.
        self._cache = {}
        self._packed = None
        if _lines is not None:
            self._stored = _lines
            self._index = _index
            return
        self._index = None
        # The loop of add(), inlined: Message.__init__ builds every outgoing
        # message through here (a dozen lines each), and the cache is empty.
        out: list[tuple[str, str, str]] = []
        names = _ADD_NAMES
        for name, value in items:
            entry = names.get(name)
            if entry is None:
                entry = _checked_name(name)
            if not value.isprintable() and _CTL_RE.search(value):  # isprintable: 3x faster
                raise LocalProtocolError(f"control character in value of {entry[1]}: {value!r}")
            out.append((entry[0], entry[1], value.strip()))
        self._stored = out

    @property
    def _items(self) -> list[tuple[str, str, str]]:
        items = self._stored
        if items is None:
            items = self._stored = _unpack(self._packed or "")
            self._packed = None
        return items

    @_items.setter
    def _items(self, items: list[tuple[str, str, str]]) -> None:
        self._stored = items
        self._packed = None

    @classmethod
    def trusted(cls, items: Iterable[tuple[str, str]]) -> Headers:
        """Headers from lines vidim built itself from valid parts: values are not checked.

        For code inside vidim that builds outgoing messages (the allocator,
        dialogs, the transaction layer) from values it made or parsed: each
        value must be free of CR, LF and other controls and carry no
        leading or trailing whitespace, which is what the public constructor
        checks and strips.  Names are still checked (once per name, cached).
        Anything that comes from configuration or a peer unparsed goes
        through ``Headers(...)`` instead.
        """
        names = _ADD_NAMES
        out: list[tuple[str, str, str]] = []
        for name, value in items:
            entry = names.get(name)
            if entry is None:
                entry = _checked_name(name)
            out.append((entry[0], entry[1], value))
        return Headers(_lines=out)

    @classmethod
    def _from_parsed(
        cls, items: list[tuple[str, str, str]], index: dict[str, str] | None = None
    ) -> Headers:
        """Headers from parsed lines; ``index`` maps each lower-case name to its first value."""
        return Headers(_lines=items, _index=index)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for _, name, value in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return self._first(_lower_name(name)) is not None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def copy(self) -> Headers:
        index = self._index
        return Headers._from_parsed(list(self._items), None if index is None else dict(index))

    def get(self, name: str) -> str | None:
        """The first value of ``name``, or None."""
        return self._first(_lower_name(name))

    def get_all(self, name: str) -> list[str]:
        """Every header line of ``name``, in order (lists not split)."""
        lname = _lower_name(name)
        return [value for key, _, value in self._items if key == lname]

    def values(self, name: str) -> list[str]:
        """Every value of ``name``: header lines split into list elements."""
        out: list[str] = []
        for line in self.get_all(name):
            out.extend(split_list(line))
        return out

    def add(self, name: str, value: str) -> None:
        """Append a header line; CR, LF and other controls are refused."""
        entry = _ADD_NAMES.get(name)
        if entry is None:
            entry = _checked_name(name)
        lname, cname = entry
        if not value.isprintable() and _CTL_RE.search(value):
            raise LocalProtocolError(f"control character in value of {cname}: {value!r}")
        self._drop_cache(lname)
        self._items.append((lname, cname, value.strip()))

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before all others (a proxy's Via, a Record-Route)."""
        self.add(name, value)
        self._items.insert(0, self._items.pop())

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` with one, where the first one was."""
        lname = _lower_name(name)
        index = next((i for i, item in enumerate(self._items) if item[0] == lname), None)
        self.remove(name)
        self.add(name, value)
        if index is not None:
            self._items.insert(index, self._items.pop())

    def remove(self, name: str) -> None:
        lname = _lower_name(name)
        self._drop_cache(lname)
        self._items = [item for item in self._items if item[0] != lname]

    def _first(self, lname: str) -> str | None:
        index = self._index
        if index is None:
            packed = self._packed
            if packed is not None and self._stored is None:
                # A compacted message read again (its Call-ID for a log line, its
                # From when its answer comes): the usual names are found in the
                # packed text, without unpacking every line and indexing them.
                value = _packed_first(packed, lname)
                if value is not None:
                    return value
            # Reversed, so that the first line of each name is the one kept.
            index = self._index = {key: value for key, _, value in reversed(self._items)}
        return index.get(lname)

    def parsed(self, name: str, parser: Callable[[str], T]) -> T | None:
        """Parse the first value of ``name`` with ``parser``, cached; None if absent.

        ``name`` is the lower-case canonical name (``"call-id"``, not ``"i"``).
        """
        value = self._cache.get(name, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[no-any-return]
        lname = name.lower()
        if lname != name:
            value = self._cache.get(lname, _MISSING)
            if value is not _MISSING:
                return value  # type: ignore[no-any-return]
        raw = self._first(lname)
        result = parser(raw) if raw is not None else None
        self._cache[lname] = result
        return result

    def parsed_all(self, name: str, parser: Callable[[str], list[T]]) -> list[T]:
        """Parse every line of a list header with ``parser``, cached."""
        lname = name.lower()
        key = "*" + lname
        value = self._cache.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[no-any-return]
        out: list[T] = []
        for item_name, _, line in self._items:
            if item_name == lname:
                out.extend(parser(line))
        self._cache[key] = out
        return out

    def compact(self) -> None:
        """Drop the parsed values and the index (rebuilt on the next read).

        For a message that stays referenced after it was handled (a request
        that a completed transaction keeps to absorb retransmissions): the
        header lines are what it needs, the parsed objects are most of its size.
        """
        self._index = None
        if self._cache:
            self._cache.clear()
        items = self._stored
        if items is not None:
            # One string instead of a tuple and three strings per line: a
            # transaction keeps its messages for up to 32 s, and at a few
            # thousand setups a second they were most of the daemon's memory.
            packed = _pack(items)
            if packed is not None:
                self._packed = packed
                self._stored = None

    def _drop_cache(self, lname: str) -> None:
        self._index = None
        cache = self._cache
        if cache:
            cache.pop(lname, None)
            cache.pop("*" + lname, None)


def _pack(items: list[tuple[str, str, str]]) -> str | None:
    """Lines as one string, as they are written on the wire: ``Name: value``
    joined by CRLF (no name or value holds a line end: they are lines), so
    that Message.to_bytes() can copy it as it is.  The lower-case name is
    left out and derived from the name again; None (nothing packed) in the
    rare case where it is not the name in lower case."""
    parts: list[str] = []  # one join of the pieces: no string per line
    names = _PACKED_NAMES
    for lname, name, value in items:
        entry = names.get(name)
        if entry is None:
            lower = name.lower()
            # A known header packs only under its usual spelling: _packed_first
            # looks for that spelling alone.
            entry = (lower, name + ": ") if _CANONICAL.get(lower, name) == name else ("", "")
            if len(names) < 1024:  # bounded: names can come from peers
                names[name] = entry
        if entry[0] != lname:
            return None
        parts.append(entry[1])
        parts.append(value)
        parts.append("\r\n")
    if parts:
        parts.pop()
    return "".join(parts)


#: Lower-case name -> its line's start in packed text, at the start and after a CRLF:
#: the names read again from compacted messages.
_PACKED_STARTS: Final = {
    name.lower(): (name + ": ", "\r\n" + name + ": ")
    for name in ("Call-ID", "CSeq", "From", "To", "Via")
}


def _packed_first(packed: str, lname: str) -> str | None:
    """The first value of ``lname`` in packed text (see :func:`_pack`); None: not found
    this way (not one of the names looked for, or absent)."""
    starts = _PACKED_STARTS.get(lname)
    if starts is None:
        return None
    first, later = starts
    if packed.startswith(first):
        start = len(first)
    else:
        at = packed.find(later)
        if at < 0:
            return None
        start = at + len(later)
    end = packed.find("\r\n", start)
    return packed[start:] if end < 0 else packed[start:end]


def _unpack(packed: str) -> list[tuple[str, str, str]]:
    if not packed:
        return []
    out: list[tuple[str, str, str]] = []
    names = _PACKED_NAMES
    for line in packed.split("\r\n"):
        # The first ": " ends the name: a name is a token (no colon).
        name, _, value = line.partition(": ")
        entry = names.get(name)
        out.append((name.lower() if entry is None else entry[0], name, value))
    return out


_MISSING: Final[Any] = object()
#: canonical header name -> (lower-case name, "Name: "), for _pack and _unpack (bounded).
_PACKED_NAMES: Final[dict[str, tuple[str, str]]] = {}
_LOWER_NAMES: Final[dict[str, str]] = {}
#: header name as given to Headers -> (lower-case canonical name, canonical
#: name), for names that passed the token check; bounded like _LOWER_NAMES.
_ADD_NAMES: Final[dict[str, tuple[str, str]]] = {}


def _checked_name(name: str) -> tuple[str, str]:
    """(lower-case canonical name, canonical name) of a name to add; raises if not a token."""
    cname = canonical_name(name)
    if not _TOKEN_RE.fullmatch(cname):
        raise LocalProtocolError(f"bad header name {name!r}")
    entry = (cname.lower(), cname)
    if len(_ADD_NAMES) < 1024:  # bounded: names can come from peers
        _ADD_NAMES[name] = entry
    return entry


def _lower_name(name: str) -> str:
    """The lower-case canonical name of ``name``, from a bounded cache keyed on names."""
    lname = _LOWER_NAMES.get(name)
    if lname is None:
        lname = canonical_name(name).lower()
        if len(_LOWER_NAMES) < 1024:  # bounded: names can come from peers
            _LOWER_NAMES[name] = lname
    return lname
