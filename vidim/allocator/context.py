"""What the parts of the allocator share: its SIP stack, its tables, its clock.

:class:`~vidim.allocator.allocator.Allocator` makes one :class:`Context` and
hands it to each part (requests, probing, the focus leg, the roster).  The
context holds the state more than one part reads, and the few verbs they all
use: send a request and remember what it was for, answer one, move a
conference through its table, arm a deadline, send an IM.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import Enum

from ..sip import (
    URI,
    Address,
    Challenge,
    Dialog,
    DialogManager,
    Headers,
    NameAddr,
    Request,
    Response,
    SipURI,
    TransactionId,
    TransactionLayer,
    Via,
    new_branch,
    new_call_id,
    new_tag,
    parse_name_addr,
    parse_uri,
    request_destination,
    sendable_transports,
    sent_over,
    uri_destination,
)
from ..timers import Timers
from .conference import Conference, ConferenceInput, Deadline
from .config import AllocatorConfig
from .events import AllocatorEvent, ConferenceStateChanged, TransportUnavailable
from .table import ConferenceTable

__all__ = [
    "Context",
    "Pending",
    "Purpose",
    "address_from_text",
    "address_of",
    "address_of_uri",
    "address_text",
    "focus_target",
    "new_token",
    "proxy_uri",
]


class Purpose(Enum):
    """What a request the allocator sent is for: picks the handler of its answer."""

    PROBE = "probe"
    FOCUS_INVITE = "focus invite"
    REINVITE = "re-invite"
    INVITATION = "invitation"
    NOTICE = "notice"
    SUBSCRIBE = "subscribe"
    RESUBSCRIBE = "resubscribe"
    KEEPALIVE = "keepalive"
    BYE = "bye"
    CLEANUP = "cleanup"


@dataclass(slots=True)
class Pending:
    """A request in flight and what it is for."""

    purpose: Purpose
    conference_id: str | None
    request: Request
    #: The participant URI, or the index of the focus.
    target: str = ""
    #: Where it was sent: a retry with credentials goes there too.
    destination: Address | None = None
    #: How many times it was sent again with credentials (401/407).
    challenged: int = 0
    #: The challenges it answers: (header, challenge, nonce count), one per realm.
    answered: tuple[tuple[str, Challenge, int], ...] = ()
    #: Sent over TCP only for its size (RFC 3261 section 18.1.1): UDP if TCP fails.
    for_size: bool = False


#: Where a request goes: a URI (the next hop: its transport, host and port are
#: chosen when the request is sent, see :func:`vidim.sip.uri_destination`), an
#: address (the requester's, as their request came), or a dialog (its first
#: route or remote target, over the dialog's transport when that names none).
Hop = URI | Address | Dialog


def address_of(uri_text: str) -> Address:
    """Where a small request for ``uri_text`` goes with no proxy (host literal, port, transport).

    Name resolution (RFC 3263) is the I/O layer's business: a host name is
    passed on as it is.
    """
    return address_of_uri(parse_uri(uri_text))


def address_of_uri(uri: URI) -> Address:
    """:func:`address_of` for a URI already parsed (a dialog's target or route)."""
    return uri_destination(uri)


@functools.lru_cache(maxsize=8)
def proxy_uri(proxy: Address | str) -> URI:
    """The configured proxy as the URI of the next hop.

    A URI keeps what it says (``sips:``, ``;transport=udp``); an address
    names its transport only when that is not UDP, so that a large request
    may still go over TCP (RFC 3261 section 18.1.1).
    """
    if isinstance(proxy, str):
        return parse_uri(proxy)
    params = () if proxy.transport.upper() == "UDP" else (("transport", proxy.transport.lower()),)
    host = f"[{proxy.host}]" if ":" in proxy.host else proxy.host
    return SipURI(host=host, port=proxy.port, params=params)


@functools.lru_cache(maxsize=64)
def focus_target(focus_uri: str) -> tuple[URI, NameAddr]:
    """A configured focus URI parsed as the INVITE's Request-URI and as its To.

    Cached: every setup sends to one of the same few URIs, and each parse
    cost more than the rest of the INVITE's headers together.  The values are
    frozen; an unparsable URI raises, as before, when a setup first needs it.
    """
    return parse_uri(focus_uri), parse_name_addr(focus_uri)


def address_text(address: Address) -> str:
    """An address as the conference record keeps it: ``host|port|transport``."""
    return f"{address.host}|{address.port}|{address.transport}"


def address_from_text(text: str) -> Address:
    host, port, transport = text.rsplit("|", 2)
    return Address(host, int(port), transport)


def new_token() -> str:
    """A conference id or a join credential: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


class Context:
    """The allocator's shared state, and the verbs every part uses."""

    def __init__(self, config: AllocatorConfig, emit: Callable[[AllocatorEvent], None]) -> None:
        self.config = config
        #: Report an event to the application.
        self.emit = emit
        local = config.local
        self.layer = TransactionLayer(config.transactions)
        self.via = Via(local.transport, local.host, local.port, (("rport", None),))
        self.dialogs = DialogManager(local_via=self.via, warn_agent=config.warning_host)
        #: Who vidim is in From: the service URI.
        self.service = NameAddr(uri=config.requests.service_uri)
        host = f"[{local.host}]" if ":" in local.host else local.host
        self.contact = NameAddr(uri=parse_uri(f"sip:vidim@{host}:{local.port}"))
        self.conferences = ConferenceTable()
        self.timers: Timers[tuple[str, Deadline]] = Timers()
        #: Every request in flight that the allocator sent, by transaction.
        self.pending: dict[TransactionId, Pending] = {}
        #: The SUBSCRIBEs among them: a conference that ends must stop them
        #: from making a dialog (see :meth:`Allocator._retire`).
        self.subscribes: dict[TransactionId, Pending] = {}
        #: The transports the server offers: TLS only with a TLS listener.
        self.transports = sendable_transports(tls=config.tls_port is not None)
        #: Requests not sent (no transport to their destination) and why: the
        #: allocator answers each with a made-up 503 once the current input is handled.
        self.unsent: list[tuple[Pending, str]] = []

    # -- sending -----------------------------------------------------------------
    def send(
        self,
        request: Request,
        hop: Hop,
        now: float,
        pending: Pending,
        *,
        branch: str | None = None,
    ) -> TransactionId | None:
        """Send ``request`` towards ``hop`` in a client transaction; ``branch``: its Via's.

        The transport is chosen here (see :meth:`destination`) and written
        into the Via.  A destination vidim cannot reach (TLS, when the server
        has no TLS listener: ``config.tls_port``) gets nothing in plain text:
        a :class:`TransportUnavailable` event, and the request is answered
        with a made-up 503 (see :attr:`unsent`).
        Returns the transaction's id, or None when nothing was sent.
        """
        self.conferences.touch(pending.conference_id)  # a dialog's CSeq, at least
        destination = self.destination(request, hop)
        pending.for_size = destination != self.destination(request, hop, measured=False)
        if destination.transport not in self.transports:
            self._unsendable(request, hop, destination, pending)
            return None
        self._sent_over(request, destination)
        tid = self.layer.send_request(request, destination, now, branch=branch)
        pending.destination = destination  # a retry with credentials goes there too
        self.pending[tid] = pending
        if request.method == "SUBSCRIBE":
            self.subscribes[tid] = pending
        return tid

    def send_stateless(self, request: Request, hop: Hop) -> None:
        """Send a request outside any transaction (an ACK for a 2xx), by the same rules."""
        destination = self.destination(request, hop)
        if destination.transport in self.transports:
            self._sent_over(request, destination)
            self.layer.send_stateless(request, destination)

    def _sent_over(self, request: Request, destination: Address) -> None:
        """The Via names the transport used, and over TLS the TLS listener's port."""
        port = self.config.tls_port if destination.transport == "TLS" else None
        sent_over(request, destination.transport, written=self.via.transport, port=port)

    def destination(self, request: Request, hop: Hop, *, measured: bool = True) -> Address:
        """Where ``request`` goes for ``hop``, and over which transport.

        Its size counts only when it would go over UDP without the URI saying
        so: larger than 1300 bytes, it goes over TCP (RFC 3261 section 18.1.1).
        ``measured=False``: where it would go, whatever its size.
        """
        if isinstance(hop, Address):
            return hop  # where the requester's request came from, as it came
        default = None
        if isinstance(hop, Dialog):
            target, routes = hop.request_target()
            default = hop.transport
            hop = routes[0].uri if routes else target
        if not measured:
            return uri_destination(hop, default_transport=default)
        return request_destination(request, hop, default_transport=default)

    def fall_back_to_udp(self, tid: TransactionId, now: float) -> TransactionId | None:
        """The request went over TCP for its size, and TCP failed: send it again over UDP.

        RFC 3261 section 18.1.1: "if the attempt to establish the connection
        generates either an ICMP Protocol Not Supported, or results in a TCP
        reset, the element SHOULD retry the request, using UDP" (a peer that
        listens on UDP only).  The same request in a new transaction (a new
        branch); None when it was not sent over TCP for its size.
        """
        pending = self.pending.get(tid)
        if pending is None or not pending.for_size or pending.destination is None:
            return None
        request = pending.request
        headers = Headers()
        for name, value in request.headers:
            if name.lower() == "via":
                value = str(request.top_via.with_params(branch=new_branch()))
            headers.add(name, value)
        retry = Request(request.method, request.uri, headers, request.body)
        sent_over(retry, "UDP")
        self.forget(tid)
        if retry.method in ("INVITE", "SUBSCRIBE") and retry.to_addr.tag is None:
            self.dialogs.retrack(retry)
        destination = replace(pending.destination, transport="UDP")
        new_tid = self.layer.send_request(retry, destination, now)
        again = replace(pending, request=retry, destination=destination, for_size=False)
        self.pending[new_tid] = again
        if retry.method == "SUBSCRIBE":
            self.subscribes[new_tid] = again
        return new_tid

    def _unsendable(
        self, request: Request, hop: Hop, destination: Address, pending: Pending
    ) -> None:
        shown = str(request.uri) if isinstance(hop, Dialog) else str(hop)
        reason = f"cannot reach {shown} over {destination.transport}: not configured"
        self.emit(
            TransportUnavailable(
                conference_id=pending.conference_id,
                method=request.method,
                target=shown,
                transport=destination.transport,
                reason=reason,
            )
        )
        self.unsent.append((pending, reason))

    def forget(self, tid: TransactionId) -> None:
        """Nothing more will come for this request."""
        self.pending.pop(tid, None)
        self.subscribes.pop(tid, None)

    def respond(self, response: Response, now: float) -> None:
        self.layer.send_response(response, now)

    def out_of_dialog(
        self,
        method: str,
        uri: str,
        *,
        branch: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Request:
        """A request outside any dialog, from the service URI (MESSAGE, OPTIONS).

        ``branch`` is the Via's (default: a new one), for a caller that hands
        it on to :meth:`send`.
        """
        target = parse_uri(uri)  # so ``uri`` is a valid URI, with no control character
        # Our own lines are written from values made here or checked above; the
        # caller's go through Headers.add, which checks them.
        lines = Headers.trusted(
            [
                ("Via", str(self.via.with_params(branch=branch or new_branch()))),
                ("Max-Forwards", "70"),
                ("From", f"{self.service};tag={new_tag()}"),
                ("To", f"<{uri}>"),
                ("Call-ID", f"{new_call_id()}@{self.config.local.host}"),
                ("CSeq", f"1 {method}"),
            ]
        )
        for name, value in headers:
            lines.add(name, value)
        return Request(method, target, lines, body)

    def initial_request(
        self,
        conference: Conference,
        method: str,
        uri: URI | str,
        *,
        to: NameAddr | str | None = None,
        headers: Iterable[tuple[str, str]],
        body: bytes = b"",
        content_type: str | None = None,
        branch: str | None = None,
    ) -> Request:
        """The request that starts a dialog of ``conference`` (INVITE to the focus, SUBSCRIBE).

        ``to`` is the To (default: ``uri``).  In-dialog requests with its
        Call-ID then find the conference.
        """
        request = self.dialogs.create_initial_request(
            method,
            uri,
            from_addr=self.service,
            to_addr=uri if to is None else to,
            contact=self.contact,
            headers=headers,
            body=body,
            content_type=content_type,
            branch=branch,
        )
        self.conferences.add_call_id(conference, request.call_id)
        return request

    def route(self, uri: str, direct: Address | None = None) -> Hop:
        """Where an out-of-dialog request goes: the proxy when there is one.

        Else ``direct`` (where the requester's request came from), else ``uri``.
        """
        if self.config.proxy is not None:
            return proxy_uri(self.config.proxy)
        return direct if direct is not None else parse_uri(uri)

    def notice(
        self,
        uri: str,
        text: str,
        now: float,
        *,
        direct: Address | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """An IM to a person: the requester's answers, roster updates, failures."""
        branch = new_branch()
        message = self.out_of_dialog(
            "MESSAGE",
            uri,
            branch=branch,
            headers=[*headers, ("Content-Type", "text/plain;charset=UTF-8")],
            body=text.encode("utf-8"),
        )
        pending = Pending(Purpose.NOTICE, None, message)
        self.send(message, self.route(uri, direct), now, pending, branch=branch)

    def tell_requester(
        self,
        conference: Conference,
        text: str,
        now: float,
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """An IM to whoever asked for ``conference``, by the way their request came."""
        direct = address_from_text(conference.requester_address)
        self.notice(conference.requester, text, now, direct=direct, headers=headers)

    # -- conference state ------------------------------------------------------------
    def move(self, conference: Conference, event: ConferenceInput) -> None:
        """Move through the transition table; report a change of state."""
        old = conference.state
        new = conference.move(event)
        if new is not old:
            self.conferences.touch(conference.id)
            self.emit(
                ConferenceStateChanged(
                    conference_id=conference.id, old=old, new=new, reason=event.value
                )
            )

    def arm(self, conference: Conference, kind: Deadline, when: float) -> None:
        self.conferences.touch(conference.id)
        conference.deadlines[kind] = when
        self.timers.arm((conference.id, kind), when)

    def disarm(self, conference: Conference, kind: Deadline) -> None:
        self.conferences.touch(conference.id)
        conference.deadlines.pop(kind, None)
        self.timers.cancel((conference.id, kind))
