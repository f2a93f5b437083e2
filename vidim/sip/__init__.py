"""The sans-IO SIP core: messages, parsing, transactions and dialogs.

Nothing here opens a socket, reads a clock or starts a thread: bytes and the
current time go in, bytes, deadlines and events come out.
"""

from __future__ import annotations

from .checks import DEFAULT_POLICY, ServerPolicy, check_request, error_response, warning_value
from .errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    RequestRejectedError,
    SIPParseError,
)
from .headers import (
    CSeq,
    Headers,
    MediaType,
    NameAddr,
    Via,
    canonical_name,
    parse_cseq,
    parse_media_type,
    parse_name_addr,
    parse_name_addr_list,
    parse_via_list,
    quote,
    split_list,
)
from .message import REASON_PHRASES, Message, Request, Response, make_response
from .multipart import BodyPart, build_multipart, parse_multipart
from .parser import DEFAULT_MAX_MESSAGE_SIZE, StreamFramer, parse_message
from .uri import URI, AbsoluteURI, SipURI, parse_uri, unescape

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_POLICY",
    "REASON_PHRASES",
    "URI",
    "AbsoluteURI",
    "BodyPart",
    "CSeq",
    "Headers",
    "LocalProtocolError",
    "MediaType",
    "Message",
    "NameAddr",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "RequestRejectedError",
    "Response",
    "SIPParseError",
    "ServerPolicy",
    "SipURI",
    "StreamFramer",
    "Via",
    "build_multipart",
    "canonical_name",
    "check_request",
    "error_response",
    "make_response",
    "parse_cseq",
    "parse_media_type",
    "parse_message",
    "parse_multipart",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_uri",
    "parse_via_list",
    "quote",
    "split_list",
    "unescape",
    "warning_value",
]
