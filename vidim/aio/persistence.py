"""Write-ahead to a state store: a core's changes are stored before its messages leave.

:class:`SipServer` hands each batch of messages a core queued, with the
records the core changed (``take_changes``), to :class:`Persistence`.  A
batch with changes waits for the store's write; batches after it wait
behind it, so messages keep their order.  Nothing is told to anyone
(a 202, a focus INVITE, an invitation) that a restart would not know.

When the store fails, the server keeps going from memory: the messages
leave anyway, the changes wait (the latest record per id) and are written
when the store answers again; meanwhile :attr:`Persistence.available` is
False, so the server refuses *new* conferences with 503, and a WARNING
says so every ``warn_interval`` seconds.  A failure is noticed by a write,
or by a ping every ``check_interval`` seconds: a new conference accepted
in between (at most that long after the store went away) is the one
told of before it is stored, and is written when the store is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

from ..core import RecordChange
from ..sip import Address, Message
from ..store import LeaseLost

__all__ = ["Persistence", "RecordStore", "restore_core"]

Batch = list[tuple[Message, Address]]


class RecordStore(Protocol):
    """What persistence needs of a store (:class:`vidim.store.StateStore` has it)."""

    async def write(
        self, namespace: str, changes: Sequence[RecordChange], *, owner: str | None = None
    ) -> None: ...

    async def load(self, namespace: str) -> dict[str, dict[str, Any]]: ...

    async def ping(self) -> None: ...


class WriteGuard(Protocol):
    """What runs around each write: leases, for daemons sharing a store (``Cluster``)."""

    async def before_write(self, changes: list[RecordChange]) -> list[RecordChange]: ...

    async def after_write(self, changes: list[RecordChange]) -> None: ...

    def lost(self, ids: Sequence[str]) -> None:
        """The store refused to write these: another daemon holds their leases."""


class RestorableCore(Protocol):
    namespace: ClassVar[str]

    def record_changes(self) -> None: ...

    def restore(self, record: dict[str, Any], now: float) -> object: ...


async def restore_core(
    store: RecordStore,
    core: RestorableCore,
    now: float,
    logger: logging.Logger,
    *,
    namespace: str | None = None,
) -> int:
    """Load the core's records and resume them; returns how many came back.

    ``namespace``: where they are (the core's own by default).  A record the
    core refuses (over, or not one it could have written) is logged and
    deleted: it would be refused again at every start.
    """
    namespace = namespace if namespace is not None else core.namespace
    core.record_changes()  # what the restored conferences do from now on is stored
    records = await store.load(namespace)
    refused: list[RecordChange] = []
    for record_id, record in records.items():
        try:
            core.restore(record, now)
        except Exception as error:
            logger.error("%s record %s not restored, deleted: %s", core.namespace, record_id, error)
            refused.append(RecordChange(record_id, None))
    if refused:
        await store.write(core.namespace, refused)
    return len(records) - len(refused)


class Persistence:
    """Orders a core's messages behind the store writes of the changes that caused them."""

    def __init__(
        self,
        store: RecordStore,
        namespace: str,
        *,
        owner: str | None = None,
        logger: logging.Logger | None = None,
        retry_interval: float = 1.0,
        warn_interval: float = 5.0,
        check_interval: float = 1.0,
        name: str = "the state store",
        guard: WriteGuard | None = None,
        on_availability: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        #: Takes leases before a write and lets them go after (None: one daemon alone).
        self.guard = guard
        #: Told when the store starts failing (False) and answers again (True).
        self.on_availability = on_availability
        self.namespace = namespace
        self.owner = owner
        self.logger = logger if logger is not None else logging.getLogger("vidim.aio")
        self.retry_interval = retry_interval
        self.warn_interval = warn_interval
        #: How often an idle store is pinged, so that a failure is known before a new
        #: conference is accepted that could not be stored.
        self.check_interval = check_interval
        self._watcher: asyncio.Task[None] | None = None
        #: How the store is named in log lines and Warnings (e.g. its URL).
        self.name = name
        #: Batches waiting for their write, in order: (changes, messages).
        self._queue: deque[tuple[list[RecordChange], Batch]] = deque()
        self._writer: asyncio.Task[None] | None = None
        #: Changes not written while the store was failing (latest record per id).
        self._unwritten: dict[str, RecordChange] = {}
        self._down_since: float | None = None
        self._last_warning = 0.0
        self._retry: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        #: Writes done, and writes failed, since the start (for tests and metrics).
        self.writes = 0
        self.failures = 0

    @property
    def available(self) -> bool:
        """False while the store fails: new conferences must be refused (503)."""
        return self._down_since is None

    @property
    def busy(self) -> bool:
        """True while a batch waits or is being written: later messages queue behind it."""
        return self._writer is not None

    @property
    def unwritten(self) -> int:
        """How many records wait for the store to come back."""
        return len(self._unwritten)

    def submit(
        self, changes: list[RecordChange], messages: Batch, send: Callable[[Batch], None]
    ) -> None:
        """Send ``messages`` once ``changes`` (and every batch before) are stored."""
        self._queue.append((changes, messages))
        self._idle.clear()
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_queue(send))

    async def wait_written(self, timeout: float) -> bool:
        """Wait until every submitted batch is written (or given up on) and sent."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        """Ping the store every ``check_interval`` while it answers (the server calls it)."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            if not self.available:
                continue  # the retry task is on it
            try:
                await self.store.ping()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self.available:
                    self.failures += 1
                    self._failing(error)

    async def close(self) -> None:
        for task in (self._writer, self._retry, self._watcher):
            if task is not None:
                task.cancel()

    async def _write_queue(self, send: Callable[[Batch], None]) -> None:
        try:
            while self._queue:
                # Everything queued while the last write was in flight goes in one write.
                changes: list[RecordChange] = []
                messages: Batch = []
                while self._queue:
                    more_changes, more_messages = self._queue.popleft()
                    changes += more_changes
                    messages += more_messages
                if changes:
                    await self._write(changes)
                send(messages)
        finally:
            self._writer = None
            if not self._queue:
                self._idle.set()

    async def _write(self, changes: list[RecordChange]) -> None:
        """Write, or keep for later when the store fails (never raises)."""
        for change in changes:
            self._unwritten[change.id] = change
        if not self.available:
            return  # the retry task writes them; the messages do not wait on a dead store
        await self._write_unwritten()

    async def _write_unwritten(self) -> bool:
        batch = list(self._unwritten.values())
        try:
            written = await self.guard.before_write(batch) if self.guard else batch
            await self.store.write(self.namespace, written, owner=self.owner)
            if self.guard is not None:
                await self.guard.after_write(written)
        except asyncio.CancelledError:
            raise
        except LeaseLost as error:
            # Driven by another daemon now: not ours to write (the guard lets them go).
            for conference_id in error.ids:
                self._unwritten.pop(conference_id, None)
            if self.guard is not None:
                self.guard.lost(list(error.ids))
            self.logger.warning("%s: not written, leases lost: %s", self.name, list(error.ids))
            return await self._write_unwritten()
        except Exception as error:
            self.failures += 1
            self._failing(error)
            return False
        for change in batch:
            if self._unwritten.get(change.id) is change:
                del self._unwritten[change.id]
        self.writes += 1
        if self._down_since is not None:
            self.logger.warning(
                "%s answers again after %.1f s: %d record(s) caught up; new requests accepted",
                self.name,
                time.monotonic() - self._down_since,
                len(batch),
            )
            self._down_since = None
            if self.on_availability is not None:
                self.on_availability(True)
        return True

    def _failing(self, error: Exception) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._last_warning = now
            self.logger.warning(
                "%s failed (%s): conferences go on from memory; new requests answered 503",
                self.name,
                error,
                extra={"error": str(error)},
            )
            self._retry = asyncio.get_running_loop().create_task(self._retry_until_written())
            if self.on_availability is not None:
                self.on_availability(False)
        elif now - self._last_warning >= self.warn_interval:
            self._last_warning = now
            self.logger.warning(
                "%s still failing after %.0f s (%s): %d record(s) wait; new requests answered 503",
                self.name,
                now - self._down_since,
                error,
                len(self._unwritten),
            )

    async def _retry_until_written(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.retry_interval)
                if await self._write_unwritten():
                    return
        finally:
            self._retry = None
