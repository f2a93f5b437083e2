"""SIP requests and responses: the message model and its serialization."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from .errors import LocalProtocolError, SIPParseError
from .headers import (
    TOKEN_RE,
    CSeq,
    Headers,
    MediaType,
    NameAddr,
    Via,
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

T = TypeVar("T")

REASON_PHRASES = {
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


def _check_method(method: str) -> None:
    if not TOKEN_RE.fullmatch(method):
        raise LocalProtocolError(f"a method must be a token, not {method!r}")


class Message:
    """What requests and responses share: headers, body, typed accessors.

    Typed accessors raise :class:`SIPParseError` when the header is malformed
    and return None (or an empty list) when it is absent; a message that came
    from :func:`vidim.sip.parse_message` has had its core headers validated.
    """

    __slots__ = ("_wire", "_wire_body", "_wire_headers", "_wire_version", "body", "headers")

    headers: Headers
    body: bytes
    #: The last serialization, and the headers (at which version) and body it was made of.
    _wire: bytes | None
    _wire_headers: Headers | None
    _wire_version: int
    _wire_body: bytes

    def __init__(
        self, headers: Headers | Iterable[tuple[str, str]] = (), body: object = b""
    ) -> None:
        # ``body`` typed object: anything but bytes is refused with a LocalProtocolError.
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        if not isinstance(body, bytes):
            raise LocalProtocolError("a message body must be bytes")
        self.body = body
        self._wire = self._wire_headers = None
        self._wire_version = 0
        self._wire_body = b""

    # -- typed accessors -------------------------------------------------------
    def _required(self, name: str, parser: Callable[[str], T]) -> T:
        value = self.headers.parsed(name, parser)
        if value is None:
            raise SIPParseError(f"missing {name}")
        return value

    @property
    def via(self) -> list[Via]:
        return self.headers.parsed_all("Via", parse_via_list)

    @property
    def top_via(self) -> Via:
        vias = self.via
        if not vias:
            raise SIPParseError("missing Via")
        return vias[0]

    @property
    def call_id(self) -> str:
        return self._required("Call-ID", str)

    @property
    def cseq(self) -> CSeq:
        return self._required("CSeq", parse_cseq)

    @property
    def from_addr(self) -> NameAddr:
        return self._required("From", parse_name_addr)

    @property
    def to_addr(self) -> NameAddr:
        return self._required("To", parse_name_addr)

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

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is always written, from the body's length.

        The bytes are kept until the headers or the body change: a request is
        serialized to choose its transport (RFC 3261 18.1.1), then to be sent,
        then for each retransmission.  The start line is taken to be fixed
        once the message is built.
        """
        headers, body, wire = self.headers, self.body, self._wire
        if (
            wire is not None
            and self._wire_headers is headers
            and self._wire_version == headers.version
            and self._wire_body is body
        ):
            return wire
        lines = [self._start_line()]
        lines += [f"{name}: {value}" for name, value in headers if name != "Content-Length"]
        lines += [f"Content-Length: {len(body)}", "", ""]
        wire = _encode("\r\n".join(lines)) + body
        self._wire, self._wire_headers = wire, headers
        self._wire_version, self._wire_body = headers.version, body
        return wire

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


#: The headers a response copies from its request (RFC 3261 section 8.2.6.2).
_COPIED = ("via", "from", "to", "call-id", "cseq")


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
    except 100).  A copied value holding a control character is refused, as
    :meth:`Headers.add` refuses it.
    """
    copied: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name.lower() not in _COPIED:
            continue
        if name == "To" and to_tag is not None and status > 100 and request.to_addr.tag is None:
            value = _with_tag(value, request.to_addr, to_tag)
        copied.append((name, value))
    out = Headers(copied)
    for name, value in headers:
        out.add(name, value)
    return Response(status, reason, out, body)


def _with_tag(value: str, to_addr: NameAddr, tag: str) -> str:
    """The To value ``value`` (parsed: ``to_addr``, without a tag) with ``;tag=`` added.

    A name-addr (``<...>``) takes the parameter at its end as it is; an
    addr-spec is rewritten in the ``<>`` form, where a parameter belongs to
    the header and not to the URI.
    """
    if not TOKEN_RE.fullmatch(tag):
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
