"""Bytes to messages: :func:`parse_message` for a datagram, :class:`StreamFramer` for TCP.

Parsing is strict where RFC 3261 and RFC 4475 say a message must be refused
and liberal elsewhere (compact forms, folding, any header name case, bare LF
line ends, leading CRLFs).  Every failure is a :class:`SIPParseError`.
"""

from __future__ import annotations

import re

from . import abnf
from .errors import LocalProtocolError, SIPParseError
from .headers import SINGLE_HEADERS, TOKEN_RE, Headers, canonical_name
from .message import Request, Response
from .uri import SipURI, parse_uri

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "StreamFramer", "parse_message"]

#: The largest message the framer accepts by default (bytes, headers and body).
DEFAULT_MAX_MESSAGE_SIZE = 65535

#: The empty line that ends the headers (CRLF CRLF, bare LFs tolerated), from its
#: first LF: a pattern that starts with a fixed byte is searched for quickly.
_HEADER_END_RE = re.compile(rb"\n\r?\n")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+")
_STATUS_CODE_RE = re.compile(r"[1-6][0-9][0-9]")
# Call-ID = word [ "@" word ]
_CALL_ID_RE = re.compile(rf"{abnf.WORD}(?:@{abnf.WORD})?")
_CONTENT_LENGTH_RE = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)
#: The headers every message must carry (RFC 3261 section 8.1.1), in the order they are named.
_REQUIRED = ("via", "from", "to", "call-id", "cseq")


def _find_header_end(data: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """Where the headers end and the body starts, searching from ``start``; None: not yet."""
    match = _HEADER_END_RE.search(data, start)
    if match is None:
        return None
    head_end = match.start()
    if head_end > start and data[head_end - 1] == 13:  # the CR of a CRLF
        head_end -= 1
    return head_end, match.end()


def parse_message(data: bytes | bytearray | memoryview) -> Request | Response:
    """Parse one whole message, as it arrives in a UDP datagram.

    Octets after the body that Content-Length announces are ignored
    (RFC 4475 ``dblreq``); a body shorter than announced is an error
    (``clerr``).  Without Content-Length the body is the rest of the datagram.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("parse_message takes bytes")
    raw = bytes(data)
    start = 0
    while raw.startswith(b"\r\n", start):  # keep-alives (RFC 5626) before the start line
        start += 2
    end = _find_header_end(raw, start)
    if end is None:
        raise SIPParseError("no empty line after the headers")
    head_end, body_start = end
    text = raw[start:head_end].decode("utf-8", "surrogateescape")
    if "\r" in text.replace("\r\n", ""):
        raise SIPParseError("bare CR in the message headers")
    message = _parse_head(text.replace("\r\n", "\n").split("\n"))
    body = raw[body_start:]
    length = message.content_length
    if length is not None:
        if length > len(body):
            raise SIPParseError(
                f"Content-Length {length} is larger than the {len(body)}-octet body"
            )
        body = body[:length]
    message.body = body
    return message


def _parse_head(lines: list[str]) -> Request | Response:
    """The start line and the header lines: unfolded, names checked, core headers validated."""
    start_line, *header_lines = lines
    items: list[tuple[str, str]] = []
    for line in header_lines:
        if line.startswith((" ", "\t")):  # a continuation of the line before (folding)
            if not items:
                raise SIPParseError("continuation line before the first header")
            name, value = items[-1]
            more = line.strip(" \t")
            items[-1] = (name, f"{value} {more}" if value and more else value or more)
            continue
        name, colon, value = line.partition(":")
        if not colon or not name:
            raise SIPParseError(f"malformed header line {line[:60]!r}")
        items.append((name.rstrip(" \t"), value.strip(" \t")))
    try:
        headers = Headers.trusted(items)
    except LocalProtocolError as exc:  # a name that is not a token
        raise SIPParseError(f"malformed header line: {exc.reason}") from None
    message: Request | Response
    if start_line.startswith("SIP/"):
        message = _parse_status_line(start_line, headers)
    else:
        message = _parse_request_line(start_line, headers)
    _validate(message)
    return message


def _check_version(version: str) -> None:
    if version != "SIP/2.0":
        if _VERSION_RE.fullmatch(version):
            raise SIPParseError(f"version {version} is not supported", status_hint=505)
        raise SIPParseError(f"malformed SIP version {version[:20]!r}")


def _parse_request_line(line: str, headers: Headers) -> Request:
    """Method SP Request-URI SP SIP-Version."""
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SIPParseError("malformed request line: expected 'Method SP Request-URI SP SIP/2.0'")
    method, uri_text, version = parts
    if not TOKEN_RE.fullmatch(method):
        raise SIPParseError(f"malformed method {method[:30]!r}")
    _check_version(version)
    uri = parse_uri(uri_text)
    if isinstance(uri, SipURI) and uri.headers:
        raise SIPParseError("a Request-URI cannot carry URI headers")
    return Request(method, uri, headers)


def _parse_status_line(line: str, headers: Headers) -> Response:
    """SIP-Version SP Status-Code SP Reason-Phrase."""
    parts = line.split(" ", 2)
    if len(parts) < 2:
        raise SIPParseError("malformed status line")
    version, code = parts[0], parts[1]
    _check_version(version)
    if not _STATUS_CODE_RE.fullmatch(code):
        raise SIPParseError(f"malformed status code {code[:20]!r}")
    return Response(int(code), parts[2] if len(parts) == 3 else "", headers)


def _validate(message: Request | Response) -> None:
    """Refuse a message whose core headers are malformed (RFC 4475).

    Reading the typed accessors parses (and caches) the headers every
    reader needs; an accessor raises on a malformed value.
    """
    counts = message.headers.line_counts()
    for key in SINGLE_HEADERS:
        if counts.get(key, 0) > 1:
            raise SIPParseError(f"more than one {canonical_name(key)} header")
    missing = [canonical_name(key) for key in _REQUIRED if key not in counts]
    if missing:
        raise SIPParseError("missing " + ", ".join(missing))
    # Each accessor parses its header and keeps the value; a malformed one raises.
    _ = (message.via, message.from_addr, message.to_addr)
    if not _CALL_ID_RE.fullmatch(message.call_id):
        raise SIPParseError(f"malformed Call-ID {message.call_id[:60]!r}")
    cseq = message.cseq
    if isinstance(message, Request):
        if cseq.method != message.method:
            raise SIPParseError(
                f"CSeq method {cseq.method} does not match the request method {message.method}"
            )
        _ = message.max_forwards
    _ = (message.contacts, message.content_type, message.content_length)


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
        found = _find_header_end(buffer, max(0, self._scanned - 3))
        # The same limit whether the headers arrive at once or byte by byte:
        # with max_message_size octets and no end of headers, any end found
        # later lies beyond the limit.
        if found is None:
            self._scanned = len(buffer)
            if len(buffer) >= self.max_message_size:
                raise self._fail("headers larger than the message size limit", 513)
            return None
        head_end, body_start = found
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
