"""Clean shutdown: draining the core's pending work, 503 while closing, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from aio_helpers import LOOPS, TIMEOUT, EchoCore, request_bytes, run_on, udp_client

from vidim.aio import SipServer, serve_forever_until_signal
from vidim.sip import Address, Request, Response, parse_message


def test_close_keeps_the_timer_running_until_the_core_is_idle() -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        ticks: list[bool] = []

        def on_timer(now: float) -> None:
            ticks.append(server.closing)
            assert core.deadline is not None
            # Two more steps of work, then nothing pending.
            core.deadline = now + 0.02 if len(ticks) < 3 else None

        core.on_timer = on_timer
        core.deadline = server.now() + 0.02
        server.transmit()
        started = time.monotonic()
        await asyncio.wait_for(server.close(drain=TIMEOUT), TIMEOUT + 1)
        elapsed = time.monotonic() - started
        assert ticks == [True, True, True]  # all of it ran after close() began
        assert core.deadline is None
        assert elapsed < TIMEOUT

    asyncio.run(main())


def test_close_returns_within_drain_when_the_core_never_settles() -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()

        def on_timer(now: float) -> None:
            core.deadline = now + 0.05  # always more to do

        core.on_timer = on_timer
        core.deadline = server.now() + 0.05
        server.transmit()
        started = time.monotonic()
        await asyncio.wait_for(server.close(drain=0.3), TIMEOUT)
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 0.3 + 0.5
        assert server.next_deadline is None  # the timer is gone: nothing fires after close
        assert len(core.timer_calls) >= 3

    asyncio.run(main())


def test_a_core_that_keeps_a_past_deadline_does_not_make_the_server_spin() -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        core.deadline = server.now()  # and handle_timer never clears it (a core bug)
        server.transmit()
        await asyncio.wait_for(server.close(drain=0.35), TIMEOUT)
        # Backed off to one call per 0.1 s instead of thousands.
        assert 1 <= len(core.timer_calls) <= 6

    asyncio.run(main())


def test_while_draining_new_requests_get_503_and_responses_still_reach_the_core() -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        client = await udp_client()
        draining = asyncio.Event()
        response_seen = asyncio.Event()

        def on_timer(now: float) -> None:
            if server.closing:
                draining.set()
            # Pending until a response arrives.
            core.deadline = None if response_seen.is_set() else now + 0.02

        def on_receive(message: Request | Response, source: Address, now: float) -> None:
            if isinstance(message, Response):
                response_seen.set()

        core.on_timer = on_timer
        core.on_receive = on_receive
        core.deadline = server.now() + 0.02
        server.transmit()
        closing = asyncio.ensure_future(server.close(drain=TIMEOUT))
        try:
            await asyncio.wait_for(draining.wait(), TIMEOUT)
            client.send(request_bytes(call_id="too-late", via_port=client.port), server.port)
            refusal = await client.response_to("too-late")
            assert refusal.status == 503
            assert refusal.headers.get("Retry-After") is not None
            assert "shutting down" in (refusal.headers.get("Warning") or "")
            # A response (to something the core sent earlier) still gets in.
            client.send(
                b"SIP/2.0 200 OK\r\n"
                b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKcore1\r\n"
                b"From: <sip:vidim@127.0.0.1>;tag=v1\r\n"
                b"To: <sip:bob@127.0.0.1>;tag=b1\r\n"
                b"Call-ID: earlier@vidim\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                server.port,
            )
            await asyncio.wait_for(closing, TIMEOUT)
            assert response_seen.is_set()
            assert [m.call_id for m, _, _ in core.received] == ["earlier@vidim"]
        finally:
            client.close()
            if not closing.done():
                closing.cancel()

    asyncio.run(main())


def test_signal_calls_before_close_then_drains() -> None:
    async def main() -> None:
        core = EchoCore()
        goodbyes: list[float] = []

        def on_event(event: object) -> None:
            os.kill(os.getpid(), signal.SIGUSR1)  # the "operator" stops the daemon

        server = SipServer(core, port=0, on_event=on_event)
        await server.start()
        client = await udp_client()

        def before_close() -> None:
            # e.g. focus.end_all(now): queues BYEs, which must still go out.
            goodbyes.append(server.now())
            bye = request_bytes("BYE", call_id="goodbye", to_tag="t1", via_port=server.port)
            core.queue(parse_message(bye), Address("127.0.0.1", client.port, "UDP"))

        try:
            serving = asyncio.ensure_future(
                serve_forever_until_signal(
                    server, signals=(signal.SIGUSR1,), before_close=before_close, drain=1.0
                )
            )
            client.send(request_bytes(call_id="trigger", via_port=client.port), server.port)
            number = await asyncio.wait_for(serving, TIMEOUT)
            assert number == signal.SIGUSR1
            assert len(goodbyes) == 1
            seen = {
                (type(m).__name__, m.call_id) for m in [await client.next(), await client.next()]
            }
            assert seen == {("Response", "trigger"), ("Request", "goodbye")}
        finally:
            client.close()
        # The handler is removed: SIGUSR1 is back to its previous disposition.
        assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None)

    asyncio.run(main())


def test_stop_event_ends_serving_without_a_signal() -> None:
    async def main() -> None:
        server = SipServer(EchoCore(), port=0)
        stop = asyncio.Event()
        stop.set()
        result = await asyncio.wait_for(
            serve_forever_until_signal(server, signals=(), stop=stop, drain=0.5), TIMEOUT
        )
        assert result is None
        assert server.started  # it started the server itself
        assert server.closing

    asyncio.run(main())


def test_several_servers_are_stopped_and_drained_together() -> None:
    async def main() -> None:
        cores = [EchoCore(), EchoCore()]
        servers = [SipServer(core, port=0) for core in cores]
        stop = asyncio.Event()
        calls: list[str] = []

        def before_close() -> None:
            calls.append("before_close")
            # The first core still has work pending: both close only when it is done.
            cores[0].deadline = servers[0].now() + 0.02
            cores[0].on_timer = lambda now: setattr(cores[0], "deadline", None)

        serving = asyncio.ensure_future(
            serve_forever_until_signal(
                servers, signals=(), before_close=before_close, stop=stop, drain=TIMEOUT
            )
        )
        stop.set()
        assert await asyncio.wait_for(serving, TIMEOUT) is None
        assert calls == ["before_close"]
        assert all(server.started and server.closing for server in servers)
        assert len(cores[0].timer_calls) == 1
        assert cores[1].timer_calls == []

    asyncio.run(main())


@pytest.mark.parametrize("loop", LOOPS)
def test_requests_still_queued_when_the_socket_closes_are_answered(loop: str) -> None:
    """Issue 16: datagrams in the kernel's queue at close got no answer at all."""

    async def main() -> None:
        server = SipServer(EchoCore(), port=0)
        await server.start()
        client = await udp_client()
        server.stop_accepting()
        calls = [f"queued-{n}" for n in range(20)]
        # Sent with no await between them and close(): the loop reads none of them
        # before close() (which has nothing to wait for) closes the socket.
        for call_id in calls:
            client.send(request_bytes(call_id=call_id, via_port=client.port), server.port)
        try:
            await asyncio.wait_for(server.close(drain=TIMEOUT), TIMEOUT)
            answers = [await client.next() for _ in calls]
            assert {a.call_id for a in answers} == set(calls)
            assert all(isinstance(a, Response) and a.status == 503 for a in answers)
        finally:
            client.close()

    run_on(loop, main)


def test_new_requests_get_503_for_the_whole_refusal_window() -> None:
    async def main() -> None:
        server = SipServer(EchoCore(), port=0)
        await server.start()
        client = await udp_client()
        started = time.monotonic()
        closing = asyncio.ensure_future(server.close(drain=TIMEOUT, refuse_for=0.4))
        try:
            await asyncio.sleep(0.2)  # inside the window: the server must still answer
            client.send(request_bytes(call_id="in-window", via_port=client.port), server.port)
            refusal = await client.response_to("in-window")
            assert refusal.status == 503
            assert refusal.headers.get("Retry-After") == "10"
            await asyncio.wait_for(closing, TIMEOUT)
            assert 0.4 <= time.monotonic() - started < 0.4 + 1.0
        finally:
            client.close()
            if not closing.done():
                closing.cancel()

    asyncio.run(main())


def test_work_queued_after_stop_accepting_is_drained() -> None:
    """stop_accepting, then (e.g. on SIGTERM) BYEs queued: close waits for them."""

    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        server.stop_accepting()
        server.transmit()  # nothing pending yet: idle
        core.deadline = server.now() + 0.05
        core.on_timer = lambda now: setattr(core, "deadline", None)
        await asyncio.wait_for(server.close(drain=TIMEOUT), TIMEOUT)
        assert len(core.timer_calls) == 1

    asyncio.run(main())
