"""``python -m vidim``: the SIP core at work, on a virtual clock.

Until the daemon arrives (a later issue) this is vidim's main job: a
demonstration that runs the real sans-IO layers (parser, transactions,
dialogs, request checks) between three simulated elements, alice's softphone,
the allocator and a conference focus, over an in-memory network that loses
one datagram.  Nothing opens a socket or sleeps; time is a number that the
demo moves to the next deadline the layers report.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from . import __version__
from .sip import (
    Address,
    Dialog,
    DialogManager,
    Event,
    Message,
    Request,
    RequestReceived,
    RequestRejectedError,
    Response,
    ResponseReceived,
    TransactionConfig,
    TransactionLayer,
    TransactionTerminated,
    Via,
    check_request,
    error_response,
    make_response,
    new_branch,
    new_tag,
    parse_message,
)

LATENCY = 0.002  # one-way delay of the simulated network, seconds
SDP = (
    b"v=0\r\no=vidim 1 1 IN IP4 127.0.0.1\r\ns=vidim\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\nm=video 40002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
)


@dataclass
class Element:
    """One simulated SIP element: a transaction layer and what it does with events."""

    name: str
    address: Address
    layer: TransactionLayer = field(default_factory=TransactionLayer)
    on_event: Callable[[Event, float], None] = lambda event, now: None


class Network:
    """Delivers serialized datagrams after LATENCY; can lose chosen ones."""

    def __init__(self, elements: list[Element], out: Callable[[str], None]) -> None:
        self.elements = {(e.address.host, e.address.port): e for e in elements}
        self.out = out
        self.queue: list[tuple[float, int, Element, bytes, Address]] = []
        self.counter = itertools.count()
        self.lose: list[Callable[[bytes], bool]] = []
        self.actions: list[tuple[float, int, Callable[[float], None]]] = []

    def at(self, when: float, action: Callable[[float], None]) -> None:
        """Run ``action(now)`` at virtual time ``when`` (a user doing something)."""
        heapq.heappush(self.actions, (when, next(self.counter), action))

    def flush(self, now: float) -> None:
        for element in self.elements.values():
            for message, destination in element.layer.messages_to_send():
                wire = message.to_bytes()
                target = self.elements[(destination.host, destination.port)]
                lost = next((rule for rule in self.lose if rule(wire)), None)
                if lost is not None:
                    self.lose.remove(lost)
                note = "   (lost in the network)" if lost else ""
                self.out(
                    f"{now:7.3f}  {element.name:>6} -> {target.name:<6} {_summary(message)}{note}"
                )
                if lost is None:
                    heapq.heappush(
                        self.queue,
                        (now + LATENCY, next(self.counter), target, wire, element.address),
                    )

    def run(self, until: float) -> float:
        now = 0.0
        self.flush(now)
        while True:
            deadlines = [
                d for e in self.elements.values() if (d := e.layer.get_timer()) is not None
            ]
            if self.queue:
                deadlines.append(self.queue[0][0])
            if self.actions:
                deadlines.append(self.actions[0][0])
            if not deadlines or min(deadlines) > until:
                return now
            now = min(deadlines)
            while self.actions and self.actions[0][0] <= now:
                heapq.heappop(self.actions)[2](now)
            while self.queue and self.queue[0][0] <= now:
                _, _, target, wire, source = heapq.heappop(self.queue)
                target.layer.receive(parse_message(wire), source, now)
            for element in self.elements.values():
                element.layer.handle_timer(now)
                while (event := element.layer.next_event()) is not None:
                    element.on_event(event, now)
            self.flush(now)


def _summary(message: Message) -> str:
    if isinstance(message, Request):
        extra = f"  [X-Vidim-Mode: {mode}]" if (mode := message.headers.get("X-Vidim-Mode")) else ""
        return f"{message.method} {message.uri}{extra}"
    assert isinstance(message, Response)
    warning = message.headers.get("Warning")
    extra = f"  [Warning: {warning}]" if warning else ""
    return f"{message.status} {message.reason} ({message.cseq.method}){extra}"


def run_demo(out: Callable[[str], None] = print) -> int:
    """Play the scenario; return 0 when every step happened as it should."""
    config = TransactionConfig()
    alice = Element("alice", Address("127.0.0.1", 5062), TransactionLayer(config))
    vidim = Element("vidim", Address("127.0.0.1", 5070), TransactionLayer(config))
    focus = Element("focus", Address("127.0.0.1", 5080), TransactionLayer(config))
    network = Network([alice, vidim, focus], out)
    vidim_dialogs = DialogManager(local_via=Via("UDP", "127.0.0.1", 5070), warn_agent="vidim")
    focus_dialogs = DialogManager(local_via=Via("UDP", "127.0.0.1", 5080), warn_agent="focus")
    seen: list[str] = []
    anchor: dict[str, Dialog] = {}
    invites: dict[int, Request] = {}

    def alice_request(method: str, extra: list[tuple[str, str]], body: bytes = b"") -> None:
        request = Request(
            method,
            "sip:bob@example.com" if method == "MESSAGE" else "sip:vidim@127.0.0.1:5070",
            [
                ("Via", f"SIP/2.0/UDP 127.0.0.1:5062;branch={new_branch()};rport"),
                ("Max-Forwards", "70"),
                ("From", f'"Alice" <sip:alice@example.com>;tag={new_tag()}'),
                ("To", "<sip:bob@example.com>"),
                ("Call-ID", f"{new_tag()}@127.0.0.1"),
                ("CSeq", f"1 {method}"),
                *extra,
            ],
            body,
        )
        alice.layer.send_request(request, vidim.address, 0.0)

    def on_alice(event: Event, now: float) -> None:
        if isinstance(event, ResponseReceived):
            seen.append(f"alice got {event.response.status}")

    def on_vidim(event: Event, now: float) -> None:
        if isinstance(event, RequestReceived):
            request = event.request
            try:
                check_request(request)
            except RequestRejectedError as error:
                vidim.layer.send_response(
                    error_response(request, error, warning_host="vidim", to_tag=new_tag()), now
                )
                return
            vidim.layer.send_response(make_response(request, 202, to_tag=new_tag()), now)
            invite = vidim_dialogs.create_initial_request(
                "INVITE",
                "sip:conference-factory@127.0.0.1:5080",
                from_addr="sip:vidim@127.0.0.1",
                to_addr="sip:conference-factory@127.0.0.1:5080",
                contact="sip:vidim@127.0.0.1:5070",
                body=SDP,
                content_type="application/sdp",
            )
            invites[vidim.layer.send_request(invite, focus.address, now)] = invite
        elif isinstance(event, ResponseReceived) and event.transaction_id in invites:
            response = event.response
            dialog = vidim_dialogs.receive_response(invites[event.transaction_id], response)
            if dialog is not None and response.status == 200 and "anchor" not in anchor:
                anchor["anchor"] = dialog
                vidim.layer.send_stateless(dialog.create_ack(response), focus.address)
                seen.append(f"vidim holds the anchor dialog to {response.contacts[0]}")
                network.at(now + 2.0, lambda later: hang_up(dialog, later))
        elif isinstance(event, TransactionTerminated) and event.transaction_id in invites:
            vidim_dialogs.forget(invites.pop(event.transaction_id))

    def hang_up(dialog: Dialog, now: float) -> None:
        bye = dialog.create_request("BYE")
        invites[vidim.layer.send_request(bye, focus.address, now)] = bye

    def on_focus(event: Event, now: float) -> None:
        if not isinstance(event, RequestReceived):
            return
        request = event.request
        if request.method == "INVITE":
            created = focus_dialogs.accept(
                request, local_contact="<sip:conf-42@127.0.0.1:5080>;isfocus"
            )
            answer = created.create_response(request, 200, body=SDP, content_type="application/sdp")
            focus.layer.send_response(answer, now)
        else:
            dialog, automatic = focus_dialogs.receive_request(request)
            response = automatic or (dialog.create_response(request, 200) if dialog else None)
            if response is not None:
                focus.layer.send_response(response, now)
                seen.append(f"focus answered {request.method} {response.status}")

    alice.on_event, vidim.on_event, focus.on_event = on_alice, on_vidim, on_focus
    out(f"vidim {__version__}: the SIP core on a virtual clock (no sockets, no sleeps)")
    out("   time  from      to     message")
    # The first MESSAGE is lost: Timer E retransmits it after T1 (0.5 s).
    network.lose.append(lambda wire: wire.startswith(b"MESSAGE "))
    alice_request(
        "MESSAGE",
        [
            ("X-Vidim-Mode", "video"),
            ("X-Vidim-Invite", "<sip:carol@example.com>;mode=audio"),
            ("Content-Type", "text/plain"),
        ],
        b"let's have a video call",
    )
    # A request the checks refuse: an extension vidim does not support.
    alice_request("OPTIONS", [("Require", "teleportation")])
    end = network.run(until=120.0)
    live = sum(len(e.layer) for e in (alice, vidim, focus))
    out(f"{end:7.3f}  every transaction has ended ({live} left)")
    expected = {
        "alice got 202",
        "alice got 420",
        "vidim holds the anchor dialog to <sip:conf-42@127.0.0.1:5080>;isfocus",
        "focus answered BYE 200",
    }
    missing = expected - set(seen)
    for line in sorted(missing):
        out(f"MISSING: {line}")
    return 0 if not missing and live == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidim", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"vidim {__version__}")
    parser.parse_args(argv)
    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
