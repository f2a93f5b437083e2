"""Bytes to messages: :func:`parse_message` for a datagram, :class:`StreamFramer` for TCP.

Parsing is strict where RFC 3261 and RFC 4475 say a message must be refused
and liberal elsewhere (compact forms, folding, any header name case, bare LF
line ends, leading CRLFs).  Every failure is a :class:`SIPParseError`.
"""

from __future__ import annotations

import re
from typing import Final

from . import abnf
from .errors import SIPParseError
from .headers import (
    _TOKEN_SET,
    SINGLE_HEADERS,
    Headers,
    _media_type_ok,
    _name_addr_line_ok,
    _parse_top_via,
    _scan_name_addr,
    _via_line_ok,
    canonical_name,
    parse_content_length,
    parse_cseq,
    parse_max_forwards,
    parse_media_type,
    parse_name_addr,
    parse_name_addr_list,
    parse_via_list,
)
from .message import REASON_PHRASES, Request, Response
from .uri import (
    _COMPILED,
    URI,
    SipURI,
    _CharSet,
    _fast_sip_uri_from_groups,
    _fast_sip_uri_pattern,
    _only,
    _scan_sip_uri,
    parse_uri,
)

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "StreamFramer", "parse_message"]

#: The largest message the framer accepts by default (bytes, headers and body).
DEFAULT_MAX_MESSAGE_SIZE: Final = 65535

# Module constants are Final: compiled (mypyc), they are read without a
# lookup in the module's namespace.
_HEADER_END_RE: Final = re.compile(rb"\r?\n\r?\n")
_TOKEN_RE: Final = re.compile(abnf.TOKEN)
_VERSION_RE: Final = re.compile(r"SIP/[0-9]+\.[0-9]+")
_CALL_ID_RE: Final = re.compile(rf"{abnf.WORD}(?:@{abnf.WORD})?")
_CONTENT_LENGTH_RE: Final = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)
#: The characters of abnf.WORD, for the Call-ID scan.
_WORD_SET: Final = _CharSet(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~()<>:\\\"/[]?{}"
)
#: "200" -> 200, for the codes of REASON_PHRASES (all 3 digits, 100-699).
_STATUS_CODES: Final = {str(code): code for code in REASON_PHRASES}
_REQUIRED_ORDER: Final = ("via", "from", "to", "call-id", "cseq")


#: raw header name (as it appears before the colon) -> (lower-case canonical
#: name, canonical name).  Keyed on names, which repeat in real traffic, and
#: bounded since names come from peers.
_NAME_CACHE: Final[dict[str, tuple[str, str]]] = {}
_NAME_CACHE_LIMIT: Final = 4096


def _header_name(raw: str) -> tuple[str, str]:
    """(lower-case canonical name, canonical name) of a raw header name, cached."""
    entry = _NAME_CACHE.get(raw)
    if entry is not None:
        return entry
    name = raw.rstrip(" \t")
    if not _TOKEN_RE.fullmatch(name):
        raise SIPParseError(f"malformed header name {name[:60]!r}")
    cname = canonical_name(name)
    entry = (cname.lower(), cname)
    if len(_NAME_CACHE) < _NAME_CACHE_LIMIT:
        _NAME_CACHE[raw] = entry
    return entry


def parse_message(data: bytes | bytearray | memoryview) -> Request | Response:
    """Parse one whole message, as it arrives in a UDP datagram.

    Octets after the body that Content-Length announces are ignored
    (RFC 4475 ``dblreq``); a body shorter than announced is an error
    (``clerr``).  Without Content-Length the body is the rest of the datagram.
    """
    raw: bytes
    if type(data) is bytes:
        raw = data
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    else:
        raise TypeError("parse_message takes bytes")
    start = 0
    # Leading CRLFs (keep-alives, RFC 5626) skipped; bytes indexing rather than
    # startswith(), which compiled code calls as a method: one call per datagram.
    while len(raw) > start + 1 and raw[start] == 13 and raw[start + 1] == 10:
        start += 2
    # Fast path: CRLF line ends throughout the headers (what every phone sends).
    lines: list[str] | None = None
    body_start = 0
    end = raw.find(b"\r\n\r\n", start)
    if end >= 0:
        text = raw[start:end].decode("utf-8", "surrogateescape")
        split = text.split("\r\n")
        lines = split
        for line in split:
            if "\n" in line or "\r" in line:
                lines = None  # bare LF or CR: the general path decides
                break
        body_start = end + 4
    if lines is None:
        match = _HEADER_END_RE.search(raw, start)
        if match is None:
            raise SIPParseError("no empty line after the headers")
        text = raw[start : match.start()].decode("utf-8", "surrogateescape")
        if "\r" in text.replace("\r\n", ""):
            raise SIPParseError("bare CR in the message headers")
        lines = text.replace("\r\n", "\n").split("\n")
        body_start = match.end()
    message = _parse_lines(lines)
    body = raw[body_start:]
    length: int | None = message.headers._cache["content-length"]  # set by _validate
    if length is not None:
        if length > len(body):
            raise SIPParseError(
                f"Content-Length {length} is larger than the {len(body)}-octet body"
            )
        if length < len(body):
            body = body[:length]
    message.body = body
    return message


def _parse_lines(lines: list[str]) -> Request | Response:
    # The header-line loop: one partition and one dict lookup per line in the
    # common case.  It also builds the index of first values (``first``) and
    # keeps the later lines of a repeated name (``repeats``: Via, Route...),
    # so that nothing needs to walk the lines again.
    items: list[tuple[str, str, str]] = []
    first: dict[str, str] = {}
    repeats: list[tuple[str, str]] = []
    folded = False
    for line in lines[1:]:
        raw, colon, value = line.partition(":")
        entry = _NAME_CACHE.get(raw)
        if entry is None or not colon:
            if line[:1] in (" ", "\t"):
                if not items:
                    raise SIPParseError("continuation line before the first header")
                lname, name, value = items[-1]
                more = line.strip(" \t")
                items[-1] = (lname, name, f"{value} {more}" if value and more else value or more)
                folded = True
                continue
            if not colon or not raw:
                raise SIPParseError(f"malformed header line {line[:60]!r}")
            entry = _header_name(raw)
        lname, name = entry
        value = value.strip(" \t")
        items.append((lname, name, value))
        if lname in first:
            repeats.append((lname, value))
        else:
            first[lname] = value
    if folded:  # rare: rebuild what folding changed
        first = {}
        repeats = []
        for lname, _, value in items:
            if lname in first:
                repeats.append((lname, value))
            else:
                first[lname] = value
    headers = Headers(_lines=items, _index=first)
    start_line = lines[0]
    message: Request | Response
    if start_line.startswith("SIP/"):
        message = _parse_status_line(start_line, headers)
    else:
        message = _parse_request_line(start_line, headers)
    _validate(message, first, repeats)
    return message


def _check_version(version: str) -> None:
    if version != "SIP/2.0":
        if _VERSION_RE.fullmatch(version):
            raise SIPParseError(f"version {version} is not supported", status_hint=505)
        raise SIPParseError(f"malformed SIP version {version[:20]!r}")


# Method SP sip-URI SP SIP/2.0, the URI in the fast grammar of uri.py.
_FAST_REQUEST_LINE_RE: Final = re.compile(rf"({abnf.TOKEN}) {_fast_sip_uri_pattern()} SIP/2\.0")


def _parse_request_line(line: str, headers: Headers) -> Request:
    # Scanned first (see uri._scan_sip_uri): "Method SP sip-URI SP SIP/2.0".
    if _COMPILED and line.endswith(" SIP/2.0"):
        space = line.find(" ")
        method = line[:space]
        if _only(method, _TOKEN_SET):
            scanned = _scan_sip_uri(line[space + 1 : len(line) - 8])
            if scanned is not None:
                return Request(method, scanned, headers)
    return _parse_request_line_regex(line, headers)


def _parse_request_line_regex(line: str, headers: Headers) -> Request:
    """_parse_request_line without the scanner: the fast regex, then the general parser."""
    match = _FAST_REQUEST_LINE_RE.fullmatch(line)
    uri: URI | None = None
    method = ""
    if match is not None:
        method, scheme, user, host, port, params = match.groups()
        uri = _fast_sip_uri_from_groups(scheme, user, host, port, params)
    if uri is None:
        method, uri = _parse_request_line_slow(line)
    return Request(method, uri, headers)


def _parse_request_line_slow(line: str) -> tuple[str, URI]:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SIPParseError("malformed request line: expected 'Method SP Request-URI SP SIP/2.0'")
    method, uri_text, version = parts
    if not _TOKEN_RE.fullmatch(method):
        raise SIPParseError(f"malformed method {method[:30]!r}")
    _check_version(version)
    uri = parse_uri(uri_text)
    if isinstance(uri, SipURI) and uri.headers:
        raise SIPParseError("a Request-URI cannot carry URI headers")
    return method, uri


def _parse_status_line(line: str, headers: Headers) -> Response:
    # "SIP/2.0 <a code of REASON_PHRASES>[ reason]": what the general path
    # below reads, without its checks and int().
    if line.startswith("SIP/2.0 "):
        space = line.find(" ", 8)
        if space == 11 or (space < 0 and len(line) == 11):
            status = _STATUS_CODES.get(line[8:11])
            if status is not None:
                return Response(status, line[12:], headers)
    return _parse_status_line_slow(line, headers)


def _parse_status_line_slow(line: str, headers: Headers) -> Response:
    """The general status-line parser (and no fast path)."""
    parts = line.split(" ", 2)
    if len(parts) < 2:
        raise SIPParseError("malformed status line")
    version, code = parts[0], parts[1]
    _check_version(version)
    # [1-6][0-9][0-9], without a regular expression
    if not (len(code) == 3 and code.isdigit() and code.isascii() and "1" <= code[0] <= "6"):
        raise SIPParseError(f"malformed status code {code[:20]!r}")
    return Response(int(code), parts[2] if len(parts) == 3 else "", headers)


def _call_id_ok(call_id: str) -> bool:
    """Call-ID = word ["@" word]: scanned, the regular expression for what the scan refuses."""
    if _COMPILED:
        left, at, right = call_id.partition("@")
        if _only(left, _WORD_SET) and (not at or _only(right, _WORD_SET)):
            return True
    return _CALL_ID_RE.fullmatch(call_id) is not None


def _validate(
    message: Request | Response, first: dict[str, str], repeats: list[tuple[str, str]]
) -> None:
    """Refuse a message whose core headers are malformed (RFC 4475).

    What every reader needs (top Via, From, To, CSeq, Content-Length) is
    parsed here and cached; the other lines that must be valid (later Vias,
    Contact, Content-Type) are checked with a regular expression and parsed
    only if something reads them.  A line the fast grammar does not cover is
    parsed by the general parser, which raises if it is malformed.
    """
    for lname, _ in repeats:
        if lname in SINGLE_HEADERS:
            raise SIPParseError(f"more than one {canonical_name(lname)} header")
    if not (
        "via" in first and "from" in first and "to" in first and "call-id" in first
        and "cseq" in first
    ):  # fmt: skip
        missing = [canonical_name(n) for n in _REQUIRED_ORDER if n not in first]
        raise SIPParseError("missing " + ", ".join(missing))
    headers = message.headers
    cache = headers._cache
    cache["via"] = _parse_top_via(first["via"])
    for lname, value in repeats:
        if lname == "via" and not _via_line_ok(value):
            parse_via_list(value)
    cache["from"] = parse_name_addr(first["from"])
    cache["to"] = parse_name_addr(first["to"])
    call_id = first["call-id"]
    if not _call_id_ok(call_id):
        raise SIPParseError(f"malformed Call-ID {call_id[:60]!r}")
    cseq = parse_cseq(first["cseq"])
    cache["cseq"] = cseq
    if isinstance(message, Request):
        if cseq.method != message.method:
            raise SIPParseError(
                f"CSeq method {cseq.method} does not match the request method {message.method}"
            )
        max_forwards = first.get("max-forwards")
        if max_forwards is not None:
            cache["max-forwards"] = parse_max_forwards(max_forwards)
    contact = first.get("contact")
    if contact is not None and contact != "*":
        scanned = _scan_name_addr(contact) if _COMPILED else None
        if scanned is not None:  # one Contact value: keep it for Message.contacts
            if not repeats or not any(lname == "contact" for lname, _ in repeats):
                cache["*contact"] = [scanned]
        elif not _name_addr_line_ok(contact):
            parse_name_addr_list(contact)
        for lname, line in repeats:
            if lname == "contact" and not _name_addr_line_ok(line):
                parse_name_addr_list(line)
    content_type = first.get("content-type")
    if content_type is not None and not _media_type_ok(content_type):
        cache["content-type"] = parse_media_type(content_type)
    length = first.get("content-length")
    cache["content-length"] = parse_content_length(length) if length is not None else None


class StreamFramer:
    """Splits a byte stream (TCP, TLS) into messages by Content-Length.

    ``receive_data(b"")`` marks the end of the stream.  ``next_message()``
    returns a message, or None when more data is needed.  A message that is
    framed correctly but malformed raises :class:`SIPParseError` and the
    framer carries on with the next one; a framing error (oversize, bad
    Content-Length) is fatal: the stream is lost and every later call raises
    the same error, so the connection must be closed.
    """

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._scanned = 0
        self._error: SIPParseError | None = None
        self.eof = False

    @property
    def broken(self) -> bool:
        """True after a framing error: the connection must be closed."""
        return self._error is not None

    @property
    def buffered(self) -> int:
        """Octets received and not yet returned as a message."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if not data:
            self.eof = True
            return
        if self.eof:
            raise SIPParseError("data received after the end of the stream")
        self._buffer += data

    def _fail(self, reason: str, status_hint: int) -> SIPParseError:
        self._error = SIPParseError(reason, status_hint=status_hint)
        self._buffer.clear()
        return self._error

    def next_message(self) -> Request | Response | None:
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        # RFC 3261 section 7.5: ignore CRLFs before a start line (keep-alives too).
        skip = 0
        while skip < len(buffer) and buffer[skip] in (13, 10):
            skip += 1
        if skip:
            del buffer[:skip]
            self._scanned = max(0, self._scanned - skip)
        if not buffer:
            return None
        match = _HEADER_END_RE.search(buffer, max(0, self._scanned - 3))
        # The same limit whether the headers arrive at once or byte by byte:
        # with max_message_size octets and no end of headers, any end found
        # later lies beyond the limit.
        if match is None:
            self._scanned = len(buffer)
            if len(buffer) >= self.max_message_size:
                raise self._fail("headers larger than the message size limit", 513)
            return None
        head_end, body_start = match.start(), match.end()
        if body_start > self.max_message_size:
            raise self._fail("headers larger than the message size limit", 513)
        lengths = _CONTENT_LENGTH_RE.findall(bytes(buffer[:head_end]))
        values = {value.strip() for value in lengths}
        if len(values) > 1:
            raise self._fail("conflicting Content-Length headers", 400)
        length = 0
        if values:
            text = values.pop()
            if not text.isdigit() or len(text) > 10:
                raise self._fail(f"malformed Content-Length {text[:20]!r}", 400)
            length = int(text)
        end = body_start + length
        if end > self.max_message_size:
            raise self._fail(f"message of {end} octets is over the limit", 513)
        if len(buffer) < end:
            return None
        raw = bytes(buffer[:end])
        del buffer[:end]
        self._scanned = 0
        return parse_message(raw)
