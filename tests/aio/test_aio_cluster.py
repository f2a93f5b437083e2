"""vidim.aio.Cluster against a real redis-server: leases kept, and taken back when Redis loses them.

In one event loop: the real allocator behind SipServer with Persistence and
Cluster over a RedisStore, and the real built-in focus behind its own
SipServer (no store), on loopback.  A conference is set up; then Redis is
emptied (FLUSHALL, as a restart without persistence would leave it): within
a third of the lease the cluster notices its leases are gone, takes them
back and writes every record again.
"""

from __future__ import annotations

import asyncio

import redis.asyncio
from aio_helpers import request_bytes, udp_client

from redis_peer import RedisServer
from vidim.aio import Cluster, Persistence, SipServer
from vidim.allocator import Allocator, AllocatorConfig, ConferenceState
from vidim.focus import ConferenceFocus, FocusConfig
from vidim.sip import Address
from vidim.store import RedisStore

LEASE_TTL = 0.6
WAIT = 10.0


async def until(check: object, what: str) -> None:
    """Poll ``check()`` (state another task changes) every 10 ms, at most WAIT seconds."""
    async with asyncio.timeout(WAIT):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def test_leases_and_records_come_back_after_redis_loses_them(redis_server: RedisServer) -> None:
    async def main() -> None:
        focus_server = SipServer(
            ConferenceFocus(FocusConfig(local=Address("127.0.0.1", 0))), port=0
        )
        await focus_server.start()
        focus_uri = f"sip:conference-factory@127.0.0.1:{focus_server.port}"
        allocator = Allocator(
            AllocatorConfig(local=Address("127.0.0.1", 0), probe=False, focus_uris=(focus_uri,))
        )
        store = RedisStore(redis_server.url)
        await store.open()
        cluster = Cluster(store, allocator, owner="127.0.0.1:1", lease_ttl=LEASE_TTL)
        persistence = Persistence(store, "allocator", owner=cluster.owner, guard=cluster)
        server = SipServer(allocator, port=0, persistence=persistence, follow_ups=cluster)
        cluster.attach(server)
        await cluster.start(server.now())
        await server.start()
        client = await udp_client()
        raw = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            client.send(
                request_bytes(
                    "MESSAGE",
                    uri=f"sip:bob@127.0.0.1:{client.port}",
                    call_id="new",
                    via_port=client.port,
                    headers=(("X-Vidim-Mode", "video"),),
                ),
                server.port,
            )
            assert (await client.response_to("new")).status == 202
            (conference_id,) = allocator.conferences
            await until(
                lambda: allocator.conferences[conference_id].state is ConferenceState.ACTIVE,
                "an active conference",
            )
            assert cluster.held == {conference_id}
            assert await store.owner_of("allocator", conference_id) == cluster.owner

            await raw.flushall()  # Redis restarted empty
            assert await store.get("allocator", conference_id) is None

            async def back() -> bool:
                record = await store.get("allocator", conference_id)
                owner = await store.owner_of("allocator", conference_id)
                return record is not None and owner == cluster.owner

            async with asyncio.timeout(WAIT):
                while not await back():
                    await asyncio.sleep(0.05)
            record = await store.get("allocator", conference_id)
            assert record is not None
            assert record["state"] == "active"
            assert await store.find("allocator", "requester", "sip:alice@127.0.0.1") == [
                conference_id
            ]
            assert cluster.held == {conference_id}
        finally:
            client.close()
            await raw.aclose()
            await server.close(drain=0.2)
            await cluster.close()
            await focus_server.close(drain=0.2)
            await store.close()

    asyncio.run(main())
