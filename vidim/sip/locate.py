"""Which servers a request for a host name goes to: RFC 3263 section 4, fed DNS answers.

:func:`vidim.sip.uri_destination` picks a transport, a host and a port from a
URI without DNS and says in :attr:`Address.lookup` how a host name is to be
located.  This module is the rest of RFC 3263 section 4, without sockets:
:func:`locate` is a generator that yields each :class:`Query` it needs and is
sent the records that answer it; it returns the targets to try, in order,
each an IP address with its port and transport::

    locating = locate(destination, transports={"UDP", "TCP"}, rng=random.Random())
    query = next(locating)
    while True:
        try:
            query = locating.send(records_for(query))  # [] when there are none
        except StopIteration as done:
            targets = done.value
            break

:func:`locate_with` runs it on answers at hand (tests, recorded answers);
:class:`vidim.aio.resolver.Resolver` runs it on DNS.

The steps (RFC 3263 section 4.1 and 4.2, RFC 2782 for SRV):

- an IP address: as it is;
- a port given (lookup ``"A"``): the A/AAAA records of the host, on that port;
- a transport given without a port (``"SRV"``): the SRV records of
  ``_sip._udp``, ``_sip._tcp`` or ``_sips._tcp`` before the host;
- neither (``"NAPTR"``): the NAPTR records of the host (``SIP+D2U``,
  ``SIP+D2T``, ``SIPS+D2T``; only ``SIPS+D2T`` for a ``sips:`` URI), by
  order and preference, each replacement's SRV records; no usable NAPTR
  record: the SRV records of every transport we send over;
- no SRV record at all: the A/AAAA records of the host on the destination's
  port and transport (5060, or 5061 for TLS).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from .transaction import Address

__all__ = [
    "NAPTR_SERVICES",
    "SRV_PREFIXES",
    "Locating",
    "Naptr",
    "Query",
    "Record",
    "Srv",
    "locate",
    "locate_with",
    "naptr_services",
    "order_srv",
]

#: RFC 3263 section 4.1: the NAPTR services vidim knows, and their transports.
NAPTR_SERVICES: Final = {"SIP+D2U": "UDP", "SIP+D2T": "TCP", "SIPS+D2T": "TLS"}

#: RFC 3263 section 4.1: the SRV name before the domain, for each transport.
SRV_PREFIXES: Final = {"UDP": "_sip._udp.", "TCP": "_sip._tcp.", "TLS": "_sips._tcp."}


@dataclass(frozen=True, kw_only=True, slots=True)
class Naptr:
    """A NAPTR record (RFC 3403); ``replacement`` without its final dot."""

    order: int
    preference: int
    flags: str
    service: str
    replacement: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Srv:
    """An SRV record (RFC 2782); ``target`` without its final dot (``"."``: no service)."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Query:
    """What :func:`locate` needs to know next.

    ``kind`` ``"ADDRESS"`` asks for the IP addresses of ``name`` (its A and
    AAAA records, or the system's answer: see :mod:`vidim.aio.resolver`),
    sent back as strings; ``"NAPTR"`` and ``"SRV"`` for :class:`Naptr` and
    :class:`Srv` records.
    """

    name: str
    kind: Literal["NAPTR", "SRV", "ADDRESS"]


#: One record of an answer: an IP address (as text) for an ``"ADDRESS"`` query.
Record = Naptr | Srv | str

#: The generator :func:`locate` returns: yields queries, is sent their records.
Locating = Generator[Query, Sequence[Record], list[Address]]


def locate(destination: Address, *, transports: Collection[str], rng: random.Random) -> Locating:
    """The IP targets to try for ``destination``, in order (see the module docstring).

    ``transports``: the transports the caller can send over; NAPTR and SRV
    choices of any other are left out (a ``sips:`` destination, whose
    transport the core chose, is located over TLS whatever this says).
    ``rng`` orders the SRV records of one priority by weight (RFC 2782).
    The answer to each query is a sequence of records, empty when there are
    none or the lookup failed.  An empty list returned: the host cannot be
    reached.
    """
    host = destination.host
    if _is_ip(host):
        return [destination]
    if destination.lookup == "A":
        return (yield from _addresses(host, destination.port, destination.transport))
    if destination.lookup == "NAPTR":
        # A sips: URI (the core chose TLS, so it can send over it): its SIPS services only.
        allowed = {"TLS"} if destination.transport == "TLS" else set(transports)
        services = naptr_services((yield Query(host, "NAPTR")), allowed)
        if not services:  # "If no NAPTR records are found": an SRV query per transport
            first = [destination.transport] if destination.transport in allowed else []
            order = first + sorted(allowed - set(first))
            services = [(t, SRV_PREFIXES[t] + host) for t in order if t in SRV_PREFIXES]
    elif destination.transport in SRV_PREFIXES:
        services = [(destination.transport, SRV_PREFIXES[destination.transport] + host)]
    else:
        services = []
    targets: list[Address] = []
    found_srv = False
    for transport, name in services:
        records = [r for r in (yield Query(name, "SRV")) if isinstance(r, Srv)]
        found_srv = found_srv or bool(records)
        for record in order_srv(records, rng):
            targets += yield from _addresses(record.target, record.port, transport)
    if found_srv:  # a domain with SRV records but no reachable target is not tried by name
        return targets
    return (yield from _addresses(host, destination.port, destination.transport))


def naptr_services(records: Sequence[Record], transports: Collection[str]) -> list[tuple[str, str]]:
    """The (transport, SRV name) pairs NAPTR ``records`` offer, best first.

    RFC 3263 section 4.1: only the SIP services (:data:`NAPTR_SERVICES`) over
    ``transports``, with the ``s`` flag (the replacement is an SRV name), by
    order then preference (RFC 3403).
    """
    usable = [
        record
        for record in records
        if isinstance(record, Naptr)
        and record.flags.lower() == "s"
        and NAPTR_SERVICES.get(record.service.upper()) in transports
    ]
    usable.sort(key=lambda record: (record.order, record.preference))
    return [(NAPTR_SERVICES[record.service.upper()], record.replacement) for record in usable]


def order_srv(records: Sequence[Srv], rng: random.Random) -> list[Srv]:
    """SRV ``records`` in the order to try them (RFC 2782).

    Lowest priority first; within one priority, a weighted random order: each
    pick chooses a record with a chance proportional to its weight, records of
    weight 0 rarely first.  A target of ``"."`` means "no service here" and is
    left out.
    """
    ordered: list[Srv] = []
    for priority in sorted({record.priority for record in records}):
        # RFC 2782: "arrange all SRV RRs (that have not been ordered yet) in any
        # order, except that all those with weight 0 are placed at the beginning".
        group = sorted(
            (r for r in records if r.priority == priority and r.target not in ("", ".")),
            key=lambda record: record.weight != 0,
        )
        while group:
            total = sum(record.weight for record in group)
            pick = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered


def locate_with(
    destination: Address,
    answers: Mapping[Query, Sequence[Record]] | Callable[[Query], Sequence[Record]],
    *,
    transports: Collection[str] = ("UDP", "TCP"),
    rng: random.Random | None = None,
) -> list[Address]:
    """:func:`locate` run on answers at hand (a mapping: a query it lacks has no records)."""
    answer = answers if callable(answers) else (lambda query: answers.get(query, ()))
    locating = locate(destination, transports=transports, rng=rng or random.Random(0))
    try:
        query = next(locating)
        while True:
            query = locating.send(answer(query))
    except StopIteration as done:
        targets: list[Address] = done.value
        return targets


def _addresses(name: str, port: int, transport: str) -> Locating:
    if _is_ip(name):
        return [Address(name, port, transport)]
    records = yield Query(name, "ADDRESS")
    return [Address(ip, port, transport) for ip in records if isinstance(ip, str)]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
