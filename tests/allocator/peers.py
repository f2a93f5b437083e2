"""In-memory peers for allocator tests, on a virtual clock.

A :class:`SimNetwork` carries serialized messages between the allocator and
fake SIP elements built from vidim's own SIP core (:class:`Phone`,
:class:`Focus`), in the manner of aioquic's ``client_and_server``/``transfer``
helpers: no sockets, no sleeps, time moves to the next deadline.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from vidim.allocator.allocator import Allocator
from vidim.allocator.events import AllocatorEvent
from vidim.conference_info import (
    CONFERENCE_INFO_TYPE,
    ConferenceInfo,
    UserInfo,
    build_conference_info,
)
from vidim.resource_lists import ListEntry, parse_resource_list
from vidim.sip import (
    Address,
    Challenger,
    Dialog,
    DialogManager,
    Message,
    RemoteProtocolError,
    Request,
    RequestReceived,
    Response,
    ResponseReceived,
    TransactionLayer,
    TransactionTimedOut,
    Via,
    error_response,
    make_response,
    new_branch,
    new_tag,
    parse_message,
)
from vidim.vocabulary import Mode

LATENCY = 0.001
ALLOCATOR = Address("127.0.0.1", 5070)
FOCUS = Address("127.0.0.1", 5080)
#: The fake IM server: requests sent here go to the registered peer of their
#: Request-URI (a location service and nothing more); unknown users get 404.
PROXY = Address("127.0.0.1", 5060)


@dataclass
class Delivery:
    when: float
    source: Address
    destination: Address
    wire: bytes


class Peer:
    """A SIP element with its own transaction layer; subclasses say what it does."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.layer = TransactionLayer()
        self.requests: list[Request] = []
        self.responses: list[Response] = []
        self.timeouts: list[Request] = []
        #: When False, everything sent to this peer is lost.
        self.alive = True

    def handle(self, event: object, now: float) -> None:
        if isinstance(event, RequestReceived):
            self.requests.append(event.request)
            self.on_request(event.request, now)
        elif isinstance(event, ResponseReceived):
            self.responses.append(event.response)
            self.on_response(event.response, now)
        elif isinstance(event, TransactionTimedOut):
            self.timeouts.append(event.request)

    def on_request(self, request: Request, now: float) -> None:
        raise NotImplementedError

    def on_response(self, response: Response, now: float) -> None:
        pass

    def respond(
        self,
        request: Request,
        status: int,
        now: float,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        response = make_response(
            request, status, to_tag=new_tag(), headers=headers or [], body=body
        )
        self.layer.send_response(response, now)


class SimNetwork:
    """Delivers datagrams between the allocator and peers after LATENCY."""

    def __init__(self, allocator: Allocator, *peers: Peer) -> None:
        self.allocator = allocator
        self.peers = {(p.address.host, p.address.port): p for p in peers}
        self.now = 0.0
        self._queue: list[tuple[float, int, Address, Address, bytes]] = []
        self._counter = itertools.count()
        #: Every datagram sent: (time, source, destination, first line).
        self.log: list[tuple[float, Address, Address, str]] = []
        self.events: list[AllocatorEvent] = []
        #: Rules that drop a datagram: called with (source, destination, wire).
        self.drop: list[Callable[[Address, Address, bytes], bool]] = []
        #: The fake proxy's location service: address of record -> peer.
        self.registrar: dict[str, Peer] = {}
        #: Rules that make the transport fail one of the allocator's messages: called
        #: with (message, destination), they return what the transport says, or None.
        self.fail: list[Callable[[Message, Address], str | None]] = []
        #: When set, the proxy challenges the allocator's requests (407), as
        #: Kamailio's auth module does; ``challenged`` picks which (default: all).
        self.challenger: Challenger | None = None
        self.challenged: Callable[[Request], bool] = lambda request: True
        #: The requests the proxy refused (challenged or forbidden).
        self.proxy_refused: list[Request] = []

    def register(self, aor: str, peer: Peer) -> None:
        self.registrar[aor] = peer

    def add(self, peer: Peer) -> None:
        self.peers[(peer.address.host, peer.address.port)] = peer

    def _post(self, source: Address, messages: list[tuple[Message, Address]]) -> None:
        for message, destination in messages:
            wire = message.to_bytes()
            self.log.append((self.now, source, destination, wire.split(b"\r\n", 1)[0].decode()))
            if any(rule(source, destination, wire) for rule in self.drop):
                continue
            heapq.heappush(
                self._queue, (self.now + LATENCY, next(self._counter), source, destination, wire)
            )

    def flush(self) -> None:
        while failed := self._post_allocator():
            for message, destination, reason in failed:
                self.allocator.send_failed(message, destination, reason, self.now)
        self.events.extend(self.allocator.events())
        for peer in self.peers.values():
            while (event := peer.layer.next_event()) is not None:
                peer.handle(event, self.now)
            self._post(peer.address, peer.layer.messages_to_send())

    def _post_allocator(self) -> list[tuple[Message, Address, str]]:
        """Post the allocator's messages; those a ``fail`` rule fails, with the reason."""
        sent, failed = [], []
        for message, destination in self.allocator.messages_to_send():
            reasons = [r for rule in self.fail if (r := rule(message, destination)) is not None]
            if reasons:
                failed.append((message, destination, reasons[0]))
            else:
                sent.append((message, destination))
        self._post(ALLOCATOR, sent)
        return failed

    def _deadlines(self) -> list[float]:
        out = [d for d in [self.allocator.get_timer()] if d is not None]
        out += [d for p in self.peers.values() if (d := p.layer.get_timer()) is not None]
        if self._queue:
            out.append(self._queue[0][0])
        return out

    def run(self, until: float) -> None:
        """Move time forward, event by event, up to ``until`` (inclusive)."""
        self.flush()
        while True:
            deadlines = [d for d in self._deadlines() if d <= until]
            if not deadlines:
                self.now = max(self.now, until)
                return
            self.now = max(self.now, min(deadlines))
            while self._queue and self._queue[0][0] <= self.now:
                _, _, source, destination, wire = heapq.heappop(self._queue)
                key = (destination.host, destination.port)
                if key == (PROXY.host, PROXY.port):
                    self._proxy(source, wire)
                elif key == (ALLOCATOR.host, ALLOCATOR.port):
                    self.allocator.receive_datagram(wire, source, self.now)
                elif key in self.peers and self.peers[key].alive:
                    self.peers[key].layer.receive(parse_message(wire), source, self.now)
            self.allocator.handle_timer(self.now)
            for peer in self.peers.values():
                peer.layer.handle_timer(self.now)
            self.flush()

    def _proxy(self, source: Address, wire: bytes) -> None:
        message = parse_message(wire)
        if not isinstance(message, Request):
            return
        if self._refused_by_proxy(message, source):
            return
        uri = message.uri
        aor = f"{uri.scheme}:{uri.user}@{uri.host}" if hasattr(uri, "user") else str(uri)
        peer = self.registrar.get(aor)
        if peer is None:
            if message.method != "ACK":
                self._post(PROXY, [(make_response(message, 404, to_tag=new_tag()), source)])
            return
        if peer.alive:
            peer.layer.receive(message, source, self.now)

    def _refused_by_proxy(self, request: Request, source: Address) -> bool:
        """A 407 (or 403) from the proxy's challenger, for a request it wants credentials on."""
        if self.challenger is None or source != ALLOCATOR or request.method in ("ACK", "CANCEL"):
            return False
        if not self.challenged(request):
            return False
        try:
            self.challenger.check(request, self.now)
        except RemoteProtocolError as error:
            refusal = error_response(request, error, warning_host="proxy", to_tag=new_tag())
            self._post(PROXY, [(refusal, source)])
            self.proxy_refused.append(request)
            return True
        return False

    def advance(self, seconds: float) -> None:
        self.run(self.now + seconds)

    def sent(self, prefix: str) -> list[str]:
        """First lines of the datagrams sent so far that start with ``prefix``."""
        return [line for _, _, _, line in self.log if line.startswith(prefix)]

    def of_type(self, kind: type[AllocatorEvent]) -> list[AllocatorEvent]:
        return [e for e in self.events if isinstance(e, kind)]


class Phone(Peer):
    """A softphone: answers OPTIONS as configured, takes MESSAGEs, sends requests."""

    def __init__(
        self,
        user: str,
        address: Address,
        *,
        options: str = "sdp",
        audio: bool = True,
        video: bool = True,
        message_status: int = 200,
    ) -> None:
        super().__init__(address)
        self.user = user
        self.uri = f"sip:{user}@example.com"
        #: "sdp" (answer with an SDP of its media), "tags" (Contact feature tags),
        #: "plain" (200 with nothing), "silent", or a status code as text ("404").
        self.options = options
        self.audio = audio
        self.video = video
        self.message_status = message_status
        #: When set, MESSAGEs need credentials (401), as a UA that challenges does.
        self.challenger: Challenger | None = None

    @property
    def messages(self) -> list[Request]:
        return [r for r in self.requests if r.method == "MESSAGE"]

    def texts(self) -> list[str]:
        return [r.body.decode() for r in self.messages]

    def on_request(self, request: Request, now: float) -> None:
        if request.method == "OPTIONS":
            if self.options == "silent":
                return
            if self.options.isdigit():
                self.respond(request, int(self.options), now)
                return
            headers: list[tuple[str, str]] = []
            body = b""
            if self.options == "sdp":
                lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
                if self.audio:
                    lines.append("m=audio 4000 RTP/AVP 0")
                if self.video:
                    lines.append("m=video 4002 RTP/AVP 96")
                    lines.append("a=rtpmap:96 VP8/90000")
                body = ("\r\n".join(lines) + "\r\n").encode()
                headers.append(("Content-Type", "application/sdp"))
            elif self.options == "tags":
                tags = "".join(
                    f";{t}" for t, on in (("audio", self.audio), ("video", self.video)) if on
                )
                headers.append(
                    ("Contact", f"<sip:{self.user}@{self.address.host}:{self.address.port}>{tags}")
                )
            self.respond(request, 200, now, headers=headers, body=body)
        elif request.method == "MESSAGE":
            if self.challenger is not None:
                try:
                    self.challenger.check(request, now)
                except RemoteProtocolError as error:
                    refusal = error_response(
                        request, error, warning_host=self.user, to_tag=new_tag()
                    )
                    self.layer.send_response(refusal, now)
                    return
            self.respond(request, self.message_status, now)
        else:
            self.respond(request, 405, now)

    def send_message(
        self,
        now: float,
        *,
        to: str = "sip:vidim@example.com",
        text: str = "",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        content_type: str = "text/plain",
        call_id: str | None = None,
    ) -> Request:
        payload = text.encode() if body is None else body
        request = Request(
            "MESSAGE",
            to,
            [
                (
                    "Via",
                    f"SIP/2.0/UDP {self.address.host}:{self.address.port};branch={new_branch()};rport",
                ),
                ("Max-Forwards", "70"),
                ("From", f"<{self.uri}>;tag={new_tag()}"),
                ("To", f"<{to}>"),
                ("Call-ID", call_id or f"{new_tag()}@{self.address.host}"),
                ("CSeq", "1 MESSAGE"),
                *(headers or []),
                *([("Content-Type", content_type)] if payload else []),
            ],
            payload,
        )
        self.layer.send_request(request, ALLOCATOR, now)
        return request

    def statuses(self) -> list[int]:
        return [r.status for r in self.responses if r.cseq.method == "MESSAGE"]


@dataclass
class FocusConference:
    uri: str
    anchor: Dialog
    participants: list[ListEntry]
    invite: Request
    subscribers: list[Dialog] = field(default_factory=list)
    version: int = 0
    ended: bool = False
    roster: dict[str, UserInfo] = field(default_factory=dict)


class Focus(Peer):
    """An RFC 4579 conference factory, as the built-in focus will be.

    ``behaviour``: "ok", "silent" (no answer at all), or a status as text
    ("503", "403"); "no-isfocus" answers 200 without the ;isfocus Contact.
    """

    def __init__(self, address: Address = FOCUS, *, behaviour: str = "ok") -> None:
        super().__init__(address)
        self.behaviour = behaviour
        self.dialogs = DialogManager(
            local_via=Via("UDP", address.host, address.port), warn_agent="focus"
        )
        self.conferences: list[FocusConference] = []
        self._count = itertools.count(1)
        #: When set, a new conference's INVITE needs credentials (401), and so
        #: do the in-dialog requests whose methods are in ``challenged``.
        self.challenger: Challenger | None = None
        self.challenged: frozenset[str] = frozenset()

    @property
    def host(self) -> str:
        return f"{self.address.host}:{self.address.port}"

    def on_request(self, request: Request, now: float) -> None:
        method = request.method
        if self.behaviour == "silent":
            return
        initial = method == "INVITE" and request.to_addr.tag is None
        if (initial or method in self.challenged) and self._refused(request, now):
            return
        if initial:
            if self.behaviour.isdigit():
                self.respond(request, int(self.behaviour), now)
                return
            entries: list[ListEntry] = []
            for part in request.body_parts():
                if (
                    part.content_type is not None
                    and part.content_type.mime == "application/resource-lists+xml"
                ):
                    entries = parse_resource_list(part.body)
            number = next(self._count)
            uri = f"sip:conf-{number}@{self.host}"
            contact = f"<{uri}>" if self.behaviour == "no-isfocus" else f"<{uri}>;isfocus"
            dialog = self.dialogs.accept(request, local_contact=contact)
            conference = FocusConference(
                uri=uri, anchor=dialog, participants=entries, invite=request
            )
            self.conferences.append(conference)
            self.layer.send_response(
                dialog.create_response(
                    request, 200, body=_answer(), content_type="application/sdp"
                ),
                now,
            )
            return
        if method == "SUBSCRIBE" and request.to_addr.tag is None:
            conference = next((c for c in self.conferences if str(request.uri) == c.uri), None)
            if conference is None:
                self.respond(request, 404, now)
                return
            dialog = self.dialogs.accept(request, local_contact=f"<{conference.uri}>")
            conference.subscribers.append(dialog)
            self.layer.send_response(
                dialog.create_response(request, 200, headers=[("Expires", "3600")]), now
            )
            self.notify(conference, now, full=True)
            return
        dialog, automatic = self.dialogs.receive_request(request)
        if automatic is not None:
            self.layer.send_response(automatic, now)
            if method == "BYE" and automatic.status == 200:
                for conference in self.conferences:
                    if conference.anchor is dialog:
                        conference.ended = True
            return
        if dialog is None:
            if method != "ACK":
                self.respond(request, 481, now)
            return
        if method == "ACK":
            return
        conference = next((c for c in self.conferences if c.anchor is dialog), None)
        if method == "INVITE" and conference is not None:
            for part in request.body_parts():
                if (
                    part.content_type is not None
                    and part.content_type.mime == "application/resource-lists+xml"
                ):
                    conference.participants = parse_resource_list(part.body)
            self.layer.send_response(
                dialog.create_response(
                    request, 200, body=_answer(), content_type="application/sdp"
                ),
                now,
            )
            return
        watched = next((c for c in self.conferences if dialog in c.subscribers), None)
        if method == "SUBSCRIBE" and watched is not None:
            # A refresh: RFC 6665 says it brings a NOTIFY with full state.
            self.layer.send_response(
                dialog.create_response(request, 200, headers=[("Expires", "3600")]), now
            )
            self.notify(watched, now, full=True)
            return
        self.layer.send_response(dialog.create_response(request, 200), now)
        if method == "BYE" and conference is not None:
            conference.ended = True

    def _refused(self, request: Request, now: float) -> bool:
        """Answered 401 or 403 by the challenger (when there is one)."""
        if self.challenger is None:
            return False
        try:
            self.challenger.check(request, now)
        except RemoteProtocolError as error:
            refusal = error_response(request, error, warning_host="focus", to_tag=new_tag())
            self.layer.send_response(refusal, now)
            return True
        return False

    def notify(
        self,
        conference: FocusConference,
        now: float,
        *,
        full: bool = False,
        users: list[UserInfo] | None = None,
    ) -> None:
        conference.version += 1
        info = ConferenceInfo(
            entity=conference.uri,
            version=conference.version,
            state="full" if full else "partial",
            users=tuple(conference.roster.values()) if full else tuple(users or ()),
        )
        for subscriber in conference.subscribers:
            notify = subscriber.create_request(
                "NOTIFY",
                headers=[("Event", "conference"), ("Subscription-State", "active;expires=3600")],
                body=build_conference_info(info),
                content_type=CONFERENCE_INFO_TYPE,
            )
            self.layer.send_request(notify, ALLOCATOR, now)

    def join(self, conference: FocusConference, uri: str, mode: Mode, now: float) -> None:
        user = UserInfo(entity=uri, state="full", status="connected", mode=mode)
        conference.roster[uri] = user
        self.notify(conference, now, users=[user])

    def leave(self, conference: FocusConference, uri: str, now: float) -> None:
        conference.roster.pop(uri, None)
        self.notify(conference, now, users=[UserInfo(entity=uri, state="deleted")])

    def hang_up(self, conference: FocusConference, now: float) -> None:
        """The focus ends the conference itself (last participant left, its TTL)."""
        conference.ended = True
        self.layer.send_request(conference.anchor.create_request("BYE"), ALLOCATOR, now)


def _answer() -> bytes:
    return (
        b"v=0\r\no=focus 1 1 IN IP4 127.0.0.1\r\ns=focus\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 0 RTP/AVP 0\r\n"
    )


# -- helpers for lifecycle tests (appended) ---------------------------------------------


def replace_allocator(net: SimNetwork, allocator: Allocator) -> None:
    """A restarted allocator takes over ALLOCATOR's address; the old one's state is lost.

    Whatever the old allocator had not handed out yet is dropped, as a crash
    would drop it; datagrams already in flight reach the new one.
    """
    net.allocator = allocator


class LateFocus(Focus):
    """A focus that holds initial INVITEs (100 Trying only) until :meth:`answer_held`."""

    def __init__(self, address: Address = FOCUS) -> None:
        super().__init__(address, behaviour="ok")
        self.held: list[Request] = []

    def on_request(self, request: Request, now: float) -> None:
        if request.method == "INVITE" and request.to_addr.tag is None:
            self.held.append(request)
            return
        super().on_request(request, now)

    def answer_held(self, now: float) -> None:
        """Answer every held INVITE with 200 (even one cancelled meanwhile: a race)."""
        held, self.held = self.held, []
        for request in held:
            super().on_request(request, now)


def notify_raw(focus: Focus, conference: FocusConference, body: bytes, now: float) -> None:
    """A conference NOTIFY with any body (garbage included) to every subscriber."""
    for subscriber in conference.subscribers:
        notify = subscriber.create_request(
            "NOTIFY",
            headers=[("Event", "conference"), ("Subscription-State", "active;expires=3600")],
            body=body,
            content_type=CONFERENCE_INFO_TYPE,
        )
        focus.layer.send_request(notify, ALLOCATOR, now)


# -- helpers for request tests (appended) ------------------------------------------


def send_request(
    phone: Phone,
    method: str,
    now: float,
    *,
    to: str = "sip:vidim@example.com",
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """Any request from ``phone`` to the allocator, through the phone's transaction layer."""
    contact = f"<sip:{phone.user}@{phone.address.host}:{phone.address.port}>"
    request = Request(
        method,
        to,
        [
            (
                "Via",
                f"SIP/2.0/UDP {phone.address.host}:{phone.address.port};branch={new_branch()};rport",
            ),
            ("Max-Forwards", "70"),
            ("From", f"<{phone.uri}>;tag={new_tag()}"),
            ("To", f"<{to}>" + (f";tag={to_tag}" if to_tag else "")),
            ("Call-ID", f"{new_tag()}@{phone.address.host}"),
            ("CSeq", f"1 {method}"),
            *([("Contact", contact)] if method in ("INVITE", "SUBSCRIBE", "NOTIFY") else []),
            *(headers or []),
            *([("Content-Type", content_type)] if body and content_type else []),
        ],
        body,
    )
    phone.layer.send_request(request, ALLOCATOR, now)
    return request


def final_response(peer: Peer, request: Request) -> Response:
    """The final response ``peer`` received to ``request`` (the only one expected)."""
    (response,) = [
        r
        for r in peer.responses
        if r.call_id == request.call_id and r.cseq.method == request.method and r.status >= 200
    ]
    return response
