"""What only Redis does: go away and come back, hang, be shared by two deployments."""

from __future__ import annotations

import asyncio
import time

import pytest

from redis_peer import RedisServer
from vidim.core import RecordChange
from vidim.store import RedisStore, StoreUnavailable

NS = "allocator"
TIMEOUT = 0.5  # the store's connect and command timeout in these tests
#: The store promises an answer within about 2 * timeout; the rest is a loaded machine.
BOUND = 2 * TIMEOUT + 2.0


async def _refused_quickly(store: RedisStore, where: str) -> str:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as refused:
        await store.write(NS, [RecordChange("c2", {"n": 2})])
    assert time.monotonic() - started < BOUND
    assert str(refused.value).startswith(f"redis {where}: ")
    return str(refused.value)


def test_a_stopped_redis_is_unavailable_at_once_and_used_again_once_back(
    redis_server: RedisServer,
) -> None:
    where = f"127.0.0.1:{redis_server.port}"

    async def main() -> None:
        async with RedisStore(redis_server.url, timeout=TIMEOUT) as store:
            await store.write(NS, [RecordChange("c1", {"n": 1})])
            redis_server.stop()
            message = await _refused_quickly(store, where)
            assert "refused" in message.lower() or "connect" in message.lower()
            with pytest.raises(StoreUnavailable):
                await store.ping()
            redis_server.start()  # same port, empty (the test server keeps nothing on disk)
            await store.ping()  # no reopen
            await store.write(NS, [RecordChange("c2", {"n": 2})])
            assert await store.load(NS) == {"c2": {"n": 2}}

    asyncio.run(main())


def test_a_hung_redis_is_unavailable_within_the_timeout_not_a_hang(
    redis_server: RedisServer,
) -> None:
    where = f"127.0.0.1:{redis_server.port}"

    async def main() -> None:
        async with RedisStore(redis_server.url, timeout=TIMEOUT) as store:
            redis_server.pause()  # accepts connections, answers nothing
            try:
                await _refused_quickly(store, where)
            finally:
                redis_server.resume()
            await store.write(NS, [RecordChange("c3", {"n": 3})])
            assert await store.get(NS, "c3") == {"n": 3}

    asyncio.run(main())


def test_opening_a_store_with_no_redis_behind_it_is_unavailable(
    redis_server: RedisServer,
) -> None:
    redis_server.stop()

    async def main() -> None:
        store = RedisStore(redis_server.url, timeout=TIMEOUT)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=f"redis 127.0.0.1:{redis_server.port}: "):
            await store.open()
        assert time.monotonic() - started < BOUND
        await store.close()

    asyncio.run(main())


def test_two_prefixes_share_one_redis_without_seeing_each_other(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        async with (
            RedisStore(redis_server.url) as blue,
            RedisStore(redis_server.url, prefix="green:") as green,
        ):
            await blue.write(NS, [RecordChange("c1", {"v": "blue"}, (("requester", "a"),))])
            await green.write(NS, [RecordChange("c1", {"v": "green"})])
            await green.acquire(NS, ["c1"], "green-daemon", 60)
            assert await blue.load(NS) == {"c1": {"v": "blue"}}
            assert await green.find(NS, "requester", "a") == []
            assert await blue.owner_of(NS, "c1") is None
            assert await blue.acquire(NS, ["c1"], "blue-daemon", 60) == {"c1"}

    asyncio.run(main())


def test_the_keys_are_the_documented_layout(redis_server: RedisServer) -> None:
    async def main() -> None:
        async with RedisStore(redis_server.url) as store:
            await store.write(NS, [RecordChange("c1", {"n": 1}, (("requester", "sip:a@x"),))])
            await store.acquire(NS, ["c1"], "daemon-a", 60)
            keys = sorted(await store._call("KEYS", "*"))
            assert keys == [
                "vidim:{allocator}:index:requester:sip:a@x",
                "vidim:{allocator}:indexed",
                "vidim:{allocator}:lease:c1",
                "vidim:{allocator}:records",
            ]
            assert 0 < await store._call("PTTL", "vidim:{allocator}:lease:c1") <= 60_000
            await store.write(NS, [RecordChange("c1", None)])
            assert sorted(await store._call("KEYS", "*")) == ["vidim:{allocator}:lease:c1"]

    asyncio.run(main())


def test_a_full_redis_refuses_a_write_whole_and_still_answers_reads(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        async with RedisStore(redis_server.url) as store:
            await store.write(NS, [RecordChange("c1", {"n": 1})])
            await store.acquire(NS, ["c1"], "daemon-a", 60)
            await store._call("CONFIG", "SET", "maxmemory", "1")
            changes = [RecordChange("c1", None), RecordChange("c2", {"n": 2})]
            with pytest.raises(StoreUnavailable, match=r"OutOfMemoryError: .*maxmemory"):
                await store.write(NS, changes, owner="daemon-a")
            assert await store.load(NS) == {"c1": {"n": 1}}
            assert await store.unowned(NS) == []
            assert await store.owner_of(NS, "c1") == "daemon-a"
            await store._call("CONFIG", "SET", "maxmemory", "0")
            await store.write(NS, changes, owner="daemon-a")
            assert await store.load(NS) == {"c2": {"n": 2}}

    asyncio.run(main())
