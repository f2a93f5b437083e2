"""Write-ahead through SipServer: a conference is stored before anyone hears of it.

The store here is a stand-in whose writes can be held or made to fail, because
what is tested is the server's ordering and its behaviour while the store
fails; the real backends have their own tests (tests/store) and the daemon's
restart tests use them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from aio_helpers import DatagramClient, request_bytes, udp_client

from vidim.aio import Persistence, SipServer
from vidim.allocator.allocator import Allocator, AllocatorConfig
from vidim.core import RecordChange
from vidim.sip import Address, Response


class HeldStore:
    """Records in a dict; ``hold`` makes writes wait, ``failing`` makes them raise."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.released = asyncio.Event()
        self.released.set()
        self.failing = False
        self.attempts = 0

    def hold(self) -> None:
        self.released.clear()

    async def write(
        self, namespace: str, changes: Sequence[RecordChange], *, owner: str | None = None
    ) -> None:
        self.attempts += 1
        await self.released.wait()
        if self.failing:
            raise ConnectionError("store at 127.0.0.1:1 refused the connection")
        for change in changes:
            if change.record is None:
                self.records.pop(change.id, None)
            else:
                self.records[change.id] = change.record

    async def load(self, namespace: str) -> dict[str, dict[str, Any]]:
        return dict(self.records)

    async def ping(self) -> None:
        if self.failing:
            raise ConnectionError("store at 127.0.0.1:1 refused the connection")


def new_conference(client: DatagramClient, call_id: str) -> bytes:
    return request_bytes(
        "MESSAGE",
        uri="sip:bob@127.0.0.1",
        call_id=call_id,
        via_port=client.port,
        headers=(("X-Vidim-Mode", "video"),),
    )


async def allocator_server(
    store: HeldStore, check_interval: float = 1.0
) -> tuple[SipServer[Any], Persistence]:
    allocator = Allocator(
        AllocatorConfig(
            local=Address("127.0.0.1", 0),
            probe=False,
            # Nobody listens there: the conference stays ALLOCATING, which is enough.
            focus_uris=("sip:conference-factory@127.0.0.1:9",),
        )
    )
    persistence = Persistence(
        store, "allocator", retry_interval=0.05, warn_interval=0.2, check_interval=check_interval
    )
    server = SipServer(allocator, port=0, persistence=persistence)
    await server.start()
    return server, persistence


async def no_message(client: DatagramClient, within: float) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.messages.get(), within)


def test_the_202_leaves_only_after_the_conference_is_stored() -> None:
    async def main() -> None:
        store = HeldStore()
        server, _ = await allocator_server(store)
        client = await udp_client()
        try:
            store.hold()
            client.send(new_conference(client, "held"), server.port)
            while store.attempts == 0:  # the write has started, and waits
                await asyncio.sleep(0.001)
            await no_message(client, 0.2)  # nothing is told before the write is done
            assert store.records == {}
            store.released.set()
            accepted = await client.response_to("held")
            assert accepted.status == 202
            (record,) = store.records.values()
            assert record["requester"] == "sip:alice@127.0.0.1"
        finally:
            client.close()
            await server.close(drain=0.2)

    asyncio.run(main())


def test_a_failing_store_keeps_conferences_going_refuses_new_ones_and_catches_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        store = HeldStore()
        server, persistence = await allocator_server(store)
        client = await udp_client()
        try:
            store.failing = True
            client.send(new_conference(client, "first"), server.port)
            # Its write failed: it goes on from memory (the 202 is sent) ...
            first = await client.response_to("first")
            assert first.status == 202
            assert not persistence.available
            assert persistence.unwritten == 1
            # ... and new conferences are refused while the store fails (by the
            # allocator itself: follow-ups on live conferences are still served).
            client.send(new_conference(client, "second"), server.port)
            refused = await client.response_to("second")
            assert refused.status == 503
            assert refused.headers.get("Retry-After") is not None
            warning = refused.headers.get("Warning")
            assert warning is not None
            assert "state store is unreachable" in warning
            # A follow-up on the live conference is served from memory.
            client.send(
                request_bytes(
                    "MESSAGE",
                    uri=str(server.core.config.requests.service_uri),
                    call_id="status",
                    via_port=client.port,
                    headers=(("Content-Type", "text/plain"),),
                    body=b"/status",
                ),
                server.port,
            )
            status = await client.response_to("status")
            assert status.status == 202
            store.failing = False
            while not persistence.available:  # the retry writes what waited
                await asyncio.sleep(0.01)
            assert [r["state"] for r in store.records.values()] == ["allocating"]
            client.send(new_conference(client, "third"), server.port)
            third = await client.response_to("third")
            assert third.status == 202
            assert len(store.records) == 2
        finally:
            client.close()
            await server.close(drain=0.2)

    with caplog.at_level(logging.WARNING, logger="vidim.aio"):
        asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("failed" in w and "new requests answered 503" in w for w in warnings), warnings
    assert any("answers again" in w and "caught up" in w for w in warnings), warnings


def test_messages_without_changes_wait_behind_a_write_in_flight() -> None:
    async def main() -> None:
        store = HeldStore()
        server, _ = await allocator_server(store)
        client = await udp_client()
        try:
            store.hold()
            client.send(new_conference(client, "stored"), server.port)
            while store.attempts == 0:
                await asyncio.sleep(0.001)
            # An OPTIONS changes no record, but must not overtake the 202.
            client.send(request_bytes("OPTIONS", call_id="ping", via_port=client.port), server.port)
            await no_message(client, 0.1)
            store.released.set()
            answers = [await client.next(), await client.next()]
            assert [a.call_id for a in answers if isinstance(a, Response)] == ["stored", "ping"]
        finally:
            client.close()
            await server.close(drain=0.2)

    asyncio.run(main())


def test_a_store_that_fails_while_idle_is_noticed_before_the_next_conference() -> None:
    async def main() -> None:
        store = HeldStore()
        server, persistence = await allocator_server(store, check_interval=0.05)
        client = await udp_client()
        try:
            store.failing = True  # nothing is written meanwhile: only the ping can tell
            while persistence.available:
                await asyncio.sleep(0.01)
            client.send(new_conference(client, "refused"), server.port)
            refused = await client.response_to("refused")
            assert refused.status == 503
            assert store.records == {}
        finally:
            client.close()
            await server.close(drain=0.2)

    asyncio.run(main())
