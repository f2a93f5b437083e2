"""A focus killed and restarted from its records: the calls go on (issue 16), on real sockets.

The focus runs behind SipServer + FocusMedia on loopback; its changes are
written to a dict before its messages leave (as a state store would).  Two
participants, simulated with vidim's own SIP pieces over UDP sockets, send
RTP.  Then the server and the relay are dropped without a word (a kill -9:
no BYE, no cleanup), a new focus is restored from the records on the same
SIP and RTP ports, and RTP must flow again, a BYE must be answered 200.
Every wait is bounded and waits on what arrives, never on a sleep.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import logging
import random
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from audio_packets import is_loud, tone_packet
from focus_peers import FOCUS, AllocatorSide, Peer, Softphone, make_conference, pjsua2_offer

from vidim.aio import FocusMedia, RtpRelay, SipServer
from vidim.focus import (
    ConferenceFocus,
    FocusConfig,
    FocusEvent,
    MediaPortUnavailable,
    ParticipantLeft,
)
from vidim.sdp import media_summary
from vidim.sip import Address, Message
from vidim.vocabulary import Mode

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
CAROL = "sip:carol@example.com"
WAIT = 5.0
#: The daemon runs on uvloop when it is installed, on asyncio's loop otherwise: both here.
LOOPS = [
    "asyncio",
    pytest.param(
        "uvloop",
        marks=pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="no uvloop"),
    ),
]


def run_on(loop: str, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.SelectorEventLoop
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(scenario(), 30))


class StoredFocus(ConferenceFocus):
    """A focus whose records are written to ``store`` before its messages leave."""

    def __init__(self, config: FocusConfig, store: dict[str, str]) -> None:
        super().__init__(config)
        self.record_changes()
        self.store = store

    def messages_to_send(self) -> list[tuple[Message, Address]]:
        for change in self.take_changes():
            if change.record is None:
                self.store.pop(change.id, None)
            else:
                self.store[change.id] = json.dumps(change.record)
        return super().messages_to_send()


class Arrivals:
    """Wakes whoever waits whenever something arrives; waits are bounded."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def poke(self) -> None:
        self._event.set()

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        async def wait() -> None:
            while not condition():
                self._event.clear()
                await self._event.wait()

        try:
            await asyncio.wait_for(wait(), WAIT)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


class UdpPeer(asyncio.DatagramProtocol):
    """Runs a sans-IO test peer on a UDP socket; what it sends to FOCUS goes to ``focus``."""

    def __init__(self, arrivals: Arrivals, focus: Address) -> None:
        self.arrivals = arrivals
        self.focus = focus
        self.peer: Peer | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.peer is not None
        self.peer.deliver(data, Address(addr[0], addr[1]), asyncio.get_running_loop().time())
        self.flush()
        self.arrivals.poke()

    def flush(self) -> None:
        assert self.peer is not None
        assert self.transport is not None
        for message, destination in self.peer.outgoing(asyncio.get_running_loop().time()):
            to = self.focus if destination == FOCUS else destination
            self.transport.sendto(message.to_bytes(), (to.host, to.port))


class Rtp(asyncio.DatagramProtocol):
    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        self.arrivals.poke()


def free_port() -> int:
    """A port free for UDP and TCP now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))
    return port


def free_range(size: int = 16) -> tuple[int, int]:
    """An even-based UDP port range whose every port is free now."""
    for _ in range(50):
        low = random.randrange(20000, 30000, 2)
        sockets: list[socket.socket] = []
        try:
            for port in range(low, low + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return low, low + size - 1
    raise AssertionError("no free UDP port range")


class World:
    """The focus side (restartable) and three peers on loopback."""

    def __init__(self) -> None:
        self.arrivals = Arrivals()
        self.store: dict[str, str] = {}
        self.config = FocusConfig(local=Address("127.0.0.1", free_port()), rtp_ports=free_range())
        self.events: list[FocusEvent] = []
        self.focus: StoredFocus | None = None
        self.server: SipServer[FocusEvent] | None = None
        self.media: FocusMedia | None = None
        self.closers: list[Callable[[], None]] = []
        self.peers: dict[str, UdpPeer] = {}
        self.rtp: dict[str, tuple[asyncio.DatagramTransport, Rtp]] = {}

    async def start_focus(self) -> None:
        """A focus with whatever the store holds, behind a new server and relay."""
        focus = StoredFocus(self.config, self.store)
        for text in self.store.values():
            focus.restore(json.loads(text), time.time())
        media = FocusMedia(focus, RtpRelay("127.0.0.1"), logger=logging.getLogger("test.media"))

        def on_event(event: FocusEvent) -> None:
            self.events.append(event)
            media.on_event(event)
            self.arrivals.poke()

        local = self.config.local
        server = SipServer(
            focus, host=local.host, port=local.port, clock=time.time, on_event=on_event
        )
        media.attach(server)
        await server.start()
        await media.settled()
        self.focus, self.server, self.media = focus, server, media

    async def kill_focus(self) -> None:
        """As kill -9 would: sockets gone, nobody told, no BYE."""
        assert self.server is not None
        assert self.media is not None
        self.server.core = _Silent()  # type: ignore[assignment]  # the dead say nothing
        await self.server.close(drain=0.0, flush_timeout=0.5)
        await self.media.relay.close()
        self.focus = self.server = self.media = None

    async def peer(self, make: Callable[[Address], Peer]) -> Peer:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: UdpPeer(self.arrivals, self.config.local), local_addr=("127.0.0.1", 0)
        )
        self.closers.append(transport.close)
        protocol.transport = transport
        protocol.peer = make(Address("127.0.0.1", transport.get_extra_info("sockname")[1]))
        self.peers[str(id(protocol.peer))] = protocol
        return protocol.peer

    async def rtp_socket(self, name: str) -> int:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: Rtp(self.arrivals), local_addr=("127.0.0.1", 0)
        )
        self.closers.append(transport.close)
        self.rtp[name] = (transport, protocol)
        return int(transport.get_extra_info("sockname")[1])

    def flush(self, peer: Peer) -> None:
        self.peers[str(id(peer))].flush()

    def focus_port(self, phone: Softphone) -> int:
        (port,) = [p for kind, p, _ in media_summary(phone.answer()) if kind == "audio"]
        return port

    async def rtp_flows(self, sender: str, sender_phone: Softphone, receiver: str) -> None:
        """The sender speaks until the receiver hears sound in the focus's mix."""
        transport, _ = self.rtp[sender]
        _, inbox = self.rtp[receiver]
        start = len(inbox.received)
        target = ("127.0.0.1", self.focus_port(sender_phone))
        ssrc = 0x5000 + start

        async def speak() -> None:  # UDP: spoken until it is through
            for sequence in itertools.count():
                transport.sendto(tone_packet(sequence, ssrc=ssrc), target)
                await asyncio.sleep(0.02)

        task = asyncio.get_running_loop().create_task(speak())
        try:
            await self.arrivals.until(
                lambda: any(is_loud(data) for data in inbox.received[start:]),
                f"RTP {sender}->{receiver}",
            )
        finally:
            task.cancel()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close(drain=0.0, flush_timeout=0.5)
        if self.media is not None:
            await self.media.close()
        for close in self.closers:
            close()


class _Silent:
    """Stands in for a killed focus: no messages, no events, no deadlines."""

    def messages_to_send(self) -> list[tuple[Message, Address]]:
        return []

    def events(self) -> list[Any]:
        return []

    def get_timer(self) -> None:
        return None

    def has_pending_work(self) -> bool:
        return False


async def a_call(world: World) -> tuple[AllocatorSide, Softphone, Softphone]:
    """A conference with Bob and Carol in a call, RTP flowing both ways."""
    await world.start_focus()
    loop = asyncio.get_running_loop()
    allocator = await world.peer(lambda address: AllocatorSide(address))
    assert isinstance(allocator, AllocatorSide)
    allocator.create(
        make_conference([(ALICE, Mode.AUDIO), (BOB, Mode.AUDIO), (CAROL, Mode.AUDIO)]), loop.time()
    )
    world.flush(allocator)
    await world.arrivals.until(lambda: allocator.conference_uri is not None, "the conference")
    phones = []
    for name, uri in (("bob", BOB), ("carol", CAROL)):
        rtp_port = await world.rtp_socket(name)
        phone = await world.peer(
            lambda address, name=name, rtp_port=rtp_port: Softphone(  # type: ignore[misc]
                name, address, pjsua2_offer(rtp_port, video_slot=False)
            )
        )
        assert isinstance(phone, Softphone)
        invite = phone.call(allocator.join_uri(uri), loop.time())
        world.flush(phone)
        await world.arrivals.until(
            lambda phone=phone, invite=invite: bool(phone.answered(invite)), name
        )
        assert phone.final(invite).status == 200
        phones.append(phone)
    bob, carol = phones
    # The ACKs are in when both are connected; the relay runs the plan.
    await world.arrivals.until(
        lambda: world.focus is not None and _connected(world.focus) == 2, "ACKs"
    )
    assert world.media is not None
    await world.media.settled()
    await world.rtp_flows("bob", bob, "carol")
    await world.rtp_flows("carol", carol, "bob")
    return allocator, bob, carol


def _connected(focus: ConferenceFocus) -> int:
    (conference,) = focus.conferences()
    return sum(1 for _, state in conference.participants if state.value == "connected")


@pytest.mark.parametrize("loop", LOOPS)
def test_after_kill_and_restart_rtp_flows_again_and_bye_is_answered(loop: str) -> None:
    async def scenario() -> None:
        world = World()
        try:
            allocator, bob, carol = await a_call(world)
            assert world.focus is not None
            ports = world.focus.forwarding_plan.ports
            await world.kill_focus()
            await world.start_focus()
            focus, media = world.focus, world.media
            assert focus is not None
            assert media is not None
            assert media.relay.ports == ports  # the same ports, bound again
            await world.rtp_flows("bob", bob, "carol")
            await world.rtp_flows("carol", carol, "bob")
            # Carol hangs up on the restored focus: 200, and she has left.
            bye = carol.hang_up(asyncio.get_running_loop().time())
            world.flush(carol)
            await world.arrivals.until(lambda: bool(carol.answered(bye)), "the BYE's answer")
            assert carol.final(bye).status == 200
            await world.arrivals.until(
                lambda: any(isinstance(e, ParticipantLeft) for e in world.events), "left"
            )
            assert focus.conferences()[0].connected == (BOB,)
            await media.settled()
            assert media.relay.ports == focus.forwarding_plan.ports
            assert not bob.received("BYE")
            assert not allocator.received("BYE")
        finally:
            await world.close()

    run_on(loop, scenario)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_port_taken_meanwhile_ends_that_call_with_bye(
    loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        world = World()
        thief = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            _, bob, carol = await a_call(world)
            carol_port = world.focus_port(carol)
            await world.kill_focus()
            thief.bind(("127.0.0.1", carol_port + 1))  # Carol's RTCP port, while the focus is down
            with caplog.at_level(logging.ERROR, logger="test.media"):
                await world.start_focus()
                await world.arrivals.until(lambda: bool(carol.received("BYE")), "Carol's BYE")
            focus, media = world.focus, world.media
            assert focus is not None
            assert media is not None
            (unavailable,) = [e for e in world.events if isinstance(e, MediaPortUnavailable)]
            assert (unavailable.uri, unavailable.port) == (CAROL, carol_port + 1)
            assert f"RTP relay: cannot bind port {carol_port + 1} of {CAROL} (audio)" in caplog.text
            assert "its call is ended" in caplog.text
            await media.settled()
            assert media.relay.ports == focus.forwarding_plan.ports
            assert world.focus_port(bob) in media.relay.ports
            assert carol_port not in media.relay.ports
            assert focus.conferences()[0].connected == (BOB,)
            assert not bob.received("BYE")
        finally:
            thief.close()
            await world.close()

    run_on(loop, scenario)
