"""A small asyncio UDP relay that applies a :class:`~vidim.focus.media.ForwardingPlan`.

The only I/O of the built-in focus's media path, and deliberately thin: one
UDP socket per focus port in the plan (RTP and RTCP alike), bound on the
media address; every datagram that arrives on a port is sent, unchanged
except for the RTP payload type where the plan says so, to each
destination of that port's route, out of the destination's ``via_port``
socket.  No jitter buffer, no mixing, no SRTP, no parsing beyond the two
header bits the payload-type rewrite needs.

Driving it: :class:`vidim.aio.FocusMedia` applies the focus's plan on
every :class:`~vidim.focus.MediaPlanChanged`, one plan at a time.

:meth:`RtpRelay.apply` binds the sockets the new plan needs first (so a
bind failure leaves the old plan in force and raises), then swaps the
routing table in one assignment, then closes the sockets of ports no longer
in the plan.  It binds each plan port's own number (a restarted focus gets
its calls' ports back this way), and tries every port before it gives up:
:class:`PortsUnavailableError` names each one that failed and why, so that
the focus can end the calls that use them and the rest goes on.  Counters
per port (:meth:`RtpRelay.stats`) survive the socket, for metrics.

Latching (``latching=True``, off by default).  Symmetric RTP (RFC 4961): a
participant behind NAT sends from an address its SDP does not show.  With
latching, the first packet that arrives on a port fixes the address the
relay sends to *for that port* (so packets to Carol, which leave from
Carol's port, go where Carol's packets came from).  A latch is forgotten
when the port leaves the plan or starts serving another participant.  The
price: whoever sends first to a port is believed, so keep it off where the
SDP addresses are reachable (loopback, a LAN, behind Kamailio + rtpengine).
Without latching, packets from anyone are forwarded to the SDP addresses:
the unguessable conference URI and the 403 for strangers are the gate, not
the relay.

``ephemeral=True`` binds every socket on port 0 (the OS picks) instead of
the plan's port number; :meth:`RtpRelay.address` tells where a plan port
really is.  For tests, which must not assume a free port range.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from ..focus.media import ForwardingPlan, Route

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
    #: Datagrams that arrived on a port with no route, or whose destination
    #: socket was missing.
    dropped: int = 0
    #: Send errors the OS reported (ICMP port unreachable and the like).
    errors: int = 0


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


def _peer(route: Route) -> tuple[str, tuple[str, int] | None]:
    """Who a port serves: a latch holds only while this stays the same."""
    return route.participant, route.remote


class RtpRelay:
    """UDP sockets for the plan's ports, forwarding per route."""

    def __init__(
        self, host: str = "127.0.0.1", *, latching: bool = False, ephemeral: bool = False
    ) -> None:
        self.host = host
        self.latching = latching
        self.ephemeral = ephemeral
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._routes: dict[int, Route] = {}
        self._latched: dict[int, tuple[str, int]] = {}
        self._stats: dict[int, PortStats] = {}
        self._plan = ForwardingPlan()

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
        for port in list(self._latched):
            old, new = self._routes.get(port), routes.get(port)
            if old is None or new is None or _peer(old) != _peer(new):
                del self._latched[port]
        # The switch: one assignment each, nothing awaits in between.
        self._transports.update(opened)
        self._routes = routes
        self._plan = plan
        for port in list(self._transports.keys() - wanted):
            self._transports.pop(port).close()

    async def close(self) -> None:
        """Close every socket; the relay can be reused with :meth:`apply`."""
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
        self._routes = {}
        self._latched.clear()
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
        if self.latching and port not in self._latched:
            self._latched[port] = source
        for destination in route.destinations:
            transport = self._transports.get(destination.via_port)
            if transport is None:
                stats.dropped += 1
                continue
            target = self._latched.get(destination.via_port, (destination.host, destination.port))
            payload = _rewrite(data, destination.payload_map) if destination.payload_map else data
            transport.sendto(payload, target)
            stats.packets_out += 1
