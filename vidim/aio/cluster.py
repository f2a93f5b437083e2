"""Several daemons over one state store: who drives which conference.

Each conference is driven (its timers, its dialogs, its commands) by the
one daemon holding its lease in the store; a lease lasts ``lease_ttl``
seconds and its holder renews it every third of that.  The owner of a lease
is the daemon's SIP address (``HOST:PORT``), so that the others can reach it.

* A new conference: its lease is taken before its first write
  (:meth:`Cluster.before_write`), let go after its last.
* A daemon that stops renewing (killed, cut off): once its leases expire,
  the others take its conferences over (:meth:`Cluster.adopt`), resuming
  them from their records as a restart would (the anchor is checked at once).
* A follow-up command (``/status``, ``/add``, ``/end``) reaching a daemon
  that does not drive its conference: forwarded statelessly to the daemon
  that does, or adopted first when nobody does any more
  (:meth:`Cluster.intercept`).
* A lease lost anyway (the store was unreachable longer than the TTL and
  another daemon took over): the conference is let go here without ending it.

The fencing in :meth:`vidim.store.StateStore.write` (``owner=``) makes sure
that a daemon that lost a lease cannot overwrite its new owner's record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..allocator import Allocator, FollowUp, NewConferenceAsked
from ..core import RecordChange
from ..sip import Address, Request
from ..store import StateStore, StoreUnavailable

if TYPE_CHECKING:
    from .server import SipServer

__all__ = ["Cluster", "owner_address"]


def owner_address(owner: str) -> Address:
    """The SIP address a lease owner's id names (``HOST:PORT``, ``[v6]:PORT``)."""
    host, _, port = owner.rpartition(":")
    return Address(host.strip("[]"), int(port), "UDP")


class Cluster:
    """The allocator's side of sharing a store with other daemons: leases and follow-ups."""

    def __init__(
        self,
        store: StateStore,
        allocator: Allocator,
        *,
        owner: str,
        lease_ttl: float = 10.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self.store = store
        self.allocator = allocator
        self.namespace = allocator.namespace
        #: This daemon's id in the store: its SIP address.
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.logger = logger if logger is not None else logging.getLogger("vidim.aio")
        #: The conferences whose lease this daemon holds.
        self.held: set[str] = set()
        self._server: SipServer[Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._keeper: asyncio.Task[None] | None = None

    def attach(self, server: SipServer[Any]) -> None:
        """The server running the allocator: adopted conferences and follow-ups go through it."""
        self._server = server

    # -- the write path (Persistence calls these around each write) -----------------------
    async def before_write(self, changes: list[RecordChange]) -> list[RecordChange]:
        """Take the leases of new conferences; what another daemon holds is let go, not written."""
        new = [c.id for c in changes if c.record is not None and c.id not in self.held]
        if not new:
            return changes
        got = await self.store.acquire(self.namespace, new, self.owner, self.lease_ttl)
        self.held |= got
        taken = set(new) - got
        for conference_id in taken:
            self._let_go(conference_id, "another daemon holds its lease")
        return [c for c in changes if c.id not in taken]

    async def after_write(self, changes: list[RecordChange]) -> None:
        """Let go of the leases of conferences that are over."""
        over = [c.id for c in changes if c.record is None and c.id in self.held]
        if over:
            self.held.difference_update(over)
            await self.store.release(self.namespace, over, self.owner)

    def lost(self, ids: Sequence[str]) -> None:
        for conference_id in ids:
            self._let_go(conference_id, "another daemon holds its lease")

    # -- leases ---------------------------------------------------------------------------
    async def start(self, now: float) -> int:
        """Resume every conference no other live daemon drives, then keep the leases.

        Its own (a restart with the same address) and those whose lease
        expired; returns how many.  What the others drive stays theirs.
        """
        self.allocator.record_changes()
        records = await self.store.load(self.namespace)
        got = await self.store.acquire(self.namespace, records, self.owner, self.lease_ttl)
        resumed = 0
        for conference_id in got:
            try:
                self.allocator.restore(records[conference_id], now)
            except Exception as error:
                self.logger.error("conference %s not resumed: %s", conference_id, error)
                await self.store.release(self.namespace, [conference_id], self.owner)
                continue
            self.held.add(conference_id)
            resumed += 1
        self._keeper = asyncio.get_running_loop().create_task(self._keep_leases())
        return resumed

    async def close(self) -> None:
        for task in [self._keeper, *self._tasks]:
            if task is not None:
                task.cancel()

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                await self.renew()
                await self.adopt_orphans()
            except StoreUnavailable as error:
                self.logger.debug("leases not renewed: %s", error)  # persistence warns
            except Exception:
                self.logger.exception("keeping the leases failed")

    async def renew(self) -> None:
        """Renew every lease held; take back those the store lost; let go of those taken.

        A lease gone with nobody else holding it means the store lost it (a
        Redis restarted empty, or one unreachable for longer than the TTL):
        the lease is taken again and every record written again.
        """
        if not self.held:
            return
        held = set(self.held)
        renewed = await self.store.renew(self.namespace, held, self.owner, self.lease_ttl)
        missing = held - renewed
        if not missing:
            return
        back = await self.store.acquire(self.namespace, missing, self.owner, self.lease_ttl)
        for conference_id in missing - back:
            owner = await self.store.owner_of(self.namespace, conference_id)
            self._let_go(conference_id, f"its lease went to {owner}")
        self.held = (self.held - missing) | back
        if back:
            self.logger.warning(
                "%d lease(s) had vanished from the store: taken again, records written again",
                len(back),
            )
            self.allocator.note_all_changed()
            if self._server is not None:
                self._server.transmit()

    async def adopt_orphans(self) -> None:
        """Take over every conference whose lease expired (its daemon stopped renewing)."""
        for conference_id in await self.store.unowned(self.namespace):
            await self.adopt(conference_id, "its lease expired")

    async def adopt(self, conference_id: str, why: str) -> bool:
        """Take a conference's lease and resume it here; False when another daemon has it."""
        got = await self.store.acquire(self.namespace, [conference_id], self.owner, self.lease_ttl)
        if conference_id not in got:
            return False
        self.held.add(conference_id)
        if conference_id in self.allocator.conferences:
            return True  # already driven here: the store had lost the lease
        record = await self.store.get(self.namespace, conference_id)
        if record is None:
            self.held.discard(conference_id)
            await self.store.release(self.namespace, [conference_id], self.owner)
            return False
        server = self._server
        now = server.now() if server is not None else asyncio.get_running_loop().time()
        try:
            self.allocator.restore(record, now)
        except Exception as error:
            self.logger.error("conference %s not adopted: %s", conference_id, error)
            self.held.discard(conference_id)
            await self.store.release(self.namespace, [conference_id], self.owner)
            return False
        self.logger.info(
            "adopted conference %s (%s)", conference_id, why, extra={"conference_id": conference_id}
        )
        if server is not None:
            server.transmit()
        return True

    def _let_go(self, conference_id: str, why: str) -> None:
        self.held.discard(conference_id)
        if conference_id in self.allocator.conferences:
            self.allocator.release(conference_id)
            self.logger.warning(
                "conference %s no longer driven here: %s",
                conference_id,
                why,
                extra={"conference_id": conference_id},
            )

    # -- follow-ups -------------------------------------------------------------------------
    def intercept(self, request: Request, source: Address) -> bool:
        """True when ``request`` needs the store first; it then reaches the allocator later.

        A new conference is counted against its requester's rate in the
        store (shared by every daemon), then given to the allocator with the
        verdict.  A follow-up for a conference not driven here is forwarded
        to the daemon that drives it, or given to the allocator once the
        conference is adopted (or when none is found: it answers 404 as usual).
        """
        question = self.allocator.classify(request, source)
        if question is None:
            return False
        if isinstance(question, NewConferenceAsked):
            work = self._count(question.requester, request, source)
        else:
            work = self._route(question, request, source)
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _count(self, requester: str, request: Request, source: Address) -> None:
        server = self._server
        assert server is not None, "attach() the allocator's server first"
        config = self.allocator.config
        if self.allocator.refusing_new_conferences is not None:
            server.deliver(request, source)  # refused anyway: no need to wait on the store
            return
        try:
            allowed = await self.store.count_event(
                "rate", requester, config.rate_limit, config.rate_window
            )
        except StoreUnavailable as error:
            self.logger.debug("rate of %s counted here only: %s", requester, error)
        else:
            self.allocator.decide_rate(requester, allowed)
        server.deliver(request, source)

    async def _route(self, follow_up: FollowUp, request: Request, source: Address) -> None:
        server = self._server
        assert server is not None, "attach() the allocator's server first"
        try:
            owner = await self._driver_of(follow_up)
        except StoreUnavailable as error:
            self.logger.warning("cannot look up the conference of a follow-up: %s", error)
            owner = None
        if owner is not None and owner != self.owner:
            self.logger.debug("follow-up of %s forwarded to %s", follow_up.requester, owner)
            server.forward(request, source, owner_address(owner))
        else:
            server.deliver(request, source)

    async def _driver_of(self, follow_up: FollowUp) -> str | None:
        """Who drives the conference ``follow_up`` is about (adopting it when nobody does)."""
        if follow_up.conference_id is not None:
            ids = [follow_up.conference_id]
        else:
            ids = await self.store.find(self.namespace, "requester", follow_up.requester)
        newest: tuple[float, str] | None = None
        for conference_id in ids:
            record = await self.store.get(self.namespace, conference_id)
            # By #id: whoever asks (the driver says whether they may); else the requester's own.
            mine = follow_up.conference_id is not None or (
                record is not None and record.get("requester") == follow_up.requester
            )
            if record is not None and mine:
                created = float(record.get("created_at", 0.0))
                if newest is None or created > newest[0]:
                    newest = (created, conference_id)
        if newest is None:
            return None
        conference_id = newest[1]
        owner = await self.store.owner_of(self.namespace, conference_id)
        if owner is None and await self.adopt(conference_id, "a follow-up came for it"):
            return self.owner
        return owner
