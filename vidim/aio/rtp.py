"""A small asyncio UDP relay that applies a :class:`~vidim.focus.media.ForwardingPlan`.

The only I/O of the built-in focus's media path, and deliberately thin: one
UDP socket per focus port in the plan (RTP and RTCP alike), bound on the
media address; every datagram that arrives on a port is sent, unchanged
except for the RTP payload type where the plan says so, to each
destination of that port's route, out of the destination's ``via_port``
socket.  No jitter buffer, no parsing beyond the two header bits the
payload-type rewrite needs.  RTCP multiplexed on an RTP port (RFC 5761,
a route's ``rtcp_mux``) is told apart by its packet type
(:meth:`~vidim.focus.media.Route.carries_rtcp`), goes to the route's RTCP
destinations, never rewritten, and is SRTCP where the port is keyed.
SRTP is one hook on each side
(:class:`vidim.aio.srtp.SrtpPorts`): a packet from an SRTP participant is
opened after the source check (one that does not authenticate is dropped
and counted in :attr:`PortStats.unauthenticated`), and one to an SRTP
participant is protected with its key as it leaves.

Terminated media (mixed audio, switched video).  What arrives on a
``terminated`` route's port (after the source check and SRTP) goes to
:attr:`RtpRelay.on_terminated` (``port, data``), and :meth:`RtpRelay.send`
sends what the mixer or the video switch returns out of a port to that
port's participant (protected when SRTP); :class:`vidim.aio.FocusMedia`
wires both to its :class:`~vidim.focus.mixers.MixerBank` and
:class:`~vidim.focus.switches.SwitchBank`.

Driving it: :class:`vidim.aio.FocusMedia` applies the focus's plan on
every :class:`~vidim.focus.MediaPlanChanged`, one plan at a time.

:meth:`RtpRelay.apply` binds the sockets the new plan needs first (so a
bind failure leaves the old plan in force and raises), then swaps the
routing table in one assignment, then closes the sockets of ports no longer
in the plan.  It binds each plan port's own number (a restarted focus gets
its calls' ports back this way), and tries every port before it gives up:
:class:`PortsUnavailableError` names each one that failed and why, so that
the focus can end the calls that use them and the rest goes on.  Counters
per port (:meth:`RtpRelay.stats`) survive the socket, for metrics; per
participant, :attr:`RtpRelay.media` (:class:`vidim.rtpstats.MediaStats`) is
handed each datagram accepted and sent (its RTCP reports, late packets).

Who may send (issue 18, docs/security.md).  A focus port takes media only
from its participant; everything else is dropped and counted in
:attr:`PortStats.strangers` (the first such packet per port is logged at
WARNING), so that nobody who sprays packets over the port range reaches a
conference.  Who the participant is depends on ``latching``:

* ``latching=False`` (the default): the address its SDP named for this port
  (host and port; for RTCP, ``a=rtcp`` or RTP + 1).  Exact, and nothing to
  learn: right where the SDP addresses are the real ones (loopback, a LAN,
  behind Kamailio + rtpengine, which rewrites them).  A phone behind NAT, or
  one that sends from another port than it receives on, is dropped: use
  latching there.
* ``latching=True``: symmetric RTP (RFC 4961), as Asterisk's
  ``rtp_symmetric``/``strictrtp`` and rtpengine do.  The relay has a port's
  route only once the focus answered the call; the first packet that then
  arrives latches its source, and the relay takes that port's media only
  from there and sends the participant's media there (packets to Carol,
  which leave from Carol's port, go where Carol's packets came from).  A
  packet from the SDP's own address is always taken and latches it again
  (so a stranger who got there first loses the port as soon as the
  participant speaks, unless the participant is behind NAT).  A latch is
  forgotten when the port leaves the plan or starts serving another
  participant.

``ephemeral=True`` binds every socket on port 0 (the OS picks) instead of
the plan's port number; :meth:`RtpRelay.address` tells where a plan port
really is.  For tests, which must not assume a free port range.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..focus.media import ForwardingPlan, Route
from ..rtpstats import MediaStats
from .srtp import SrtpPorts

__all__ = ["PortStats", "PortsUnavailableError", "RtpRelay"]


class PortsUnavailableError(OSError):
    """Ports of a plan that could not be bound, each with the operating system's error."""

    def __init__(self, errors: dict[int, OSError]) -> None:
        self.errors = errors
        listed = ", ".join(f"{port} ({error.strerror or error})" for port, error in errors.items())
        super().__init__(f"cannot bind RTP relay port(s) {listed}")


@dataclass(slots=True)
class PortStats:
    """What happened on one focus port since the relay started."""

    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    #: Datagrams that arrived on a port with no route, or whose destination
    #: socket was missing.
    dropped: int = 0
    #: Datagrams dropped because they came from someone other than the port's
    #: participant ("dropped from strangers"; see the module docstring).
    strangers: int = 0
    #: Send errors the OS reported (ICMP port unreachable and the like).
    errors: int = 0
    #: SRTP/SRTCP datagrams from the participant that did not authenticate
    #: (wrong key, replayed, not SRTP at all): dropped.
    unauthenticated: int = 0


class _PortProtocol(asyncio.DatagramProtocol):
    def __init__(self, relay: RtpRelay, port: int) -> None:
        self.relay = relay
        self.port = port

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), addr[1]
        assert isinstance(port, int)
        self.relay._forward(self.port, data, (host, port))

    def error_received(self, exc: Exception) -> None:
        self.relay._stats.setdefault(self.port, PortStats()).errors += 1


def _rewrite(data: bytes, payload_map: tuple[tuple[int, int], ...]) -> bytes:
    """Replace the RTP payload type (RFC 3550 5.1) per ``payload_map``, marker bit kept."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return data
    payload_type = data[1] & 0x7F
    for old, new in payload_map:
        if old == payload_type:
            return data[:1] + bytes(((data[1] & 0x80) | new,)) + data[2:]
    return data


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an address (IPv4 mapped into IPv6 as IPv4); None for a name."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _same_address(source: tuple[str, int], expected: tuple[str, int]) -> bool:
    """Whether a datagram's source is ``expected`` (written alike or not: ``::ffff:`` forms)."""
    if source[1] != expected[1]:
        return False
    if source[0] == expected[0]:
        return True
    address = _ip(source[0])
    return address is not None and address == _ip(expected[0])


def _peer(route: Route) -> tuple[str, tuple[str, int] | None]:
    """Who a port serves: a latch holds only while this stays the same."""
    return route.participant, route.remote


class RtpRelay:
    """UDP sockets for the plan's ports, forwarding per route."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        latching: bool = False,
        ephemeral: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self.host = host
        self.latching = latching
        self.ephemeral = ephemeral
        self.logger = logger if logger is not None else logging.getLogger("vidim.aio")
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._routes: dict[int, Route] = {}
        self._latched: dict[int, tuple[str, int]] = {}
        #: Ports whose first packet from a stranger was logged (while serving the same peer).
        self._warned: set[int] = set()
        self._stats: dict[int, PortStats] = {}
        #: Per participant: what its RTCP reports say, and what the relay saw of it (metrics).
        self.media = MediaStats()
        self._plan = ForwardingPlan()
        self._srtp = SrtpPorts()
        self.on_terminated: Callable[[int, bytes], None] | None = None
        """Called with ``(port, data)`` for what arrives on a terminated route, from its
        participant; without it, such datagrams are dropped."""

    @property
    def plan(self) -> ForwardingPlan:
        """The plan in force."""
        return self._plan

    @property
    def ports(self) -> frozenset[int]:
        """The plan ports that have a socket now."""
        return frozenset(self._transports)

    def address(self, port: int) -> tuple[str, int]:
        """Where the socket of plan port ``port`` is bound (differs only when ephemeral)."""
        transport = self._transports.get(port)
        if transport is None:
            raise KeyError(f"no socket for port {port}")
        sockname = transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    def stats(self) -> dict[int, PortStats]:
        """Counters per plan port (a copy)."""
        return {port: dataclasses.replace(s) for port, s in self._stats.items()}

    def totals(self) -> PortStats:
        """The counters of every port added up (e.g. ``totals().strangers`` for metrics)."""
        total = PortStats()
        for stats in self._stats.values():
            for counter in dataclasses.fields(PortStats):
                name = counter.name
                setattr(total, name, getattr(total, name) + getattr(stats, name))
        return total

    async def apply(self, plan: ForwardingPlan) -> None:
        """Bind what ``plan`` adds, switch to it, close what it drops.

        Raises :class:`PortsUnavailableError` (an :class:`OSError`) naming
        every port that cannot be bound; the sockets this call bound are
        closed again and the previous plan stays in force.
        """
        loop = asyncio.get_running_loop()
        wanted = plan.ports
        opened: dict[int, asyncio.DatagramTransport] = {}
        failed: dict[int, OSError] = {}
        for port in sorted(wanted - self._transports.keys()):
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda port=port: _PortProtocol(self, port),  # type: ignore[misc]
                    local_addr=(self.host, 0 if self.ephemeral else port),
                )
            except OSError as error:
                failed[port] = error
            else:
                opened[port] = transport
        if failed:
            for transport in opened.values():
                transport.close()
            await asyncio.sleep(0)  # their sockets really close: the next apply may bind them
            raise PortsUnavailableError(failed)
        routes = plan.as_dict()
        for port in self._latched.keys() | self._warned:
            old, new = self._routes.get(port), routes.get(port)
            if old is None or new is None or _peer(old) != _peer(new):
                self._latched.pop(port, None)
                self._warned.discard(port)
        # The switch: one assignment each, nothing awaits in between.
        self._transports.update(opened)
        self._routes = routes
        self._plan = plan
        self.media.plan_applied({(route.participant, route.kind) for route in plan.routes})
        self._srtp.apply(routes.values())
        for port in list(self._transports.keys() - wanted):
            self._transports.pop(port).close()

    async def close(self) -> None:
        """Close every socket; the relay can be reused with :meth:`apply`."""
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
        self._routes = {}
        self._srtp.apply(())
        self._latched.clear()
        self._warned.clear()
        self._plan = ForwardingPlan()
        await asyncio.sleep(0)  # let the transports' connection_lost run

    def _forward(self, port: int, data: bytes, source: tuple[str, int]) -> None:
        stats = self._stats.setdefault(port, PortStats())
        stats.packets_in += 1
        stats.bytes_in += len(data)
        route = self._routes.get(port)
        if route is None:
            stats.dropped += 1
            return
        if not self._from_participant(port, route, source):
            stats.strangers += 1
            if port not in self._warned:
                self._warned.add(port)
                self.logger.warning(
                    "RTP relay: dropped a packet from %s:%d at port %d of %s (%s): "
                    "not the participant's address %s; further ones are counted",
                    source[0],
                    source[1],
                    port,
                    route.participant,
                    route.kind + (" RTCP" if route.rtcp else ""),
                    self._expected(port, route),
                    extra={"rtp_port": port, "participant": route.participant},
                )
            return
        rtcp = route.carries_rtcp(data)
        plain = self._srtp.unprotect(port, rtcp, data)
        if plain is None:
            stats.unauthenticated += 1
            return
        self.media.received(route, plain, time.monotonic())
        if route.terminated:
            if self.on_terminated is None:
                stats.dropped += 1
            else:
                self.on_terminated(port, plain)
            return
        for destination in route.destinations_for(rtcp):
            transport = self._transports.get(destination.via_port)
            if transport is None:
                stats.dropped += 1
                continue
            target = self._latched.get(destination.via_port, (destination.host, destination.port))
            payload = _rewrite(plain, destination.payload_map) if destination.payload_map else plain
            sent = self._srtp.protect(destination.via_port, rtcp, payload)
            if sent is None:
                stats.dropped += 1
                continue
            transport.sendto(sent, target)
            stats.packets_out += 1
            stats.bytes_out += len(payload)
            if (receiver := self._routes.get(destination.via_port)) is not None:
                self.media.sent(receiver, len(payload))

    def send(self, port: int, data: bytes) -> None:
        """Send ``data`` out of plan port ``port`` to that port's participant.

        The participant's address is the latched one, or its SDP's; with
        neither (or no socket for the port), the datagram is counted as dropped.
        """
        stats = self._stats.setdefault(port, PortStats())
        route = self._routes.get(port)
        transport = self._transports.get(port)
        target = self._latched.get(port, route.remote if route is not None else None)
        if transport is None or target is None:
            stats.dropped += 1
            return
        sent = self._srtp.protect(port, route is not None and route.carries_rtcp(data), data)
        if sent is None:
            stats.dropped += 1
            return
        transport.sendto(sent, target)
        stats.packets_out += 1
        stats.bytes_out += len(data)
        if route is not None:
            self.media.sent(route, len(data))

    def _from_participant(self, port: int, route: Route, source: tuple[str, int]) -> bool:
        """Whether a datagram on ``port`` comes from its participant (latching it if so)."""
        remote = route.remote
        if remote is not None and _same_address(source, remote):
            if self.latching:
                self._latched[port] = source
            return True
        if not self.latching:
            return False
        return self._latched.setdefault(port, source) == source

    def _expected(self, port: int, route: Route) -> str:
        """Who the port takes media from, for a log line."""
        address = self._latched.get(port, route.remote)
        return "(none: no address in its SDP)" if address is None else f"{address[0]}:{address[1]}"
