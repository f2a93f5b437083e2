"""A virtual network and clock for running vidim's sans-IO cores together.

:class:`VirtualNetwork` carries serialized datagrams between nodes after a
fixed latency, loses the ones it is told to, and moves time straight to the
next thing due: a datagram's arrival, a node's deadline or a scheduled action.
Nothing opens a socket or sleeps, so a run is the same every time.

A node is anything with the sans-IO boundary of :class:`vidim.allocator.Allocator`
and :class:`vidim.focus.ConferenceFocus` (:class:`Node`): the real cores plug in
as they are.  :class:`Phone` is a minimal softphone built on
:class:`vidim.sip.TransactionLayer` and :class:`vidim.sip.DialogManager`, to
talk to them.  ``python -m vidim`` is built from these parts; tests may use
them the same way.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from .sip import (
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

__all__ = ["Datagram", "Node", "Observed", "Phone", "VirtualNetwork"]


class Node(Protocol):
    """The sans-IO boundary the network drives: datagrams and the clock in, messages out."""

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def get_timer(self) -> float | None: ...

    def messages_to_send(self) -> list[tuple[Message, Address]]: ...

    def events(self) -> Sequence[object]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Datagram:
    """One message put on the virtual wire, whether it arrived or not."""

    sent_at: float
    #: Node names.
    source: str
    destination: str
    message: Message
    lost: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Observed:
    """An event a node reported, with when and which node."""

    at: float
    node: str
    event: object


@dataclass(order=True)
class _Due:
    """Something the clock reaches: an arrival or a scheduled action (in order of time)."""

    when: float
    order: int
    action: Callable[[float], object] = field(compare=False)


class VirtualNetwork:
    """Delivers datagrams between named nodes after ``latency``; time jumps to what is due.

    ``proxy`` stands for an IM server reduced to its location service: a
    request sent to that address reaches the node registered for its
    Request-URI (:meth:`register`), with its source unchanged, so that
    responses go straight back along the Via.  A datagram for an address
    with no node is recorded and goes nowhere.
    """

    def __init__(self, *, latency: float = 0.002, proxy: Address | None = None) -> None:
        self.latency = latency
        self.proxy = proxy
        self.now = 0.0
        #: Every datagram sent, in order.
        self.datagrams: list[Datagram] = []
        #: Every event the nodes reported, in order.
        self.events: list[Observed] = []
        #: By (host, port): the name and the node.
        self._nodes: dict[tuple[str, int], tuple[str, Node]] = {}
        self._locations: dict[str, Address] = {}
        self._loss_rules: list[Callable[[Datagram], bool]] = []
        self._due: list[_Due] = []
        self._order = itertools.count()

    def attach(self, name: str, address: Address, node: Node) -> None:
        self._nodes[(address.host, address.port)] = (name, node)

    def register(self, address_of_record: str, address: Address) -> None:
        """Tell the proxy's location service where ``sip:user@host`` is."""
        self._locations[address_of_record] = address

    def lose(self, rule: Callable[[Datagram], bool], *, times: int = 1) -> None:
        """Lose the next ``times`` datagrams ``rule`` matches: the same ones on every run."""
        self._loss_rules.extend([rule] * times)

    def at(self, when: float, action: Callable[[float], object]) -> None:
        """Call ``action(now)`` when the clock reaches ``when`` (a person doing something)."""
        heapq.heappush(self._due, _Due(when, next(self._order), action))

    def run(self, *, until: float = math.inf) -> bool:
        """Move the clock from one due thing to the next; True when nothing is left to do.

        Stops once no datagram is in flight, no action is scheduled and no node
        has a deadline (every transaction has ended), or at ``until``.
        """
        self._collect()
        while True:
            deadlines = [
                when for _, node in self._nodes.values() if (when := node.get_timer()) is not None
            ]
            if self._due:
                deadlines.append(self._due[0].when)
            if not deadlines:
                return True
            if min(deadlines) > until:
                self.now = until
                return False
            self.now = max(self.now, min(deadlines))
            while self._due and self._due[0].when <= self.now:
                heapq.heappop(self._due).action(self.now)
            for _, node in list(self._nodes.values()):
                if (when := node.get_timer()) is not None and when <= self.now:
                    node.handle_timer(self.now)
            self._collect()

    def _collect(self) -> None:
        """Put every message the nodes have to send on the wire; note their events."""
        for (host, port), (name, node) in list(self._nodes.items()):
            for event in node.events():
                self.events.append(Observed(at=self.now, node=name, event=event))
            for message, destination in node.messages_to_send():
                self._send(name, Address(host, port), message, destination)

    def _send(self, name: str, source: Address, message: Message, destination: Address) -> None:
        target = self._route(message, destination)
        to = self._nodes.get((target.host, target.port))
        sent = Datagram(
            sent_at=self.now,
            source=name,
            destination=to[0] if to is not None else f"{target.host}:{target.port}",
            message=message,
            lost=False,
        )
        rule = next((rule for rule in self._loss_rules if rule(sent)), None)
        if rule is not None:
            self._loss_rules.remove(rule)
            sent = replace(sent, lost=True)
        self.datagrams.append(sent)
        if sent.lost or to is None:
            return
        node = to[1]
        wire = message.to_bytes()
        self.at(self.now + self.latency, lambda now: node.receive_datagram(wire, source, now))

    def _route(self, message: Message, destination: Address) -> Address:
        if destination != self.proxy or not isinstance(message, Request):
            return destination
        uri = message.uri
        if isinstance(uri, SipURI):
            return self._locations.get(f"{uri.scheme}:{uri.user}@{uri.host}", destination)
        return destination


def _address_of(uri_text: str) -> Address:
    """Where a phone with no outbound proxy sends a request for ``uri_text``."""
    uri = parse_uri(uri_text)
    if not isinstance(uri, SipURI):
        raise ValueError(f"not a SIP URI: {uri_text}")
    return Address(uri.host, uri.port or 5060)


class Phone:
    """A minimal softphone: takes IMs, answers probes with its SDP, dials, is hung up on.

    Requests it starts go to ``outbound_proxy`` when set, else to the host and
    port of their Request-URI; the ACK for a 2xx goes where the INVITE went.
    Requests within a dialog (BYE) get their 200, calls to it 405.
    ``on_message`` is called with each IM it receives (after its 200).
    """

    def __init__(
        self,
        user: str,
        address: Address,
        *,
        domain: str = "example.com",
        offer: bytes = b"",
        outbound_proxy: Address | None = None,
    ) -> None:
        self.user = user
        self.uri = f"sip:{user}@{domain}"
        self.address = address
        #: The SDP it offers in a call and answers an OPTIONS probe with.
        self.offer = offer
        self.outbound_proxy = outbound_proxy
        self.on_message: Callable[[Request, float], None] = lambda request, now: None
        self.layer = TransactionLayer()
        self.dialogs = DialogManager(local_via=Via("UDP", address.host, address.port))
        self.contact = f"<sip:{user}@{address.host}:{address.port}>"
        #: Every request and final response it received, in order.
        self.received: list[Request | Response] = []
        self._sent: dict[TransactionId, tuple[Request, Address]] = {}
        self._events: list[object] = []

    # -- the Node boundary ---------------------------------------------------------
    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.layer.receive(parse_message(data), source, now)
        self._react(now)

    def handle_timer(self, now: float) -> None:
        self.layer.handle_timer(now)
        self._react(now)

    def get_timer(self) -> float | None:
        return self.layer.get_timer()

    def messages_to_send(self) -> list[tuple[Message, Address]]:
        return self.layer.messages_to_send()

    def events(self) -> list[object]:
        """The transaction layer's events, after the phone acted on them."""
        out, self._events = self._events, []
        return out

    # -- what a person does --------------------------------------------------------
    def send(
        self,
        method: str,
        uri: str,
        now: float,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """Start an out-of-dialog request (an INVITE or SUBSCRIBE makes a dialog)."""
        target = parse_uri(uri)
        to = target.without_params_or_headers() if isinstance(target, SipURI) else target
        request = self.dialogs.create_initial_request(
            method,
            uri,
            from_addr=f"<{self.uri}>",
            to_addr=f"<{to}>",
            contact=self.contact,
            headers=headers,
            body=body,
            content_type=content_type,
        )
        destination = self.outbound_proxy or _address_of(uri)
        self._sent[self.layer.send_request(request, destination, now)] = (request, destination)
        return request

    def send_message(
        self, uri: str, text: str, now: float, *, headers: Sequence[tuple[str, str]] = ()
    ) -> Request:
        return self.send(
            "MESSAGE", uri, now, headers=headers, body=text.encode(), content_type="text/plain"
        )

    def call(self, uri: str, now: float) -> Request:
        return self.send("INVITE", uri, now, body=self.offer, content_type="application/sdp")

    @property
    def requests(self) -> list[Request]:
        return [message for message in self.received if isinstance(message, Request)]

    @property
    def responses(self) -> list[Response]:
        return [message for message in self.received if isinstance(message, Response)]

    # -- reactions -----------------------------------------------------------------
    def _react(self, now: float) -> None:
        for event in self.layer.events():
            self._events.append(event)
            if isinstance(event, RequestReceived):
                self._on_request(event.request, now)
            elif isinstance(event, ResponseReceived) and event.transaction_id in self._sent:
                self._on_response(*self._sent[event.transaction_id], event.response)

    def _on_request(self, request: Request, now: float) -> None:
        self.received.append(request)
        dialog, automatic = self.dialogs.receive_request(request)
        if automatic is not None:
            self.layer.send_response(automatic, now)
        elif dialog is not None:
            self.layer.send_response(dialog.create_response(request, 200), now)
        elif request.method == "OPTIONS":
            self.layer.send_response(self._answer(request, 200, self.offer), now)
        elif request.method == "MESSAGE":
            self.layer.send_response(self._answer(request, 200), now)
            self.on_message(request, now)
        else:
            self.layer.send_response(self._answer(request, 405), now)

    def _answer(self, request: Request, status: int, sdp: bytes = b"") -> Response:
        headers = [("Content-Type", "application/sdp")] if sdp else []
        return make_response(request, status, to_tag=new_tag(), headers=headers, body=sdp)

    def _on_response(self, request: Request, destination: Address, response: Response) -> None:
        if response.status < 200:
            return
        self.received.append(response)
        dialog: Dialog | None = self.dialogs.receive_response(request, response)
        if request.method == "INVITE" and dialog is not None and response.status < 300:
            self.layer.send_stateless(dialog.create_ack(response), destination)
