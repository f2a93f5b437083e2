"""The shared store: Redis, through redis-py's asyncio client, for several daemons.

Keys of one namespace (``vidim:`` is the default prefix; ``{...}`` is a Redis Cluster
hash tag keeping a namespace's keys in one slot)::

    vidim:{allocator}:records             hash  id -> the record's JSON
    vidim:{allocator}:indexed             hash  id -> JSON [[name, value], ...] it is indexed by
    vidim:{allocator}:index:NAME:VALUE    set   ids
    vidim:{allocator}:lease:ID            string owner, expiring (PX) with the lease
    vidim:{allocator}:events:KEY          sorted set  events counted (count_event), by
                                          Redis's own time in ms; expires with its window

A write, and every lease change, is one Lua script: Redis runs it atomically, so
the owner check and what it guards happen together (no other client's command runs
in between).  Short socket timeouts and one immediate retry keep a dead Redis from
hanging the daemon: every call ends within about ``2 * timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Collection, Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from vidim.core import RecordChange

from .base import LeaseLost, StateStore, StoreUnavailable, decode_record, encode_record

__all__ = ["RedisStore"]

# Every script gets the namespace's key prefix (e.g. "vidim:{allocator}:") as ARGV[1].
# "#!lua" (Redis 7) declares a script's flags: without "no-writes", Redis refuses the
# whole script up front when it is out of memory, never halfway through a write.

#: ARGV: prefix, "1" to check leases ("0": no owner given), owner, then per change: id,
#: record JSON ("" deletes: a record's JSON is never empty), index JSON.  Returns the ids
#: fenced off by another owner's lease (nothing written), or an empty list once every
#: change is written.
_WRITE = """#!lua
local prefix, fencing, owner = ARGV[1], ARGV[2] == "1", ARGV[3]
local fenced = {}
if fencing then
  for i = 4, #ARGV, 3 do
    local holder = redis.call("GET", prefix .. "lease:" .. ARGV[i])
    if holder and holder ~= owner then table.insert(fenced, ARGV[i]) end
  end
  if #fenced > 0 then return fenced end
end
for i = 4, #ARGV, 3 do
  local id, record, index = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call("HGET", prefix .. "indexed", id)
  if old then
    for _, pair in ipairs(cjson.decode(old)) do
      redis.call("SREM", prefix .. "index:" .. pair[1] .. ":" .. pair[2], id)
    end
  end
  if record == "" then
    redis.call("HDEL", prefix .. "records", id)
    redis.call("HDEL", prefix .. "indexed", id)
  else
    redis.call("HSET", prefix .. "records", id, record)
    redis.call("HSET", prefix .. "indexed", id, index)
    for _, pair in ipairs(cjson.decode(index)) do
      redis.call("SADD", prefix .. "index:" .. pair[1] .. ":" .. pair[2], id)
    end
  end
end
return {}
"""

#: ARGV: prefix, owner, ttl in ms, "1" to take free leases too ("0": renew only), ids...
#: Returns the ids the owner now holds.
_TAKE = """#!lua
local prefix, owner, ttl, free_too = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == "1"
local held = {}
for i = 5, #ARGV do
  local key = prefix .. "lease:" .. ARGV[i]
  local holder = redis.call("GET", key)
  if holder == owner or (free_too and not holder) then
    redis.call("SET", key, owner, "PX", ttl)
    table.insert(held, ARGV[i])
  end
end
return held
"""

#: ARGV: prefix, owner, ids...  Deletes the leases the owner holds.
_RELEASE = """#!lua
local prefix, owner = ARGV[1], ARGV[2]
for i = 3, #ARGV do
  local key = prefix .. "lease:" .. ARGV[i]
  if redis.call("GET", key) == owner then redis.call("DEL", key) end
end
return 0
"""

#: ARGV: prefix.  Returns the ids of records with no lease key (expired ones are gone).
_UNOWNED = """#!lua flags=no-writes
local prefix = ARGV[1]
local free = {}
for _, id in ipairs(redis.call("HKEYS", prefix .. "records")) do
  if redis.call("EXISTS", prefix .. "lease:" .. id) == 0 then table.insert(free, id) end
end
return free
"""


#: ARGV: prefix, key, limit, window in ms, a unique member.  Returns 1 when the event was
#: counted (fewer than limit in the window, by Redis's clock), else 0.
_COUNT_EVENT = """#!lua
local key, limit, window = ARGV[1] .. "events:" .. ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call("ZREMRANGEBYSCORE", key, "-inf", now - window)
if redis.call("ZCARD", key) >= limit then return 0 end
redis.call("ZADD", key, now, ARGV[5])
redis.call("PEXPIRE", key, window)
return 1
"""


class RedisStore(StateStore):
    """Records, index sets and leases in Redis at ``url`` (``redis://HOST:PORT/DB``).

    ``prefix`` starts every key, so that two deployments can share one Redis.
    ``timeout`` (seconds) bounds connecting and each command; a call that fails is
    retried once at once (a restarted Redis is used again without reopening the store),
    then raises StoreUnavailable.  Lease expiry is Redis's own clock (PX).
    """

    def __init__(self, url: str, *, prefix: str = "vidim:", timeout: float = 1.0) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        where = urlsplit(url)
        self._where = f"redis {where.hostname or 'localhost'}:{where.port or 6379}"
        self._redis: Redis | None = None

    def __repr__(self) -> str:
        return f"<RedisStore {self._where} prefix={self.prefix!r}>"  # no password

    def _keys(self, namespace: str) -> str:
        return f"{self.prefix}{{{namespace}}}:"

    # -- connection ---------------------------------------------------------------------
    async def open(self) -> None:
        if self._redis is None:
            self._redis = Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 1),
                decode_responses=True,
            )
        await self.ping()

    async def close(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    async def ping(self) -> None:
        await self._call("PING")

    async def _call(self, *command: str | int | float) -> Any:
        """One command, or StoreUnavailable saying where and why, within the time bound."""
        if self._redis is None:
            raise StoreUnavailable(f"{self._where}: the store is not open")
        try:
            async with asyncio.timeout(2 * self.timeout + 0.5):
                # The typed methods (hget, ...) are typed for the sync and async clients at
                # once (value | Awaitable); the one untyped entry point reads plainer.
                return await self._redis.execute_command(*command)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            raise StoreUnavailable(f"{self._where}: {type(exc).__name__}: {exc}") from exc
        except (RedisError, OSError, TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            raise StoreUnavailable(f"{self._where}: {why}") from exc

    async def _script(self, script: str, namespace: str, *args: str) -> Any:
        """Run a Lua script.  EVAL sends its text (a few hundred bytes) each time;
        EVALSHA would save that, at the cost of handling NOSCRIPT after a Redis restart."""
        return await self._call("EVAL", script, 0, self._keys(namespace), *args)

    # -- records ------------------------------------------------------------------------
    async def write(
        self, namespace: str, changes: Sequence[RecordChange], *, owner: str | None = None
    ) -> None:
        args: list[str] = []
        for change in changes:
            record = "" if change.record is None else encode_record(change.record)
            args += [change.id, record, json.dumps([list(pair) for pair in change.index])]
        if not args:
            return
        fencing = "0" if owner is None else "1"
        fenced = await self._script(_WRITE, namespace, fencing, owner or "", *args)
        if fenced:
            raise LeaseLost(fenced)

    async def load(self, namespace: str) -> dict[str, dict[str, Any]]:
        stored = await self._call("HGETALL", self._keys(namespace) + "records")  # a dict
        return {id: decode_record(text) for id, text in stored.items()}

    async def get(self, namespace: str, id: str) -> dict[str, Any] | None:
        text = await self._call("HGET", self._keys(namespace) + "records", id)
        return None if text is None else decode_record(text)

    async def find(self, namespace: str, index_name: str, value: str) -> list[str]:
        key = f"{self._keys(namespace)}index:{index_name}:{value}"
        return sorted(await self._call("SMEMBERS", key))

    # -- leases -------------------------------------------------------------------------
    async def acquire(
        self, namespace: str, ids: Collection[str], owner: str, ttl: float
    ) -> set[str]:
        return await self._take(namespace, ids, owner, ttl, free_too=True)

    async def renew(self, namespace: str, ids: Collection[str], owner: str, ttl: float) -> set[str]:
        return await self._take(namespace, ids, owner, ttl, free_too=False)

    async def _take(
        self, namespace: str, ids: Collection[str], owner: str, ttl: float, *, free_too: bool
    ) -> set[str]:
        if not ids:
            return set()
        ttl_ms = str(max(1, round(ttl * 1000)))
        flag = "1" if free_too else "0"
        return set(await self._script(_TAKE, namespace, owner, ttl_ms, flag, *ids))

    async def release(self, namespace: str, ids: Collection[str], owner: str) -> None:
        if ids:
            await self._script(_RELEASE, namespace, owner, *ids)

    async def count_event(self, namespace: str, key: str, limit: int, window: float) -> bool:
        window_ms = max(1, round(window * 1000))
        member = secrets.token_hex(8)
        counted = await self._script(
            _COUNT_EVENT, namespace, key, str(limit), str(window_ms), member
        )
        return bool(counted)

    async def owner_of(self, namespace: str, id: str) -> str | None:
        holder: str | None = await self._call("GET", f"{self._keys(namespace)}lease:{id}")
        return holder

    async def unowned(self, namespace: str) -> list[str]:
        return sorted(await self._script(_UNOWNED, namespace))
