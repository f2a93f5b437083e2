"""Fake sans-IO cores and socket clients for the asyncio layer's tests.

Every wait is bounded with :func:`asyncio.wait_for`; nothing sleeps to
synchronize: tests wait on queues and events that the cores or clients set.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
from collections.abc import Callable, Coroutine
from typing import Any, cast

import pytest

from vidim.sip import (
    Address,
    Message,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
)

#: Upper bound for any single wait in these tests.
TIMEOUT = 5.0

#: The event loops vidim.aio and the daemon run on (uvloop is in the ``test`` extra).
LOOPS = [
    "asyncio",
    pytest.param(
        "uvloop",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
        ),
    ),
]


def run_on(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(main())`` on asyncio's own loop or on uvloop's.

    "asyncio" names its loop class, not the policy's loop: under a uvloop
    policy (``uvloop.install()`` in an application's tests) the policy's loop is uvloop's.
    """
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.SelectorEventLoop
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


_counter = itertools.count(1)


def request_bytes(
    method: str = "OPTIONS",
    *,
    uri: str = "sip:vidim@127.0.0.1",
    via_host: str = "127.0.0.1",
    via_port: int = 5999,
    transport: str = "UDP",
    call_id: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    to_tag: str | None = None,
    body: bytes = b"",
) -> bytes:
    """A well-formed out-of-dialog request on the wire."""
    n = next(_counter)
    call_id = call_id if call_id is not None else f"call-{n}@test"
    to = "<sip:vidim@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {via_host}:{via_port};branch=z9hG4bKtest{n};rport",
        "Max-Forwards: 70",
        f"From: <sip:alice@127.0.0.1>;tag=a{n}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        *(f"{name}: {value}" for name, value in headers),
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


class EchoCore:
    """Answers every request but ACK with 200; reports one event per message.

    It has no ``receive`` method, so the server hands it raw bytes.  ``deadline``
    is what ``get_timer`` reports; ``on_timer`` runs inside ``handle_timer``.
    """

    def __init__(self) -> None:
        self.received: list[tuple[Request | Response, Address, float]] = []
        self.outbox: list[tuple[Message, Address]] = []
        self.pending_events: list[tuple[str, str]] = []
        self.deadline: float | None = None
        self.timer_calls: list[float] = []
        self.on_timer: Callable[[float], None] | None = None
        #: Called with each parsed message (in receive_datagram).
        self.on_receive: Callable[[Request | Response, Address, float], None] | None = None

    # -- SipCore --------------------------------------------------------------------
    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        message = parse_message(data)
        self.received.append((message, source, now))
        if isinstance(message, Request) and message.method != "ACK":
            self.outbox.append((make_response(message, 200, to_tag="echo"), source))
        self.pending_events.append(("received", message.call_id))
        if self.on_receive is not None:
            self.on_receive(message, source, now)

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.timer_calls.append(now)
        if self.on_timer is not None:
            self.on_timer(now)

    def messages_to_send(self) -> list[tuple[Message, Address]]:
        out, self.outbox = self.outbox, []
        return out

    def events(self) -> list[tuple[str, str]]:
        out, self.pending_events = self.pending_events, []
        return out

    # -- test API -------------------------------------------------------------------
    def queue(self, message: Message, destination: Address) -> None:
        """Send ``message`` at the next transmit (call ``server.transmit()``)."""
        self.outbox.append((message, destination))


class DatagramClient(asyncio.DatagramProtocol):
    """A UDP peer whose received messages land in a queue."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[Request | Response, Any]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.messages.put_nowait((parse_message(data), addr))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int, host: str = "127.0.0.1") -> None:
        assert self.transport is not None
        self.transport.sendto(data, (host, port))

    async def next(self) -> Request | Response:
        message, _ = await asyncio.wait_for(self.messages.get(), TIMEOUT)
        return message

    async def response_to(self, call_id: str) -> Response:
        """The next response for ``call_id``, skipping anything else received."""
        while True:
            message = await self.next()
            if isinstance(message, Response) and message.call_id == call_id:
                return message

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def udp_client(host: str = "127.0.0.1") -> DatagramClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(DatagramClient, local_addr=(host, 0))
    return client


async def read_messages(
    reader: asyncio.StreamReader, count: int, framer: StreamFramer | None = None
) -> list[Request | Response]:
    """Read ``count`` framed messages from a TCP stream."""
    framer = framer if framer is not None else StreamFramer()
    out: list[Request | Response] = []
    while True:
        while (message := framer.next_message()) is not None:
            out.append(message)
        if len(out) >= count:
            return out
        data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
        assert data, f"connection closed after {len(out)} of {count} messages"
        framer.receive_data(data)
