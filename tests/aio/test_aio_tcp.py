"""SipServer over TCP: framing, broken streams, connection reuse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest
from aio_helpers import TIMEOUT, EchoCore, read_messages, request_bytes, udp_client

from vidim.aio import SipServer
from vidim.sip import Address, Request, Response, StreamFramer, make_response, parse_message


async def hang_up(*writers: asyncio.StreamWriter) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(writer.wait_closed(), TIMEOUT)


def test_two_requests_in_one_segment_and_one_split_across_segments() -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            framer = StreamFramer()
            both = request_bytes(call_id="one", transport="TCP") + request_bytes(
                "MESSAGE", call_id="two", transport="TCP", body=b"hello"
            )
            writer.write(both)
            responses = await read_messages(reader, 2, framer)
            assert [(r.call_id, getattr(r, "status", None)) for r in responses] == [
                ("one", 200),
                ("two", 200),
            ]
            split = request_bytes("MESSAGE", call_id="three", transport="TCP", body=b"body!")
            for start in range(0, len(split), 7):
                writer.write(split[start : start + 7])
                await writer.drain()
            (response,) = await read_messages(reader, 1, framer)
            assert response.call_id == "three"
            local_port = writer.get_extra_info("sockname")[1]
            sources = {source for _, source, _ in core.received}
            assert sources == {Address("127.0.0.1", local_port, "TCP")}
            assert [m.body for m, _, _ in core.received] == [b"", b"hello", b"body!"]
        finally:
            await hang_up(writer)
            await server.close(drain=1.0)

    asyncio.run(main())


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(
            b"MESSAGE sip:x@y SIP/2.0\r\nContent-Length: lots\r\n\r\n", id="bad-content-length"
        ),
        pytest.param(b"A" * 3000, id="oversize-headers"),
        pytest.param(
            b"MESSAGE sip:x@y SIP/2.0\r\nContent-Length: 99999\r\n\r\n", id="oversize-body"
        ),
    ],
)
def test_garbage_stream_closes_only_that_connection(
    garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0, max_message_size=2048)
        await server.start()
        good_reader, good_writer = await asyncio.open_connection("127.0.0.1", server.port)
        bad_reader, bad_writer = await asyncio.open_connection("127.0.0.1", server.port)
        client = await udp_client()
        try:
            bad_writer.write(garbage)
            # The server closes the broken connection: EOF, and nothing else.
            assert await asyncio.wait_for(bad_reader.read(), TIMEOUT) == b""
            client.send(request_bytes(call_id="udp-after", via_port=client.port), server.port)
            assert (await client.response_to("udp-after")).status == 200
            good_writer.write(request_bytes(call_id="tcp-after", transport="TCP"))
            (response,) = await read_messages(good_reader, 1)
            assert response.call_id == "tcp-after"
        finally:
            client.close()
            await hang_up(good_writer, bad_writer)
            await server.close(drain=1.0)

    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        asyncio.run(main())
    assert any("unparsable" in r.getMessage() for r in caplog.records)


def test_malformed_but_framed_message_keeps_the_connection() -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            # Framed by Content-Length, but no Via/Call-ID: dropped, stream intact.
            writer.write(b"OPTIONS sip:x@y SIP/2.0\r\nContent-Length: 0\r\n\r\n")
            writer.write(request_bytes(call_id="still-here", transport="TCP"))
            (response,) = await read_messages(reader, 1)
            assert response.call_id == "still-here"
        finally:
            await hang_up(writer)
            await server.close(drain=1.0)

    asyncio.run(main())


def test_new_request_to_a_tcp_peer_reuses_its_inbound_connection() -> None:
    async def main() -> None:
        core = EchoCore()

        def on_receive(message: Request | Response, source: Address, now: float) -> None:
            if isinstance(message, Request):  # the core calls back on the same transport
                callback = parse_message(request_bytes("MESSAGE", call_id="back", transport="TCP"))
                core.queue(callback, source)

        core.on_receive = on_receive
        server = SipServer(core, port=0)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(request_bytes(call_id="first", transport="TCP"))
            answer, callback = await read_messages(reader, 2)
            assert isinstance(answer, Response)
            assert answer.call_id == "first"
            assert isinstance(callback, Request)
            assert callback.call_id == "back"
        finally:
            await hang_up(writer)
            await server.close(drain=1.0)

    asyncio.run(main())


def test_outbound_tcp_connection_is_opened_once_and_reused() -> None:
    async def main() -> None:
        core = EchoCore()
        got: asyncio.Queue[Response] = asyncio.Queue()
        core.on_receive = lambda message, source, now: (
            got.put_nowait(message) if isinstance(message, Response) else None
        )
        accepted: list[asyncio.StreamWriter] = []

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # A SIP peer that answers each request on the connection it came on.
            accepted.append(writer)
            framer = StreamFramer()
            while data := await reader.read(65536):
                framer.receive_data(data)
                while (request := framer.next_message()) is not None:
                    assert isinstance(request, Request)
                    writer.write(make_response(request, 200, to_tag="peer").to_bytes())
            await hang_up(writer)

        peer_server = await asyncio.start_server(peer, "127.0.0.1", 0)
        peer_port = peer_server.sockets[0].getsockname()[1]
        server = SipServer(core, port=0)
        await server.start()
        try:
            destination = Address("127.0.0.1", peer_port, "TCP")
            for call_id in ("out-1", "out-2", "out-3"):
                core.queue(
                    parse_message(request_bytes(call_id=call_id, transport="TCP")), destination
                )
                server.transmit()
            # The first three are queued while connecting, then one more on the open connection.
            answers = [await asyncio.wait_for(got.get(), TIMEOUT) for _ in range(3)]
            core.queue(parse_message(request_bytes(call_id="out-4", transport="TCP")), destination)
            server.transmit()
            answers.append(await asyncio.wait_for(got.get(), TIMEOUT))
            assert [a.call_id for a in answers] == ["out-1", "out-2", "out-3", "out-4"]
            assert len(accepted) == 1
        finally:
            await server.close(drain=1.0)
            peer_server.close()
            await peer_server.wait_closed()

    asyncio.run(main())


def test_unreachable_tcp_peer_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        core = EchoCore()
        server = SipServer(core, port=0, connect_timeout=1.0)
        await server.start()
        client = await udp_client()
        # A port with nobody listening: connect refused.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        failed = asyncio.Event()

        class Flag(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "cannot connect" in record.getMessage():
                    failed.set()

        handler = Flag()
        server.logger.addHandler(handler)
        try:
            message = parse_message(request_bytes(call_id="nowhere", transport="TCP"))
            core.queue(message, Address("127.0.0.1", closed_port, "TCP"))
            server.transmit()
            await asyncio.wait_for(failed.wait(), TIMEOUT)
            client.send(request_bytes(call_id="alive", via_port=client.port), server.port)
            assert (await client.response_to("alive")).status == 200
        finally:
            server.logger.removeHandler(handler)
            client.close()
            await server.close(drain=1.0)

    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        asyncio.run(main())
    assert any("cannot connect" in r.getMessage() for r in caplog.records)
