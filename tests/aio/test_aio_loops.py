"""SipServer on both event loops (asyncio's and uvloop's): sends first, the timer, overload.

Each test runs on each loop of ``LOOPS``: the daemon takes uvloop when it is
installed, and must still work on asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from aio_helpers import LOOPS, TIMEOUT, EchoCore, read_messages, request_bytes, run_on, udp_client

from vidim.aio import SipServer
from vidim.overload import OverloadPolicy
from vidim.sip import Address, Request, Response, parse_message


@pytest.mark.parametrize("loop", LOOPS)
def test_udp_tcp_and_the_timer_work_on_each_loop(loop: str) -> None:
    async def main() -> None:
        core = EchoCore()
        fired = asyncio.Event()

        def on_timer(now: float) -> None:
            core.deadline = None
            fired.set()

        core.on_timer = on_timer
        server = SipServer(core, port=0)
        await server.start()
        client = await udp_client()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            client.send(request_bytes(call_id="udp-1", via_port=client.port), server.port)
            answer = await client.response_to("udp-1")
            assert answer.status == 200
            writer.write(request_bytes(call_id="tcp-1", transport="TCP"))
            (tcp_answer,) = await read_messages(reader, 1)
            assert isinstance(tcp_answer, Response)
            assert (tcp_answer.call_id, tcp_answer.status) == ("tcp-1", 200)
            core.deadline = server.now() + 0.02
            server.transmit()
            await asyncio.wait_for(fired.wait(), TIMEOUT)
            assert len(core.timer_calls) == 1
        finally:
            writer.close()
            client.close()
            await server.close(drain=1.0)

    run_on(loop, main)


class RecordingTransport(asyncio.DatagramTransport):
    """The server's UDP transport, with each sendto reported (uvloop's are read-only)."""

    def __init__(
        self, transport: asyncio.DatagramTransport, on_send: Callable[[bytes], object]
    ) -> None:
        super().__init__()
        self.transport = transport
        self.on_send = on_send

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.on_send(data)
        self.transport.sendto(data, addr)


class LogSpy(logging.Handler):
    """Hands every record it sees to a callback."""

    def __init__(self, on_record: Callable[[logging.LogRecord], None]) -> None:
        super().__init__()
        self.on_record = on_record

    def emit(self, record: logging.LogRecord) -> None:
        self.on_record(record)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_is_logged_after_its_answer_is_sent(
    loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The INFO line of a request is not on the request's path: the answer goes first."""
    sent_before_log: list[int] = []

    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        assert server._udp is not None
        sends: list[bytes] = []
        original = server._udp
        server._udp = RecordingTransport(original, sends.append)

        def on_record(record: logging.LogRecord) -> None:
            if record.getMessage().startswith("recv MESSAGE"):
                sent_before_log.append(len(sends))

        spy = LogSpy(on_record)
        server.logger.addHandler(spy)
        client = await udp_client()
        try:
            client.send(
                request_bytes("MESSAGE", call_id="first", via_port=client.port), server.port
            )
            await client.response_to("first")
        finally:
            server._udp = original
            server.logger.removeHandler(spy)
            client.close()
            await server.close(drain=1.0)

    with caplog.at_level(logging.INFO, logger="vidim.aio"):
        run_on(loop, main)
    assert sent_before_log == [1]


@pytest.mark.parametrize("loop", LOOPS)
def test_the_datagrams_of_a_turn_are_answered_before_any_is_logged(
    loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Datagrams read in one turn of the loop: every answer first, then, in order,
    each one's log line and events (nothing of the first on the path of the last)."""
    trace: list[tuple[str, str]] = []

    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0, on_event=lambda event: trace.append(("event", event[1])))
        await server.start()
        original = server._udp
        assert original is not None
        server._udp = RecordingTransport(
            original, lambda data: trace.append(("send", parse_message(data).call_id))
        )

        def on_record(record: logging.LogRecord) -> None:
            if record.getMessage().startswith("recv"):
                trace.append(("log", getattr(record, "call_id", "?")))

        spy = LogSpy(on_record)
        server.logger.addHandler(spy)
        client = await udp_client()
        try:
            # Loopback delivery is synchronous: the five are queued before the next turn.
            for n in range(5):
                client.send(request_bytes(call_id=f"turn-{n}", via_port=client.port), server.port)
            for n in range(5):
                assert (await client.response_to(f"turn-{n}")).status == 200
        finally:
            server._udp = original
            server.logger.removeHandler(spy)
            client.close()
            await server.close(drain=1.0)

    with caplog.at_level(logging.INFO, logger="vidim.aio"):
        run_on(loop, main)
    calls = [f"turn-{n}" for n in range(5)]
    assert trace == [("send", c) for c in calls] + [
        step for c in calls for step in (("log", c), ("event", c))
    ]


@pytest.mark.parametrize("loop", LOOPS)
def test_the_timer_is_rearmed_only_when_the_deadline_moves_earlier(loop: str) -> None:
    async def main() -> None:
        core = EchoCore()
        fired = asyncio.Event()
        server = SipServer(core, port=0)
        await server.start()
        try:
            start = server.now()
            core.deadline = start + 0.3
            server.transmit()
            first = server._timer
            assert first is not None
            assert server.next_deadline == start + 0.3
            core.deadline = start + 0.5  # later: the armed timer stays (it will fire early)
            server.transmit()
            assert server._timer is first
            core.deadline = start + 0.05  # earlier: re-armed
            server.transmit()
            assert server._timer is not first
            assert server.next_deadline == start + 0.05

            # Moved later again, the early timer fires, finds nothing due, and the
            # core is called at its real deadline.
            core.deadline = start + 0.15

            def on_timer(now: float) -> None:
                assert core.deadline is not None
                if now >= core.deadline:
                    core.deadline = None
                    fired.set()

            core.on_timer = on_timer
            server.transmit()
            await asyncio.wait_for(fired.wait(), TIMEOUT)
            assert core.timer_calls[-1] >= start + 0.15
            assert server._timer is None
        finally:
            await server.close(drain=1.0)

    run_on(loop, main)


#: The daemon's thresholds, a longer hold.
POLICY = OverloadPolicy(max_lag=0.2, clear_lag=0.02, hold=0.3, retry_after=3)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("loop", LOOPS)
def test_the_sentinel_datagram_measures_the_queue_and_never_reaches_the_core(
    loop: str, host: str
) -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, host=host, port=0, overload=POLICY)
        await server.start()
        guard = server.overload
        assert guard is not None
        delays: list[float] = []

        async def returned() -> None:
            """Until the sentinel in flight is back.

            ``_sentinel_sent`` is when the one in flight was sent; it changes when
            that one is back (to None, then the next heartbeat's send time).
            """
            while server._sentinel_sent is None:
                await asyncio.sleep(0.001)
            sent = server._sentinel_sent
            while server._sentinel_sent == sent:
                await asyncio.sleep(0.001)
            delays.append(time.perf_counter() - sent)  # at most a poll late

        try:
            for _ in range(3):  # three sentinels go out and come back
                await asyncio.wait_for(returned(), TIMEOUT)
            assert core.received == []  # the sentinel is no SIP message
            assert not guard.overloaded_now
            assert len(delays) == 3
            assert max(delays) < POLICY.max_lag
        finally:
            await server.close(drain=1.0)

    run_on(loop, main)


class SleepyCore(EchoCore):
    """Takes 10 ms per message without using the CPU, like a process the OS keeps waiting."""

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        time.sleep(0.01)
        super().receive_datagram(data, source, now)


class SpinningCore(EchoCore):
    """Takes 10 ms of CPU per message."""

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        until = time.perf_counter() + 0.01
        while time.perf_counter() < until:
            pass
        super().receive_datagram(data, source, now)


@pytest.mark.parametrize("core_class", [SleepyCore, SpinningCore])
@pytest.mark.parametrize("loop", LOOPS)
def test_a_busy_server_whose_queue_stays_short_refuses_nothing(
    loop: str, core_class: type[EchoCore]
) -> None:
    """One client, one request at a time: the server is busy ~all the time, never behind.

    The guard once counted the wall time spent per datagram as busy time and
    answered such a client 503 (in the unloaded probe of bench/setups.py), then
    refused on a saturated CPU; only how long requests wait in the queue counts now.
    """

    async def main() -> None:
        core = core_class()
        server = SipServer(core, port=0, overload=POLICY)
        await server.start()
        client = await udp_client()
        guard = server.overload
        assert guard is not None
        try:
            for n in range(40):  # ~0.4 s of work: several windows, past the hold
                client.send(request_bytes(call_id=f"one-{n}", via_port=client.port), server.port)
                answer = await client.response_to(f"one-{n}")
                assert answer.status == 200, f"request {n} refused"
            assert guard.episodes == 0
            assert len([m for m, _, _ in core.received if isinstance(m, Request)]) == 40
        finally:
            client.close()
            await server.close(drain=1.0)

    run_on(loop, main)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_queue_that_grows_starts_refusing_new_requests(loop: str) -> None:
    async def main() -> None:
        core = SleepyCore()
        server = SipServer(core, port=0, overload=POLICY)
        await server.start()
        client = await udp_client()
        guard = server.overload
        assert guard is not None
        try:
            burst = [f"burst-{i}" for i in range(60)]  # 0.6 s of work offered at once
            for call_id in burst:
                client.send(request_bytes(call_id=call_id, via_port=client.port), server.port)
            statuses = []
            for _ in burst:
                answer = await asyncio.wait_for(client.next(), TIMEOUT)
                assert isinstance(answer, Response)
                statuses.append(answer.status)
            assert 503 in statuses, "requests waited > max_lag in the queue: overload"
            assert statuses[0] == 200
            assert guard.episodes == 1
        finally:
            client.close()
            await server.close(drain=1.0)

    run_on(loop, main)


class SleepierCore(SleepyCore):
    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        time.sleep(0.01)  # 20 ms per message in all
        super().receive_datagram(data, source, now)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_burst_read_in_one_turn_of_the_loop_is_cut_short(loop: str) -> None:
    """uvloop reads up to 32 datagrams per turn: the heartbeat cannot run in between.

    A new request then checks how late the heartbeat is itself (20 requests of
    20 ms: 0.4 s in one turn, twice max_lag).
    """

    async def main() -> None:
        core = SleepierCore()
        server = SipServer(core, port=0, overload=POLICY)
        await server.start()
        client = await udp_client()
        try:
            burst = [f"turn-{i}" for i in range(20)]
            for call_id in burst:
                client.send(request_bytes(call_id=call_id, via_port=client.port), server.port)
            statuses = []
            for _ in burst:
                answer = await asyncio.wait_for(client.next(), TIMEOUT)
                assert isinstance(answer, Response)
                statuses.append(answer.status)
            assert statuses.count(200) < 15
            assert 503 in statuses
        finally:
            client.close()
            await server.close(drain=1.0)

    run_on(loop, main)


def test_on_asyncio_a_turn_of_the_loop_reads_every_queued_datagram() -> None:
    """asyncio's loop delivers one datagram per turn; the server reads the rest itself."""

    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        protocol = server._udp_protocol
        assert protocol is not None
        assert protocol.drain is not None
        deliveries = []
        deliver = protocol.datagram_received

        def counting(data: bytes, addr: object) -> None:
            deliveries.append(len(core.received))
            deliver(data, addr)

        protocol.datagram_received = counting  # type: ignore[method-assign]
        client = await udp_client()
        try:
            for n in range(5):
                client.send(request_bytes(call_id=f"queued-{n}", via_port=client.port), server.port)
            # Loopback delivery is synchronous: the five wait in the socket's queue
            # before the loop's next turn.
            for n in range(5):
                assert (await client.response_to(f"queued-{n}")).status == 200
            assert deliveries == [0]  # one delivery by the loop, four read by the server
            assert [m.call_id for m, _, _ in core.received] == [f"queued-{n}" for n in range(5)]
        finally:
            client.close()
            await server.close(drain=1.0)

    run_on("asyncio", main)
