"""Helpers for the transaction-layer tests: message factories and a lossy link.

``Link`` connects a client layer and a server layer back to back, the way
aioquic's tests use ``transfer`` and ``drop``: every message is serialized
and parsed again on the way, and can be dropped or duplicated.
"""

from __future__ import annotations

from pathlib import Path

from vidim.sip import Message, Request, Response, make_response, parse_message
from vidim.sip.ids import new_branch
from vidim.sip.transaction import Address, Event, TransactionLayer

CORPUS = Path(__file__).resolve().parent.parent / "corpus"

CLIENT = Address("192.0.2.1", 5060)
SERVER = Address("192.0.2.2", 5060)
CLIENT_TCP = Address("192.0.2.1", 5060, "TCP")
SERVER_TCP = Address("192.0.2.2", 5060, "TCP")


def make_request(
    method: str = "INVITE",
    *,
    branch: str | None = None,
    transport: str = "UDP",
    via_host: str = "192.0.2.1",
    uri: str = "sip:bob@192.0.2.2",
    seq: int = 1,
    call_id: str = "a84b4c76e66710@192.0.2.1",
    from_tag: str = "1928301774",
    to_tag: str | None = None,
    routes: tuple[str, ...] = (),
) -> Request:
    """A request as a UAC at 192.0.2.1 would send it."""
    branch = new_branch() if branch is None else branch
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    headers = [("Via", f"SIP/2.0/{transport} {via_host}:5060;branch={branch}")]
    headers += [("Route", route) for route in routes]
    headers += [
        ("Max-Forwards", "70"),
        ("From", f'"Alice" <sip:alice@example.com>;tag={from_tag}'),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{seq} {method}"),
        ("Contact", "<sip:alice@192.0.2.1>"),
    ]
    return Request(method, uri, headers)


def make_ack(request: Request, response: Response, *, branch: str | None = None) -> Request:
    """An ACK for ``response``; with a branch, a 2xx ACK (a new transaction)."""
    via = request.top_via
    if branch is not None:
        via = via.with_params(branch=branch)
    headers = [
        ("Via", str(via)),
        ("Max-Forwards", "70"),
        ("From", request.headers.get("From") or ""),
        ("To", response.headers.get("To") or ""),
        ("Call-ID", request.call_id),
        ("CSeq", f"{request.cseq.seq} ACK"),
    ]
    return Request("ACK", request.uri, headers)


def make_cancel(request: Request) -> Request:
    """The CANCEL a UAC would send for ``request`` (RFC 3261 section 9.1)."""
    headers = [
        ("Via", str(request.top_via)),
        ("Max-Forwards", "70"),
        ("From", request.headers.get("From") or ""),
        ("To", request.headers.get("To") or ""),
        ("Call-ID", request.call_id),
        ("CSeq", f"{request.cseq.seq} CANCEL"),
    ]
    return Request("CANCEL", request.uri, headers)


def respond(request: Request, status: int, *, to_tag: str = "a6c85cf") -> Response:
    return make_response(request, status, to_tag=to_tag)


def corpus_message(name: str) -> Message:
    return parse_message((CORPUS / "rfc4475" / name).read_bytes())


def sent(layer: TransactionLayer) -> list[Message]:
    """Drain the layer's output, keeping the messages only."""
    return [message for message, _ in layer.messages_to_send()]


def drain(layer: TransactionLayer) -> list[Event]:
    return layer.events()


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, Message]]:
    """Fire every timer up to ``until``; return (time, message) for each message sent."""
    out: list[tuple[float, Message]] = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        out.extend((deadline, message) for message, _ in layer.messages_to_send())
    return out


class Link:
    """A client layer and a server layer joined by a network we control."""

    def __init__(self, client: TransactionLayer, server: TransactionLayer, *, tcp: bool = False):
        self.client = client
        self.server = server
        self.client_address = CLIENT_TCP if tcp else CLIENT
        self.server_address = SERVER_TCP if tcp else SERVER

    def transfer(
        self, sender: TransactionLayer, now: float, *, duplicate: bool = False
    ) -> list[Message]:
        """Deliver what ``sender`` has to send (twice each with ``duplicate``)."""
        if sender is self.client:
            receiver, source, expected = self.server, self.client_address, self.server_address
        else:
            receiver, source, expected = self.client, self.server_address, self.client_address
        messages = sender.messages_to_send()
        for message, destination in messages:
            assert destination == expected
            for _ in range(2 if duplicate else 1):
                receiver.receive(parse_message(message.to_bytes()), source, now)
        return [message for message, _ in messages]

    def drop(self, sender: TransactionLayer) -> list[Message]:
        """Lose everything ``sender`` has to send."""
        return [message for message, _ in sender.messages_to_send()]
