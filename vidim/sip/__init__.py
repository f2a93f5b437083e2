"""The sans-IO SIP core: messages, parsing, transactions and dialogs.

Nothing here opens a socket, reads a clock or starts a thread: bytes and the
current time go in, bytes, deadlines and events come out.
"""

from __future__ import annotations

from .checks import (
    DEFAULT_POLICY,
    MAX_HEADER_LENGTH,
    MAX_URI_LENGTH,
    ServerPolicy,
    check_request,
    check_sizes,
    error_response,
    warning_value,
)
from .dialog import Dialog, DialogId, DialogState, unknown_dialog_response
from .dialog_manager import DialogManager
from .errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    RequestRejectedError,
    SIPParseError,
)
from .forwarding import forward_request, is_forwarded_answer, unforward_response, via_destination
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
from .ids import MAGIC_COOKIE, new_branch, new_call_id, new_tag
from .message import REASON_PHRASES, Message, Request, Response, make_response, summary
from .multipart import BodyPart, build_multipart, parse_multipart
from .parser import DEFAULT_MAX_MESSAGE_SIZE, StreamFramer, parse_message
from .salvage import salvage_response
from .subscription import EventHeader, Subscription, SubscriptionState, parse_event
from .targets import (
    MAX_UDP_REQUEST,
    SENDABLE_TRANSPORTS,
    request_destination,
    sent_over,
    uri_destination,
)
from .transaction import (
    AckReceived,
    Address,
    Event,
    MessageDiscarded,
    RequestCancelled,
    RequestReceived,
    ResponseReceived,
    TransactionConfig,
    TransactionId,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from .uri import URI, AbsoluteURI, SipURI, parse_uri, unescape

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_POLICY",
    "MAGIC_COOKIE",
    "MAX_HEADER_LENGTH",
    "MAX_UDP_REQUEST",
    "MAX_URI_LENGTH",
    "REASON_PHRASES",
    "SENDABLE_TRANSPORTS",
    "URI",
    "AbsoluteURI",
    "AckReceived",
    "Address",
    "BodyPart",
    "CSeq",
    "Dialog",
    "DialogId",
    "DialogManager",
    "DialogState",
    "Event",
    "EventHeader",
    "Headers",
    "LocalProtocolError",
    "MediaType",
    "Message",
    "MessageDiscarded",
    "NameAddr",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "RequestCancelled",
    "RequestReceived",
    "RequestRejectedError",
    "Response",
    "ResponseReceived",
    "SIPParseError",
    "ServerPolicy",
    "SipURI",
    "StreamFramer",
    "Subscription",
    "SubscriptionState",
    "TransactionConfig",
    "TransactionId",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
    "Via",
    "build_multipart",
    "canonical_name",
    "check_request",
    "check_sizes",
    "error_response",
    "forward_request",
    "is_forwarded_answer",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_cseq",
    "parse_event",
    "parse_media_type",
    "parse_message",
    "parse_multipart",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_uri",
    "parse_via_list",
    "quote",
    "request_destination",
    "salvage_response",
    "sent_over",
    "split_list",
    "summary",
    "unescape",
    "unforward_response",
    "unknown_dialog_response",
    "uri_destination",
    "via_destination",
    "warning_value",
]
