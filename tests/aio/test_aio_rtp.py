"""The RTP relay on real loopback sockets (port 0 binds, bounded waits, no sleeps)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from unittest.mock import ANY

import pytest

from vidim.aio import PortsUnavailableError, RtpRelay
from vidim.focus import ForwardingPlan, ParticipantMedia, StreamInfo, forwarding_plan
from vidim.vocabulary import Mode

WAIT = 5.0


class Endpoint(asyncio.DatagramProtocol):
    """A fake participant's RTP socket: queues what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))


async def endpoint() -> tuple[asyncio.DatagramTransport, Endpoint, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
    return transport, protocol, transport.get_extra_info("sockname")[1]


def rtp(payload_type: int, seq: int) -> bytes:
    return bytes((0x80, 0x80 | payload_type)) + seq.to_bytes(2, "big") + bytes(8) + b"media"


async def scenario() -> None:
    bob_t, bob, bob_port = await endpoint()
    carol_t, carol, carol_port = await endpoint()
    dave_t, dave, dave_port = await endpoint()
    # bob (video) and carol (audio) talk; dave watches. Plan ports are virtual
    # (the relay binds port 0 for each): 100 bob, 110 carol, 120 dave.
    te = "telephone-event/8000/1"

    def audio(local: int, remote: int, dtmf: int) -> StreamInfo:
        return StreamInfo(
            "audio",
            local,
            "127.0.0.1",
            remote,
            remote,
            payload_types=(("pcmu/8000/1", 0), (te, dtmf)),
        )

    plan = forwarding_plan(
        [
            ParticipantMedia("sip:bob@x", Mode.VIDEO, (audio(100, bob_port, 101),)),
            ParticipantMedia("sip:carol@x", Mode.AUDIO, (audio(110, carol_port, 121),)),
            ParticipantMedia("sip:dave@x", Mode.WATCH, (audio(120, dave_port, 101),)),
        ]
    )
    relay = RtpRelay("127.0.0.1", ephemeral=True)
    await relay.apply(plan)
    try:
        assert relay.ports == {100, 101, 110, 111, 120, 121}
        bob_t.sendto(rtp(0, 1), relay.address(100))
        bob_t.sendto(rtp(101, 2), relay.address(100))
        for queue in (carol.received, dave.received):
            data, source = await asyncio.wait_for(queue.get(), WAIT)
            assert data == rtp(0, 1)
            data, source = await asyncio.wait_for(queue.get(), WAIT)
            # carol numbers telephone-event 121: rewritten; dave uses 101 like bob.
            assert data[1] & 0x7F == (121 if queue is carol.received else 101)
            assert data[1] & 0x80  # marker bit kept
        # Each receiver gets packets from its own focus port.
        assert source == relay.address(120)
        # dave's packets go nowhere; carol's reach bob and dave.
        dave_t.sendto(rtp(0, 3), relay.address(120))
        carol_t.sendto(rtp(0, 4), relay.address(110))
        data, source = await asyncio.wait_for(bob.received.get(), WAIT)
        assert (data, source) == (rtp(0, 4), relay.address(100))
        data, _ = await asyncio.wait_for(dave.received.get(), WAIT)
        assert data == rtp(0, 4)
        assert bob.received.empty()
        stats = relay.stats()
        assert (stats[100].packets_in, stats[100].packets_out) == (2, 4)
        assert (stats[110].packets_in, stats[110].packets_out) == (1, 2)
        assert (stats[120].packets_in, stats[120].packets_out) == (1, 0)
        assert stats[100].bytes_out == 4 * len(rtp(0, 1))
        # Per participant (metrics): what each got, counted at its own port.
        media = relay.media.streams()
        got = {uri: (s.packets_in, s.packets_out) for (uri, _), s in media.items()}
        assert got == {"sip:bob@x": (2, 1), "sip:carol@x": (1, 2), "sip:dave@x": (1, 3)}
        assert media[("sip:dave@x", "audio")].bytes_out == 3 * len(rtp(0, 1))

        # A new plan without carol: her sockets close, bob now reaches dave only.
        smaller = forwarding_plan(
            [
                ParticipantMedia("sip:bob@x", Mode.VIDEO, (audio(100, bob_port, 101),)),
                ParticipantMedia("sip:dave@x", Mode.WATCH, (audio(120, dave_port, 101),)),
            ]
        )
        bob_address = relay.address(100)
        await relay.apply(smaller)
        assert relay.ports == {100, 101, 120, 121}
        assert ("sip:carol@x", "audio") not in relay.media.streams()  # she left
        assert relay.address(100) == bob_address  # kept, not rebound
        bob_t.sendto(rtp(0, 5), relay.address(100))
        data, _ = await asyncio.wait_for(dave.received.get(), WAIT)
        assert data == rtp(0, 5)
        assert carol.received.empty()
    finally:
        await relay.close()
        for transport in (bob_t, carol_t, dave_t):
            transport.close()
    assert relay.ports == frozenset()


def test_relay_forwards_per_plan_on_loopback() -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))


async def latching_scenario() -> None:
    bob_t, bob, _ = await endpoint()
    carol_t, carol, carol_port = await endpoint()

    def audio(local: int, remote: int) -> StreamInfo:
        return StreamInfo("audio", local, "127.0.0.1", remote, remote + 1)

    # Bob's SDP names port 9 (nothing there): he is behind a NAT that maps
    # him to his socket's real port.
    plan = forwarding_plan(
        [
            ParticipantMedia("sip:bob@x", Mode.AUDIO, (audio(100, 9),)),
            ParticipantMedia("sip:carol@x", Mode.AUDIO, (audio(110, carol_port),)),
        ]
    )
    relay = RtpRelay("127.0.0.1", latching=True, ephemeral=True)
    await relay.apply(plan)
    try:
        bob_t.sendto(rtp(0, 1), relay.address(100))  # latches port 100 to bob's socket
        data, _ = await asyncio.wait_for(carol.received.get(), WAIT)
        assert data == rtp(0, 1)
        carol_t.sendto(rtp(0, 2), relay.address(110))
        data, source = await asyncio.wait_for(bob.received.get(), WAIT)
        assert (data, source) == (rtp(0, 2), relay.address(100))
    finally:
        await relay.close()
        for transport in (bob_t, carol_t):
            transport.close()


def test_latching_sends_to_where_a_participant_really_is() -> None:
    asyncio.run(asyncio.wait_for(latching_scenario(), 20))


def test_a_plan_with_taken_ports_names_each_and_binds_once_they_are_free() -> None:
    async def scenario() -> None:
        # Two pairs whose odd (RTCP) ports another program holds: bob's and carol's.
        holders: list[socket.socket] = []
        while len(holders) < 2:
            holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            holder.bind(("127.0.0.1", 0))
            if holder.getsockname()[1] % 2:  # odd: the RTCP port of an even pair
                holders.append(holder)
            else:
                holder.close()
        taken = [h.getsockname()[1] for h in holders]
        plan = forwarding_plan(
            ParticipantMedia(uri, Mode.AUDIO, (StreamInfo("audio", port - 1, "127.0.0.1", 9, 10),))
            for uri, port in zip(("sip:bob@x", "sip:carol@x"), taken, strict=True)
        )
        relay = RtpRelay("127.0.0.1")  # the plan's own port numbers
        try:
            with pytest.raises(PortsUnavailableError) as raised:
                await relay.apply(plan)
            assert sorted(raised.value.errors) == sorted(taken)
            assert all(isinstance(e, OSError) for e in raised.value.errors.values())
            assert str(taken[0]) in str(raised.value)
            assert relay.plan == ForwardingPlan()
            assert relay.ports == frozenset()
            for holder in holders:
                holder.close()
            # The RTP ports it bound and gave back are free at once: the plan binds now.
            await relay.apply(plan)
            assert relay.ports == plan.ports
        finally:
            for holder in holders:
                holder.close()
            await relay.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_with_latching_the_sdp_address_takes_a_port_back_from_a_stranger() -> None:
    """The stranger who sent first is believed only until the participant's own address speaks."""

    async def scenario() -> None:
        bob_t, _, bob_port = await endpoint()
        carol_t, carol, carol_port = await endpoint()
        stranger_t, _, _ = await endpoint()

        def audio(local: int, remote: int) -> StreamInfo:
            return StreamInfo("audio", local, "127.0.0.1", remote, remote + 1)

        plan = forwarding_plan(
            [
                ParticipantMedia("sip:bob@x", Mode.AUDIO, (audio(100, bob_port),)),
                ParticipantMedia("sip:carol@x", Mode.AUDIO, (audio(110, carol_port),)),
            ]
        )
        relay = RtpRelay("127.0.0.1", latching=True, ephemeral=True)
        await relay.apply(plan)
        try:
            stranger_t.sendto(rtp(0, 1), relay.address(100))  # first: latched
            assert await asyncio.wait_for(carol.received.get(), WAIT) == (rtp(0, 1), ANY)
            bob_t.sendto(rtp(0, 2), relay.address(100))  # the SDP address: latched again
            assert await asyncio.wait_for(carol.received.get(), WAIT) == (rtp(0, 2), ANY)
            stranger_t.sendto(rtp(0, 3), relay.address(100))  # now a stranger: dropped
            bob_t.sendto(rtp(0, 4), relay.address(100))
            assert await asyncio.wait_for(carol.received.get(), WAIT) == (rtp(0, 4), ANY)
            assert relay.stats()[100].strangers == 1
        finally:
            await relay.close()
            for transport in (bob_t, carol_t, stranger_t):
                transport.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_without_latching_a_port_whose_sdp_named_no_address_takes_nothing() -> None:
    async def scenario() -> None:
        bob_t, _, bob_port = await endpoint()
        carol_t, carol, carol_port = await endpoint()
        plan = forwarding_plan(
            [  # bob on hold with c=0.0.0.0: nobody is his address
                ParticipantMedia(
                    "sip:bob@x", Mode.AUDIO, (StreamInfo("audio", 100, "0.0.0.0", bob_port, 0),)
                ),
                ParticipantMedia(
                    "sip:carol@x",
                    Mode.AUDIO,
                    (StreamInfo("audio", 110, "127.0.0.1", carol_port, carol_port + 1),),
                ),
            ]
        )
        relay = RtpRelay("127.0.0.1", ephemeral=True)
        await relay.apply(plan)
        try:
            bob_t.sendto(rtp(0, 1), relay.address(100))
            carol_t.sendto(rtp(0, 2), relay.address(110))  # carol's own: taken, goes nowhere
            await asyncio.wait_for(_counted(relay, 2), WAIT)
            assert relay.stats()[100].strangers == 1
            assert relay.stats()[110].strangers == 0
            assert carol.received.empty()
        finally:
            await relay.close()
            for transport in (bob_t, carol_t):
                transport.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


async def _counted(relay: RtpRelay, packets: int) -> None:
    while relay.totals().packets_in < packets:
        await asyncio.sleep(0.005)


async def mixed_scenario() -> None:
    bob_t, bob, _ = await endpoint()
    stranger_t, _, _ = await endpoint()

    def audio(local: int, remote: int) -> StreamInfo:
        return StreamInfo("audio", local, "127.0.0.1", remote, remote + 1,
                          payload_types=(("pcmu/8000/1", 0),))  # fmt: skip

    # Bob's SDP names port 9: with latching, his first packet says where he is.
    plan = forwarding_plan(
        [ParticipantMedia("sip:bob@x", Mode.AUDIO, (audio(100, 9),))], conference="sip:conf@x"
    )
    relay = RtpRelay("127.0.0.1", latching=True, ephemeral=True)
    taken: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    await relay.apply(plan)
    try:
        relay.send(102, b"to a port not in the plan")  # no socket: dropped
        assert relay.stats()[102].dropped == 1
        bob_t.sendto(rtp(0, 1), relay.address(100))  # latched, but nobody takes mixed media
        await asyncio.wait_for(until(lambda: relay.totals().packets_in == 1), WAIT)
        assert relay.stats()[100].dropped == 1
        relay.on_terminated = lambda port, data: taken.put_nowait((port, data))
        bob_t.sendto(rtp(0, 2), relay.address(100))
        assert await asyncio.wait_for(taken.get(), WAIT) == (100, rtp(0, 2))
        stranger_t.sendto(rtp(0, 3), relay.address(100))  # from elsewhere: never mixed
        await asyncio.wait_for(until(lambda: relay.stats()[100].strangers == 1), WAIT)
        relay.send(100, b"the mix")  # the mix goes to where bob's packets came from
        data, source = await asyncio.wait_for(bob.received.get(), WAIT)
        assert (data, source) == (b"the mix", relay.address(100))
        assert taken.empty()
    finally:
        await relay.close()
        for transport in (bob_t, stranger_t):
            transport.close()


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


def test_mixed_routes_go_to_the_mixer_and_its_packets_to_the_participant() -> None:
    asyncio.run(asyncio.wait_for(mixed_scenario(), 20))
