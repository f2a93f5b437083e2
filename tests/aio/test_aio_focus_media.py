"""FocusMedia: the relay follows the focus's plan, latest last (loopback sockets, no sleeps)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import pytest

from vidim.aio import FocusMedia, RtpRelay
from vidim.focus import (
    ConferenceEnded,
    ForwardingPlan,
    MediaPlanChanged,
    ParticipantMedia,
    StreamInfo,
    forwarding_plan,
)
from vidim.vocabulary import Mode

WAIT = 5.0


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)


class Focus:
    """Stands in for a ConferenceFocus: a plan the test sets."""

    def __init__(self) -> None:
        self.forwarding_plan = ForwardingPlan()
        self.unavailable: list[dict[int, str]] = []

    def ports_unavailable(self, errors: dict[int, str], now: float) -> None:
        self.unavailable.append(dict(errors))


class CountingRelay(RtpRelay):
    """Records each plan applied; ``during_apply`` runs inside the next apply, once."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", ephemeral=True)
        self.applied: list[ForwardingPlan] = []
        self.during_apply: Callable[[], None] | None = None

    async def apply(self, plan: ForwardingPlan) -> None:
        self.applied.append(plan)
        hook, self.during_apply = self.during_apply, None
        if hook is not None:
            hook()
        await super().apply(plan)


def two_party_plan(base: int, bob_port: int, carol_port: int) -> ForwardingPlan:
    def audio(local: int, remote: int) -> StreamInfo:
        return StreamInfo("audio", local, "127.0.0.1", remote, remote + 1)

    return forwarding_plan(
        [
            ParticipantMedia("sip:bob@x", Mode.AUDIO, (audio(base, bob_port),)),
            ParticipantMedia("sip:carol@x", Mode.AUDIO, (audio(base + 10, carol_port),)),
        ]
    )


def changed(plan: ForwardingPlan) -> MediaPlanChanged:
    return MediaPlanChanged(conference_uri="sip:conf-1@127.0.0.1", plan=plan)


def run(scenario: object) -> None:
    asyncio.run(asyncio.wait_for(scenario, 20))  # type: ignore[arg-type]


def test_a_plan_change_reaches_the_relay_and_packets_flow() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        carol_t, carol = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
        carol_port = carol_t.get_extra_info("sockname")[1]
        focus = Focus()
        media = FocusMedia(focus, CountingRelay())
        try:
            media.on_event(ConferenceEnded(conference_uri="sip:c@x", reason="r"))  # not a plan
            await media.settled()
            assert media.relay.applied == []  # type: ignore[attr-defined]
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sender.bind(("127.0.0.1", 0))  # bob sends from the port his SDP names
            bob_port = sender.getsockname()[1]
            focus.forwarding_plan = two_party_plan(100, bob_port, carol_port)
            media.on_event(changed(focus.forwarding_plan))
            await media.settled()
            assert media.relay.ports == {100, 101, 110, 111}
            try:
                sender.sendto(b"\x80\x00rtp from bob", media.relay.address(100))
            finally:
                sender.close()
            assert await asyncio.wait_for(carol.received.get(), WAIT) == b"\x80\x00rtp from bob"
        finally:
            await media.close()
            carol_t.close()
        assert media.relay.ports == frozenset()

    run(scenario())


def test_a_burst_of_changes_ends_with_the_latest_plan() -> None:
    async def scenario() -> None:
        focus = Focus()
        relay = CountingRelay()
        media = FocusMedia(focus, relay)
        plans = [two_party_plan(base, 9, 19) for base in (100, 200, 300, 400)]

        def change(plan: ForwardingPlan) -> None:
            focus.forwarding_plan = plan
            media.on_event(changed(plan))

        # Changes before the relay starts: one apply, of the last.
        change(plans[0])
        change(plans[1])
        await media.settled()
        assert relay.applied == [plans[1]]
        # Changes while an apply is under way: one more apply, of the last.
        relay.during_apply = lambda: (change(plans[2]), change(plans[3]))  # type: ignore[func-returns-value]
        change(plans[0])
        await media.settled()
        assert relay.applied == [plans[1], plans[0], plans[3]]
        assert relay.plan == plans[3]
        assert relay.ports == {400, 401, 410, 411}
        change(ForwardingPlan())
        await media.close()
        assert relay.plan == ForwardingPlan()
        assert relay.ports == frozenset()

    run(scenario())


def test_a_plan_that_cannot_be_bound_is_logged_and_the_old_one_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        relay = RtpRelay("127.0.0.1")  # binds the plan's own port numbers
        focus = Focus()
        media = FocusMedia(focus, relay, logger=logging.getLogger("test.media"))
        try:
            focus.forwarding_plan = forwarding_plan(
                [
                    ParticipantMedia(
                        "sip:bob@x",
                        Mode.AUDIO,
                        (StreamInfo("audio", port - port % 2, "127.0.0.1", 9, 10),),
                    )
                ]
            )
            with caplog.at_level(logging.ERROR, logger="test.media"):
                media.plan_changed()
                await media.settled()
            assert f"RTP relay: cannot bind port {port} of sip:bob@x (audio)" in caplog.text
            assert "the previous plan stays" in caplog.text
            assert focus.unavailable == []  # no server attached: the focus is not told
            assert relay.plan == ForwardingPlan()
            assert relay.ports == frozenset()
        finally:
            await media.close()
            taken.close()

    run(scenario())
