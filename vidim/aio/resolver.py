"""Host names located as RFC 3263 says, on DNS, without blocking the loop.

:func:`vidim.sip.locate.locate` knows which records to ask for and what to do
with them; :class:`Resolver` asks: NAPTR and SRV records with dnspython's
``dns.asyncresolver`` (docs/packages.md says why dnspython), and addresses
either the same way (explicit name servers) or with the loop's
``getaddrinfo`` (the system's configuration: ``/etc/hosts``, nsswitch),
which asyncio runs in its executor::

    resolver = Resolver()                                   # the system's name servers
    resolver = Resolver(nameservers=[("127.0.0.1", 5353)])  # those, for every query
    targets = await resolver.locate(Address("example.com", 5060, "UDP", "NAPTR"))

Answers are cached as long as their TTL says (dnspython's ``Cache``); a
failed lookup (a timeout, no name server) counts as "no records" for
:data:`FAILURE_TTL` seconds, so that a retransmission does not wait for the
same timeout again.  ``localhost`` names get no NAPTR or SRV query at all
(RFC 6761 section 6.3: "negative responses for all other query types").
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Collection, Sequence
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdtypes.IN.NAPTR
import dns.rdtypes.IN.SRV
import dns.resolver

from ..sip.locate import Naptr, Query, Record, Srv, locate
from ..sip.targets import SENDABLE_TRANSPORTS
from ..sip.transaction import Address

__all__ = ["FAILURE_TTL", "Resolver"]

#: Seconds a failed lookup (no answer in time, no name server) is not retried.
FAILURE_TTL: Final = 30.0

#: Seconds one DNS query may take, retries to every name server included.
DEFAULT_TIMEOUT: Final = 2.0


class Resolver:
    """Locates SIP servers on DNS (RFC 3263); one per :class:`SipServer`.

    Args:
        nameservers: (address, port) of the DNS servers to ask every query,
            addresses included; None: the system's (``/etc/resolv.conf`` for
            NAPTR and SRV, ``getaddrinfo`` for addresses).
        timeout: seconds one query may take before it counts as no records.
        transports: the transports a NAPTR or SRV choice may name.
        rng: orders SRV records of one priority by weight (RFC 2782).
    """

    def __init__(
        self,
        *,
        nameservers: Sequence[tuple[str, int]] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transports: Collection[str] = SENDABLE_TRANSPORTS,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.transports = frozenset(transports)
        self.logger = logger if logger is not None else logging.getLogger("vidim.aio")
        self._rng = rng if rng is not None else random.Random()
        self._system = nameservers is None
        if nameservers is None:
            try:
                self._dns = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration:  # no resolv.conf: no DNS answers
                self._dns = dns.asyncresolver.Resolver(configure=False)
        else:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = [
                dns.nameserver.Do53Nameserver(address, port) for address, port in nameservers
            ]
        self._dns.lifetime = timeout
        self._dns.cache = dns.resolver.Cache()
        #: (name, kind) of the lookups that failed, and until when they count as empty.
        self._failed: dict[tuple[str, str], float] = {}

    async def locate(self, destination: Address) -> list[Address]:
        """The IP targets to try for ``destination``, best first; [] if none.

        See :func:`vidim.sip.locate.locate`.
        """
        locating = locate(destination, transports=self.transports, rng=self._rng)
        try:
            query = next(locating)
            while True:
                query = locating.send(await self.query(query))
        except StopIteration as done:
            targets: list[Address] = done.value
            return targets

    async def query(self, query: Query) -> Sequence[Record]:
        """The records that answer ``query``; empty when there are none or the lookup failed."""
        key = (query.name.lower(), query.kind)
        now = time.monotonic()
        if self._failed.get(key, 0.0) > now:
            return ()
        try:
            if query.kind == "ADDRESS":
                return await self._addresses(query.name)
            if _is_localhost(query.name):
                return ()
            answer = await self._dns.resolve(query.name, query.kind, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return ()  # cached by dnspython as long as the zone's negative TTL says
        except (dns.exception.DNSException, OSError) as error:
            self.logger.info("no %s records of %s: %s", query.kind, query.name, error)
            self._failed[key] = now + FAILURE_TTL
            return ()
        return [_record(rdata) for rdata in answer]

    async def _addresses(self, name: str) -> Sequence[str]:
        if self._system or _is_localhost(name):
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
            except OSError:
                return ()
            return list(dict.fromkeys(str(info[4][0]) for info in infos))
        found: list[str] = []
        for kind in ("A", "AAAA"):
            try:
                answer = await self._dns.resolve(name, kind, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            found += [rdata.to_text() for rdata in answer]
        return found


def _record(rdata: object) -> Record:
    if isinstance(rdata, dns.rdtypes.IN.SRV.SRV):
        return Srv(
            priority=rdata.priority,
            weight=rdata.weight,
            port=rdata.port,
            target=rdata.target.to_text(omit_final_dot=True),
        )
    if isinstance(rdata, dns.rdtypes.IN.NAPTR.NAPTR):
        return Naptr(
            order=rdata.order,
            preference=rdata.preference,
            flags=rdata.flags.decode("ascii", "replace"),
            service=rdata.service.decode("ascii", "replace"),
            replacement=rdata.replacement.to_text(omit_final_dot=True),
        )
    return str(rdata)


def _is_localhost(name: str) -> bool:
    name = name.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")
