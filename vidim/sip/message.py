"""SIP requests and responses: the message model and its serialization."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from .errors import LocalProtocolError, SIPParseError
from .headers import (
    _CTL_RE,
    _TOKEN_RE,
    CSeq,
    Headers,
    MediaType,
    NameAddr,
    Via,
    _parse_top_via,
    parse_content_length,
    parse_cseq,
    parse_max_forwards,
    parse_media_type,
    parse_name_addr,
    parse_name_addr_list,
    parse_via_list,
)
from .multipart import BodyPart, parse_multipart
from .uri import URI, parse_uri

__all__ = ["REASON_PHRASES", "Message", "Request", "Response", "make_response", "summary"]

REASON_PHRASES: Final = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


#: Methods known to be tokens, so that Request() checks a method with one
#: set lookup instead of a scan of its characters.
_TOKEN_METHODS: Final = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "SUBSCRIBE",
     "NOTIFY", "REFER", "INFO", "UPDATE", "PRACK", "PUBLISH")
)  # fmt: skip


def _check_method(method: str) -> None:
    if method not in _TOKEN_METHODS and (
        not method or not all(c.isalnum() or c in "-.!%*_+`'~" for c in method)
    ):
        raise LocalProtocolError(f"a method must be a token, not {method!r}")


class Message:
    """What requests and responses share: headers, body, typed accessors.

    Typed accessors raise :class:`SIPParseError` when the header is malformed
    and return None (or an empty list) when it is absent; a message that came
    from :func:`vidim.sip.parse_message` has had its core headers validated.
    """

    __slots__ = ("body", "headers")

    headers: Headers
    body: bytes

    def __init__(
        self, headers: Headers | Iterable[tuple[str, str]] = (), body: object = b""
    ) -> None:
        # ``body`` typed object: anything else than bytes is refused with a
        # LocalProtocolError, as the tests ask (compiled code would raise TypeError).
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        if not isinstance(body, bytes):
            raise LocalProtocolError("a message body must be bytes")
        self.body = body

    # -- typed accessors -------------------------------------------------------
    @property
    def via(self) -> list[Via]:
        return self.headers.parsed_all("via", parse_via_list)

    # The accessors of the core headers read the cache of parsed values
    # themselves (what Headers.parsed() does, without its generic call).
    @property
    def top_via(self) -> Via:
        """The first Via value; the other Vias are not parsed for it."""
        headers = self.headers
        value: Via | None = headers._cache.get("via")
        if value is None:
            raw = headers._first("via")
            if raw is None:
                raise SIPParseError("missing Via")
            value = _parse_top_via(raw)
            headers._cache["via"] = value
        return value

    @property
    def call_id(self) -> str:
        value = self.headers._first("call-id")
        if value is None:
            raise SIPParseError("missing Call-ID")
        return value

    @property
    def cseq(self) -> CSeq:
        headers = self.headers
        value: CSeq | None = headers._cache.get("cseq")
        if value is None:
            raw = headers._first("cseq")
            if raw is None:
                raise SIPParseError("missing CSeq")
            value = parse_cseq(raw)
            headers._cache["cseq"] = value
        return value

    @property
    def from_addr(self) -> NameAddr:
        headers = self.headers
        value: NameAddr | None = headers._cache.get("from")
        if value is None:
            raw = headers._first("from")
            if raw is None:
                raise SIPParseError("missing From")
            value = parse_name_addr(raw)
            headers._cache["from"] = value
        return value

    @property
    def to_addr(self) -> NameAddr:
        headers = self.headers
        value: NameAddr | None = headers._cache.get("to")
        if value is None:
            raw = headers._first("to")
            if raw is None:
                raise SIPParseError("missing To")
            value = parse_name_addr(raw)
            headers._cache["to"] = value
        return value

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values; empty for none and for ``Contact: *``."""
        if self.headers.get("contact") == "*":
            return []
        return self.headers.parsed_all("contact", parse_name_addr_list)

    @property
    def record_route(self) -> list[NameAddr]:
        return self.headers.parsed_all("record-route", parse_name_addr_list)

    @property
    def route(self) -> list[NameAddr]:
        return self.headers.parsed_all("route", parse_name_addr_list)

    @property
    def max_forwards(self) -> int | None:
        return self.headers.parsed("max-forwards", parse_max_forwards)

    @property
    def content_type(self) -> MediaType | None:
        return self.headers.parsed("content-type", parse_media_type)

    @property
    def content_length(self) -> int | None:
        """The Content-Length header as received (None when absent)."""
        return self.headers.parsed("content-length", parse_content_length)

    def body_parts(self) -> list[BodyPart]:
        """The parts of a multipart body, or the whole body as one part."""
        ctype = self.content_type
        if ctype is not None and ctype.type.lower() == "multipart":
            boundary = ctype.param("boundary")
            if not boundary:
                raise SIPParseError("multipart body without boundary", status_hint=400)
            return parse_multipart(self.body, boundary)
        headers = Headers([("Content-Type", str(ctype))] if ctype is not None else [])
        return [BodyPart(headers=headers, body=self.body)]

    # -- serialization ---------------------------------------------------------
    def _start_line(self) -> str:
        raise NotImplementedError

    def compact(self) -> None:
        """Drop the parsed header values (see :meth:`Headers.compact`); reads still work."""
        self.headers.compact()

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is always written, from the body's length."""
        headers = self.headers
        body = self.body
        packed = headers._packed
        if headers._stored is None and packed and "Content-Length:" not in packed:
            # A compacted message (see Headers.compact) without Content-Length
            # (what vidim builds): its lines are packed as they are written,
            # and they stay packed.
            text = f"{self._start_line()}\r\n{packed}\r\nContent-Length: {len(body)}\r\n\r\n"
            return _encode(text) + body
        # One join of the pieces: no intermediate string per header line.
        parts = [self._start_line()]
        for lname, name, value in headers._items:
            if lname != "content-length":
                parts.append("\r\n")
                parts.append(name)
                parts.append(": ")
                parts.append(value)
        parts.append("\r\nContent-Length: ")
        parts.append(str(len(body)))
        parts.append("\r\n\r\n")
        return _encode("".join(parts)) + body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class Request(Message):
    """A SIP request."""

    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: URI | str,
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: object = b"",
    ) -> None:
        super().__init__(headers, body)
        _check_method(method)
        self.method = method
        self.uri: URI = parse_uri(uri) if isinstance(uri, str) else uri

    @classmethod
    def trusted(
        cls,
        method: str,
        uri: URI | str,
        headers: Iterable[tuple[str, str]],
        body: bytes = b"",
        *,
        parsed: Mapping[str, object] | None = None,
    ) -> Request:
        """A request from header values vidim built itself (see :meth:`Headers.trusted`).

        Like ``Request(...)``, but the header values are not checked for
        control characters nor stripped: for the allocator, dialogs and the
        transaction layer, which build their requests from values they made
        or parsed.  The method and a ``str`` URI are still checked; the body
        must be bytes.  Requests built from anything a user or a peer
        supplied unparsed go through the constructor.

        ``parsed`` hands over values the caller already holds, so that
        nothing parses them back from the text (the transaction layer reads
        the top Via and CSeq of every request it sends): keys are the
        lower-case names the accessors use, ``"via"`` (the top Via only),
        ``"cseq"``, ``"from"``, ``"to"``; each value must be what parsing the
        line would give, e.g. ``{"via": via, "cseq": CSeq(1, "MESSAGE")}``
        with the line ``("Via", str(via))``.
        """
        _check_method(method)
        lines = Headers.trusted(headers)
        if parsed:
            lines._cache.update(parsed)
        return Request(method, uri, lines, body)

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: object = b"",
    ) -> None:
        super().__init__(headers, body)
        if not 100 <= status <= 699:
            raise LocalProtocolError(f"a status code must be 100-699, not {status!r}")
        if reason is not None and ("\r" in reason or "\n" in reason):
            raise LocalProtocolError("a reason phrase cannot hold CR or LF")
        self.status = status
        self.reason = REASON_PHRASES.get(status, "Unknown") if reason is None else reason

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response to ``request`` as RFC 3261 section 8.2.6 says.

    Via, From, Call-ID and CSeq are copied; To is copied and, unless it
    already has one, gets ``to_tag`` (a UAS must add a tag to every response
    except 100).
    """
    # The request's lines are copied as they are (lower-case name, name,
    # value): they were checked when the request was parsed or built.
    items: list[tuple[str, str, str]] = []
    to_changed = False
    for item in request.headers._items:
        lname = item[0]
        if lname in _COPIED:
            value = item[2]
            if not value.isprintable() and _CTL_RE.search(value):  # as Headers.add would
                raise LocalProtocolError(f"control character in value of {item[1]}")
            if lname == "to" and to_tag is not None and status > 100:
                to_addr = request.to_addr
                if to_addr.tag is None:
                    item = ("to", "To", _with_tag(value, to_addr, to_tag))
                    to_changed = True
            items.append(item)
    out = Headers(_lines=items)
    # The copied lines parse to what the request's did: share its parsed
    # values (immutable), so that the transaction layer, which reads the
    # top Via and CSeq of the response, does not parse them again.
    cache = request.headers._cache
    if cache:
        seeded = out._cache
        for key in _SEEDED if not to_changed else _SEEDED_NOT_TO:
            if key in cache:
                seeded[key] = cache[key]
    if headers:
        for name, value in headers:
            out.add(name, value)
    return Response(status, reason, out, body)


_COPIED: Final = frozenset(("via", "from", "to", "call-id", "cseq"))
_SEEDED: Final = ("via", "from", "to", "cseq")
_SEEDED_NOT_TO: Final = ("via", "from", "cseq")


def _with_tag(value: str, to_addr: NameAddr, tag: str) -> str:
    """The To value ``value`` (parsed: ``to_addr``, without a tag) with ``;tag=`` added.

    A name-addr (``<...>``) takes the parameter at its end as it is; an
    addr-spec is rewritten in the ``<>`` form, where a parameter belongs to
    the header and not to the URI.
    """
    if not _TOKEN_RE.fullmatch(tag):
        raise LocalProtocolError(f"a tag must be a token, not {tag!r}")
    if value.endswith(">") or (">" in value and not to_addr.params):
        return f"{value};tag={tag}"
    return str(to_addr.with_tag(tag))


def summary(message: Message) -> str:
    """One line naming a message for events and logs: ``INVITE sip:x@y`` or ``200 OK``."""
    if isinstance(message, Request):
        return f"{message.method} {message.uri}"
    if isinstance(message, Response):
        return f"{message.status} {message.reason}"
    return type(message).__name__
