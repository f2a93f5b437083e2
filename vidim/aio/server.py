"""The asyncio layer: UDP, TCP and TLS sockets and one timer around any sans-IO SIP core.

This is the only place in vidim that does I/O, in the manner of aioquic's
``asyncio/protocol.py``: after every input (a datagram, a TCP message, the
timer) :meth:`SipServer.transmit` sends what the core queued, hands the core's
events to a callback and keeps one timer armed no later than the core's next
deadline (re-armed only when the deadline moves earlier)::

    core = Allocator(AllocatorConfig(local=Address("127.0.0.1", 5070)))
    server = SipServer(core, host="127.0.0.1", port=5070)
    await server.start()
    await serve_forever_until_signal(server, before_close=lambda: ...)

Any object with the methods of :class:`SipCore` plugs in.  The server parses
each message once, to log it and to keep garbage out of the core; a core that
also has ``receive(message, source, now)`` (:class:`SipMessageCore`, as the
allocator does) is given the parsed message, any other core the raw bytes.

Each message goes over the transport its destination names (the core chose
it, see :func:`vidim.sip.uri_destination`).  TCP and TLS connections are
reused (RFC 3261 section 18): one to a peer, opened by either side, carries
every message to that peer's address over that transport, including the
answers to the requests that came on it (section 18.2.2); a request whose
top Via has ``alias`` (RFC 5923) makes its connection the one to its sent-by
port too.

TLS (``tls=``, see :mod:`vidim.aio.tls`): a listener on its own port beside
UDP and TCP, and connections that verify the peer (its certificate, and the
host of the URI the request goes to) unless told not to.  A peer that fails
verification is a send failure, as a refused connection is.

Send failures: a message that cannot be sent (too big for a UDP datagram,
a connection refused or timed out, a name that does not resolve, no such
transport, a TLS peer that fails verification) is logged at WARNING and,
when the core has ``send_failed`` (:class:`ReportsSendFailures`; the
allocator and the focus do), reported to it: the transaction that sent it
fails at once (issue 18).

A host name is located as RFC 3263 says (NAPTR, SRV, then A/AAAA records:
:mod:`vidim.aio.resolver`); the message goes to the first target we can
send to, over the transport NAPTR chose (the Via of a request we originate
says so); over TLS the certificate must name the host name, not the address.

Limits, on purpose: no WebSocket, no failover to the next RFC 3263 target,
no idle-connection timeout, and no write back-pressure (the kernel buffers
are made large).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Final, Generic, TypeVar, cast

from ..overload import OverloadGuard, OverloadPolicy
from ..sip import (
    Address,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
    Request,
    Response,
    SIPParseError,
    StreamFramer,
    Via,
    forward_request,
    is_forwarded_answer,
    make_response,
    sent_over,
    summary,
    unforward_response,
    via_destination,
    warning_value,
)
from ..sip import new_tag as _new_tag
from ..sip import parse_message as _parse_message
from ..sip.parser import DEFAULT_MAX_MESSAGE_SIZE
from .persistence import Batch, Persistence
from .protocols import (
    FollowUpRouter,
    ReportsSendFailures,
    SipCore,
    SipMessageCore,
    StatefulCore,
)
from .resolver import Resolver
from .tls import TlsSettings, client_context, server_context

__all__ = [
    "DEFAULT_PORT",
    "SipCore",
    "SipMessageCore",
    "SipServer",
    "serve_forever_until_signal",
]

DEFAULT_PORT: Final = 5070
_DEFAULT_BUFFER: Final = 4 * 1024 * 1024
#: Tries at binding UDP and TCP to the same free port when asked for port 0.
_BIND_ATTEMPTS: Final = 8
#: Datagrams read after the one asyncio's loop delivered (31 more: uvloop reads 32).
_DRAIN_MAX: Final = 31
#: The largest datagram read (asyncio's own limit).
_MAX_DATAGRAM: Final = 256 * 1024
#: The largest UDP payload over IPv4 (65535 - 8 - 20): a larger message cannot be sent.
_MAX_UDP_PAYLOAD: Final = 65507
#: What a UDP socket says about an earlier datagram (an ICMP error; Linux reports it
#: at the next send or receive, see udp(7)): never about the message being sent.
_EARLIER_UDP_ERRORS: Final = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETUNREACH}
)
#: A core whose handle_timer raises is not called again before this delay.
_TIMER_BACKOFF: Final = 0.1
#: A sentinel datagram not back after this long (seconds) was dropped: another is sent.
_SENTINEL_LOST: Final = 1.0
#: The Retry-After (seconds) of the 503s answered while shutting down.
_SHUTDOWN_RETRY_AFTER: Final = 10
#: The sentinel datagram (one NUL: no SIP message; asyncio does not send empty ones).
_SENTINEL: Final = b"\0"

EventT = TypeVar("EventT")
#: A connection's peer: (transport, host, port), the transport as a Via writes it.
_StreamKey = tuple[str, str, int]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _family(host: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def _first_line(data: bytes) -> str:
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    return data[start : start + 200].split(b"\n", 1)[0].decode("utf-8", "replace").strip()


def _peer(addr: Any, transport: str) -> Address:
    # (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6: hosts
    # come without brackets, as Address wants them.
    return Address(str(addr[0]), int(addr[1]), transport)


def _stream_key(address: Address) -> _StreamKey:
    return (address.transport.upper(), address.host, address.port)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(address: Address) -> str:
    return f"{_hostport(address.host, address.port)}/{address.transport}"


def _set_buffers(sock: socket.socket, size: int) -> None:
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):  # best effort: the kernel caps it
            sock.setsockopt(socket.SOL_SOCKET, option, size)


def _capped_receive_buffer(sock: socket.socket, asked: int) -> int | None:
    """The SO_RCVBUF the kernel granted, when it is less than ``asked``; else None.

    Linux caps a request at ``net.core.rmem_max`` and reports twice what it
    granted (the other half is for its bookkeeping, see socket(7)).
    """
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    return granted if granted < asked else None


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SipServer[Any]) -> None:
        self.server = server
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: The socket to read more datagrams from after each one (asyncio's own loop).
        self.drain: socket.socket | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server._datagram_received(data, _peer(addr, "UDP"))
        if self.drain is not None:
            self._drain(self.drain)

    def _drain(self, sock: socket.socket) -> None:
        """Read what else is queued, up to 32 per turn of the loop, as uvloop does.

        asyncio's own loop delivers one datagram per turn: reading on makes both
        loops alike (the datagrams of a turn are all answered before any of them
        is logged, and the overload guard sees the same turns).
        """
        for _ in range(_DRAIN_MAX):
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # closed, or an ICMP error for an earlier sendto
                if sock.fileno() != -1:
                    self.error_received(error)
                return
            self.server._datagram_received(data, _peer(addr, "UDP"))

    def error_received(self, exc: Exception) -> None:
        # asyncio reports a sendto that fails at once here, during the sendto;
        # later ones (ICMP port unreachable and the like) name no message.
        self.server._udp_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _StreamProtocol(asyncio.Protocol):
    """One TCP or TLS connection, inbound or outbound, with its own framer.

    ``name``: the transport as a Via writes it (``TCP`` or ``TLS``); a TLS
    connection is made (``connection_made``) once its handshake is done.
    """

    def __init__(self, server: SipServer[Any], name: str = "TCP") -> None:
        self.server = server
        self.name = name
        self.framer = StreamFramer(server.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer = Address("", 0, name)
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = _peer(transport.get_extra_info("peername"), self.name)
        self.server._connection_made(self)

    def data_received(self, data: bytes) -> None:
        self.server._stream_received(self, data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connection_lost(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SipServer(Generic[EventT]):
    """Runs a :class:`SipCore` on UDP and TCP sockets sharing one port, and TLS on another.

    Args:
        core: the sans-IO element to drive.
        host: the address to bind (an IP literal or a name; IPv6 without brackets).
        port: the port for both UDP and TCP; 0 picks a free one (see :attr:`port`).
        clock: what ``now`` is for the core; the loop's monotonic clock by default.
            Give ``time.time`` to a core whose deadlines must survive a restart.
        on_event: called with each core event (a sync callable; what it raises
            is logged).  The default logs the event at INFO (:meth:`log_event`).
        logger: where to log; ``logging.getLogger("vidim.aio")`` by default.
        udp_buffer: SO_RCVBUF and SO_SNDBUF asked for the UDP socket (best effort).
        connect_timeout: how long opening a TCP connection to a peer may take.
        max_message_size: the largest message accepted on a TCP connection.
        overload: when set, new out-of-dialog requests are answered 503 with
            Retry-After, without reaching the core, while the server is behind
            (see :mod:`vidim.overload`); responses and in-dialog requests are
            always processed.  None (the default) never refuses.
        persistence: when set, the core's changes (``take_changes``) are
            written to its state store before the messages they caused are
            sent, and new out-of-dialog requests are answered 503 while the
            store fails (see :mod:`vidim.aio.persistence`).  None: nothing is
            stored.
        follow_ups: for daemons sharing a store (:class:`vidim.aio.Cluster`):
            sees each request first, and takes those for a conference another
            daemon drives; they come back through :meth:`forward` or
            :meth:`deliver`.  None: every request goes to the core.
        tls: when set, a TLS listener on ``tls.port`` of ``host`` (see
            :attr:`tls_port`) and TLS connections to the destinations whose
            transport is TLS, verified as ``tls`` says.  None: a message for a
            TLS destination is a send failure ("no TLS transport").  The core
            must know it may send over TLS (for the allocator,
            ``AllocatorConfig.tls_port``).
        resolver: locates the host names messages go to (RFC 3263, see
            :mod:`vidim.aio.resolver`); None: one on the system's DNS.

    Raises:
        OSError, ssl.SSLError: the TLS certificate, key or CA file cannot be loaded.
    """

    def __init__(
        self,
        core: SipCore[EventT],
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        clock: Callable[[], float] | None = None,
        on_event: Callable[[EventT], object] | None = None,
        logger: logging.Logger | None = None,
        udp_buffer: int = _DEFAULT_BUFFER,
        connect_timeout: float = 5.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        overload: OverloadPolicy | None = None,
        persistence: Persistence | None = None,
        follow_ups: FollowUpRouter | None = None,
        tls: TlsSettings | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.core = core
        self.tls = tls
        #: The TLS listener's port, once :meth:`start` has returned (None: no TLS).
        self.tls_port: int | None = tls.port if tls is not None else None
        self._tls_server_context = server_context(tls) if tls is not None else None
        self._tls_client_context = client_context(tls) if tls is not None else None
        self.persistence = persistence
        self.follow_ups = follow_ups
        #: The core as a keeper of records, when there is a store to keep them in.
        self._stateful: StatefulCore[EventT] | None = None
        if persistence is not None:
            if not isinstance(core, StatefulCore):
                raise TypeError(f"{type(core).__name__} has no records to store")
            self._stateful = core
            core.record_changes()
            persistence.on_availability = self._store_available
        #: The core refuses new conferences itself while the store fails (the
        #: allocator does, and serves follow-ups from memory); else the server does.
        self._core_refuses_new = callable(getattr(core, "refuse_new_conferences", None))
        self.host = host
        #: The bound port (UDP and TCP), once :meth:`start` has returned.
        self.port = port
        self.logger = logger if logger is not None else logging.getLogger("vidim.aio")
        self.udp_buffer = udp_buffer
        self.connect_timeout = connect_timeout
        #: Locates host names (RFC 3263); None: the system's DNS, made at the first name.
        self.resolver = resolver
        self.max_message_size = max_message_size
        self._clock = clock
        self._on_event: Callable[[EventT], object] = (
            on_event if on_event is not None else self.log_event
        )
        self._receive: Callable[[Request | Response, Address, float], None] | None = (
            core.receive if isinstance(core, SipMessageCore) else None
        )
        self._report_failure: Callable[[Message, Address, str, float], None] | None = (
            core.send_failed if isinstance(core, ReportsSendFailures) else None
        )
        #: The UDP message being handed to the socket: a failure asyncio reports
        #: during the sendto is this one's.
        self._sending: tuple[Message, Address] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: _DatagramProtocol | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        #: The open connections by (transport, host, port) of their peer.
        self._connections: dict[_StreamKey, _StreamProtocol] = {}
        self._streams: set[_StreamProtocol] = set()
        #: What waits for each connection being opened: the bytes, and the message.
        self._connecting: dict[_StreamKey, list[tuple[bytes, Message]]] = {}
        #: What waits for each host name being located (RFC 3263), in order.
        self._locating: dict[tuple[Address, str], list[Message]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._last_fired: float | None = None
        self._transmitting = False
        self._again = False
        #: What the datagrams handled in this turn of the loop left for after the
        #: sends: each message (for its log line), its source, and the core's events
        #: from it.  Handled (in order) by :meth:`transmit`, which a callback runs
        #: once the loop has delivered the turn's datagrams.
        self._backlog: list[tuple[Request | Response, Address, list[EventT]]] = []
        self._after_sends_soon = False
        self._closing = False
        #: When :meth:`stop_accepting` was called (the loop's clock).
        self._closing_since = 0.0
        self._closed = False
        #: Datagrams handed to :meth:`_datagram_received` so far.
        self._received = 0
        #: The UDP socket itself, to read what is still queued at close.
        self._udp_sock: socket.socket | None = None
        self._idle = asyncio.Event()
        #: The overload policy's state (None: overload control is off).
        self.overload: OverloadGuard | None = (
            OverloadGuard(overload, now=time.perf_counter()) if overload is not None else None
        )
        self._heartbeat: asyncio.TimerHandle | None = None
        #: The overload episode the last "overloaded" warning was about.
        self._overload_logged = 0
        #: When the sentinel datagram in flight was sent (perf_counter), if one is.
        self._sentinel_sent: float | None = None
        self._sentinel_to: tuple[str, int] | None = None
        #: When the next heartbeat should run (the loop's clock).
        self._beat_due = float("inf")

    # -- lifecycle -----------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._udp is not None

    @property
    def closing(self) -> bool:
        """True from the start of :meth:`close`: new requests are refused with 503."""
        return self._closing

    @property
    def next_deadline(self) -> float | None:
        """When the timer is armed for (on the core's clock), or None when it is not.

        At or before the core's own deadline: a deadline that moved later keeps
        the earlier timer, which fires, finds nothing due, and is re-armed.
        """
        return self._timer_at if self._timer is not None else None

    @property
    def local_address(self) -> Address:
        """Where this server receives, as UDP (the same port serves TCP)."""
        return Address(self.host, self.port, "UDP")

    def now(self) -> float:
        """The core's current time (the ``clock`` given, or the loop's)."""
        if self._clock is not None:
            return self._clock()
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        return loop.time()

    async def start(self) -> None:
        """Bind UDP, then TCP on the same port, and arm the core's timer."""
        if self.started:
            raise RuntimeError("the server is already started")
        loop = asyncio.get_running_loop()
        self._loop = loop
        infos = await loop.getaddrinfo(
            self.host, self.port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, sockaddr = infos[0]
        udp_sock, tcp_sock = self._bind(family, sockaddr)
        try:
            self._udp, self._udp_protocol = await loop.create_datagram_endpoint(
                lambda: _DatagramProtocol(self), sock=udp_sock
            )
            self._tcp_server = await loop.create_server(
                lambda: _StreamProtocol(self), sock=tcp_sock
            )
            self._udp_sock = udp_sock
            if isinstance(loop, asyncio.SelectorEventLoop):
                self._udp_protocol.drain = udp_sock  # uvloop reads in batches itself
            if self.tls is not None:
                self._tls_server = await self._listen_tls(family, sockaddr, self.tls.port)
        except BaseException:
            if self._udp is not None:
                self._udp.close()
            if self._tcp_server is not None:
                self._tcp_server.close()
            udp_sock.close()
            tcp_sock.close()
            raise
        self.port = int(udp_sock.getsockname()[1])
        self.logger.info(
            "listening on %s (UDP and TCP)",
            _hostport(self.host, self.port),
            extra={"listen_host": self.host, "listen_port": self.port},
        )
        if self.tls_port is not None:
            self.logger.info(
                "listening on %s (TLS)",
                _hostport(self.host, self.tls_port),
                extra={"listen_host": self.host, "listen_port": self.tls_port},
            )
        granted = _capped_receive_buffer(udp_sock, self.udp_buffer)
        if granted is not None:
            # A full buffer drops requests unread: no 503 reaches their senders.
            self.logger.warning(
                "UDP receive buffer capped by the kernel: asked %d bytes, got %d;"
                " raise net.core.rmem_max (docs/operations.md, Installing)",
                self.udp_buffer,
                granted,
            )
        if self.persistence is not None:
            self.persistence.start()
        self.transmit()  # a core restored from records may have deadlines already
        if self.overload is not None:
            self._beat(None)

    def _bind(self, family: int, sockaddr: Any) -> tuple[socket.socket, socket.socket]:
        attempts = _BIND_ATTEMPTS if self.port == 0 else 1
        for attempt in range(attempts):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            tcp: socket.socket | None = None
            try:
                _set_buffers(udp, self.udp_buffer)
                udp.bind((sockaddr[0], self.port, *sockaddr[2:]))
                port = udp.getsockname()[1]
                tcp = socket.socket(family, socket.SOCK_STREAM)
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((sockaddr[0], port, *sockaddr[2:]))
                tcp.listen(socket.SOMAXCONN)
            except OSError as error:
                udp.close()
                if tcp is not None:
                    tcp.close()
                if error.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
                continue  # port 0: UDP got a port whose TCP twin is taken; again
            udp.setblocking(False)
            tcp.setblocking(False)
            return udp, tcp
        raise AssertionError("unreachable")  # pragma: no cover

    async def _listen_tls(self, family: int, sockaddr: Any, port: int) -> asyncio.Server:
        """The TLS listener on ``port`` of the UDP socket's address (0: a free port)."""
        assert self._loop is not None
        assert self._tls_server_context is not None
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((sockaddr[0], port, *sockaddr[2:]))
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
            server = await self._loop.create_server(
                lambda: _StreamProtocol(self, "TLS"),
                sock=sock,
                ssl=self._tls_server_context,
                ssl_handshake_timeout=self.connect_timeout,
            )
        except BaseException:
            sock.close()
            raise
        self.tls_port = int(sock.getsockname()[1])
        return server

    def stop_accepting(self) -> None:
        """From now on new out-of-dialog requests are answered 503 (the start of :meth:`close`).

        Responses, ACKs and in-dialog requests still reach the core.  Call it
        first when work must be queued between the two (e.g. ending every
        conference on SIGTERM), so that no new request gets in meanwhile.
        """
        if self._closing or self._loop is None:
            return
        self._closing = True
        self._closing_since = self._loop.time()
        for listener in (self._tcp_server, self._tls_server):
            if listener is not None:
                listener.close()  # no new connections; existing ones stay

    async def close(
        self, drain: float = 5.0, *, refuse_for: float = 0.0, flush_timeout: float = 1.0
    ) -> None:
        """Stop taking new work, let the core finish, then close the sockets.

        New requests are answered 503 with Retry-After and a Warning;
        responses, ACKs and in-dialog requests still reach the core, and its
        timer keeps running, until it has nothing pending (``get_timer()`` is
        None, or the core's optional ``has_pending_work()`` says only
        retransmission-absorbing timers are left) or ``drain`` seconds pass,
        and for at least ``refuse_for`` seconds from :meth:`stop_accepting`
        (a dispatcher in front then sees the 503s and sends elsewhere).
        The datagrams still queued are then answered too, and the sockets are
        closed, waiting at most ``flush_timeout`` for their buffers to empty.
        """
        if self._closed or self._loop is None:
            self._closed = True
            return
        self.stop_accepting()
        self.transmit()
        if not self._idle.is_set():
            try:
                await asyncio.wait_for(self._idle.wait(), drain)
            except TimeoutError:
                self.logger.warning(
                    "closing after %.1f s with work still pending (next deadline %s)",
                    drain,
                    self.core.get_timer(),
                )
        left = self._closing_since + refuse_for - self._loop.time()
        if left > 0:
            await asyncio.sleep(left)  # the refusal window: answering 503 meanwhile
        self._answer_queued()
        if self.persistence is not None:
            # What is sent waits on its write: let the last writes finish first.
            if not await self.persistence.wait_written(flush_timeout):
                self.logger.warning("closing with writes to %s unfinished", self.persistence.name)
            await self.persistence.close()
        self._closed = True
        self._cancel_timer()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        for task in list(self._tasks):
            task.cancel()
        waiting: list[asyncio.Future[None]] = []
        for stream in list(self._streams):
            stream.close()
            waiting.append(stream.closed)
        if self._udp is not None and self._udp_protocol is not None:
            self._udp.close()
            waiting.append(self._udp_protocol.closed)
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=flush_timeout)
            if late:
                for stream in list(self._streams):
                    if stream.transport is not None:
                        stream.transport.abort()
                if self._udp is not None and not self._udp_protocol_closed():
                    self._udp.abort()
        for listener in (self._tcp_server, self._tls_server):
            if listener is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener.wait_closed(), flush_timeout)
        self.logger.info("closed %s", _hostport(self.host, self.port))

    def _answer_queued(self) -> None:
        """Read and handle what the kernel still holds for the UDP socket, before it closes.

        A request already queued when the socket closes would be dropped
        without an answer: each gets its 503 (or reaches the core) instead.
        """
        sock, protocol = self._udp_sock, self._udp_protocol
        if sock is not None and protocol is not None and sock.fileno() != -1:
            while True:
                before = self._received
                protocol._drain(sock)
                if self._received == before:
                    break
        self.transmit()

    def _udp_protocol_closed(self) -> bool:
        return self._udp_protocol is None or self._udp_protocol.closed.done()

    # -- input -----------------------------------------------------------------------
    def _datagram_received(self, data: bytes, source: Address) -> None:
        # Per datagram, so the sends come first: parse, admit, the core, then
        # (transmit) the sends; the log line, the events and the timer after them.
        if self._closed:
            return
        self._received += 1
        if data == _SENTINEL and source.port == self.port:
            self._sentinel_received()
            return
        try:
            message = _parse_message(data)
        except SIPParseError as error:
            self._log_parse_error(error, data, source)
            if not self._closing:
                # The core has its own way with garbage (an event, a 400 with
                # a Warning when the request can still be answered).
                self._call_core(self.core.receive_datagram, data, source)
            self.transmit()
            return
        if not self._admit(message, source):
            self._log_refused(message, source)
            return
        if self._taken_elsewhere(message, source):
            return
        self._deliver(message, source, data)
        if self._transmitting:  # from an on_event callback: the outer loop sends and logs
            self._backlog.append((message, source, []))
            self._again = True
            return
        # The sends now; the log line, the events and the timer once the loop has
        # delivered every datagram of this turn (uvloop reads up to 32 at a time,
        # and _drain does on asyncio's loop): none of that is on the path of a
        # datagram queued behind this one.
        self._flush_messages()
        self._backlog.append((message, source, self._take_events()))
        if not self._after_sends_soon and self._loop is not None:
            self._after_sends_soon = True
            self._loop.call_soon(self._after_sends)

    def _after_sends(self) -> None:
        self._after_sends_soon = False
        if self._backlog:  # else a transmit() has handled it
            self.transmit()

    def _stream_received(self, stream: _StreamProtocol, data: bytes) -> None:
        if self._closed:
            return
        framer = stream.framer
        try:
            framer.receive_data(data)
        except SIPParseError as error:
            self._log_parse_error(error, data, stream.peer)
            stream.close()
            return
        while True:
            try:
                message = framer.next_message()
            except SIPParseError as error:
                self._log_parse_error(error, data, stream.peer)
                if framer.broken:  # the stream is lost: so is the connection
                    stream.close()
                    break
                continue  # framed but malformed: the next message may be fine
            if message is None:
                break
            if not self._admit(message, stream.peer):
                self._log_refused(message, stream.peer)
                continue
            if self._taken_elsewhere(message, stream.peer):
                continue
            if isinstance(message, Request):
                self._alias(stream, message)
            self._log_received(message, stream.peer)
            self._deliver(message, stream.peer)
        self.transmit()

    def _log_refused(self, message: Request | Response, source: Address) -> None:
        """A request answered 503 without reaching the core: its line at DEBUG, not INFO.

        Under overload the log must not grow with the load being refused: the
        episode's WARNING line counts the refusals, and at INFO the line cost as
        much as the refusal itself.
        """
        self._log_message("refused", message, source, logging.DEBUG)

    def _log_received(self, message: Request | Response, source: Address) -> None:
        """One line per request received at INFO; responses and ACKs at DEBUG."""
        request = isinstance(message, Request) and message.method != "ACK"
        self._log_message("recv", message, source, logging.INFO if request else logging.DEBUG)

    def _admit(self, message: Request | Response, source: Address) -> bool:
        """Whether the core gets it: while closing or overloaded, new requests get 503."""
        if not isinstance(message, Request):
            return True
        guard = self.overload
        if guard is not None and not guard.overloaded_now and self._loop is not None:
            # The heartbeat keeps the guard up to date; but up to 32 datagrams are
            # read per turn of the loop (uvloop, _drain), and a slow turn must not hide
            # that the heartbeat is late.  One clock reading per request, none per response.
            late = self._loop.time() - self._beat_due
            if late >= guard.policy.max_lag:
                guard.lag(late, time.perf_counter())
        store_failing = (
            self.persistence is not None
            and not self.persistence.available
            and not self._core_refuses_new
        )
        if not self._closing and not store_failing and (guard is None or not guard.overloaded_now):
            return True
        if message.method in ("ACK", "CANCEL") or message.to_addr.tag is not None:
            return True  # part of work in flight
        if self._closing:
            retry_after = _SHUTDOWN_RETRY_AFTER
            self._refuse_503(message, source, retry_after, "shutting down", "Shutting Down")
        elif store_failing:
            # A new conference now could not be stored (the WARNING is persistence's).
            assert self.persistence is not None
            retry_after = max(1, round(self.persistence.retry_interval * 5))
            why = "state store unreachable; try again later"
            self._refuse_503(message, source, retry_after, why)
        else:
            assert self.overload is not None
            self._refuse_overloaded(message, source, self.overload)
        return False

    def _refuse_503(
        self,
        request: Request,
        source: Address,
        retry_after: int,
        why: str,
        reason: str = "Service Unavailable",
    ) -> None:
        """503 + Retry-After + a Warning saying ``why``, from the parsed request alone."""
        response = make_response(
            request,
            503,
            reason,
            to_tag=_new_tag(),
            headers=[
                ("Retry-After", str(retry_after)),
                ("Warning", warning_value(self.host, why)),
            ],
        )
        self._send(response, source)

    def _refuse_overloaded(self, request: Request, source: Address, guard: OverloadGuard) -> None:
        """503 + Retry-After + Warning, built from the parsed request alone: no core work."""
        guard.refuse()
        if guard.episodes != self._overload_logged:
            # One line per episode, with what started it.
            self._overload_logged = guard.episodes
            self.logger.warning(
                "overloaded (%s): new requests answered 503 (%d so far, episode %d)",
                guard.reason,
                guard.refused,
                guard.episodes,
                extra={"refused": guard.refused, "episode": guard.episodes},
            )
        self._refuse_503(request, source, guard.policy.retry_after, "overloaded; try again later")

    def _beat(self, expected: float | None) -> None:
        """The overload guard's heartbeat (every ``policy.beat``): what it costs to measure load.

        Nothing is timed per datagram.  Each beat tells the guard how late the
        loop ran this callback and how long the sentinel datagram in flight has
        been waiting (both lower bounds of a request's wait), and sends one when
        none is: an one-octet datagram this server sends itself on its UDP socket,
        which queues behind every datagram not yet read, so its delay when it
        arrives (:meth:`_sentinel_received`) is what a request waits before it is
        looked at (the kernel's queue and the loop's), the measure of overload.
        """
        guard = self.overload
        if guard is None or self._closed or self._loop is None:
            self._heartbeat = None
            return
        loop_now = self._loop.time()
        now = time.perf_counter()
        lateness = max(0.0, loop_now - expected) if expected is not None else 0.0
        sent = self._sentinel_sent
        if sent is not None:
            lateness = max(lateness, now - sent)  # still queued: at least this late
            if now - sent > _SENTINEL_LOST:
                sent = None  # dropped (a full receive buffer): send another
        if sent is None:
            self._send_sentinel(now)
        guard.lag(lateness, now)
        self._beat_due = loop_now + guard.policy.beat
        self._heartbeat = self._loop.call_at(self._beat_due, self._beat, self._beat_due)

    def _send_sentinel(self, now: float) -> None:
        self._sentinel_sent = None
        if self._udp is None or self._closing:
            return
        if self._sentinel_to is None:
            # Our own address as bound (an IP, even when ``host`` is a name), by loopback
            # when bound to every address.
            host = str(self._udp.get_extra_info("sockname")[0])
            if host == "0.0.0.0":
                host = "127.0.0.1"
            elif host == "::":
                host = "::1"
            self._sentinel_to = (host, self.port)
        try:
            self._udp.sendto(_SENTINEL, self._sentinel_to)
        except OSError:  # pragma: no cover - loopback
            return
        self._sentinel_sent = now

    def _sentinel_received(self) -> None:
        sent = self._sentinel_sent
        self._sentinel_sent = None
        if sent is not None and self.overload is not None:
            now = time.perf_counter()
            self.overload.queue_delay(now - sent, now)

    # -- several daemons over one store -------------------------------------------------
    def _taken_elsewhere(self, message: Request | Response, source: Address) -> bool:
        """An answer to a request forwarded here (relayed back), or a follow-up routed away."""
        if self.follow_ups is None:
            return False
        if isinstance(message, Response):
            if not is_forwarded_answer(message, self.host, self.port):
                return False
            answer, via = unforward_response(message)
            self._send(answer, via_destination(via))
            return True
        return self.follow_ups.intercept(message, source)

    def forward(self, request: Request, source: Address, destination: Address) -> None:
        """Pass ``request`` on to ``destination`` statelessly (RFC 3261 section 16.11).

        Its answers come back through this server, which relays them.
        """
        via = Via(destination.transport.upper(), self.host, self.port, (("rport", None),))
        try:
            forwarded = forward_request(request, via, source)
        except RemoteProtocolError as error:
            self.logger.warning(
                "not forwarded to %s: %s", _describe(destination), error.reason,
                extra={"peer": _describe(source), "call_id": request.call_id},
            )  # fmt: skip
            warning = ("Warning", warning_value(self.host, error.reason))
            answer = make_response(request, error.status_hint, to_tag=_new_tag(), headers=[warning])
            self._send(answer, source)
            return
        self._log_message("forward", request, destination, logging.DEBUG)
        self._send(forwarded, destination)

    def deliver(self, request: Request, source: Address) -> None:
        """Give the core a request the follow-up router held (and send what it answers)."""
        if self._closed:
            return
        self._deliver(request, source)
        self._backlog.append((request, source, []))
        self.transmit()

    def _store_available(self, available: bool) -> None:
        refuse = getattr(self.core, "refuse_new_conferences", None)
        if refuse is not None:
            refuse(None if available else "the state store is unreachable")
        if available and self._stateful is not None:
            # It may have come back empty (a Redis without persistence): write it all again.
            self._stateful.note_all_changed()
            self.transmit()

    def _deliver(
        self, message: Request | Response, source: Address, data: bytes | None = None
    ) -> None:
        """To the core: parsed when it takes parsed messages (parse once), else as bytes."""
        if self._receive is not None:
            self._call_core(self._receive, message, source)
        else:
            raw = data if data is not None else message.to_bytes()
            self._call_core(self.core.receive_datagram, raw, source)

    def _call_core(
        self, method: Callable[[Any, Address, float], None], data: Any, source: Address
    ) -> None:
        try:
            method(data, source, self.now())
        except Exception:
            # A bug in the core: log it and keep serving the other peers.
            self.logger.exception("the core failed on input from %s", _describe(source))

    # -- output ----------------------------------------------------------------------
    def transmit(self) -> None:
        """Send what the core queued, dispatch its events, re-arm the timer.

        Called after every input; call it yourself after calling the core's
        API (e.g. ``allocator.end_conference``) from outside a callback.
        """
        if self._transmitting:  # from an on_event callback: the outer loop repeats
            self._again = True
            return
        self._transmitting = True
        try:
            while True:
                self._again = False
                self._flush_messages()
                # After the sends: a log line is never on a request's path.
                backlog, self._backlog = self._backlog, []
                for message, source, events in backlog:
                    self._log_received(message, source)
                    for event in events:
                        self._dispatch(event)
                for event in self._take_events():
                    self._dispatch(event)
                if not self._again:
                    break
        finally:
            self._transmitting = False
        self._arm()

    def _dispatch(self, event: EventT) -> None:
        try:
            self._on_event(event)
        except Exception:
            self.logger.exception("on_event failed for %r", event)
        self._again = True  # the callback may have queued messages

    def _flush_messages(self) -> None:
        try:
            messages = list(self.core.messages_to_send())
            changes = self._stateful.take_changes() if self._stateful is not None else []
        except Exception:
            self.logger.exception("the core failed in messages_to_send")
            return
        if self.persistence is not None and (changes or self.persistence.busy):
            self.persistence.submit(changes, messages, self._send_batch)  # stored, then sent
        else:
            self._send_batch(messages)

    def _send_batch(self, messages: Batch) -> None:
        for message, destination in messages:
            self._send(message, destination)

    def _take_events(self) -> list[EventT]:
        try:
            return list(self.core.events())
        except Exception:
            self.logger.exception("the core failed in events")
            return []

    def _send(self, message: Message, destination: Address, name: str | None = None) -> None:
        """Send ``message``; ``name``: the host name ``destination`` was located from (for TLS)."""
        if self._closed:
            return
        if not _is_ip(destination.host):
            self._locate_then_send(message, destination)
            return
        try:
            data = message.to_bytes()
        except Exception as error:
            self.logger.exception("cannot serialize a message to %s", _describe(destination))
            self._send_failed(message, destination, f"cannot serialize it: {error}")
            return
        transport = destination.transport.upper()
        if transport == "UDP":
            if self._udp is None:
                return
            if len(data) > _MAX_UDP_PAYLOAD:
                reason = f"{len(data)} bytes do not fit a UDP datagram ({_MAX_UDP_PAYLOAD} at most)"
                self._send_failed(message, destination, reason)
                return
            self._sendto(data, (destination.host, destination.port), message, destination)
        elif transport == "TCP" or (transport == "TLS" and self.tls is not None):
            self._send_stream(data, message, destination, name)
        else:
            self._send_failed(message, destination, f"no {destination.transport} transport")
            return
        self._log_message("send", message, destination, logging.DEBUG)

    def _sendto(self, data: bytes, sockaddr: Any, message: Message, destination: Address) -> None:
        """One UDP datagram; a failure during the sendto is this message's."""
        assert self._udp is not None
        self._sending = (message, destination)
        try:
            self._udp.sendto(data, sockaddr)
        except OSError as error:  # a loop that raises rather than reporting it
            self._udp_error(error)
        finally:
            self._sending = None

    def _udp_error(self, error: Exception) -> None:
        """An error of the UDP socket: the message being sent's, unless it is an ICMP error."""
        sending = self._sending
        if sending is not None and getattr(error, "errno", None) not in _EARLIER_UDP_ERRORS:
            self._send_failed(*sending, str(error))
        else:  # the transaction that sent that datagram times out (or retransmits)
            self.logger.warning("UDP error for an earlier datagram: %s", error)

    def _send_failed(self, message: Message, destination: Address, reason: str) -> None:
        """A WARNING, and the core is told: the transaction that sent ``message`` fails."""
        self.logger.warning(
            "cannot send %s to %s: %s",
            summary(message),
            _describe(destination),
            reason,
            extra={"peer": _describe(destination)},
        )
        report = self._report_failure
        if report is None or self._closed:
            return
        try:
            report(message, destination, reason, self.now())
        except Exception:
            self.logger.exception("the core failed in send_failed")
        if self._transmitting:
            self._again = True  # the outer transmit sends what the core queued
        elif self._loop is not None:
            self._loop.call_soon(self.transmit)

    def _locate_then_send(self, message: Message, destination: Address) -> None:
        """RFC 3263: ``message`` goes where the host name of ``destination`` leads.

        Messages to a name being looked up wait behind that lookup, so that
        they leave in the order the core sent them (an INVITE before its CANCEL).
        """
        key = (destination, destination.lookup)
        waiting = self._locating.get(key)
        if waiting is not None:
            waiting.append(message)
            return
        self._locating[key] = [message]
        self._spawn(self._locate_and_send(key))

    async def _locate_and_send(self, key: tuple[Address, str]) -> None:
        destination = key[0]
        if self.resolver is None:
            self.resolver = Resolver(logger=self.logger)
        try:
            targets = await self.resolver.locate(destination)
        except Exception:
            self.logger.exception("cannot locate %s", _describe(destination))
            targets = []
        finally:
            messages = self._locating.pop(key, [])
        if self._closed:
            return
        for message in messages:
            target = self._first_usable(message, destination, targets)
            if target is None:
                reason = f"cannot resolve {destination.host} to an address we can send to"
                self._send_failed(message, destination, reason)
            else:
                self._send(message, target, destination.host)

    def _first_usable(
        self, message: Message, destination: Address, targets: list[Address]
    ) -> Address | None:
        """The first of ``targets`` over a transport we have, the Via rewritten for it.

        NAPTR may choose another transport than the one the core wrote in the
        Via; a request we originate then says the new one (RFC 3261 section
        18.1.1); a response or a forwarded request keeps its transport.
        """
        family = self._udp.get_extra_info("socket").family if self._udp is not None else None
        for target in targets:
            if target.transport == "UDP" and _family(target.host) != family:
                continue
            if target.transport != destination.transport.upper():
                if not isinstance(message, Request):
                    continue
                try:
                    sent_over(message, target.transport)
                except LocalProtocolError:
                    continue
            return target
        return None

    def _send_stream(
        self, data: bytes, message: Message, destination: Address, name: str | None = None
    ) -> None:
        # RFC 3261 section 18: reuse a connection to that peer when there is one.
        key = _stream_key(destination)
        stream = self._connections.get(key)
        transport = stream.transport if stream is not None else None
        if transport is not None and not transport.is_closing():
            transport.write(data)
            return
        queued = self._connecting.get(key)
        if queued is not None:
            queued.append((data, message))
            return
        self._connecting[key] = [(data, message)]
        self._spawn(self._connect(key, destination, name))

    async def _connect(
        self, key: _StreamKey, destination: Address, host_name: str | None = None
    ) -> None:
        """Open the connection to ``destination``; TLS checks the URI's host in the certificate.

        ``host_name``: the name ``destination`` was located from (RFC 3263),
        which the certificate must name (RFC 5922 section 4); else its host.
        """
        loop = asyncio.get_running_loop()
        name = key[0]
        tls = self._tls_client_context if name == "TLS" else None
        try:
            _, stream = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _StreamProtocol(self, name),
                    destination.host,
                    destination.port,
                    ssl=tls,
                    server_hostname=(host_name or destination.host) if tls is not None else None,
                ),
                self.connect_timeout,
            )
        except ssl.SSLCertVerificationError as error:
            reason = f"TLS peer not verified ({error.verify_message or error.reason})"
            for _, message in self._connecting.pop(key, []):
                self._send_failed(message, destination, reason)
            return
        except (OSError, TimeoutError) as error:
            reason = f"cannot connect ({str(error) or type(error).__name__})"
            for _, message in self._connecting.pop(key, []):
                self._send_failed(message, destination, reason)
            return
        except asyncio.CancelledError:
            self._connecting.pop(key, None)
            raise
        self._connections[key] = stream  # also under its name when it has one
        assert stream.transport is not None
        for data, _ in self._connecting.pop(key, []):
            stream.transport.write(data)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _connection_made(self, stream: _StreamProtocol) -> None:
        self._streams.add(stream)
        self._connections[_stream_key(stream.peer)] = stream
        self.logger.debug("%s connection with %s", stream.name, _describe(stream.peer))

    def _alias(self, stream: _StreamProtocol, request: Request) -> None:
        """RFC 5923: a Via with ``alias`` makes this connection the one to its sent-by port too.

        Only for a sent-by host that is the connection's own peer address: so a
        peer's in-dialog requests to its Contact (host and listening port, no
        ``transport=``) reuse the connection it opened, as the peer asked.
        """
        try:
            via = request.top_via
        except SIPParseError:
            return
        if not any(name.lower() == "alias" for name, _ in via.params):
            return
        host = via.host[1:-1] if via.host.startswith("[") else via.host
        if host == stream.peer.host and via.port is not None:
            self._connections.setdefault((stream.name, host, via.port), stream)

    def _connection_lost(self, stream: _StreamProtocol) -> None:
        self._streams.discard(stream)
        for key in [k for k, s in self._connections.items() if s is stream]:
            del self._connections[key]
        self.logger.debug("%s connection with %s closed", stream.name, _describe(stream.peer))

    # -- the timer -------------------------------------------------------------------
    def _core_busy(self) -> bool:
        """The core's own word on pending work, when it has one; else its timer."""
        busy = getattr(self.core, "has_pending_work", None)
        if busy is None:
            return True
        try:
            return bool(busy())
        except Exception:
            self.logger.exception("the core failed in has_pending_work")
            return True

    def _arm(self, backoff: float = 0.0) -> None:
        if self._closed or self._loop is None:
            return
        try:
            deadline = self.core.get_timer()
        except Exception:
            self.logger.exception("the core failed in get_timer")
            deadline = None
        if deadline is None:
            self._cancel_timer()
            if self._closing:
                self._idle.set()
            return
        if self._closing:
            if self._core_busy():
                self._idle.clear()  # new work since (e.g. BYEs queued on SIGTERM)
            else:
                # Only retransmission-absorbing timers are left: nothing to wait for.
                self._idle.set()
        armed = self._timer_at if self._timer is not None else None
        if armed is not None and armed <= deadline and not backoff:
            # Armed for it, or for earlier: a timer that fires early finds nothing
            # due and is re-armed then; cheaper than re-arming after every input.
            return
        if self._last_fired is not None and deadline <= self._last_fired:
            # A deadline that handle_timer should have cleared: do not spin on it.
            self.logger.debug("the core still reports a past deadline %s", deadline)
            backoff = max(backoff, _TIMER_BACKOFF)
        self._cancel_timer()
        self._timer_at = deadline
        if self._clock is None:
            self._timer = self._loop.call_at(max(deadline, self._loop.time() + backoff), self._fire)
        else:
            delay = max(deadline - self._clock(), backoff)
            self._timer = self._loop.call_later(delay, self._fire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _fire(self) -> None:
        deadline = self._timer_at
        self._timer = None
        self._timer_at = None
        # As aioquic does: the loop may call back a hair early, and a core
        # given a time before its deadline would ask to be called again.
        now = self.now()
        if deadline is not None:
            now = max(now, deadline)
        self._last_fired = now
        try:
            self.core.handle_timer(now)
        except Exception:
            self.logger.exception("the core failed in handle_timer")
            self._flush_safely()
            self._arm(backoff=_TIMER_BACKOFF)
            return
        self.transmit()

    def _flush_safely(self) -> None:
        with contextlib.suppress(Exception):
            self._flush_messages()

    # -- logging ---------------------------------------------------------------------
    def log_event(self, event: object) -> None:
        """The default ``on_event``: the event's repr at INFO, with structured fields.

        ``extra`` carries ``event`` (the class name) and, when the event has
        them, ``call_id`` and ``conference_id``, for a JSON formatter.
        """
        extra: dict[str, object] = {"event": type(event).__name__}
        for name in ("call_id", "conference_id"):
            value = getattr(event, name, None)
            if value is not None:
                extra[name] = value
        self.logger.info("%r", event, extra=extra)

    def _log_message(self, verb: str, message: Message, peer: Address, level: int) -> None:
        """``recv MESSAGE from 192.0.2.1:5060/UDP call-id abc``, with the fields as ``extra``."""
        if not self.logger.isEnabledFor(level):
            return
        extra: dict[str, object] = {"peer": _describe(peer), "transport": peer.transport}
        with contextlib.suppress(SIPParseError):
            extra["call_id"] = message.call_id
        if isinstance(message, Request):
            extra["sip_method"] = what = message.method
        else:
            assert isinstance(message, Response)
            extra["sip_status"] = message.status
            what = f"{message.status} {message.reason}"
        direction = "to" if verb == "send" else "from"
        self.logger.log(
            level,
            "%s %s %s %s call-id %s",
            verb,
            what,
            direction,
            extra["peer"],
            extra.get("call_id", "-"),
            extra=extra,
        )

    def _log_parse_error(self, error: SIPParseError, data: bytes, source: Address) -> None:
        line = _first_line(data)
        self.logger.warning(
            "unparsable message from %s: %s (first line %r)",
            _describe(source),
            error.reason,
            line,
            extra={
                "peer": _describe(source),
                "transport": source.transport,
                "reason": error.reason,
                "first_line": line,
            },
        )


async def serve_forever_until_signal(
    server: SipServer[Any] | Iterable[SipServer[Any]],
    signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT),
    before_close: Callable[[], object] | None = None,
    *,
    drain: float = 5.0,
    refuse_for: float = 0.0,
    stop: asyncio.Event | None = None,
) -> int | None:
    """Serve until one of ``signals`` arrives (or ``stop`` is set), then close cleanly.

    ``server`` is one :class:`SipServer` or several (e.g. the allocator and the
    built-in focus); those not started yet are started.  On the signal, every
    server stops accepting (:meth:`SipServer.stop_accepting`: new requests get
    503), then ``before_close()`` is called (e.g. ``lambda: focus.end_all(server.now())``,
    to end conferences with BYE) and an awaitable it returns is awaited; then
    every server sends what its core queued and :meth:`SipServer.close` drains
    them all at once, for up to ``drain`` seconds and at least ``refuse_for``.
    Returns the signal number, or None when ``stop`` ended it.
    """
    servers = [server] if isinstance(server, SipServer) else list(server)
    for each in servers:
        if not each.started:
            await each.start()
    logger = servers[0].logger if servers else logging.getLogger("vidim.aio")
    loop = asyncio.get_running_loop()
    stop = stop if stop is not None else asyncio.Event()
    received: list[int] = []

    def on_signal(number: int) -> None:
        received.append(number)
        stop.set()

    installed: list[int] = []
    try:
        for number in signals:
            loop.add_signal_handler(number, on_signal, number)
            installed.append(number)
        await stop.wait()
    finally:
        for number in installed:
            loop.remove_signal_handler(number)
    if received:
        logger.info("signal %s: shutting down", signal.Signals(received[0]).name)
    for each in servers:
        each.stop_accepting()
    if before_close is not None:
        try:
            result = before_close()
            if isinstance(result, Awaitable):
                await result
        except Exception:
            logger.exception("before_close failed")
        for each in servers:
            each.transmit()
    await asyncio.gather(*(each.close(drain=drain, refuse_for=refuse_for) for each in servers))
    return received[0] if received else None
