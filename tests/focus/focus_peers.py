"""In-memory peers for the built-in focus, on a virtual clock.

:class:`Net` carries serialized datagrams between nodes after LATENCY: the
focus under test, fake SIP elements built from vidim's own SIP core (an
allocator side that sends the factory INVITE exactly as
:func:`vidim.allocator.profiles.focus_request` builds it, softphones with
the offers pjsua2 and baresip really send), and, for the end-to-end test,
the real :class:`~vidim.allocator.allocator.Allocator`.  No sockets, no
sleeps: time jumps to the next deadline.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vidim.aio import FocusMedia, RtpRelay
from vidim.allocator.allocator import Allocator
from vidim.allocator.conference import Conference, Participant
from vidim.allocator.profiles import FocusProfile, conference_uri, focus_request, join_uri
from vidim.conference_info import ConferenceInfo, apply_update, parse_conference_info
from vidim.focus import ConferenceFocus, FocusConfig, lowest_free
from vidim.sip import (
    AckReceived,
    Address,
    Dialog,
    DialogManager,
    Message,
    Request,
    RequestReceived,
    Response,
    ResponseReceived,
    SipURI,
    TransactionId,
    TransactionLayer,
    Via,
    make_response,
    new_tag,
    parse_message,
    parse_uri,
)
from vidim.vocabulary import Mode

LATENCY = 0.001
FOCUS = Address("127.0.0.1", 5080)
ALLOCATOR = Address("127.0.0.1", 5070)
FACTORY = f"sip:conference-factory@{FOCUS.host}:{FOCUS.port}"
#: Outside the focus's trusted networks (TEST-NET-1).
UNTRUSTED_HOST = "192.0.2.10"


def sdp(text: str) -> bytes:
    return text.strip().replace("\n", "\r\n").encode() + b"\r\n"


def pjsua2_offer(port: int, *, video_slot: bool = True, host: str = "127.0.0.1") -> bytes:
    """What pjsua2 (pjsua2-python 2.15, no video in the wheel) offers; its video slot is port 0."""
    body = sdp(f"""
v=0
o=- 3908336718 3908336718 IN IP4 {host}
s=pjmedia
b=AS:117
t=0 0
a=X-nat:0
m=audio {port} RTP/AVP 96 97 98 99 3 0 8 9 120 121 122
c=IN IP4 {host}
b=TIAS:96000
a=rtcp:{port + 1} IN IP4 {host}
a=sendrecv
a=rtpmap:96 speex/16000
a=rtpmap:97 speex/8000
a=rtpmap:98 speex/32000
a=rtpmap:99 iLBC/8000
a=fmtp:99 mode=30
a=rtpmap:3 GSM/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:120 telephone-event/16000
a=fmtp:120 0-16
a=rtpmap:121 telephone-event/8000
a=fmtp:121 0-16
a=rtpmap:122 telephone-event/32000
a=fmtp:122 0-16
a=ssrc:1137321014 cname:3c5ff8c84ad7b91e
""")
    return body + b"m=video 0 RTP/AVP 31\r\n" if video_slot else body


def baresip_offer(
    audio_port: int,
    video_port: int,
    *,
    host: str = "127.0.0.1",
    direction: str = "sendrecv",
    rtcp_mux: bool = False,
) -> bytes:
    """What baresip 1.0 offers with opus, G.711, avcodec H.264 and libvpx VP8.

    ``rtcp_mux``: as with ``rtcp_mux yes`` in its config, ``a=rtcp-mux`` on both lines.
    """
    body = _baresip_offer(audio_port, video_port, host, direction)
    return body.replace(b"a=mid:", b"a=rtcp-mux\r\na=mid:") if rtcp_mux else body


def _baresip_offer(audio_port: int, video_port: int, host: str, direction: str) -> bytes:
    return sdp(f"""
v=0
o=- 1523414410 2846710546 IN IP4 {host}
s=-
c=IN IP4 {host}
t=0 0
m=audio {audio_port} RTP/AVP 96 0 8 101
b=AS:110
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a={direction}
a=label:1
a=rtcp-rsize
a=ssrc:2349239410 cname:f8c2c5d1-6e0f-4a4e-9c9a-0cdd0e1f4a61
a=mid:1
a=ptime:20
m=video {video_port} RTP/AVP 97 98 99
b=AS:1000
a=rtpmap:97 H264/90000
a=fmtp:97 packetization-mode=0;profile-level-id=42e01f
a=rtpmap:98 H264/90000
a=fmtp:98 packetization-mode=1;profile-level-id=42e01f
a=rtpmap:99 VP8/90000
a=fmtp:99 max-fs=3600
a=rtcp-fb:* nack pli
a={direction}
a=label:2
a=mid:2
""")


# -- the network -------------------------------------------------------------------


class Node:
    """Anything with an address that the network delivers datagrams to."""

    address: Address

    def deliver(self, wire: bytes, source: Address, now: float) -> None:
        raise NotImplementedError

    def outgoing(self, now: float) -> list[tuple[Message, Address]]:
        raise NotImplementedError

    def timer(self) -> float | None:
        raise NotImplementedError

    def fire(self, now: float) -> None:
        raise NotImplementedError


class FocusNode(Node):
    def __init__(self, focus: ConferenceFocus) -> None:
        self.focus = focus
        self.address = focus.config.local
        self.events: list[Any] = []

    def deliver(self, wire: bytes, source: Address, now: float) -> None:
        self.focus.receive_datagram(wire, source, now)

    def outgoing(self, now: float) -> list[tuple[Message, Address]]:
        self.events.extend(self.focus.events())
        return self.focus.messages_to_send()

    def timer(self) -> float | None:
        return self.focus.get_timer()

    def fire(self, now: float) -> None:
        self.focus.handle_timer(now)


class AllocatorNode(Node):
    def __init__(self, allocator: Allocator) -> None:
        self.allocator = allocator
        self.address = allocator.config.local
        self.events: list[Any] = []

    def deliver(self, wire: bytes, source: Address, now: float) -> None:
        self.allocator.receive_datagram(wire, source, now)

    def outgoing(self, now: float) -> list[tuple[Message, Address]]:
        self.events.extend(self.allocator.events())
        return self.allocator.messages_to_send()

    def timer(self) -> float | None:
        return self.allocator.get_timer()

    def fire(self, now: float) -> None:
        self.allocator.handle_timer(now)


class Net:
    """Delivers datagrams between nodes after LATENCY; time moves to the next deadline."""

    def __init__(self, *nodes: Node) -> None:
        self.nodes = {(n.address.host, n.address.port): n for n in nodes}
        self.now = 0.0
        self._queue: list[tuple[float, int, Address, Address, bytes]] = []
        self._counter = itertools.count()
        #: (time, source, destination, first line) of every datagram sent.
        self.log: list[tuple[float, Address, Address, str]] = []
        #: Rules that lose a datagram: called with (source, destination, first line).
        self.drop: list[Callable[[Address, Address, str], bool]] = []

    def add(self, node: Node) -> None:
        self.nodes[(node.address.host, node.address.port)] = node

    def send_raw(self, wire: bytes, source: Address, destination: Address) -> None:
        heapq.heappush(
            self._queue, (self.now + LATENCY, next(self._counter), source, destination, wire)
        )

    def flush(self) -> None:
        for node in list(self.nodes.values()):
            for message, destination in node.outgoing(self.now):
                wire = message.to_bytes()
                first = wire.split(b"\r\n", 1)[0].decode()
                self.log.append((self.now, node.address, destination, first))
                if any(rule(node.address, destination, first) for rule in self.drop):
                    continue
                self.send_raw(wire, node.address, destination)

    def run(self, until: float) -> None:
        self.flush()
        while True:
            deadlines = [d for n in self.nodes.values() if (d := n.timer()) is not None]
            if self._queue:
                deadlines.append(self._queue[0][0])
            due = [d for d in deadlines if d <= until]
            if not due:
                self.now = max(self.now, until)
                return
            self.now = max(self.now, min(due))
            while self._queue and self._queue[0][0] <= self.now:
                _, _, source, destination, wire = heapq.heappop(self._queue)
                node = self.nodes.get((destination.host, destination.port))
                if node is not None:
                    node.deliver(wire, source, self.now)
            for node in list(self.nodes.values()):
                node.fire(self.now)
            self.flush()

    def advance(self, seconds: float = 0.1) -> None:
        self.run(self.now + seconds)

    def sent(self, source: Address, prefix: str) -> list[str]:
        return [line for _, s, _, line in self.log if s == source and line.startswith(prefix)]


# -- SIP peers -----------------------------------------------------------------------


class Peer(Node):
    """A SIP user agent with its own transaction layer and dialogs."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.layer = TransactionLayer()
        self.dialogs = DialogManager(local_via=Via("UDP", address.host, address.port))
        self.requests: list[Request] = []
        self.responses: list[Response] = []
        self._sent: dict[tuple[str, int], Request] = {}
        #: The client transaction of each request sent.
        self.tids: dict[Request, TransactionId] = {}

    # Node
    def deliver(self, wire: bytes, source: Address, now: float) -> None:
        self.layer.receive(parse_message(wire), source, now)

    def outgoing(self, now: float) -> list[tuple[Message, Address]]:
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, RequestReceived):
                self.requests.append(event.request)
                self.on_request(event.request, now)
            elif isinstance(event, ResponseReceived):
                self.responses.append(event.response)
                sent = self._sent.get((event.response.call_id, event.response.cseq.seq))
                if sent is not None:
                    self.on_response(sent, event.response, now)
            elif isinstance(event, AckReceived):
                pass
        return self.layer.messages_to_send()

    def timer(self) -> float | None:
        return self.layer.get_timer()

    def fire(self, now: float) -> None:
        self.layer.handle_timer(now)

    # helpers
    def send(self, request: Request, now: float, destination: Address = FOCUS) -> Request:
        self._sent[(request.call_id, request.cseq.seq)] = request
        self.tids[request] = self.layer.send_request(request, destination, now)
        return request

    def answered(self, request: Request) -> list[Response]:
        return [
            r
            for r in self.responses
            if r.call_id == request.call_id and r.cseq.seq == request.cseq.seq and r.status >= 200
        ]

    def final(self, request: Request) -> Response:
        answers = self.answered(request)
        assert answers, f"no final answer to {request!r}"
        return answers[0]

    def received(self, method: str) -> list[Request]:
        return [r for r in self.requests if r.method == method]

    def on_request(self, request: Request, now: float) -> None:
        dialog, automatic = self.dialogs.receive_request(request)
        if automatic is not None:
            self.layer.send_response(automatic, now)
            return
        if request.method == "ACK":
            return
        if dialog is not None:
            self.layer.send_response(dialog.create_response(request, 200), now)
        else:
            self.layer.send_response(make_response(request, 405, to_tag=new_tag()), now)

    def on_response(self, request: Request, response: Response, now: float) -> None:
        if request.method in ("INVITE", "SUBSCRIBE"):
            dialog = self.dialogs.receive_response(request, response)
            if request.method == "INVITE" and dialog is not None and 200 <= response.status < 300:
                self.layer.send_stateless(dialog.create_ack(response), FOCUS)
        elif response.status >= 200:
            for dialog in self.dialogs:
                if dialog.call_id == request.call_id and not dialog.terminated:
                    dialog.receive_response(request, response)


def make_conference(
    entries: Sequence[tuple[str, Mode]], *, conference_id: str = "c1"
) -> Conference:
    """An allocator conference record (credentials as the allocator draws them)."""
    participants = [
        Participant(
            uri=uri,
            requested_mode=mode,
            mode=mode,
            credential=f"key-{index}-{uri[4:].split('@')[0]}",
        )
        for index, (uri, mode) in enumerate(entries)
    ]
    participants[0].requester = True
    return Conference(
        id=conference_id,
        requester=participants[0].uri,
        mode=participants[0].mode,
        requester_address="127.0.0.1|5062|UDP",
        participants=participants,
        created_at=0.0,
    )


@dataclass
class Roster:
    """What a subscriber saw: every document, and the view folded from them."""

    documents: list[ConferenceInfo] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    view: ConferenceInfo | None = None


class AllocatorSide(Peer):
    """The allocator's half of the rfc4579 profile, built from the allocator's own pieces."""

    def __init__(self, address: Address = ALLOCATOR) -> None:
        super().__init__(address)
        self.contact = f"<sip:vidim@{address.host}:{address.port}>"
        self.service = "<sip:vidim@example.com>"
        self.anchor: Dialog | None = None
        self.invite: Request | None = None
        self.conference: Conference | None = None
        self.conference_uri: str | None = None
        self.roster = Roster()

    def create(
        self,
        conference: Conference,
        now: float,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> Request:
        content = focus_request(
            FocusProfile.RFC4579, conference, address=self.address.host, session_id=1
        )
        self.conference = conference
        invite = self.dialogs.create_initial_request(
            "INVITE",
            FACTORY,
            from_addr=self.service,
            to_addr=f"<{FACTORY}>",
            contact=self.contact,
            headers=content.headers if headers is None else headers,
            body=content.body if body is None else body,
            content_type=content.content_type if content_type is None else content_type,
        )
        self.invite = invite
        return self.send(invite, now)

    def on_response(self, request: Request, response: Response, now: float) -> None:
        super().on_response(request, response, now)
        if request is self.invite and 200 <= response.status < 300:
            assert self.conference is not None
            self.anchor = self.dialogs.dialogs_of(request)[0]
            self.conference_uri = conference_uri(
                FocusProfile.RFC4579, response, focus_uri=FACTORY, conference=self.conference
            )

    def on_request(self, request: Request, now: float) -> None:
        super().on_request(request, now)
        if request.method == "NOTIFY" and request.body:
            info = parse_conference_info(request.body)
            self.roster.documents.append(info)
            self.roster.states.append(request.headers.get("subscription-state") or "")
            self.roster.view = apply_update(self.roster.view, info)

    def subscribe(
        self, now: float, *, expires: int = 3600, source_uri: str | None = None
    ) -> Request:
        uri = source_uri or self.conference_uri
        assert uri is not None
        subscribe = self.dialogs.create_initial_request(
            "SUBSCRIBE",
            uri,
            from_addr=self.service,
            to_addr=f"<{uri}>",
            contact=self.contact,
            headers=[
                ("Event", "conference"),
                ("Expires", str(expires)),
                ("Accept", "application/conference-info+xml"),
            ],
        )
        return self.send(subscribe, now)

    def reinvite(self, conference: Conference, now: float) -> Request:
        assert self.anchor is not None
        self.conference = conference
        content = focus_request(
            FocusProfile.RFC4579, conference, address=self.address.host, session_id=2
        )
        reinvite = self.anchor.create_request(
            "INVITE", headers=content.headers, body=content.body, content_type=content.content_type
        )
        return self.send(reinvite, now)

    def in_dialog(self, method: str, now: float) -> Request:
        assert self.anchor is not None
        return self.send(self.anchor.create_request(method), now)

    def join_uri(self, participant_uri: str) -> str:
        assert self.conference is not None
        assert self.conference_uri is not None
        participant = self.conference.participant(participant_uri)
        assert participant is not None
        return join_uri(self.conference_uri, participant.credential)


class Softphone(Peer):
    """A participant: dials a conference URI with a real softphone's offer."""

    def __init__(self, user: str, address: Address, offer: bytes) -> None:
        super().__init__(address)
        self.user = user
        self.uri = f"sip:{user}@example.com"
        self.offer = offer
        self.invite: Request | None = None

    def call(
        self,
        uri: str,
        now: float,
        *,
        headers: Iterable[tuple[str, str]] = (),
        offer: bytes | None = None,
    ) -> Request:
        target = parse_uri(uri)
        to = target.without_params_or_headers() if isinstance(target, SipURI) else target
        body = self.offer if offer is None else offer
        invite = self.dialogs.create_initial_request(
            "INVITE",
            uri,
            from_addr=f"<{self.uri}>",
            to_addr=f"<{to}>",
            contact=f"<sip:{self.user}@{self.address.host}:{self.address.port}>",
            headers=headers,
            body=body,
            content_type="application/sdp" if body else None,
        )
        self.invite = invite
        return self.send(invite, now)

    @property
    def dialog(self) -> Dialog | None:
        if self.invite is None:
            return None
        found = [d for d in self.dialogs.dialogs_of(self.invite) if not d.terminated]
        return found[0] if found else None

    def answer(self) -> bytes:
        assert self.invite is not None
        return self.final(self.invite).body

    def hang_up(self, now: float) -> Request:
        assert self.dialog is not None
        return self.send(self.dialog.create_request("BYE"), now)

    def reinvite(self, offer: bytes, now: float) -> Request:
        assert self.dialog is not None
        return self.send(
            self.dialog.create_request("INVITE", body=offer, content_type="application/sdp"), now
        )


def predictable_config(**changes: Any) -> FocusConfig:
    """A focus config whose ports tests can predict: 40000 up, the lowest free pair first."""
    settings: dict[str, Any] = {"rtp_ports": (40000, 40999), "choose_port": lowest_free}
    return FocusConfig(**(settings | changes))


def focus_world(
    *, config: FocusConfig | None = None
) -> tuple[Net, ConferenceFocus, FocusNode, AllocatorSide]:
    focus = ConferenceFocus(config or predictable_config())
    node = FocusNode(focus)
    allocator = AllocatorSide()
    return Net(node, allocator), focus, node, allocator


# -- the focus with real media (vidim.aio.FocusMedia) -----------------------------------


@dataclass
class MediaWorld:
    """The focus's SIP on the virtual clock, its media on real loopback sockets.

    Each focus event goes to ``media`` as the daemon's server would hand it;
    :meth:`dial` makes a participant whose SDP names the test's own sockets.
    """

    net: Net
    focus: ConferenceFocus
    node: FocusNode
    allocator: AllocatorSide
    media: FocusMedia

    def step(self) -> None:
        """Deliver what is in flight, and hand the focus's events to the media."""
        self.net.advance()
        for event in self.node.events:
            self.media.on_event(event)
        self.node.events.clear()

    def create(self, people: list[tuple[str, Mode]]) -> None:
        self.allocator.create(make_conference(people), self.net.now)
        self.step()

    def dial(self, uri: str, sip_port: int, offer: bytes) -> Softphone:
        """``uri`` calls its join URI with ``offer``; returns its phone (answered)."""
        phone = Softphone(uri.removeprefix("sip:").split("@")[0],
                          Address("127.0.0.1", sip_port), offer)  # fmt: skip
        self.net.add(phone)
        phone.call(self.allocator.join_uri(uri), self.net.now)
        self.step()
        return phone


def media_world(*, latching: bool = False, **options: Any) -> MediaWorld:
    """A :class:`MediaWorld`; ``options`` go to :class:`FocusMedia` (e.g. ``on_media_event``)."""
    net, focus, node, allocator = focus_world()
    relay = RtpRelay("127.0.0.1", ephemeral=True, latching=latching)
    return MediaWorld(net, focus, node, allocator, FocusMedia(focus, relay, **options))
