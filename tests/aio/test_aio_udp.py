"""SipServer over UDP with a fake core: answers, the one timer, clocks, logging."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
from aio_helpers import TIMEOUT, EchoCore, request_bytes, udp_client

from vidim.aio import SipCore, SipMessageCore, SipServer
from vidim.allocator.allocator import Allocator
from vidim.sip import Address, Request, Response, parse_message


def test_echo_core_answers_over_udp() -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        client = await udp_client()
        try:
            assert server.port != 0
            client.send(request_bytes(call_id="echo-1", via_port=client.port), server.port)
            response = await client.next()
            assert isinstance(response, Response)
            assert response.status == 200
            assert response.call_id == "echo-1"
            ((_, source, _),) = core.received
            assert source == Address("127.0.0.1", client.port, "UDP")
        finally:
            client.close()
            await server.close(drain=1.0)

    asyncio.run(main())


def test_timer_is_armed_exactly_when_the_core_reports_a_deadline() -> None:
    async def main() -> None:
        core = EchoCore()
        fired = asyncio.Event()

        def on_receive(message: object, source: Address, now: float) -> None:
            core.deadline = now + 0.05

        def on_timer(now: float) -> None:
            assert core.deadline is not None
            assert now >= core.deadline
            core.deadline = None
            fired.set()

        core.on_receive = on_receive
        core.on_timer = on_timer
        server = SipServer(core, port=0)
        await server.start()
        client = await udp_client()
        try:
            assert server.next_deadline is None  # the core reported nothing yet
            client.send(request_bytes(via_port=client.port), server.port)
            await client.next()
            assert server.next_deadline == core.deadline  # armed after that input
            await asyncio.wait_for(fired.wait(), TIMEOUT)
            assert len(core.timer_calls) == 1
            assert server.next_deadline is None  # the core has nothing pending
        finally:
            client.close()
            await server.close(drain=1.0)
        assert len(core.timer_calls) == 1

    asyncio.run(main())


def test_timer_is_re_armed_once_per_deadline_change() -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        try:
            now = server.now()
            core.deadline = now + 60
            server.transmit()
            assert server.next_deadline == now + 60
            core.deadline = now + 30  # an earlier deadline replaces the armed one
            server.transmit()
            assert server.next_deadline == now + 30
            core.deadline = None
            server.transmit()
            assert server.next_deadline is None
            assert core.timer_calls == []
        finally:
            await server.close(drain=1.0)

    asyncio.run(main())


def test_custom_wall_clock() -> None:
    async def main() -> None:
        core = EchoCore()
        fired = asyncio.Event()
        core.on_receive = lambda message, source, now: setattr(core, "deadline", now + 0.05)

        def on_timer(now: float) -> None:
            core.deadline = None
            fired.set()

        core.on_timer = on_timer
        server = SipServer(core, port=0, clock=time.time)
        await server.start()
        client = await udp_client()
        try:
            client.send(request_bytes(via_port=client.port), server.port)
            await client.next()
            ((_, _, received_at),) = core.received
            assert abs(received_at - time.time()) < TIMEOUT  # wall clock, not loop.time()
            deadline = received_at + 0.05
            await asyncio.wait_for(fired.wait(), TIMEOUT)
            (fired_at,) = core.timer_calls
            assert fired_at >= deadline
            assert time.time() >= deadline
        finally:
            client.close()
            await server.close(drain=1.0)

    asyncio.run(main())


def test_garbage_datagram_is_logged_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        client = await udp_client()
        try:
            client.send(b"HELLO WORLD\r\nthis is not SIP\r\n\r\n", server.port)
            client.send(b"\xff\xfe" * 4000, server.port)
            client.send(request_bytes(call_id="after-garbage", via_port=client.port), server.port)
            response = await client.response_to("after-garbage")
            assert response.status == 200
        finally:
            client.close()
            await server.close(drain=1.0)

    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        asyncio.run(main())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "HELLO WORLD" in warnings[0].getMessage()
    assert warnings[0].first_line == "HELLO WORLD"  # type: ignore[attr-defined]
    assert warnings[0].reason  # type: ignore[attr-defined]


def test_log_lines_carry_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        client = await udp_client()
        try:
            client.send(
                request_bytes("MESSAGE", call_id="logged", via_port=client.port), server.port
            )
            await client.response_to("logged")
        finally:
            client.close()
            await server.close(drain=1.0)

    with caplog.at_level(logging.DEBUG, logger="vidim.aio"):
        asyncio.run(main())
    received = [r for r in caplog.records if r.getMessage().startswith("recv MESSAGE")]
    assert len(received) == 1
    record = received[0]
    assert record.levelno == logging.INFO  # one line per request at INFO
    assert record.call_id == "logged"  # type: ignore[attr-defined]
    assert record.sip_method == "MESSAGE"  # type: ignore[attr-defined]
    assert "logged" in record.getMessage()
    events = [r for r in caplog.records if getattr(r, "event", None) == "tuple"]
    assert [r.levelno for r in events] == [logging.INFO]
    assert "('received', 'logged')" in events[0].getMessage()


def test_the_answer_is_sent_and_logged_before_the_requests_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each message in and out has its line, with its fields; the request's comes last."""

    async def main() -> None:
        client = await udp_client()
        server = SipServer(EchoCore(), port=0)
        try:
            await server.start()
            client.send(
                request_bytes("MESSAGE", call_id="lines", via_port=client.port), server.port
            )
            await client.response_to("lines")
        finally:
            client.close()
            await server.close(drain=1.0)

    with caplog.at_level(logging.DEBUG, logger="vidim.aio"):
        asyncio.run(main())
    sent, received = (r for r in caplog.records if "call-id lines" in r.getMessage())
    assert sent.getMessage().startswith("send 200 OK to 127.0.0.1:")
    assert (sent.levelno, sent.sip_status, sent.transport) == (logging.DEBUG, 200, "UDP")  # type: ignore[attr-defined]
    assert received.getMessage().startswith("recv MESSAGE from 127.0.0.1:")
    assert (received.levelno, received.sip_method) == (logging.INFO, "MESSAGE")  # type: ignore[attr-defined]
    assert received.peer.startswith("127.0.0.1:")  # type: ignore[attr-defined]
    assert received.peer.endswith("/UDP")  # type: ignore[attr-defined]


def test_on_event_gets_events_and_its_exceptions_are_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[object] = []

    def on_event(event: object) -> None:
        seen.append(event)
        raise RuntimeError("handler bug")

    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0, on_event=on_event)
        await server.start()
        client = await udp_client()
        try:
            for name in ("first", "second"):
                client.send(request_bytes(call_id=name, via_port=client.port), server.port)
                assert (await client.response_to(name)).status == 200
        finally:
            client.close()
            await server.close(drain=1.0)

    with caplog.at_level(logging.ERROR, logger="vidim.aio"):
        asyncio.run(main())
    assert seen == [("received", "first"), ("received", "second")]
    assert sum("on_event failed" in r.getMessage() for r in caplog.records) == 2


def test_a_failing_core_is_logged_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        core = EchoCore()

        def explode(message: object, source: Address, now: float) -> None:
            if getattr(message, "call_id", "") == "boom":
                raise ValueError("core bug")

        core.on_receive = explode
        server = SipServer(core, port=0)
        await server.start()
        client = await udp_client()
        try:
            client.send(request_bytes(call_id="boom", via_port=client.port), server.port)
            client.send(request_bytes(call_id="fine", via_port=client.port), server.port)
            # "boom" was answered before the core raised; "fine" proves the server lives.
            assert (await client.response_to("fine")).status == 200
        finally:
            client.close()
            await server.close(drain=1.0)

    with caplog.at_level(logging.ERROR, logger="vidim.aio"):
        asyncio.run(main())
    (record,) = [r for r in caplog.records if "the core failed" in r.getMessage()]
    assert record.exc_info is not None


def test_ipv6_source_has_no_brackets() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")

    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, host="::1", port=0)
        await server.start()
        client = await udp_client("::1")
        try:
            client.send(
                request_bytes(call_id="v6", via_host="[::1]", via_port=client.port),
                server.port,
                host="::1",
            )
            assert (await client.response_to("v6")).status == 200
            ((_, source, _),) = core.received
            assert source == Address("::1", client.port, "UDP")
        finally:
            client.close()
            await server.close(drain=1.0)

    asyncio.run(main())


def test_port_zero_gives_udp_and_tcp_the_same_port() -> None:
    async def main() -> None:
        server = SipServer(EchoCore(), port=0)
        await server.start()
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", server.port), TIMEOUT
            )
            writer.close()
            await writer.wait_closed()
            await writer.wait_closed()
        finally:
            await server.close(drain=1.0)

    asyncio.run(main())


def test_cores_satisfy_the_protocols() -> None:
    assert isinstance(EchoCore(), SipCore)
    assert not isinstance(EchoCore(), SipMessageCore)  # gets raw bytes
    assert isinstance(Allocator(), SipMessageCore)  # gets parsed messages


def test_udp_destination_given_by_name_is_resolved() -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        client = await udp_client()
        try:
            request = parse_message(request_bytes("MESSAGE", call_id="by-name"))
            core.queue(request, Address("localhost", client.port, "UDP"))
            server.transmit()
            received = await client.next()
            assert isinstance(received, Request)
            assert received.call_id == "by-name"
        finally:
            client.close()
            await server.close(drain=1.0)

    asyncio.run(main())
