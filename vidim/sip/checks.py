"""What a UAS checks after parsing and before processing (RFC 3261 section 8.2).

The parser answers "is this SIP?"; :func:`check_request` answers "can this
server process it?" (414, 400 for sizes; 416, 420, 415, 406), from a
:class:`ServerPolicy` that says what the server supports.

Sizes (issue 18, docs/security.md).  A message may be up to 64 KiB, but no
single value in it needs to be: a Request-URI longer than
:data:`MAX_URI_LENGTH` gets 414, a header value longer than
:data:`MAX_HEADER_LENGTH` gets 400 (:func:`check_sizes`).  Whatever a server
copies from a request into requests of its own (an invitee's URI into an
INVITE's list and a MESSAGE's Request-URI) then stays far below what a UDP
datagram holds, instead of failing at the socket later.  :func:`error_response` turns either kind of
error into the response to send, with a ``Warning`` header that says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ProtocolError, RequestRejectedError
from .headers import parse_media_type, parse_token_list, quote
from .message import Request, Response, make_response

__all__ = [
    "DEFAULT_POLICY",
    "MAX_HEADER_LENGTH",
    "MAX_URI_LENGTH",
    "ServerPolicy",
    "check_request",
    "check_sizes",
    "error_response",
    "warning_value",
]

#: The longest URI taken, in characters (a Request-URI, or one in a header or a list).
#: Apache and nginx take 8 KiB request lines; a SIP URI naming a person needs far less.
MAX_URI_LENGTH = 2048
#: The longest header value taken, in characters (one line of a repeated header).
MAX_HEADER_LENGTH = 8192
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]|[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class ServerPolicy:
    """What a UAS accepts; the defaults are vidim's."""

    #: Request-URI schemes the server serves (RFC 3261 section 8.2.2.1).
    uri_schemes: frozenset[str] = frozenset({"sip", "sips", "tel"})
    #: Option tags the server supports (``Require`` checks, section 8.2.2.3).
    supported: frozenset[str] = frozenset({"timer", "path", "replaces"})
    #: Body types the server can process (section 8.2.3), lower case.
    accepted_content_types: frozenset[str] = frozenset(
        {
            "application/sdp",
            "text/plain",
            "multipart/mixed",
            "application/resource-lists+xml",
            "application/conference-info+xml",
            "message/sipfrag",
        }
    )
    #: For each method, the body type its 2xx answer carries (checked against Accept).
    answer_content_types: tuple[tuple[str, str], ...] = field(
        default=(("INVITE", "application/sdp"), ("OPTIONS", "application/sdp"))
    )
    #: Longest Request-URI (longer: 414), in characters.
    max_uri_length: int = MAX_URI_LENGTH
    #: Longest header value (longer: 400), in characters.
    max_header_length: int = MAX_HEADER_LENGTH


DEFAULT_POLICY = ServerPolicy()


def _accepts(accept_values: list[str], mime: str) -> bool:
    major = mime.split("/", 1)[0]
    for value in accept_values:
        accepted = parse_media_type(value).mime
        if accepted in (mime, "*/*", f"{major}/*"):
            return True
    return False


def check_request(request: Request, policy: ServerPolicy = DEFAULT_POLICY) -> None:
    """Raise :class:`RequestRejectedError` when ``request`` cannot be processed.

    ACK and CANCEL are never rejected here (a UAS cannot answer an ACK, and
    CANCEL carries no body or extensions to negotiate).
    """
    if request.method in ("ACK", "CANCEL"):
        return
    check_sizes(request, policy)
    scheme = request.uri.scheme
    if scheme not in policy.uri_schemes:
        raise RequestRejectedError(f"unsupported URI scheme {scheme}", status_hint=416)
    require = request.headers.get_all("require")
    if require:
        unsupported = [
            tag for line in require for tag in parse_token_list(line)
            if tag.lower() not in policy.supported
        ]  # fmt: skip
        if unsupported:
            raise RequestRejectedError(
                "unsupported extension " + ", ".join(unsupported),
                status_hint=420,
                headers=(("Unsupported", ", ".join(unsupported)),),
            )
    accept_header = ("Accept", ", ".join(sorted(policy.accepted_content_types)))
    if request.body:
        ctype = request.content_type
        if ctype is None or ctype.mime not in policy.accepted_content_types:
            shown = ctype.mime if ctype is not None else "(no Content-Type)"
            raise RequestRejectedError(
                f"unsupported body type {shown}", status_hint=415, headers=(accept_header,)
            )
        encodings = [e.lower() for e in request.headers.values("content-encoding")]
        if any(e != "identity" for e in encodings):
            raise RequestRejectedError(
                "unsupported Content-Encoding",
                status_hint=415,
                headers=(accept_header, ("Accept-Encoding", "identity")),
            )
    answer = dict(policy.answer_content_types).get(request.method)
    if answer is not None and "accept" in request.headers:
        accept_values = request.headers.values("accept")
        if accept_values and not _accepts(accept_values, answer):
            raise RequestRejectedError(
                f"cannot answer with a body in {', '.join(accept_values)}",
                status_hint=406,
                headers=(("Accept", answer),),
            )


def check_sizes(request: Request, policy: ServerPolicy = DEFAULT_POLICY) -> None:
    """Raise :class:`RequestRejectedError` for a Request-URI (414) or header value (400) too long.

    The Warning names the header and the sizes, never the value.
    """
    uri_length = len(str(request.uri))
    if uri_length > policy.max_uri_length:
        raise RequestRejectedError(
            f"Request-URI of {uri_length} characters; at most {policy.max_uri_length}",
            status_hint=414,
        )
    for name, value in request.headers:
        if len(value) > policy.max_header_length:
            raise RequestRejectedError(
                f"{name} value of {len(value)} characters; at most {policy.max_header_length}",
                status_hint=400,
            )


def warning_value(host: str, text: str, code: int = 399) -> str:
    """A ``Warning`` value (RFC 3261 section 20.43); controls in ``text`` become '?'."""
    return f"{code} {host} {quote(_CONTROL_RE.sub('?', text))}"


def error_response(
    request: Request,
    error: ProtocolError,
    *,
    warning_host: str,
    to_tag: str | None = None,
) -> Response:
    """The response that refuses ``request`` for ``error``, with a Warning."""
    status = error.status_hint if 300 <= error.status_hint <= 699 else 500
    headers = [("Warning", warning_value(warning_host, error.reason))]
    headers.extend(error.headers)
    return make_response(request, status, to_tag=to_tag, headers=headers)
