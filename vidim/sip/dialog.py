"""Dialogs (RFC 3261 sections 12-15), with their subscription usages (RFC 6665).

A dialog is the peer-to-peer relationship that INVITE (or SUBSCRIBE) sets
up: the Call-ID, the two tags, both CSeq counters, the route set and the
remote target.  This layer consumes and produces :class:`Request` and
:class:`Response` objects only; it knows nothing of transactions, sockets or
clocks.  The transaction user (TU) glues the two: it hands every response
that reaches it to :meth:`DialogManager.receive_response` and every request
to :meth:`DialogManager.receive_request` (see :mod:`vidim.sip.dialog_manager`),
and it sends what the dialogs build through new client transactions (or,
for ACK to a 2xx, straight to the transport).

Rule, as in h11's ``_state.py``: every change of :class:`DialogState` goes
through :data:`TRANSITIONS`.  A (role, state, input) that is not in the table
is refused with :class:`LocalProtocolError`; on the receive path that error
is re-raised as :class:`RemoteProtocolError`, since there the peer is the one
who broke the protocol.

Usages (RFC 5057): a dialog carries an INVITE usage when INVITE created it,
plus one usage per :class:`Subscription`.  A dialog made by a subscription
ends when its last subscription does; BYE ends every usage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeAlias

from .checks import warning_value
from .errors import LocalProtocolError, RemoteProtocolError, SIPParseError
from .headers import Headers, NameAddr, Via, parse_name_addr, parse_via_list
from .ids import new_branch, new_tag
from .message import Request, Response, _check_method, make_response
from .subscription import (
    EventHeader,
    Subscription,
    SubscriptionState,
    SubscriptionStatus,
    optional,
    parse_event,
    parse_subscription_state,
)
from .uri import URI, SipURI, parse_uri

__all__ = [
    "DIALOG_CREATING_METHODS",
    "TARGET_REFRESH_METHODS",
    "TRANSITIONS",
    "Dialog",
    "DialogId",
    "DialogInput",
    "DialogRole",
    "DialogState",
    "EventHeader",
    "LocalVia",
    "SentParties",
    "Subscription",
    "SubscriptionState",
    "SubscriptionStatus",
    "next_dialog_state",
    "parse_event",
    "parse_subscription_state",
    "unknown_dialog_response",
]

#: Requests that may create a dialog when sent outside one (RFC 3261, RFC 6665).
DIALOG_CREATING_METHODS = frozenset(("INVITE", "SUBSCRIBE"))
#: Requests whose Contact replaces the remote target (RFC 3261 12.2, RFC 3311,
#: RFC 6665 section 4.1.2 and 4.2.2, RFC 3515).
TARGET_REFRESH_METHODS = frozenset(("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"))
#: Requests that must carry a Contact (the local target) when we send them.
_CONTACT_METHODS = TARGET_REFRESH_METHODS
#: Headers the dialog writes itself; the caller may not pass them in.
MANAGED_REQUEST_HEADERS = frozenset(
    ("via", "from", "to", "call-id", "cseq", "route", "contact", "max-forwards", "content-length")
)
_MANAGED_RESPONSE_HEADERS = frozenset(
    ("via", "from", "to", "call-id", "cseq", "record-route", "content-length")
)
#: Final responses to a SUBSCRIBE refresh that end the subscription (RFC 6665 4.1.2.2).
_SUBSCRIBE_FATAL = frozenset((404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604))
MAX_FORWARDS = "70"
#: to_dict() format; bump it when the layout changes.
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class DialogId:
    """What identifies a dialog at one end (RFC 3261 12): the tags are as seen locally.

    A missing remote tag (an RFC 2543 peer) is the empty string.
    """

    call_id: str
    local_tag: str
    remote_tag: str


# -- the state machine ---------------------------------------------------------------


class DialogState(Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogRole(Enum):
    """Which side sent the request that created the dialog."""

    UAC = "uac"
    UAS = "uas"


class DialogInput(Enum):
    """What can happen to a dialog; SEND_ for what we do, RECV_ for what the peer does."""

    #: A 101-199 with a To tag to the dialog-creating INVITE.
    RECV_PROVISIONAL = "recv-provisional"
    #: A 2xx to the dialog-creating request (or its retransmission).
    RECV_2XX = "recv-2xx"
    #: A 300-699 to the dialog-creating INVITE (RFC 3261 12.3, 13.2.2.3).
    RECV_FAILURE = "recv-failure"
    #: Our answers to the dialog-creating request.
    SEND_PROVISIONAL = "send-provisional"
    SEND_2XX = "send-2xx"
    SEND_FAILURE = "send-failure"
    #: In-dialog traffic.
    SEND_REQUEST = "send-request"
    SEND_ACK = "send-ack"
    SEND_BYE = "send-bye"
    RECV_REQUEST = "recv-request"
    RECV_ACK = "recv-ack"
    RECV_BYE = "recv-bye"
    RECV_RESPONSE = "recv-response"
    #: A 481 or 408 (or a timeout) for an in-dialog request (RFC 3261 12.2.1.2).
    RECV_DIALOG_FAILURE = "recv-dialog-failure"
    #: The last subscription of a dialog without INVITE usage ended (RFC 5057).
    LAST_USAGE_ENDED = "last-usage-ended"


#: The moves both roles share, (state, input) -> next state.
_SHARED: dict[tuple[DialogState, DialogInput], DialogState] = {
    # Requests inside an early dialog are legal (UPDATE, PRACK, INFO).
    (DialogState.EARLY, DialogInput.SEND_REQUEST): DialogState.EARLY,
    (DialogState.CONFIRMED, DialogInput.SEND_REQUEST): DialogState.CONFIRMED,
    (DialogState.CONFIRMED, DialogInput.SEND_BYE): DialogState.TERMINATED,
    (DialogState.EARLY, DialogInput.RECV_REQUEST): DialogState.EARLY,
    (DialogState.CONFIRMED, DialogInput.RECV_REQUEST): DialogState.CONFIRMED,
    # A request for a dialog we ended is answered 481, without a state change.
    (DialogState.TERMINATED, DialogInput.RECV_REQUEST): DialogState.TERMINATED,
    # The caller may BYE an early dialog (RFC 3261 15); a callee that does so
    # breaks the rule, but honouring its wish to hang up is the useful answer.
    (DialogState.EARLY, DialogInput.RECV_BYE): DialogState.TERMINATED,
    (DialogState.CONFIRMED, DialogInput.RECV_BYE): DialogState.TERMINATED,
    (DialogState.TERMINATED, DialogInput.RECV_BYE): DialogState.TERMINATED,
    (DialogState.EARLY, DialogInput.RECV_RESPONSE): DialogState.EARLY,
    (DialogState.CONFIRMED, DialogInput.RECV_RESPONSE): DialogState.CONFIRMED,
    # The answer to our BYE arrives after the dialog ended.
    (DialogState.TERMINATED, DialogInput.RECV_RESPONSE): DialogState.TERMINATED,
    (DialogState.EARLY, DialogInput.RECV_DIALOG_FAILURE): DialogState.TERMINATED,
    (DialogState.CONFIRMED, DialogInput.RECV_DIALOG_FAILURE): DialogState.TERMINATED,
    (DialogState.TERMINATED, DialogInput.RECV_DIALOG_FAILURE): DialogState.TERMINATED,
    (DialogState.CONFIRMED, DialogInput.LAST_USAGE_ENDED): DialogState.TERMINATED,
    (DialogState.TERMINATED, DialogInput.LAST_USAGE_ENDED): DialogState.TERMINATED,
    # ACK for a 2xx: to the dialog-creating INVITE or a re-INVITE, either way.
    # It still goes out (or arrives) after a BYE that crossed the 2xx.
    (DialogState.CONFIRMED, DialogInput.SEND_ACK): DialogState.CONFIRMED,
    (DialogState.TERMINATED, DialogInput.SEND_ACK): DialogState.TERMINATED,
    (DialogState.CONFIRMED, DialogInput.RECV_ACK): DialogState.CONFIRMED,
    (DialogState.TERMINATED, DialogInput.RECV_ACK): DialogState.TERMINATED,
}

#: (role, state, input) -> next state.  What is missing is a protocol error.
TRANSITIONS: dict[tuple[DialogRole, DialogState, DialogInput], DialogState] = {
    **{(DialogRole.UAC, s, i): n for (s, i), n in _SHARED.items()},
    **{(DialogRole.UAS, s, i): n for (s, i), n in _SHARED.items()},
    # UAC (RFC 3261 12.1.2, 13.2.2).
    (DialogRole.UAC, DialogState.EARLY, DialogInput.RECV_PROVISIONAL): DialogState.EARLY,
    (DialogRole.UAC, DialogState.EARLY, DialogInput.RECV_2XX): DialogState.CONFIRMED,
    (DialogRole.UAC, DialogState.CONFIRMED, DialogInput.RECV_2XX): DialogState.CONFIRMED,
    # A 2xx after we BYE'd an early dialog must still be ACKed (then BYE'd).
    (DialogRole.UAC, DialogState.TERMINATED, DialogInput.RECV_2XX): DialogState.TERMINATED,
    (DialogRole.UAC, DialogState.TERMINATED, DialogInput.RECV_PROVISIONAL): DialogState.TERMINATED,
    (DialogRole.UAC, DialogState.EARLY, DialogInput.RECV_FAILURE): DialogState.TERMINATED,
    (DialogRole.UAC, DialogState.TERMINATED, DialogInput.RECV_FAILURE): DialogState.TERMINATED,
    # "The caller's UA MAY send a BYE for either confirmed or early dialogs,
    # and the callee's UA MAY send a BYE on confirmed dialogs, but MUST NOT
    # send a BYE on early dialogs" (RFC 3261 15).
    (DialogRole.UAC, DialogState.EARLY, DialogInput.SEND_BYE): DialogState.TERMINATED,
    # UAS (RFC 3261 12.1.1, 13.3).
    (DialogRole.UAS, DialogState.EARLY, DialogInput.SEND_PROVISIONAL): DialogState.EARLY,
    (DialogRole.UAS, DialogState.EARLY, DialogInput.SEND_2XX): DialogState.CONFIRMED,
    (DialogRole.UAS, DialogState.EARLY, DialogInput.SEND_FAILURE): DialogState.TERMINATED,
    # The 487 to the INVITE after the caller BYE'd the early dialog.
    (DialogRole.UAS, DialogState.TERMINATED, DialogInput.SEND_FAILURE): DialogState.TERMINATED,
}


def next_dialog_state(role: DialogRole, state: DialogState, event: DialogInput) -> DialogState:
    """Look ``(role, state, event)`` up in :data:`TRANSITIONS`.

    Raises :class:`LocalProtocolError` when the move is not in the table.
    """
    try:
        return TRANSITIONS[(role, state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"{event.name} is not allowed for a {role.name} dialog in state {state.name}",
            status_hint=500,
        ) from None


# -- helpers -------------------------------------------------------------------------

#: Our Via: a template whose branch is replaced on every request, or a factory
#: called for each request (its branch, if any, is replaced too).
LocalVia: TypeAlias = Via | Callable[[], Via]


def fresh_via(local_via: LocalVia, branch: str | None = None) -> Via:
    """Our Via for a new request: the template's (or factory's), with ``branch`` or a new one."""
    via = local_via if isinstance(local_via, Via) else local_via()
    return via.with_params(branch=branch or new_branch())


def unknown_dialog_response(request: Request, *, warn_agent: str) -> Response:
    """The 481 for a request with a To tag that matches no dialog (RFC 3261 12.2.2)."""
    return make_response(
        request,
        481,
        headers=[("Warning", warning_value(warn_agent, "no dialog matches this request"))],
    )


def name_addr(value: NameAddr | URI | str) -> NameAddr:
    """A From, To or Contact value given by the TU as a value, a URI or text."""
    if isinstance(value, NameAddr):
        return value
    if isinstance(value, str):
        return parse_name_addr(value)
    return NameAddr(uri=value)


def request_uri(uri: URI) -> URI:
    """Strip what a Request-URI may not carry: ``method`` and URI headers (19.1.1)."""
    if not isinstance(uri, SipURI) or (not uri.headers and not uri.has_param("method")):
        return uri
    return SipURI(
        host=uri.host,
        scheme=uri.scheme,
        user=uri.user,
        password=uri.password,
        port=uri.port,
        params=tuple(p for p in uri.params if p[0].lower() != "method"),
    )


def _check_headers(headers: Iterable[tuple[str, str]], managed: frozenset[str]) -> None:
    for name, _ in headers:
        if name.lower() in managed:
            raise LocalProtocolError(f"the dialog writes the {name} header itself")


def checked_headers(
    headers: Iterable[tuple[str, str]], content_type: str | None, managed: frozenset[str]
) -> list[tuple[str, str]]:
    """The TU's extra header lines, checked as ``Headers()`` checks them, Content-Type last."""
    items = list(headers)
    _check_headers(items, managed)
    if content_type is not None:
        items.append(("Content-Type", content_type))
    return list(Headers(items))


def _expires(message: Request | Response) -> int | None:
    """The Expires header's delta-seconds; None when absent or malformed."""
    value = message.headers.get("expires")
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def event_of(message: Request) -> EventHeader | None:
    value = message.headers.get("event")
    return parse_event(value) if value is not None else None


def tag_of(addr: NameAddr) -> str:
    """The tag of a From or To value, "" for none (an RFC 2543 peer)."""
    return addr.tag or ""


def _sent_transport(request: Request) -> str | None:
    """The transport the top Via of ``request`` names (upper case), or None without one."""
    try:
        return request.top_via.transport.upper()
    except SIPParseError:
        return None


def _first_contact(message: Request | Response) -> NameAddr | None:
    contacts = message.contacts
    return contacts[0] if contacts else None


def _parse_one_via(value: str) -> Via:
    vias = parse_via_list(value)
    if len(vias) != 1:
        raise ValueError(f"expected one Via, got {value!r}")
    return vias[0]


@dataclass(frozen=True, slots=True)
class SentParties:
    """The From and Contact of a request we sent: the local party and target of its dialogs.

    :class:`~vidim.sip.dialog_manager.DialogManager` keeps the values it wrote
    the request from, so that its dialogs hold those (the TU's Contact and From
    URI, one object for every dialog) rather than copies parsed back.
    """

    from_addr: NameAddr
    contact: NameAddr

    @classmethod
    def of(cls, request: Request) -> SentParties:
        """The values as the request's header lines say them."""
        contact = _first_contact(request)
        if contact is None:
            raise LocalProtocolError(f"our {request.method} has no Contact")
        return cls(request.from_addr, contact)


# -- the dialog ----------------------------------------------------------------------


class Dialog:
    """One dialog, seen from our end.

    Build it with :meth:`from_uac` (a response to our INVITE/SUBSCRIBE),
    :meth:`from_notify` (a NOTIFY that beat the 2xx to our SUBSCRIBE),
    :meth:`from_uas` (an INVITE/SUBSCRIBE we are going to answer) or
    :meth:`from_dict`.  Requests it builds are complete: Via with a fresh
    branch, Max-Forwards, Route and Request-URI from the route set.
    """

    __slots__ = (
        "_local_party",
        "_pending_invite",
        "_route_set",
        "call_id",
        "has_invite_usage",
        "initial_cseq",
        "initial_method",
        "local_contact",
        "local_cseq",
        "local_via",
        "remote_cseq",
        "remote_party",
        "remote_target",
        "role",
        "secure",
        "state",
        "subscriptions",
        "transport",
    )

    role: DialogRole
    """Which side sent the request that created the dialog."""
    state: DialogState
    """Early, confirmed or terminated (RFC 3261 12)."""
    call_id: str
    remote_party: NameAddr
    """The peer's To (UAC) / From (UAS) value, tag included (absent for RFC 2543 peers)."""
    local_contact: NameAddr
    remote_target: URI
    local_cseq: int | None
    remote_cseq: int | None
    initial_cseq: int
    """CSeq number of the request that created the dialog."""
    initial_method: str
    """Method of the request that created the dialog."""
    secure: bool
    """True when the dialog was made over TLS with a SIPS URI (RFC 3261 12.1.1)."""
    transport: str | None
    """The transport of the request that made the dialog (its top Via), or None.

    In-dialog requests go over it when the remote target names no transport
    (see :func:`vidim.sip.uri_destination`): a peer reached over TCP is
    reached over TCP again, and its connection reused.
    """
    local_via: LocalVia | None
    has_invite_usage: bool
    """True while the dialog has its INVITE usage (until BYE or a failed re-INVITE)."""
    subscriptions: list[Subscription]
    """The subscription usages."""
    _pending_invite: int | None
    """The CSeq of our INVITE still without a final response (RFC 3261 14.1)."""

    def __init__(
        self,
        *,
        role: DialogRole,
        state: DialogState,
        call_id: str,
        local_party: NameAddr,
        remote_party: NameAddr,
        local_contact: NameAddr,
        remote_target: URI,
        route_set: Iterable[NameAddr] = (),
        local_cseq: int | None,
        remote_cseq: int | None,
        initial_cseq: int,
        initial_method: str,
        secure: bool = False,
        local_via: LocalVia | None = None,
        transport: str | None = None,
    ) -> None:
        self.role = role
        self.state = state
        self.call_id = call_id
        self.local_party = local_party
        self.remote_party = remote_party
        self.local_contact = local_contact
        self.remote_target = remote_target
        self._route_set = tuple(route_set)
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.initial_cseq = initial_cseq
        self.initial_method = initial_method
        self.secure = secure
        self.transport = transport
        self.local_via = local_via
        self.has_invite_usage = initial_method == "INVITE"
        self.subscriptions = []
        self._pending_invite = None

    @property
    def local_party(self) -> NameAddr:
        """Our From (UAC) / To (UAS) value, tag included."""
        return self._local_party

    @local_party.setter
    def local_party(self, value: NameAddr) -> None:
        if value.tag is None:
            raise LocalProtocolError("the local party of a dialog needs a tag")
        self._local_party = value

    @property
    def route_set(self) -> tuple[NameAddr, ...]:
        """Routes in the order they go into a Route header."""
        return self._route_set

    @route_set.setter
    def route_set(self, value: Iterable[NameAddr]) -> None:
        self._route_set = tuple(value)

    @property
    def local_tag(self) -> str:
        return tag_of(self._local_party)

    @property
    def remote_tag(self) -> str:
        return tag_of(self.remote_party)

    # -- construction ------------------------------------------------------------
    @classmethod
    def from_uac(
        cls,
        request: Request,
        response: Response,
        *,
        local_via: LocalVia | None = None,
        sent: SentParties | None = None,
    ) -> Dialog:
        """The dialog a response to our INVITE or SUBSCRIBE creates (RFC 3261 12.1.2).

        INVITE: a 101-199 with a To tag makes an early dialog, a 2xx a confirmed
        one.  SUBSCRIBE: only a 2xx (RFC 6665 4.1.2.1); the subscription named
        by its Event header is attached, waiting for the first NOTIFY.
        ``sent``: the From and Contact values the request was written from,
        kept instead of parsing them back from the request.
        """
        method = request.method
        if method not in DIALOG_CREATING_METHODS:
            raise LocalProtocolError(f"{method} does not create dialogs")
        status = response.status
        if method == "INVITE" and 101 <= status <= 199 and response.to_addr.tag is not None:
            state = DialogState.EARLY
        elif 200 <= status <= 299:
            state = DialogState.CONFIRMED
        else:
            raise LocalProtocolError(f"a {status} to {method} does not create a dialog")
        cls._check_response(request, response)
        # A Contact-less response (broken, but seen on 18x) leaves the
        # request's target in place.
        target = _first_contact(response)
        if sent is None:
            sent = SentParties.of(request)
        dialog = cls(
            role=DialogRole.UAC,
            state=state,
            call_id=request.call_id,
            local_party=sent.from_addr,
            remote_party=response.to_addr,
            local_contact=sent.contact,
            remote_target=target.uri if target is not None else request.uri,
            route_set=reversed(response.record_route),
            local_cseq=request.cseq.seq,
            remote_cseq=None,
            initial_cseq=request.cseq.seq,
            initial_method=method,
            secure=request.uri.scheme == "sips",
            local_via=local_via,
            transport=_sent_transport(request),
        )
        if method == "SUBSCRIBE":
            dialog._add_subscriber_usage(request)
            dialog._subscribe_response(request, response)
        return dialog

    @classmethod
    def from_notify(
        cls,
        subscribe: Request,
        notify: Request,
        *,
        local_via: LocalVia | None = None,
        sent: SentParties | None = None,
    ) -> Dialog:
        """The dialog a NOTIFY creates when it beats the 2xx to our SUBSCRIBE.

        RFC 6665 4.1.2.4: the subscriber builds it as a UAS would (RFC 3261
        12.1.1): route set from the NOTIFY's Record-Route in order, remote
        target from its Contact.  Call :meth:`receive_request` with the same
        NOTIFY next, for the subscription state and the 200.
        """
        if subscribe.method != "SUBSCRIBE" or notify.method != "NOTIFY":
            raise LocalProtocolError("from_notify takes a SUBSCRIBE and a NOTIFY")
        if notify.call_id != subscribe.call_id or notify.to_addr.tag != subscribe.from_addr.tag:
            raise LocalProtocolError("the NOTIFY does not belong to this SUBSCRIBE")
        target = _first_contact(notify)
        if target is None:
            raise RemoteProtocolError("NOTIFY without Contact", status_hint=400)
        if sent is None:
            sent = SentParties.of(subscribe)
        dialog = cls(
            role=DialogRole.UAC,
            state=DialogState.CONFIRMED,
            call_id=subscribe.call_id,
            local_party=sent.from_addr,
            remote_party=notify.from_addr,
            local_contact=sent.contact,
            remote_target=target.uri,
            route_set=notify.record_route,
            local_cseq=subscribe.cseq.seq,
            remote_cseq=None,
            initial_cseq=subscribe.cseq.seq,
            initial_method="SUBSCRIBE",
            secure=subscribe.uri.scheme == "sips",
            local_via=local_via,
            transport=_sent_transport(subscribe),
        )
        dialog._add_subscriber_usage(subscribe)
        return dialog

    @classmethod
    def from_uas(
        cls,
        request: Request,
        local_tag: str | None = None,
        local_contact: NameAddr | URI | str | None = None,
        *,
        local_via: LocalVia | None = None,
    ) -> Dialog:
        """The dialog we create by answering an INVITE or SUBSCRIBE (RFC 3261 12.1.1).

        It starts EARLY and becomes CONFIRMED when :meth:`create_response`
        builds the 2xx (TERMINATED on a failure).  The route set is the
        request's Record-Route in order, the remote target its Contact.
        """
        method = request.method
        if method not in DIALOG_CREATING_METHODS:
            raise LocalProtocolError(f"{method} does not create dialogs")
        to_addr = request.to_addr
        if to_addr.tag is not None:
            raise LocalProtocolError("a request with a To tag is inside a dialog already")
        if local_contact is None:
            raise LocalProtocolError("a UAS dialog needs a local Contact")
        target = _first_contact(request)
        if target is None:
            raise RemoteProtocolError(f"{method} without Contact", status_hint=400)
        dialog = cls(
            role=DialogRole.UAS,
            state=DialogState.EARLY,
            call_id=request.call_id,
            # with_tag refuses a tag that is not a token.
            local_party=to_addr.with_tag(local_tag if local_tag is not None else new_tag()),
            remote_party=request.from_addr,
            local_contact=name_addr(local_contact),
            remote_target=target.uri,
            route_set=request.record_route,
            local_cseq=None,
            remote_cseq=request.cseq.seq,
            initial_cseq=request.cseq.seq,
            initial_method=method,
            secure=request.uri.scheme == "sips",
            local_via=local_via,
            transport=_sent_transport(request),
        )
        if method == "SUBSCRIBE":
            event = event_of(request)
            if event is None:
                raise RemoteProtocolError("SUBSCRIBE without Event", status_hint=400)
            subscription = Subscription(
                event.package, event.id, expires=_expires(request), notifier=True
            )
            dialog.subscriptions.append(subscription)
        return dialog

    @staticmethod
    def _check_response(request: Request, response: Response) -> None:
        if response.call_id != request.call_id or response.from_addr.tag != request.from_addr.tag:
            raise LocalProtocolError("the response does not answer this request")
        cseq = response.cseq
        if cseq.seq != request.cseq.seq or cseq.method != request.method:
            raise LocalProtocolError("the response's CSeq does not match the request")

    # -- identity and usages -----------------------------------------------------
    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @property
    def terminated(self) -> bool:
        return self.state is DialogState.TERMINATED

    @property
    def warn_agent(self) -> str:
        """Our host[:port] for Warning headers, taken from our Contact."""
        uri = self.local_contact.uri
        if isinstance(uri, SipURI):
            return uri.host if uri.port is None else f"{uri.host}:{uri.port}"
        return "vidim"

    def find_subscription(self, event: EventHeader, *, notifier: bool) -> Subscription | None:
        for sub in self.subscriptions:
            if sub.notifier is notifier and sub.matches(event):
                return sub
        return None

    def add_subscription(self, subscription: Subscription) -> None:
        """Attach a usage the dialog cannot see by itself (a REFER's implicit one)."""
        if self.terminated:
            raise LocalProtocolError("the dialog is terminated")
        self.subscriptions.append(subscription)

    def _add_subscriber_usage(self, subscribe: Request) -> Subscription:
        event = event_of(subscribe)
        if event is None:
            raise LocalProtocolError("a SUBSCRIBE needs an Event header")
        sub = self.find_subscription(event, notifier=False)
        if sub is None or sub.terminated:
            if sub is not None:
                self.subscriptions.remove(sub)
            sub = Subscription(event.package, event.id)
            self.subscriptions.append(sub)
        return sub

    def _end_subscription(self, sub: Subscription, reason: str | None) -> None:
        if not sub.terminated:
            sub.apply(SubscriptionStatus(SubscriptionState.TERMINATED, reason=reason))
        if not self.has_invite_usage and all(s.terminated for s in self.subscriptions):
            self._fire(DialogInput.LAST_USAGE_ENDED)

    def _fire(self, event: DialogInput) -> None:
        self.state = next_dialog_state(self.role, self.state, event)
        if self.state is DialogState.TERMINATED:
            self.has_invite_usage = False
            for sub in self.subscriptions:
                if not sub.terminated:
                    sub.apply(SubscriptionStatus(SubscriptionState.TERMINATED))

    def _fire_remote(self, event: DialogInput) -> None:
        try:
            self._fire(event)
        except LocalProtocolError as exc:
            raise RemoteProtocolError(exc.reason, status_hint=exc.status_hint) from exc

    # -- sending -----------------------------------------------------------------
    def create_request(
        self,
        method: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """Build an in-dialog request (RFC 3261 12.2.1.1) with the next local CSeq.

        BYE ends the dialog at once (15.1.1: the session is over once BYE is
        handed to its transaction).  An INVITE may not overlap another of our
        INVITEs (14.1).  A SUBSCRIBE adds (or refreshes) the subscription of
        its Event header.  A NOTIFY we send as notifier updates ours.
        """
        method = method.upper()
        if method in ("ACK", "CANCEL"):
            raise LocalProtocolError(
                f"{method} is not built this way: create_ack() for a 2xx, the "
                "transaction layer for CANCEL"
            )
        # Check everything before the state moves.
        _check_method(method)
        extra = checked_headers(headers, content_type, MANAGED_REQUEST_HEADERS)
        self._check_can_send()
        if method == "INVITE" and self._pending_invite is not None:
            raise LocalProtocolError("an INVITE is already in progress in this dialog (491)")
        seq = (self.local_cseq or 0) + 1
        if seq >= 2**31:
            raise LocalProtocolError("the local CSeq ran past 2**31")
        if method in ("SUBSCRIBE", "NOTIFY"):
            _check_event_headers(method, Headers(extra))
        self._fire(DialogInput.SEND_BYE if method == "BYE" else DialogInput.SEND_REQUEST)
        self.local_cseq = seq
        request = self._build(method, seq, extra, body)
        if method == "INVITE":
            self._pending_invite = seq
        elif method == "SUBSCRIBE":
            self._add_subscriber_usage(request)
        elif method == "NOTIFY":
            self._sent_notify(request)
        return request

    def _check_can_send(self) -> None:
        if self.local_via is None:
            raise LocalProtocolError("the dialog has no local Via to send requests with")

    def create_ack(
        self, response: Response, *, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """The ACK for a 2xx to an INVITE (RFC 3261 13.2.2.4).

        CSeq number of the INVITE, method ACK, Route/Request-URI as for any
        in-dialog request, a branch of its own.  Hand the 2xx to
        :meth:`receive_response` first, so the remote target is current.
        """
        cseq = response.cseq
        if not 200 <= response.status <= 299 or cseq.method != "INVITE":
            raise LocalProtocolError("only a 2xx to an INVITE is ACKed by the dialog")
        if response.call_id != self.call_id or tag_of(response.to_addr) != self.remote_tag:
            raise LocalProtocolError("the 2xx belongs to another dialog")
        extra = checked_headers((), content_type, MANAGED_REQUEST_HEADERS)
        self._check_can_send()
        self._fire(DialogInput.SEND_ACK)
        return self._build("ACK", cseq.seq, extra, body)

    def _build(
        self,
        method: str,
        seq: int,
        extra: list[tuple[str, str]],
        body: bytes,
        content_type: str | None = None,
    ) -> Request:
        """The request, with ``extra`` (from :func:`checked_headers`) after the dialog's lines.

        ``content_type`` is for callers that pass it apart (the allocator's
        BYE sent again); it is checked here.
        """
        assert self.local_via is not None  # _check_can_send() ran
        if content_type is not None:
            extra = [*extra, *checked_headers((), content_type, MANAGED_REQUEST_HEADERS)]
        uri, routes = self.request_target()
        lines = [("Via", str(fresh_via(self.local_via))), ("Max-Forwards", MAX_FORWARDS)]
        if routes:
            lines.append(("Route", ", ".join(str(route) for route in routes)))
        lines += [
            ("From", str(self.local_party)),
            ("To", str(self.remote_party)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{seq} {method}"),
        ]
        if method in _CONTACT_METHODS:
            lines.append(("Contact", str(self.local_contact)))
        # The dialog's values were parsed or made by us, ``extra`` is checked.
        return Request(method, uri, Headers.trusted([*lines, *extra]), body)

    def request_target(self) -> tuple[URI, list[NameAddr]]:
        """Request-URI and Route values for the next request (RFC 3261 12.2.1.1).

        Empty route set: the remote target, no Route.  Loose (``lr``) first
        route: the remote target, the route set as Route.  Strict first route:
        that route's URI (stripped of what a Request-URI may not hold), the
        remaining routes with the remote target appended.
        """
        routes = self.route_set
        if not routes:
            return request_uri(self.remote_target), []
        first = routes[0].uri
        if isinstance(first, SipURI) and first.has_param("lr"):
            return request_uri(self.remote_target), list(routes)
        return request_uri(first), [*routes[1:], NameAddr(uri=self.remote_target)]

    def _sent_notify(self, notify: Request) -> None:
        event = event_of(notify)
        state = notify.headers.get("subscription-state")
        # create_request checked that both are there.
        assert event is not None
        assert state is not None
        sub = self.find_subscription(event, notifier=True)
        if sub is None:
            return
        status = parse_subscription_state(state)
        sub.apply(status)
        if status.state is SubscriptionState.TERMINATED:
            self._end_subscription(sub, status.reason)

    def create_response(
        self,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Response:
        """Answer a request of this dialog: our To tag, Contact where needed.

        For the request that created a UAS dialog the response also copies its
        Record-Route (12.1.1) and moves the dialog: 1xx keeps it early, 2xx
        confirms it, a failure ends it.
        """
        if request.call_id != self.call_id or tag_of(request.from_addr) != self.remote_tag:
            raise LocalProtocolError("the request belongs to another dialog")
        headers = list(headers)
        _check_headers(headers, _MANAGED_RESPONSE_HEADERS)
        initial = (
            self.role is DialogRole.UAS
            and request.method == self.initial_method
            and request.cseq.seq == self.initial_cseq
            and request.to_addr.tag is None
        )
        extra: list[tuple[str, str]] = []
        if initial and 101 <= status <= 299:
            extra += [("Record-Route", value) for value in request.headers.get_all("record-route")]
        if 101 <= status <= 299 and request.method in _CONTACT_METHODS:
            _check_headers(headers, frozenset(("contact",)))
            extra.append(("Contact", str(self.local_contact)))
        if content_type is not None:
            extra.append(("Content-Type", content_type))
        if initial and status > 100:
            if status < 200:
                self._fire(DialogInput.SEND_PROVISIONAL)
            elif status < 300:
                self._fire(DialogInput.SEND_2XX)
            else:
                self._fire(DialogInput.SEND_FAILURE)
        return make_response(
            request, status, reason, to_tag=self.local_tag, headers=extra + headers, body=body
        )

    def _error_response(self, request: Request, status: int, text: str) -> Response:
        return make_response(
            request,
            status,
            to_tag=self.local_tag,
            headers=[("Warning", warning_value(self.warn_agent, text))],
        )

    # -- receiving ---------------------------------------------------------------
    def receive_response(self, request: Request, response: Response) -> None:
        """Take in a response to a request this dialog sent.

        Moves the state (1xx/2xx/failure to the dialog-creating INVITE; 481
        and 408 end the dialog, 12.2.1.2), refreshes the remote target on a
        2xx to a target refresh request, and keeps subscriptions current.  A
        transaction timeout should be passed in as a 408 the TU makes up.
        Raises :class:`RemoteProtocolError` for a response that cannot happen
        in the current state (drop it).
        """
        self._check_response(request, response)
        if response.call_id != self.call_id or tag_of(response.to_addr) != self.remote_tag:
            if response.status < 200 and response.to_addr.tag is None:
                return  # a 100 Trying (or a tagless 1xx) concerns no dialog
            raise LocalProtocolError("the response belongs to another dialog")
        status = response.status
        method = request.method
        if method == "INVITE" and status >= 200 and request.cseq.seq == self._pending_invite:
            self._pending_invite = None
        initial = (
            self.role is DialogRole.UAC
            and method == self.initial_method
            and request.cseq.seq == self.initial_cseq
        )
        if initial and method == "INVITE":
            self._initial_invite_response(response)
        elif status in (408, 481):
            self._fire_remote(DialogInput.RECV_DIALOG_FAILURE)
        elif initial and 200 <= status <= 299:
            # A 2xx to our SUBSCRIBE after its NOTIFY made the dialog.
            self._fire_remote(DialogInput.RECV_2XX)
        else:
            self._fire_remote(DialogInput.RECV_RESPONSE)
            if 200 <= status <= 299 and method in TARGET_REFRESH_METHODS:
                self._refresh_target(response)
        if method == "SUBSCRIBE" and not self.terminated:
            self._subscribe_response(request, response)

    def _initial_invite_response(self, response: Response) -> None:
        status = response.status
        if status < 200:
            if response.to_addr.tag is None:
                return
            before = self.state
            self._fire_remote(DialogInput.RECV_PROVISIONAL)
            if before is DialogState.EARLY:
                self._refresh_target(response)
        elif status < 300:
            before = self.state
            self._fire_remote(DialogInput.RECV_2XX)
            if before is DialogState.EARLY:
                # 13.2.2.4: the route set is recomputed from the 2xx.
                self.route_set = tuple(reversed(response.record_route))
                self._refresh_target(response)
        else:
            self._fire_remote(DialogInput.RECV_FAILURE)

    def _refresh_target(self, message: Request | Response) -> None:
        contact = _first_contact(message)
        if contact is not None:
            self.remote_target = contact.uri

    def _subscribe_response(self, request: Request, response: Response) -> None:
        event = event_of(request)
        sub = self.find_subscription(event, notifier=False) if event is not None else None
        if sub is None or response.status < 200:
            return
        if response.status < 300:
            expires = _expires(response)
            if expires is not None:
                sub.expires = expires
        elif sub.state is SubscriptionState.NOTIFY_WAIT or response.status in _SUBSCRIBE_FATAL:
            # The first SUBSCRIBE failed, or a refresh failed for good (6665 4.1.2.2).
            self._end_subscription(sub, "rejected")

    def receive_request(self, request: Request) -> Response | None:
        """Take in a request the peer sent in this dialog; maybe answer it.

        Returns the response the dialog can give by itself: 200 to BYE and to a
        NOTIFY of a known subscription; 481 once terminated (but 200 to a BYE
        that crossed ours) or for an unknown subscription; 500 for a CSeq below
        the last one (12.2.2); 491 for an INVITE while ours is pending (14.2);
        400 for a malformed NOTIFY.
        None: the TU answers (use :meth:`create_response`); always None for ACK.
        """
        if request.call_id != self.call_id or request.to_addr.tag != self.local_tag:
            raise LocalProtocolError("the request belongs to another dialog")
        if tag_of(request.from_addr) != self.remote_tag:
            raise LocalProtocolError("the request belongs to another dialog")
        method = request.method
        if method == "ACK":
            self._fire_remote(DialogInput.RECV_ACK)
            return None
        seq = request.cseq.seq
        live = self.state is not DialogState.TERMINATED
        if live and self.remote_cseq is not None and seq < self.remote_cseq:
            return self._error_response(
                request, 500, f"CSeq {seq} is below {self.remote_cseq}, out of order"
            )
        self._fire_remote(DialogInput.RECV_BYE if method == "BYE" else DialogInput.RECV_REQUEST)
        if self.state is DialogState.TERMINATED and method != "BYE":
            return self._error_response(request, 481, "the dialog has ended")
        if self.remote_cseq is None or seq > self.remote_cseq:
            self.remote_cseq = seq
        if method == "BYE":
            return make_response(request, 200, to_tag=self.local_tag)
        if method in TARGET_REFRESH_METHODS:
            self._refresh_target(request)
        if method == "INVITE" and self._pending_invite is not None:
            return make_response(request, 491, to_tag=self.local_tag)
        if method == "NOTIFY":
            return self._receive_notify(request)
        if method == "SUBSCRIBE":
            self._receive_subscribe(request)
        return None

    def _receive_notify(self, request: Request) -> Response:
        try:
            event = event_of(request)
            state = request.headers.get("subscription-state")
            if event is None or state is None:
                raise SIPParseError("NOTIFY without Event or Subscription-State")
            status = parse_subscription_state(state)
        except SIPParseError as exc:
            return self._error_response(request, exc.status_hint, exc.reason)
        sub = self.find_subscription(event, notifier=False)
        if sub is None or sub.terminated:
            return self._error_response(request, 481, f"no subscription to {event}")
        sub.apply(status)
        if status.state is SubscriptionState.TERMINATED:
            self._end_subscription(sub, status.reason)
        return self.create_response(request, 200)

    def _receive_subscribe(self, request: Request) -> None:
        # A refresh of a subscription the peer holds with us; the TU answers.
        event = event_of(request)
        sub = self.find_subscription(event, notifier=True) if event is not None else None
        if sub is not None:
            expires = _expires(request)
            if expires is not None:
                sub.expires = expires

    # -- persistence -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The dialog as JSON types only, for a store (see :meth:`from_dict`).

        A ``local_via`` factory is not data: it is left out and must be given
        again to :meth:`from_dict`; a template Via is kept.
        """
        return {
            "format": _FORMAT,
            "role": self.role.value,
            "state": self.state.value,
            "call_id": self.call_id,
            "local_party": str(self.local_party),
            "remote_party": str(self.remote_party),
            "local_contact": str(self.local_contact),
            "remote_target": str(self.remote_target),
            "route_set": [str(route) for route in self.route_set],
            "local_cseq": self.local_cseq,
            "remote_cseq": self.remote_cseq,
            "initial_cseq": self.initial_cseq,
            "initial_method": self.initial_method,
            "secure": self.secure,
            "transport": self.transport,
            "has_invite_usage": self.has_invite_usage,
            "subscriptions": [sub.to_dict() for sub in self.subscriptions],
            "pending_invite": self._pending_invite,
            "local_via": str(self.local_via) if isinstance(self.local_via, Via) else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, local_via: LocalVia | None = None) -> Dialog:
        """Rebuild a dialog from :meth:`to_dict`; ``local_via`` overrides the stored one.

        Raises :class:`LocalProtocolError` for data that is not a stored dialog.
        """
        try:
            if data["format"] != _FORMAT:
                raise ValueError(f"unknown dialog format {data['format']!r}")
            stored_via = optional(str, data["local_via"])
            if local_via is None and stored_via is not None:
                local_via = _parse_one_via(stored_via)
            dialog = cls(
                role=DialogRole(data["role"]),
                state=DialogState(data["state"]),
                call_id=str(data["call_id"]),
                local_party=parse_name_addr(data["local_party"]),
                remote_party=parse_name_addr(data["remote_party"]),
                local_contact=parse_name_addr(data["local_contact"]),
                remote_target=parse_uri(data["remote_target"]),
                route_set=[parse_name_addr(route) for route in data["route_set"]],
                local_cseq=optional(int, data["local_cseq"]),
                remote_cseq=optional(int, data["remote_cseq"]),
                initial_cseq=int(data["initial_cseq"]),
                initial_method=str(data["initial_method"]),
                secure=bool(data["secure"]),
                local_via=local_via,
                # Absent from records stored before it was kept.
                transport=optional(str, data.get("transport")),
            )
            dialog.has_invite_usage = bool(data["has_invite_usage"])
            dialog.subscriptions = [Subscription.from_dict(item) for item in data["subscriptions"]]
            dialog._pending_invite = optional(int, data["pending_invite"])
        except (AttributeError, KeyError, TypeError, ValueError, SIPParseError) as exc:
            raise LocalProtocolError(f"not a stored dialog: {exc}") from exc
        return dialog

    def __repr__(self) -> str:
        return f"<Dialog {self.role.name} {self.state.name} {self.id}>"


def _check_event_headers(method: str, headers: Headers) -> None:
    """A SUBSCRIBE we send needs Event, a NOTIFY Event and Subscription-State."""
    event = headers.get("event")
    if event is not None:
        parse_event(event)
    if method == "SUBSCRIBE" and event is None:
        raise LocalProtocolError("a SUBSCRIBE needs an Event header")
    if method == "NOTIFY" and (event is None or headers.get("subscription-state") is None):
        raise LocalProtocolError("a NOTIFY needs Event and Subscription-State headers")
