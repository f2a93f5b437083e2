"""``python -m vidim``: the real allocator and built-in focus at work, on a virtual clock.

alice's softphone asks vidim for a video call with bob.  The real
:class:`~vidim.allocator.Allocator` sets the conference up on the real
:class:`~vidim.focus.ConferenceFocus`, invites bob, tells alice, and tears it
all down when she sends ``/end``; bob's phone dials in with his key.  The
phones are minimal (:class:`vidim.simulation.Phone`), the network
(:class:`vidim.simulation.VirtualNetwork`) loses alice's first datagram, and
the cores are driven only through their sans-IO boundary.  Nothing opens a
socket or sleeps: time jumps to the next deadline.  The run prints the ladder
and exits 0 when every expected step happened.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from . import __version__
from .allocator import Allocator, AllocatorConfig
from .allocator import events as allocator_events
from .allocator.requests import RequestPolicy
from .conference_info import CONFERENCE_INFO_TYPE, parse_conference_info
from .focus import ConferenceFocus, FocusConfig
from .focus import events as focus_events
from .resource_lists import RESOURCE_LISTS_TYPE
from .sdp import SDP_TYPE
from .simulation import Datagram, Phone, VirtualNetwork
from .sip import Address, Message, Request, Response, parse_name_addr

IM_SERVER = Address("127.0.0.1", 5060)
ALICE = Address("127.0.0.1", 5062)
BOB = Address("127.0.0.1", 5064)
VIDIM = Address("127.0.0.1", 5070)
FOCUS = Address("127.0.0.1", 5080)
#: A run that has not gone quiet by then has failed.
TIME_LIMIT = 120.0
#: How long bob takes to dial in once invited, and alice to end once he joined.
BOB_DIALS_AFTER = 1.0
ALICE_ENDS_AFTER = 2.0


def _offer(port: int) -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\nm=video {port + 2} RTP/AVP 96\r\n"
        f"a=rtpmap:96 VP8/90000\r\n"
    ).encode()


@dataclass
class Demo:
    """Everything a run is made of, for the ladder, the checks and tests to look at."""

    network: VirtualNetwork
    allocator: Allocator
    focus: ConferenceFocus
    alice: Phone
    bob: Phone
    #: Whether the network went quiet (no datagram, no deadline) within TIME_LIMIT.
    quiet: bool = False


def build() -> Demo:
    """The real cores and two phones on one virtual network."""
    network = VirtualNetwork(proxy=IM_SERVER)
    allocator = Allocator(
        AllocatorConfig(
            local=VIDIM,
            requests=RequestPolicy.for_domain("example.com"),
            focus_uris=(f"sip:conference-factory@{FOCUS.host}:{FOCUS.port}",),
            proxy=IM_SERVER,
        )
    )
    focus = ConferenceFocus(FocusConfig(local=FOCUS))
    # alice's phone sends its requests through vidim; bob's calls whom it dials.
    alice = Phone("alice", ALICE, offer=_offer(4000), outbound_proxy=VIDIM)
    bob = Phone("bob", BOB, offer=_offer(4010))
    network.attach("alice", ALICE, alice)
    network.attach("bob", BOB, bob)
    network.attach("vidim", VIDIM, allocator)
    network.attach("focus", FOCUS, focus)
    network.register(alice.uri, ALICE)
    network.register(bob.uri, BOB)
    return Demo(network=network, allocator=allocator, focus=focus, alice=alice, bob=bob)


def play(demo: Demo) -> None:
    """The scenario: what alice and bob do, and when; then run until all is quiet."""
    network, alice, bob = demo.network, demo.alice, demo.bob

    def bob_reads(message: Request, now: float) -> None:
        invitation = message.headers.get("X-Vidim-Conference")
        if invitation is not None:
            join = str(parse_name_addr(invitation).uri)
            network.at(now + BOB_DIALS_AFTER, lambda later: bob.call(join, later))

    def alice_reads(message: Request, now: float) -> None:
        if message.body.startswith(b"bob@example.com joined"):
            network.at(
                now + ALICE_ENDS_AFTER,
                lambda later: alice.send_message("sip:vidim@example.com", "/end", later),
            )

    bob.on_message, alice.on_message = bob_reads, alice_reads
    network.lose(lambda datagram: datagram.source == "alice")  # Timer E sends it again
    alice.send_message(
        "sip:bob@example.com",
        "let's have a video call",
        network.now,
        headers=[("X-Vidim-Mode", "video")],
    )
    # A request the checks refuse: it requires an extension vidim does not support.
    alice.send_message(
        "sip:vidim@example.com", "/help", network.now, headers=[("Require", "teleportation")]
    )
    demo.quiet = network.run(until=TIME_LIMIT)


# -- the ladder --------------------------------------------------------------------

#: Random identifiers (conference URI user, join keys, conference ids), shortened
#: so that the ladder is the same on every run.
_RANDOM_RE = re.compile(r"(conf-|key=|id=)[A-Za-z0-9_-]{16,}")
_TEXT_WIDTH = 48
_PART_NAMES = {SDP_TYPE: "SDP", RESOURCE_LISTS_TYPE: "resource list"}


def head(message: Message) -> str:
    """A message's first line as the ladder shows it: ``INVITE sip:...`` or ``200 OK (INVITE)``."""
    if isinstance(message, Request):
        return f"{message.method} {message.uri}"
    assert isinstance(message, Response)
    return f"{message.status} {message.reason} ({message.cseq.method})"


def _notes(message: Request | Response) -> list[str]:
    """What matters in a message beyond its first line."""
    notes = [
        f"{name}: {value}"
        for name in ("X-Vidim-Mode", "Require", "Subscription-State", "Warning")
        if (value := message.headers.get(name)) is not None
    ]
    if isinstance(message, Response) and message.status == 200 and message.cseq.method == "INVITE":
        notes.append(f"Contact: {message.contacts[0]}")
    mime = message.content_type.mime if message.content_type is not None else None
    if mime == "multipart/mixed":
        parts = [part.content_type.mime for part in message.body_parts() if part.content_type]
        notes.append(" + ".join(_PART_NAMES.get(part, part) for part in parts))
    elif mime == "text/plain":
        text = message.body.decode()
        notes.append(repr(text if len(text) <= _TEXT_WIDTH else text[: _TEXT_WIDTH - 3] + "..."))
    elif mime == CONFERENCE_INFO_TYPE:
        info = parse_conference_info(message.body)
        users = ", ".join(f"{user.entity} {user.status or user.state}" for user in info.users)
        notes.append(f"{info.state} roster: {users or 'nobody'}")
    return notes


def ladder_line(datagram: Datagram) -> str:
    message = datagram.message
    assert isinstance(message, (Request, Response))
    notes = "".join(f"  [{note}]" for note in _notes(message))
    lost = "   (lost in the network)" if datagram.lost else ""
    hop = f"{datagram.source:>6} -> {datagram.destination:<6}"
    line = f"{datagram.sent_at:7.3f}  {hop} {head(message)}{notes}{lost}"
    return _RANDOM_RE.sub(r"\1...", line)


# -- the checks --------------------------------------------------------------------

Check = Callable[[Demo], bool]


def _sent(source: str, destination: str, first: str, containing: str = "") -> Check:
    """A datagram from ``source`` reached ``destination``, its :func:`head` starting
    with ``first`` and its text (headers and body) holding ``containing``."""

    def check(demo: Demo) -> bool:
        return any(
            (d.source, d.destination) == (source, destination)
            and not d.lost
            and head(d.message).startswith(first)
            and containing in d.message.to_bytes().decode()
            for d in demo.network.datagrams
        )

    return check


def _first_of_alice_lost(demo: Demo) -> bool:
    first = next(d for d in demo.network.datagrams if d.source == "alice")
    return first.lost and first.message.headers.get("X-Vidim-Mode") == "video"


def _sent_again(demo: Demo) -> bool:
    """What was lost went out again, the same bytes (a retransmission, not a new request)."""
    datagrams = demo.network.datagrams
    lost = [d.message.to_bytes() for d in datagrams if d.lost]
    return bool(lost) and all(
        any(not d.lost and d.message.to_bytes() == wire for d in datagrams) for wire in lost
    )


def _emitted(node: str, kind: type[object]) -> Check:
    return lambda demo: any(
        seen.node == node and isinstance(seen.event, kind) for seen in demo.network.events
    )


def _all_ended(demo: Demo) -> bool:
    cores_idle = not (demo.allocator.has_pending_work() or demo.focus.has_pending_work())
    phones_idle = not (len(demo.alice.layer) or len(demo.bob.layer))
    return demo.quiet and cores_idle and phones_idle


#: Every step the run must show, in ladder order.
STEPS: tuple[tuple[str, Check], ...] = (
    ("the first datagram alice sends, her MESSAGE, is lost", _first_of_alice_lost),
    ("Timer E sends the lost MESSAGE again", _sent_again),
    ("vidim refuses the /help with 420", _sent("vidim", "alice", "420 Bad Extension (MESSAGE)")),
    ("vidim accepts alice's MESSAGE with 202", _sent("vidim", "alice", "202 Accepted (MESSAGE)")),
    ("vidim probes bob", _sent("vidim", "bob", "OPTIONS sip:bob@example.com")),
    (
        "vidim INVITEs the focus with SDP and a resource list",
        _sent("vidim", "focus", "INVITE sip:conference-factory@", RESOURCE_LISTS_TYPE),
    ),
    (
        "the focus answers 200 with an ;isfocus Contact",
        _sent("focus", "vidim", "200 OK (INVITE)", ">;isfocus"),
    ),
    ("vidim ACKs the focus", _sent("vidim", "focus", "ACK sip:conf-")),
    ("bob gets his invitation", _sent("vidim", "bob", "MESSAGE sip:bob@", "X-Vidim-Conference")),
    (
        "alice hears the conference is ready",
        _sent("vidim", "alice", "MESSAGE sip:alice@", "is ready"),
    ),
    (
        "vidim subscribes to the roster",
        _sent("vidim", "focus", "SUBSCRIBE sip:conf-", "Event: conference"),
    ),
    ("bob dials in with his key", _sent("bob", "focus", "INVITE sip:conf-", ";key=")),
    ("the focus admits bob with SDP", _sent("focus", "bob", "200 OK (INVITE)", "m=video")),
    ("the focus tells vidim bob joined", _sent("focus", "vidim", "NOTIFY", "connected")),
    (
        "alice hears bob joined",
        _sent("vidim", "alice", "MESSAGE sip:alice@", "bob@example.com joined"),
    ),
    ("alice sends /end", _sent("alice", "vidim", "MESSAGE sip:vidim@", "/end")),
    ("vidim sends BYE to the anchor", _sent("vidim", "focus", "BYE sip:conf-")),
    ("the focus sends BYE to bob", _sent("focus", "bob", "BYE sip:bob@")),
    (
        "alice hears the conference ended",
        _sent("vidim", "alice", "MESSAGE sip:alice@", "has ended"),
    ),
    (
        "the allocator reports the conference ended",
        _emitted("vidim", allocator_events.ConferenceEnded),
    ),
    ("the focus reports the conference ended", _emitted("focus", focus_events.ConferenceEnded)),
    ("every transaction has ended", _all_ended),
)


def missing_steps(demo: Demo) -> list[str]:
    return [step for step, happened in STEPS if not happened(demo)]


def run_demo(out: Callable[[str], None] = print) -> int:
    """Play the scenario and print the ladder; 0 when every expected step happened."""
    demo = build()
    play(demo)
    out(f"vidim {__version__}: the real allocator and focus on a virtual clock, no sockets")
    out("   time  from      to     message")
    for datagram in demo.network.datagrams:
        out(ladder_line(datagram))
    if demo.quiet:
        out(f"{demo.network.now:7.3f}  every transaction has ended")
    missing = missing_steps(demo)
    for step in missing:
        out(f"MISSING: {step}")
    return 1 if missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidim", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"vidim {__version__}")
    parser.parse_args(argv)
    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
