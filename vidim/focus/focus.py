"""The built-in conference focus: the embedded default "second server" (RFC 4579 profile).

Sans-IO, with the same shape as :class:`vidim.allocator.allocator.Allocator`
(and aioquic's ``QuicConnection``).  Three inputs:

* messages: :meth:`ConferenceFocus.receive` (parsed) or
  :meth:`ConferenceFocus.receive_datagram` (bytes; never raises);
* the clock: :meth:`ConferenceFocus.get_timer` gives the next deadline and
  :meth:`ConferenceFocus.handle_timer` fires what is due;
* API calls: :meth:`ConferenceFocus.end_all`, :meth:`ConferenceFocus.end_conference`.

After any of them, send :meth:`ConferenceFocus.messages_to_send` and read
:meth:`ConferenceFocus.next_event`; on :class:`MediaPlanChanged`, apply
:attr:`ConferenceFocus.forwarding_plan` to the RTP relay
(:class:`vidim.aio.RtpRelay`).

What it does on the wire:

* **Factory INVITE** (Request-URI user in ``factory_users``) with an RFC 5366
  resource list: a new conference ``sip:conf-<128 random bits>@host:port``;
  200 with ``Contact: <conference URI>;isfocus`` and an SDP answer that
  rejects every offered m-line (the anchor carries no media).  The INVITE
  dialog is the conference's *anchor*: a re-INVITE on it with a list adds
  invitees; BYE on it ends the conference; in-dialog OPTIONS get 200.
* **Participant INVITE** to a conference URI: admitted only when the ``key``
  parameter of the Request-URI is an invitee's join credential, or when it
  comes from a trusted network with a ``P-Asserted-Identity`` naming an
  invitee (a proxy that authenticated the caller); anyone else gets 403.
  The SDP answer allows exactly the invitee's mode (:func:`vidim.sdp.build_answer`),
  with an RTP/RTCP port pair per stream from the configured range.
* **SUBSCRIBE** ``Event: conference`` to a conference URI (from a trusted
  network, or with a join credential): 200, a NOTIFY with the full
  conference-info (RFC 4575), then a partial one per join or leave, and a
  final ``terminated;reason=noresource`` when the conference ends.
* **Conference end**: the anchor's BYE, the last connected participant
  hanging up (once somebody had joined), the conference TTL, or the API.
  Every connected participant gets BYE, the anchor gets BYE unless the
  allocator sent one, subscribers get the terminated NOTIFY.

Limits, on purpose: no delayed offer (an INVITE without SDP gets 488), no
mixing or transcoding (see :mod:`vidim.focus.media`), no dial-out, no
removal of invitees by re-INVITE (the allocator only ever adds).
"""

from __future__ import annotations

import dataclasses
import heapq
import ipaddress
import itertools
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..conference_info import CONFERENCE_INFO_TYPE, ConferenceInfo, UserInfo, build_conference_info
from ..core import SipCoreBase
from ..resource_lists import RESOURCE_LISTS_TYPE, ListEntry, parse_resource_list
from ..sdp import SDP_TYPE, SDPError, build_answer, build_offer, parse_media
from ..sip import (
    AckReceived,
    Address,
    Dialog,
    DialogId,
    DialogManager,
    Event,
    LocalProtocolError,
    MessageDiscarded,
    RemoteProtocolError,
    Request,
    RequestCancelled,
    RequestReceived,
    RequestRejectedError,
    Response,
    ResponseReceived,
    ServerPolicy,
    SIPParseError,
    SipURI,
    TransactionConfig,
    TransactionId,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    Via,
    check_request,
    make_response,
    new_tag,
    parse_name_addr_list,
    parse_uri,
    summary,
    unescape,
    warning_value,
)
from ..sip.dialog import parse_event
from ..vocabulary import LOOPBACK_NETWORKS, IPNetwork, Mode, is_trusted
from .events import (
    ConferenceCreated,
    ConferenceEnded,
    FocusEvent,
    InviteesAdded,
    MediaPlanChanged,
    MessageIgnored,
    ParticipantAdmitted,
    ParticipantLeft,
    ParticipantRefused,
    SubscriptionEnded,
    SubscriptionStarted,
)
from .media import (
    ForwardingPlan,
    ParticipantMedia,
    PortPool,
    PortsExhaustedError,
    StreamInfo,
    forwarding_plan,
    streams_from_sdp,
)

__all__ = [
    "NOT_INVITED",
    "ConferenceFocus",
    "ConferenceSnapshot",
    "FocusConfig",
    "IPNetwork",
]

_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, SUBSCRIBE, INFO, UPDATE"
#: The Warning text of the 403 for a caller who is not an invitee.
NOT_INVITED = "not invited to this conference"
#: What the focus supports beyond RFC 3261 (RFC 5366's option tag).
_POLICY = ServerPolicy(supported=frozenset({"recipient-list-invite"}))


@dataclass(frozen=True, slots=True, kw_only=True)
class FocusConfig:
    """Everything a :class:`ConferenceFocus` is told; every default is documented here."""

    #: Where the focus receives SIP: its Via, Contact and conference URIs' host:port.
    local: Address = field(default_factory=lambda: Address("127.0.0.1", 5080))
    #: Request-URI users that create conferences (RFC 4579 conference factory URIs).
    factory_users: tuple[str, ...] = ("conference-factory",)
    #: The address written into SDP answers, where the RTP relay binds.
    media_address: str = "127.0.0.1"
    #: Inclusive RTP port range; each stream takes an even/odd pair.
    rtp_ports: tuple[int, int] = (40000, 40999)
    #: A conference ends this long after its creation, whoever is in it.
    conference_ttl: float = 3600.0
    #: Sources whose P-Asserted-Identity is believed, and who may SUBSCRIBE.
    trusted_networks: tuple[IPNetwork, ...] = LOOPBACK_NETWORKS
    #: The longest conference-event subscription granted (seconds).
    max_subscription_expires: int = 3600
    #: The mode of a list entry without ``vidim:mode`` (a plain RFC 5366 client).
    default_mode: Mode = Mode.VIDEO
    #: More live conferences than this: factory INVITEs get 503.
    max_conferences: int = 1000
    transactions: TransactionConfig = field(default_factory=TransactionConfig)

    def __post_init__(self) -> None:
        low, high = self.rtp_ports
        if not 0 < low <= high <= 65535:
            raise LocalProtocolError(f"bad RTP port range {low}-{high}")
        if self.conference_ttl <= 0 or self.max_subscription_expires < 0:
            raise LocalProtocolError("conference_ttl must be > 0, subscription expiry >= 0")

    @property
    def warning_host(self) -> str:
        host = self.local.host
        return f"[{host}]:{self.local.port}" if ":" in host else f"{host}:{self.local.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceSnapshot:
    """A read-only view of one live conference."""

    uri: str
    #: (uri, mode) of every invitee, in list order.
    invitees: tuple[tuple[str, Mode], ...]
    #: URIs of the participants in a call now.
    connected: tuple[str, ...]
    subscribers: int
    created_at: float
    ends_at: float


# -- internal records ------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Invitee:
    uri: str
    #: ``sip:user@host`` of the URI, for matching asserted identities.
    aor: str
    mode: Mode
    credential: str | None
    display_name: str | None


@dataclass(eq=False, slots=True)
class _Call:
    uri: str
    mode: Mode
    dialog: Dialog
    source: Address
    streams: tuple[StreamInfo, ...]
    #: The focus's RTP port per kind ("audio", "video").
    ports: dict[str, int]
    answer: bytes
    session_id: int
    version: int = 1


@dataclass(eq=False, slots=True)
class _Subscription:
    dialog: Dialog
    source: Address
    subscriber: str
    event: str
    expires_at: float
    #: The conference-info version of the last NOTIFY (RFC 4575: +1 per NOTIFY).
    version: int = 0


@dataclass(eq=False, slots=True)
class _Conference:
    user: str
    uri: str
    anchor: Dialog
    anchor_source: Address
    created_at: float
    ends_at: float
    invitees: dict[str, _Invitee] = field(default_factory=dict)
    calls: dict[str, _Call] = field(default_factory=dict)
    subscriptions: list[_Subscription] = field(default_factory=list)
    #: Users that have joined, by entity, as the last full view says.
    roster: dict[str, UserInfo] = field(default_factory=dict)
    joined: bool = False
    plan: ForwardingPlan = field(default_factory=ForwardingPlan)
    session_id: int = 0
    sdp_version: int = 1

    @property
    def contact(self) -> str:
        return f"<{self.uri}>;isfocus"


@dataclass(eq=False, slots=True)
class _Retransmit:
    """A 2xx to an INVITE, resent over UDP until its ACK (RFC 3261 13.3.1.4)."""

    response: Response
    destination: Address
    conference: str
    dialog: DialogId
    interval: float
    deadline: float
    give_up: float


#: A conference user; a (Call-ID, CSeq) of a 2xx; a (conference user, dialog) of a subscription.
_TimerKey = str | tuple[str, int] | tuple[str, DialogId]


@dataclass(frozen=True, slots=True)
class _Owner:
    conference: str
    role: str  # "anchor", "participant", "subscription"
    uri: str = ""


def _aor(uri_text: str) -> str:
    try:
        uri = parse_uri(uri_text)
    except SIPParseError:
        return uri_text
    return uri.address_of_record if isinstance(uri, SipURI) else str(uri)


def _sdp_part(request: Request) -> bytes | None:
    """The SDP of a request (whole body or a multipart part); None when it has none."""
    if not request.body:
        return None
    for part in request.body_parts():
        ctype = part.content_type
        if ctype is not None and ctype.mime == SDP_TYPE:
            return part.body
    return None


def _list_part(request: Request) -> list[ListEntry] | None:
    """The RFC 5366 resource list of a request; None when it has none."""
    if not request.body:
        return None
    for part in request.body_parts():
        ctype = part.content_type
        if ctype is not None and ctype.mime == RESOURCE_LISTS_TYPE:
            return parse_resource_list(part.body)
    return None


class ConferenceFocus(SipCoreBase[FocusEvent]):
    """Hosts conferences for the allocator: admission, SDP per mode, roster, media plan."""

    def __init__(self, config: FocusConfig | None = None) -> None:
        self.config = config if config is not None else FocusConfig()
        local = self.config.local
        self._init_core(TransactionLayer(self.config.transactions))
        self._via = Via(local.transport, local.host, local.port, (("rport", None),))
        self._warn = self.config.warning_host
        self._dialogs = DialogManager(local_via=self._via, warn_agent=self._warn)
        self._pool = PortPool(*self.config.rtp_ports)
        self._conferences: dict[str, _Conference] = {}
        self._owners: dict[DialogId, _Owner] = {}
        self._retransmits: dict[tuple[str, int], _Retransmit] = {}
        self._notifies: dict[TransactionId, tuple[str, _Subscription, Request]] = {}
        self._timers: list[tuple[float, int, str, _TimerKey]] = []
        self._sequence = itertools.count()

    # -- the I/O boundary ------------------------------------------------------
    def receive(self, message: Request | Response, source: Address, now: float) -> None:
        """Take in a parsed message that arrived from ``source``."""
        self._layer.receive(message, source, now)
        self._drain(now)

    def _ignored(self, reason: str, summary: str) -> FocusEvent:
        return MessageIgnored(reason=reason, summary=summary)

    def _warning_host(self) -> str:
        return self._warn

    def handle_timer(self, now: float) -> None:
        """Fire everything due at or before ``now``."""
        self._layer.handle_timer(now)
        self._drain(now)
        while self._timers and self._timers[0][0] <= now:
            when, _, kind, key = heapq.heappop(self._timers)
            if self._timer_live(when, kind, key):
                self._on_timer(kind, key, now)
                self._drain(now)

    # -- API -------------------------------------------------------------------
    @property
    def forwarding_plan(self) -> ForwardingPlan:
        """Every live conference's routes together: what the relay should apply."""
        return ForwardingPlan.merge(c.plan for c in self._conferences.values())

    @property
    def ports_in_use(self) -> frozenset[int]:
        """The RTP ports (even; RTCP is + 1) handed out to live calls."""
        return self._pool.in_use

    def conferences(self) -> list[ConferenceSnapshot]:
        return [
            ConferenceSnapshot(
                uri=c.uri,
                invitees=tuple((i.uri, i.mode) for i in c.invitees.values()),
                connected=tuple(c.calls),
                subscribers=len(c.subscriptions),
                created_at=c.created_at,
                ends_at=c.ends_at,
            )
            for c in self._conferences.values()
        ]

    def end_conference(self, conference_uri: str, now: float, reason: str = "ended") -> None:
        conference = self._find(conference_uri)
        if conference is None:
            raise LocalProtocolError(f"no live conference {conference_uri!r}")
        self._end(conference, reason, now)
        self._drain(now)

    def end_all(self, now: float, reason: str = "the focus is shutting down") -> None:
        """Clean shutdown: BYE to every participant and anchor, terminated NOTIFYs."""
        for conference in list(self._conferences.values()):
            self._end(conference, reason, now)
        self._drain(now)

    # -- timers ----------------------------------------------------------------
    def _arm(self, when: float, kind: str, key: _TimerKey) -> None:
        heapq.heappush(self._timers, (when, next(self._sequence), kind, key))

    def _timer_live(self, when: float, kind: str, key: _TimerKey) -> bool:
        if isinstance(key, str):
            conference = self._conferences.get(key)
            return conference is not None and conference.ends_at == when
        if isinstance(key[1], int):
            entry = self._retransmits.get((key[0], key[1]))
            return entry is not None and entry.deadline == when
        found = self._subscription_by_key(key[0], key[1])
        return found is not None and found[1].expires_at == when

    def _next_own_timer(self) -> float | None:
        while self._timers:
            when, _, kind, key = self._timers[0]
            if self._timer_live(when, kind, key):
                return when
            heapq.heappop(self._timers)
        return None

    def _on_timer(self, kind: str, key: _TimerKey, now: float) -> None:
        if isinstance(key, str):
            conference = self._conferences.get(key)
            if conference is not None:
                self._end(conference, "the conference time limit was reached", now)
        elif isinstance(key[1], int):
            self._retransmit_2xx((key[0], key[1]), now)
        else:
            found = self._subscription_by_key(key[0], key[1])
            if found is not None:
                conference, sub = found
                self._notify(conference, sub, now, full=True, terminated="timeout")
                self._drop_subscription(conference, sub, "expired")

    # -- plumbing --------------------------------------------------------------
    def _drain(self, now: float) -> None:
        while (event := self._layer.next_event()) is not None:
            self._on_transaction_event(event, now)

    def _find(self, uri_text: str) -> _Conference | None:
        try:
            uri = parse_uri(uri_text)
        except SIPParseError:
            return None
        if not isinstance(uri, SipURI) or uri.user is None:
            return None
        return self._conferences.get(uri.user)

    def _respond(self, response: Response, now: float) -> None:
        try:
            self._layer.send_response(response, now)
        except LocalProtocolError as error:  # the transaction is gone (CANCEL raced us)
            self._events.append(MessageIgnored(reason=error.reason, summary=summary(response)))

    def _refuse(
        self,
        request: Request,
        status: int,
        reason: str,
        now: float,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._respond(
            make_response(
                request,
                status,
                to_tag=new_tag(),
                headers=[("Warning", warning_value(self._warn, reason)), *headers],
            ),
            now,
        )

    def _trusted(self, source: Address) -> bool:
        return is_trusted(source.host, self.config.trusted_networks)

    def _destination(self, dialog: Dialog, fallback: Address) -> Address:
        """Where an in-dialog request goes: the first route or the remote target.

        A host that is not an IP literal (name resolution is the I/O layer's
        business) falls back to where the dialog's request came from.
        """
        target, routes = dialog.request_target()
        uri = routes[0].uri if routes else target
        if not isinstance(uri, SipURI):
            return fallback
        host = uri.param("maddr") or uri.host
        host = host[1:-1] if host.startswith("[") else host
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return fallback
        transport = (uri.transport or fallback.transport).upper()
        port = uri.port or (5061 if transport == "TLS" else 5060)
        return Address(host, port, transport)

    def _send_in_dialog(
        self,
        dialog: Dialog,
        fallback: Address,
        method: str,
        now: float,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> tuple[TransactionId, Request] | None:
        try:
            request = dialog.create_request(
                method, headers=headers, body=body, content_type=content_type
            )
        except LocalProtocolError:
            return None  # the dialog has ended meanwhile
        tid = self._layer.send_request(request, self._destination(dialog, fallback), now)
        return tid, request

    def _session_id(self) -> int:
        return secrets.randbits(40)

    # -- transaction events ------------------------------------------------------
    def _on_transaction_event(self, event: Event, now: float) -> None:
        if isinstance(event, RequestReceived):
            self._guarded(event.request, event.source, now)
        elif isinstance(event, AckReceived):
            self._on_ack(event.request)
        elif isinstance(event, RequestCancelled):
            txn = self._layer.transaction(event.transaction_id)
            if txn is not None:
                invite = txn.request
                assert isinstance(invite, Request)
                self._refuse(invite, 487, "cancelled", now)
        elif isinstance(event, ResponseReceived):
            self._on_notify_answer(event.transaction_id, event.response)
        elif isinstance(event, (TransactionTimedOut, TransportFailed)):
            pending = self._notifies.get(event.transaction_id)
            if pending is not None:
                made_up = make_response(pending[2], event.status_hint, to_tag=new_tag())
                self._on_notify_answer(event.transaction_id, made_up)
        elif isinstance(event, TransactionTerminated):
            self._notifies.pop(event.transaction_id, None)
        elif isinstance(event, MessageDiscarded):
            self._events.append(MessageIgnored(reason=event.reason, summary=summary(event.message)))

    def _guarded(self, request: Request, source: Address, now: float) -> None:
        """Handle a request; a malformed header found late is answered, never raised."""
        try:
            self._on_request(request, source, now)
        except RemoteProtocolError as error:
            if request.method != "ACK":
                self._refuse(request, error.status_hint, error.reason, now, error.headers)
            self._events.append(MessageIgnored(reason=error.reason, summary=summary(request)))
        except LocalProtocolError as error:
            if request.method != "ACK":
                self._refuse(request, 500, error.reason, now)
            self._events.append(MessageIgnored(reason=error.reason, summary=summary(request)))

    def _on_request(self, request: Request, source: Address, now: float) -> None:
        method = request.method
        if request.to_addr.tag is not None:
            self._in_dialog(request, source, now)
            return
        if method == "ACK":
            return
        if method == "OPTIONS":
            self._respond(
                make_response(
                    request,
                    200,
                    to_tag=new_tag(),
                    headers=[
                        ("Allow", _ALLOW),
                        ("Accept", f"{SDP_TYPE}, multipart/mixed, {RESOURCE_LISTS_TYPE}"),
                        ("Supported", "recipient-list-invite"),
                        ("Allow-Events", "conference"),
                    ],
                ),
                now,
            )
            return
        uri = request.uri
        user = uri.user if isinstance(uri, SipURI) else None
        if method == "INVITE":
            if user is not None and user in self.config.factory_users:
                self._create(request, source, now)
            else:
                self._join(request, source, now)
            return
        if method == "SUBSCRIBE":
            self._subscribe(request, source, now)
            return
        self._refuse(request, 405, f"the focus does not take {method}", now, [("Allow", _ALLOW)])

    # -- the anchor: conference creation and updates -----------------------------------
    def _create(self, request: Request, source: Address, now: float) -> None:
        try:
            check_request(request, _POLICY)
        except RequestRejectedError as error:
            self._refuse(request, error.status_hint, error.reason, now, error.headers)
            return
        if len(self._conferences) >= self.config.max_conferences:
            self._refuse(request, 503, "too many live conferences", now, [("Retry-After", "30")])
            return
        try:
            entries = _list_part(request)
            if entries is None:
                raise RemoteProtocolError(
                    f"no {RESOURCE_LISTS_TYPE} part (RFC 5366) in the INVITE", status_hint=400
                )
            if not entries:
                raise RemoteProtocolError("the resource list names nobody", status_hint=400)
            offer = _sdp_part(request)
            session_id = self._session_id()
            body = self._anchor_sdp(offer, session_id, 1)
        except RemoteProtocolError as error:
            self._refuse(request, error.status_hint, error.reason, now, error.headers)
            return
        user = "conf-" + secrets.token_hex(16)
        host = self.config.local.host
        conference_uri = str(SipURI(host=host, port=self.config.local.port, user=user))
        anchor = self._dialogs.accept(request, local_contact=f"<{conference_uri}>;isfocus")
        conference = _Conference(
            user=user,
            uri=conference_uri,
            anchor=anchor,
            anchor_source=source,
            created_at=now,
            ends_at=now + self.config.conference_ttl,
            session_id=session_id,
        )
        self._add_invitees(conference, entries)
        self._conferences[user] = conference
        self._owners[anchor.id] = _Owner(user, "anchor")
        response = anchor.create_response(
            request,
            200,
            headers=[("Allow", _ALLOW), ("Allow-Events", "conference")],
            body=body,
            content_type=SDP_TYPE,
        )
        self._respond_2xx(conference, anchor, request, response, source, now)
        self._arm(conference.ends_at, "ttl", user)
        self._events.append(
            ConferenceCreated(
                conference_uri=conference_uri,
                call_id=request.call_id,
                invitees=tuple(conference.invitees),
            )
        )

    def _anchor_sdp(self, offer: bytes | None, session_id: int, version: int) -> bytes:
        """The anchor's SDP: every offered line rejected, or (no offer) an inactive offer."""
        address = self.config.media_address
        if offer is None:
            return build_offer(
                Mode.CHAT,
                address=address,
                audio_port=9,
                video_port=None,
                session_id=session_id,
                version=version,
                username="vidim-focus",
                from_focus=True,
            )
        return build_answer(
            offer,
            Mode.CHAT,
            address=address,
            ports={},
            session_id=session_id,
            version=version,
            username="vidim-focus",
        )

    def _add_invitees(self, conference: _Conference, entries: Iterable[ListEntry]) -> list[str]:
        added = []
        for entry in entries:
            if entry.uri in conference.invitees:
                continue
            conference.invitees[entry.uri] = _Invitee(
                uri=entry.uri,
                aor=_aor(entry.uri),
                mode=entry.mode if entry.mode is not None else self.config.default_mode,
                credential=entry.credential,
                display_name=entry.display_name,
            )
            added.append(entry.uri)
        return added

    def _anchor_reinvite(
        self, conference: _Conference, request: Request, source: Address, now: float
    ) -> None:
        dialog = conference.anchor
        try:
            check_request(request, _POLICY)
            entries = _list_part(request)
            conference.sdp_version += 1
            body = self._anchor_sdp(
                _sdp_part(request), conference.session_id, conference.sdp_version
            )
        except RemoteProtocolError as error:
            self._respond(
                dialog.create_response(
                    request,
                    error.status_hint,
                    headers=[("Warning", warning_value(self._warn, error.reason)), *error.headers],
                ),
                now,
            )
            return
        added = self._add_invitees(conference, entries or ())
        response = dialog.create_response(request, 200, body=body, content_type=SDP_TYPE)
        self._respond_2xx(conference, dialog, request, response, source, now)
        if added:
            self._events.append(InviteesAdded(conference_uri=conference.uri, invitees=tuple(added)))

    # -- 2xx retransmission ------------------------------------------------------------
    def _respond_2xx(
        self,
        conference: _Conference,
        dialog: Dialog,
        request: Request,
        response: Response,
        source: Address,
        now: float,
    ) -> None:
        self._respond(response, now)
        if request.method != "INVITE" or source.reliable:
            return
        t1 = self.config.transactions.t1
        key = (request.call_id, request.cseq.seq)
        self._retransmits[key] = entry = _Retransmit(
            response=response,
            destination=source,
            conference=conference.user,
            dialog=dialog.id,
            interval=t1,
            deadline=now + t1,
            give_up=now + 64 * t1,
        )
        self._arm(entry.deadline, "2xx", key)

    def _retransmit_2xx(self, key: tuple[str, int], now: float) -> None:
        entry = self._retransmits.get(key)
        if entry is None:
            return
        if now >= entry.give_up:
            # RFC 3261 13.3.1.4: no ACK within 64*T1: the session is over.
            del self._retransmits[key]
            self._no_ack(entry, now)
            return
        self._layer.send_stateless(entry.response, entry.destination)
        entry.interval = min(2 * entry.interval, self.config.transactions.t2)
        entry.deadline = min(now + entry.interval, entry.give_up)
        self._arm(entry.deadline, "2xx", key)

    def _no_ack(self, entry: _Retransmit, now: float) -> None:
        conference = self._conferences.get(entry.conference)
        owner = self._owners.get(entry.dialog)
        if conference is None or owner is None:
            return
        if owner.role == "anchor":
            self._end(conference, "the allocator never acknowledged the conference", now)
        elif owner.role == "participant":
            call = conference.calls.get(owner.uri)
            if call is not None and call.dialog.id == entry.dialog:
                self._send_in_dialog(call.dialog, call.source, "BYE", now)
                self._leave(conference, call, "no ACK for the 200", now)

    def _on_ack(self, ack: Request) -> None:
        try:
            key = (ack.call_id, ack.cseq.seq)
        except SIPParseError:
            return
        self._retransmits.pop(key, None)

    # -- participants ----------------------------------------------------------------
    def _refuse_participant(
        self,
        conference: _Conference | None,
        request: Request,
        source: Address,
        status: int,
        reason: str,
        now: float,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._refuse(request, status, reason, now, headers)
        self._events.append(
            ParticipantRefused(
                conference_uri=conference.uri if conference is not None else None,
                call_id=request.call_id,
                status=status,
                reason=reason,
                source=f"{source.host}:{source.port}",
            )
        )

    def _identify(
        self, conference: _Conference, request: Request, source: Address
    ) -> tuple[_Invitee, str] | None:
        uri = request.uri
        key = uri.param("key") if isinstance(uri, SipURI) else None
        if key:
            given = unescape(key).encode("utf-8", "surrogateescape")
            for invitee in conference.invitees.values():
                if invitee.credential and secrets.compare_digest(
                    invitee.credential.encode("utf-8"), given
                ):
                    return invitee, "key"
        if self._trusted(source):
            by_aor = {i.aor: i for i in conference.invitees.values()}
            for value in request.headers.get_all("p-asserted-identity"):
                for asserted in parse_name_addr_list(value):
                    named = by_aor.get(_aor(str(asserted.uri)))
                    if named is not None:
                        return named, "asserted"
        return None

    def _join(self, request: Request, source: Address, now: float) -> None:
        conference = self._find(str(request.uri))
        if conference is None:
            self._refuse_participant(None, request, source, 404, "no such conference", now)
            return
        try:
            check_request(request, _POLICY)
        except RequestRejectedError as error:
            self._refuse_participant(
                conference, request, source, error.status_hint, error.reason, now, error.headers
            )
            return
        found = self._identify(conference, request, source)
        if found is None:
            self._refuse_participant(conference, request, source, 403, NOT_INVITED, now)
            return
        invitee, how = found
        if invitee.mode is Mode.CHAT:
            self._refuse_participant(
                conference, request, source, 488, "chat participants take part by IM", now
            )
            return
        offer = _sdp_part(request)
        if offer is None:
            self._refuse_participant(
                conference, request, source, 488, "an SDP offer is required in the INVITE", now
            )
            return
        session_id = self._session_id()
        negotiated = self._negotiate(
            conference, request, source, offer, invitee.mode, {}, session_id, 1, now
        )
        if negotiated is None:
            return
        answer, ports, streams = negotiated
        try:
            dialog = self._dialogs.accept(request, local_contact=conference.contact)
        except RemoteProtocolError as error:
            for port in ports.values():
                self._pool.release(port)
            self._refuse_participant(
                conference, request, source, error.status_hint, error.reason, now
            )
            return
        previous = conference.calls.get(invitee.uri)
        if previous is not None:
            # The invitee called again (another device, or a call the focus
            # never heard end): the new call replaces the old one.
            self._send_in_dialog(previous.dialog, previous.source, "BYE", now)
            self._hang_up(conference, previous, "replaced by a new call")
        call = _Call(
            uri=invitee.uri,
            mode=invitee.mode,
            dialog=dialog,
            source=source,
            streams=streams,
            ports=ports,
            answer=answer,
            session_id=session_id,
        )
        conference.calls[invitee.uri] = call
        conference.joined = True
        self._owners[dialog.id] = _Owner(conference.user, "participant", invitee.uri)
        response = dialog.create_response(
            request, 200, headers=[("Allow", _ALLOW)], body=answer, content_type=SDP_TYPE
        )
        self._respond_2xx(conference, dialog, request, response, source, now)
        self._events.append(
            ParticipantAdmitted(
                conference_uri=conference.uri,
                uri=invitee.uri,
                mode=invitee.mode,
                call_id=request.call_id,
                how=how,
            )
        )
        user = UserInfo(
            entity=invitee.uri,
            display_name=invitee.display_name,
            state="full",
            status="connected",
            mode=invitee.mode,
            media=tuple(s.kind for s in streams),
        )
        conference.roster[invitee.uri] = user
        self._notify_all(conference, [user], now)
        self._replan(conference)

    def _negotiate(
        self,
        conference: _Conference,
        request: Request,
        source: Address,
        offer: bytes,
        mode: Mode,
        current: dict[str, int],
        session_id: int,
        version: int,
        now: float,
    ) -> tuple[bytes, dict[str, int], tuple[StreamInfo, ...]] | None:
        """Answer ``offer`` for ``mode``, reusing ``current`` ports; None when refused (sent).

        Ports of kinds the new answer no longer uses are *not* released
        here: the caller does, once the answer is sent.
        """
        fresh: list[int] = []
        ports: dict[str, int] = {}

        def allocate(index: int, kind: str) -> int:
            port = current.get(kind)
            if port is None:
                port = self._pool.allocate()
                fresh.append(port)
            ports[kind] = port
            return port

        def refuse(status: int, reason: str, headers: Iterable[tuple[str, str]] = ()) -> None:
            for port in fresh:
                self._pool.release(port)
            if request.to_addr.tag is None:
                self._refuse_participant(conference, request, source, status, reason, now, headers)
            else:
                call_dialog = self._dialogs.match_request(request)
                if call_dialog is not None:
                    warning = ("Warning", warning_value(self._warn, reason))
                    self._respond(
                        call_dialog.create_response(request, status, headers=[warning, *headers]),
                        now,
                    )

        try:
            answer = build_answer(
                offer,
                mode,
                address=self.config.media_address,
                ports=allocate,
                session_id=session_id,
                version=version,
                username="vidim-focus",
            )
            streams = streams_from_sdp(parse_media(offer), parse_media(answer))
        except PortsExhaustedError:
            refuse(503, "no media ports left on the focus", [("Retry-After", "30")])
            return None
        except SDPError as error:
            refuse(error.status_hint, error.reason)
            return None
        return answer, ports, streams

    def _participant_update(
        self,
        conference: _Conference,
        call: _Call,
        request: Request,
        source: Address,
        now: float,
    ) -> None:
        """A re-INVITE or UPDATE from a participant: hold, resume, new ports, refresh."""
        dialog = call.dialog
        try:
            offer = _sdp_part(request)
        except SIPParseError as error:
            warning = ("Warning", warning_value(self._warn, error.reason))
            self._respond(dialog.create_response(request, 400, headers=[warning]), now)
            return
        if offer is None:
            if request.method == "UPDATE":
                self._respond(dialog.create_response(request, 200), now)
                return
            # A re-INVITE without an offer: ours (the current answer) goes in the 200;
            # the answer in the ACK is not needed, the streams stay as they are.
            call.version += 1
            body = self._reversion(call.answer, call.version)
            response = dialog.create_response(request, 200, body=body, content_type=SDP_TYPE)
            self._respond_2xx(conference, dialog, request, response, source, now)
            return
        negotiated = self._negotiate(
            conference,
            request,
            source,
            offer,
            call.mode,
            call.ports,
            call.session_id,
            call.version + 1,
            now,
        )
        if negotiated is None:
            return
        answer, ports, streams = negotiated
        for kind, port in call.ports.items():
            if ports.get(kind) != port:
                self._pool.release(port)
        call.version += 1
        call.answer, call.ports, call.streams = answer, ports, streams
        response = dialog.create_response(request, 200, body=answer, content_type=SDP_TYPE)
        self._respond_2xx(conference, dialog, request, response, source, now)
        media = tuple(s.kind for s in streams)
        user = conference.roster.get(call.uri)
        if user is not None and user.media != media:
            user = dataclasses.replace(user, media=media)
            conference.roster[call.uri] = user
            self._notify_all(conference, [user], now)
        self._replan(conference)

    def _reversion(self, sdp: bytes, version: int) -> bytes:
        """The same SDP with its o= line's version replaced (RFC 3264 section 8)."""
        lines = sdp.split(b"\r\n")
        for index, line in enumerate(lines):
            if line.startswith(b"o="):
                fields = line.split(b" ")
                if len(fields) >= 3:
                    fields[2] = str(version).encode()
                    lines[index] = b" ".join(fields)
                break
        return b"\r\n".join(lines)

    def _hang_up(self, conference: _Conference, call: _Call, reason: str) -> None:
        """Forget a call: free its ports, stop its 2xx, report it (no roster change)."""
        if conference.calls.get(call.uri) is call:
            del conference.calls[call.uri]
        for port in call.ports.values():
            self._pool.release(port)
        self._owners.pop(call.dialog.id, None)
        for key in [k for k, r in self._retransmits.items() if r.dialog == call.dialog.id]:
            del self._retransmits[key]
        if call.dialog.terminated:
            self._dialogs.remove(call.dialog)
        self._events.append(
            ParticipantLeft(conference_uri=conference.uri, uri=call.uri, reason=reason)
        )

    def _leave(self, conference: _Conference, call: _Call, reason: str, now: float) -> None:
        """A participant left: roster update, or the end when it was the last one."""
        self._hang_up(conference, call, reason)
        if not conference.calls and conference.joined:
            self._end(conference, "the last participant left", now, also_left=[call.uri])
            return
        user = UserInfo(entity=call.uri, state="partial", status="disconnected")
        old = conference.roster.get(call.uri)
        if old is not None:
            conference.roster[call.uri] = dataclasses.replace(old, status="disconnected")
        self._notify_all(conference, [user], now)
        self._replan(conference)

    def _replan(self, conference: _Conference) -> None:
        plan = forwarding_plan(
            ParticipantMedia(uri=c.uri, mode=c.mode, streams=c.streams)
            for c in conference.calls.values()
        )
        if plan != conference.plan:
            conference.plan = plan
            self._events.append(MediaPlanChanged(conference_uri=conference.uri, plan=plan))

    # -- in-dialog requests ----------------------------------------------------------
    def _in_dialog(self, request: Request, source: Address, now: float) -> None:
        dialog, automatic = self._dialogs.receive_request(request)
        if automatic is not None:
            self._respond(automatic, now)
            if automatic.status >= 300:
                return
        if dialog is None:
            return
        method = request.method
        if method == "ACK":
            self._on_ack(request)
            return
        owner = self._owners.get(dialog.id)
        conference = self._conferences.get(owner.conference) if owner is not None else None
        if owner is None or conference is None:
            if automatic is None:
                self._respond(dialog.create_response(request, 481), now)
            return
        if method == "BYE":
            if owner.role == "anchor":
                self._end(conference, "the allocator ended the conference", now)
            elif owner.role == "participant":
                call = conference.calls.get(owner.uri)
                if call is not None and call.dialog is dialog:
                    self._leave(conference, call, "hung up", now)
            else:
                sub = next((s for s in conference.subscriptions if s.dialog is dialog), None)
                if sub is not None:
                    self._drop_subscription(conference, sub, "BYE")
            return
        if method in ("INVITE", "UPDATE"):
            if owner.role == "anchor":
                if method == "INVITE":
                    self._anchor_reinvite(conference, request, source, now)
                else:
                    self._respond(dialog.create_response(request, 200), now)
                return
            call = conference.calls.get(owner.uri)
            if owner.role == "participant" and call is not None and call.dialog is dialog:
                self._participant_update(conference, call, request, source, now)
                return
        if method == "SUBSCRIBE" and owner.role == "subscription":
            self._refresh(conference, dialog, request, now)
            return
        if method in ("OPTIONS", "INFO"):
            self._respond(dialog.create_response(request, 200, headers=[("Allow", _ALLOW)]), now)
            return
        self._respond(dialog.create_response(request, 501, headers=[("Allow", _ALLOW)]), now)

    # -- the conference event package (RFC 4575) ----------------------------------------
    def _subscribe(self, request: Request, source: Address, now: float) -> None:
        conference = self._find(str(request.uri))
        if conference is None:
            self._refuse(request, 404, "no such conference", now)
            return
        value = request.headers.get("event")
        event = parse_event(value) if value is not None else None  # SIPParseError -> 400
        if event is None or event.package.lower() != "conference":
            self._refuse(
                request,
                489,
                "only the conference event package is served",
                now,
                [("Allow-Events", "conference")],
            )
            return
        if not self._trusted(source) and self._identify(conference, request, source) is None:
            self._refuse(request, 403, "not allowed to watch this conference", now)
            return
        expires = self._granted(request)
        dialog = self._dialogs.accept(request, local_contact=f"<{conference.uri}>")
        granted = [("Expires", str(expires))]
        self._respond(dialog.create_response(request, 200, headers=granted), now)
        sub = _Subscription(
            dialog=dialog,
            source=source,
            subscriber=str(request.from_addr.uri),
            event=event.package + (f";id={event.id}" if event.id is not None else ""),
            expires_at=now + expires,
        )
        if expires == 0:  # a fetch: state once, then done (RFC 6665 4.4.3)
            self._notify(conference, sub, now, full=True, terminated="timeout")
            self._dialogs.remove(dialog)
            return
        conference.subscriptions.append(sub)
        self._owners[dialog.id] = _Owner(conference.user, "subscription", sub.subscriber)
        self._arm(sub.expires_at, "sub", (conference.user, dialog.id))
        self._events.append(
            SubscriptionStarted(
                conference_uri=conference.uri, subscriber=sub.subscriber, expires=expires
            )
        )
        self._notify(conference, sub, now, full=True)

    def _granted(self, request: Request) -> int:
        value = (request.headers.get("expires") or "").strip()
        limit = self.config.max_subscription_expires
        if not value.isascii() or not value.isdigit():
            return limit
        return min(int(value), limit)

    def _refresh(
        self, conference: _Conference, dialog: Dialog, request: Request, now: float
    ) -> None:
        sub = next((s for s in conference.subscriptions if s.dialog is dialog), None)
        if sub is None:
            self._respond(dialog.create_response(request, 481), now)
            return
        expires = self._granted(request)
        granted = [("Expires", str(expires))]
        self._respond(dialog.create_response(request, 200, headers=granted), now)
        if expires == 0:
            self._notify(conference, sub, now, full=True, terminated="timeout")
            self._drop_subscription(conference, sub, "unsubscribed")
            return
        sub.expires_at = now + expires
        self._arm(sub.expires_at, "sub", (conference.user, dialog.id))
        self._notify(conference, sub, now, full=True)

    def _subscription_by_key(
        self, user: str, dialog_id: DialogId
    ) -> tuple[_Conference, _Subscription] | None:
        conference = self._conferences.get(user)
        if conference is None:
            return None
        for sub in conference.subscriptions:
            if sub.dialog.id == dialog_id:
                return conference, sub
        return None

    def _notify(
        self,
        conference: _Conference,
        sub: _Subscription,
        now: float,
        *,
        full: bool = False,
        users: Iterable[UserInfo] = (),
        terminated: str | None = None,
        active: bool = True,
    ) -> None:
        sub.version += 1
        connected = sum(1 for u in conference.roster.values() if u.status == "connected")
        info = ConferenceInfo(
            entity=conference.uri,
            version=sub.version,
            state="full" if full else "partial",
            users=tuple(conference.roster.values()) if full else tuple(users),
            active=active,
            user_count=connected if active else 0,
        )
        if terminated is not None:
            state = f"terminated;reason={terminated}"
        else:
            state = f"active;expires={max(0, int(sub.expires_at - now))}"
        sent = self._send_in_dialog(
            sub.dialog,
            sub.source,
            "NOTIFY",
            now,
            headers=[("Event", sub.event), ("Subscription-State", state)],
            body=build_conference_info(info),
            content_type=CONFERENCE_INFO_TYPE,
        )
        if sent is not None:
            self._notifies[sent[0]] = (conference.user, sub, sent[1])

    def _notify_all(self, conference: _Conference, users: list[UserInfo], now: float) -> None:
        for sub in list(conference.subscriptions):
            self._notify(conference, sub, now, users=users)

    def _on_notify_answer(self, tid: TransactionId, response: Response) -> None:
        pending = self._notifies.get(tid)
        if pending is None or response.status < 300:
            return
        if response.status in (401, 407, 491):
            return  # not a refusal of the subscription
        user, sub, _ = pending
        conference = self._conferences.get(user)
        if conference is not None and sub in conference.subscriptions:
            self._drop_subscription(conference, sub, f"NOTIFY answered {response.status}")

    def _drop_subscription(self, conference: _Conference, sub: _Subscription, reason: str) -> None:
        if sub in conference.subscriptions:
            conference.subscriptions.remove(sub)
            self._events.append(
                SubscriptionEnded(
                    conference_uri=conference.uri, subscriber=sub.subscriber, reason=reason
                )
            )
        self._owners.pop(sub.dialog.id, None)
        self._dialogs.remove(sub.dialog)

    # -- the end ---------------------------------------------------------------------
    def _end(
        self, conference: _Conference, reason: str, now: float, *, also_left: Iterable[str] = ()
    ) -> None:
        if self._conferences.get(conference.user) is not conference:
            return
        del self._conferences[conference.user]
        left = list(also_left)
        for call in list(conference.calls.values()):
            self._send_in_dialog(call.dialog, call.source, "BYE", now)
            self._hang_up(conference, call, "conference ended")
            left.append(call.uri)
        for uri in left:
            old = conference.roster.get(uri)
            if old is not None:
                conference.roster[uri] = dataclasses.replace(old, status="disconnected")
        gone = [UserInfo(entity=uri, state="partial", status="disconnected") for uri in left]
        for sub in list(conference.subscriptions):
            self._notify(conference, sub, now, users=gone, terminated="noresource", active=False)
            self._drop_subscription(conference, sub, "conference ended")
        anchor = conference.anchor
        if not anchor.terminated:
            self._send_in_dialog(anchor, conference.anchor_source, "BYE", now)
        for key in [k for k, r in self._retransmits.items() if r.conference == conference.user]:
            del self._retransmits[key]
        for dialog_id in [d for d, o in self._owners.items() if o.conference == conference.user]:
            del self._owners[dialog_id]
        self._dialogs.prune()
        if conference.plan.routes:
            conference.plan = ForwardingPlan()
            self._events.append(
                MediaPlanChanged(conference_uri=conference.uri, plan=conference.plan)
            )
        self._events.append(ConferenceEnded(conference_uri=conference.uri, reason=reason))
