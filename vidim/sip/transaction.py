"""The transaction layer: RFC 3261 section 17, with RFC 6026's correction.

Rule 1: everything that decides how a transaction moves lives in the four
``TRANSITIONS`` tables, one in each machine's class, keyed by ``(state,
input)`` in the manner of h2's ``_transitions``.  Each row gives the target
state and the side effect (a method of the transaction) that runs on the way.
:func:`describe_transitions` turns a table into rows for documentation.

Rule 2: nothing here reads a clock, opens a socket or starts a thread (the
aioquic model).  A :class:`TransactionLayer` has three kinds of input:

* API calls from the transaction user (TU): :meth:`~TransactionLayer.send_request`,
  :meth:`~TransactionLayer.send_response`, :meth:`~TransactionLayer.cancel`,
  :meth:`~TransactionLayer.report_transport_error`;
* received messages, already parsed: :meth:`~TransactionLayer.receive`;
* the clock: :meth:`~TransactionLayer.get_timer` reports the earliest
  deadline and :meth:`~TransactionLayer.handle_timer` fires what is due.

After any of them, call :meth:`~TransactionLayer.messages_to_send` and
:meth:`~TransactionLayer.next_event`.

Errors: an input the TU is not allowed to give in the current state raises
:class:`LocalProtocolError`.  Remote input the RFC says to absorb is
absorbed silently (retransmissions); remote input the table has no row for
becomes a :class:`MessageDiscarded` event, never an exception.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, NewType

from ..timers import Timers
from .errors import LocalProtocolError, SIPParseError
from .headers import Headers, Via, split_list
from .ids import new_tag
from .message import Message, Request, Response, make_response

__all__ = [
    "RELIABLE_TRANSPORTS",
    "TIMERS",
    "AckReceived",
    "Address",
    "ClientTransaction",
    "Event",
    "InviteClientState",
    "InviteClientTransaction",
    "InviteServerState",
    "InviteServerTransaction",
    "MessageDiscarded",
    "NonInviteClientState",
    "NonInviteClientTransaction",
    "NonInviteServerState",
    "NonInviteServerTransaction",
    "RequestCancelled",
    "RequestReceived",
    "ResponseReceived",
    "ServerTransaction",
    "Transaction",
    "TransactionConfig",
    "TransactionId",
    "TransactionInput",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
    "describe_transitions",
]

#: Transports that are reliable in the sense of RFC 3261 section 17: no
#: retransmissions, and zero-length Timers D, I, J and K.
RELIABLE_TRANSPORTS = frozenset(("TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"))

TransactionId = NewType("TransactionId", int)
"""Identifies one transaction for the lifetime of a :class:`TransactionLayer`.

Ids are never reused, so an id of a terminated transaction stays unknown.
"""


# -- addresses and configuration ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Address:
    """Where a message comes from or goes to."""

    host: str
    """IP address or host name."""
    port: int
    """Port number."""
    transport: str = "UDP"
    """Transport name as in a Via (``UDP``, ``TCP``, ``TLS``...)."""
    lookup: str = field(default="A", compare=False, repr=False)
    """How a host name is located (RFC 3263 section 4, :mod:`vidim.sip.locate`):
    ``"A"``: its A/AAAA records, on ``port`` (the URI gave a port);
    ``"SRV"``: its SRV records for ``transport`` first (a transport, no port);
    ``"NAPTR"``: its NAPTR records, which may choose another transport (neither).
    Not part of the address's identity; ignored for an IP address."""

    @property
    def reliable(self) -> bool:
        """True for TCP, TLS, SCTP and WebSocket transports."""
        return self.transport.upper() in RELIABLE_TRANSPORTS


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionConfig:
    """Timer values and options of a :class:`TransactionLayer` (seconds)."""

    t1: float = 0.5
    """RTT estimate (RFC 3261 Table 4): first retransmission interval."""
    t2: float = 4.0
    """Maximum retransmission interval for non-INVITE requests and INVITE responses."""
    t4: float = 5.0
    """Maximum time a message stays in the network: Timers I and K."""
    timer_d: float = 32.0
    """Timer D over unreliable transports (at least 32 s; always 0 over reliable ones)."""
    auto_100_trying: bool = True
    """Answer every new INVITE with 100 Trying at once (RFC 3261 section 17.2.1).

    Turn it off when the TU sends its own 100 within 200 ms.
    """
    sent_by: tuple[tuple[str, int], ...] = ()
    """The ``(host, port)`` values this element puts in its Vias.

    When not empty, a response whose top Via sent-by is none of them is
    discarded (RFC 3261 section 18.1.2).  Empty means no check.
    """

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 > 0 and self.timer_d >= 0):
            raise LocalProtocolError("need t1 > 0, t2 >= t1, t4 > 0 and timer_d >= 0")


# -- events -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Base class of everything :meth:`TransactionLayer.next_event` returns."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestReceived(Event):
    """A new request arrived and a server transaction was created for it.

    Answer it with :meth:`TransactionLayer.send_response`.
    """

    request: Request
    """The request."""
    source: Address
    """Where it came from; responses go back there."""
    transaction_id: TransactionId
    """The server transaction."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ResponseReceived(Event):
    """A response for one of our client transactions.

    For INVITE, retransmissions of 2xx (and 2xx from other forks) are passed
    up too (RFC 6026): the TU sends the ACK for each, with
    :meth:`TransactionLayer.send_stateless`.
    """

    response: Response
    """The response."""
    transaction_id: TransactionId
    """The client transaction."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AckReceived(Event):
    """An ACK for a 2xx: it belongs to no transaction, so the TU handles it."""

    request: Request
    """The ACK."""
    source: Address
    """Where it came from."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestCancelled(Event):
    """A CANCEL matched a server INVITE transaction that has no final response yet.

    The layer has already answered the CANCEL with 200; the TU should now
    answer the INVITE with 487 (RFC 3261 section 9.2).
    """

    transaction_id: TransactionId
    """The INVITE server transaction."""
    request: Request
    """The CANCEL."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TransactionTimedOut(Event):
    """A transaction gave up: Timer B, F or H fired, or a CANCEL went unanswered."""

    transaction_id: TransactionId
    """The transaction."""
    request: Request
    """The request of the transaction."""
    status_hint: int = 408
    """The status to act as if received: 408, or 487 for a cancelled INVITE."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportFailed(Event):
    """The TU reported a transport error (RFC 3261 sections 8.1.3.1 and 17.1.4)."""

    transaction_id: TransactionId
    """The transaction."""
    request: Request | None
    """The request of the transaction.

    None when a server transaction fails after its final response: by then it
    keeps only that response (see :class:`_Transaction`).
    """
    status_hint: int = 503
    """The status to act as if received."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TransactionTerminated(Event):
    """A transaction reached Terminated and left the layer; its id is now unknown."""

    transaction_id: TransactionId
    """The transaction."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageDiscarded(Event):
    """A received message was dropped: stray, not ours, or not allowed now.

    Purely diagnostic: the RFC says to drop these silently.
    """

    message: Message
    """The message."""
    reason: str
    """Why."""


# -- the state machines -----------------------------------------------------------


class _MachineEnum(Enum):
    """An Enum hashed by identity, as it compares (members are singletons).

    Enum's own ``__hash__`` is a Python-level call, and the transition tables,
    the timer keys and each transaction's armed timers hash these on every
    message and timer.
    """

    __hash__ = object.__hash__


class TransactionInput(_MachineEnum):
    """What can happen to a transaction: the second half of a table key."""

    RECV_1XX = "receive 1xx"
    RECV_2XX = "receive 2xx"
    RECV_3XX_6XX = "receive 300-699"
    RECV_REQUEST = "receive request"
    RECV_ACK = "receive ACK"
    SEND_1XX = "TU sends 1xx"
    SEND_2XX = "TU sends 2xx"
    SEND_3XX_6XX = "TU sends 300-699"
    CANCEL = "TU cancels"
    TRANSPORT_ERROR = "transport error"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    #: 64*T1 after sending a CANCEL without a final response for the INVITE
    #: (RFC 3261 section 9.1).
    TIMER_CANCEL = "CANCEL timeout"


#: The inputs that are timers (a transaction arms at most one of each).
TIMERS = frozenset(i for i in TransactionInput if i.name.startswith("TIMER_"))


class InviteClientState(_MachineEnum):
    """RFC 3261 Figure 5, with RFC 6026's Accepted state."""

    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class NonInviteClientState(_MachineEnum):
    """RFC 3261 Figure 6."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class InviteServerState(_MachineEnum):
    """RFC 3261 Figure 7, with RFC 6026's Accepted state."""

    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class NonInviteServerState(_MachineEnum):
    """RFC 3261 Figure 8."""

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


#: The states in which a transaction still waits for something that matters
#: (see :meth:`TransactionLayer.has_pending_work`).
_WAITING_STATES = frozenset(
    (
        InviteClientState.CALLING,
        InviteClientState.PROCEEDING,
        NonInviteClientState.TRYING,
        NonInviteClientState.PROCEEDING,
        InviteServerState.PROCEEDING,
        InviteServerState.COMPLETED,
        NonInviteServerState.TRYING,
        NonInviteServerState.PROCEEDING,
    )
)

#: A side effect: an unbound transaction method taking ``(now, message)``.
_Action = Callable[[Any, float, Message | None], None]
#: A machine's table: (state, input) -> (next state, side effect or None).
_Table = dict[tuple[Enum, TransactionInput], tuple[Enum, _Action | None]]
_Key = tuple[Hashable, ...]


def _by_state(
    rows: dict[Enum, dict[TransactionInput, tuple[Enum, _Action | None]]],
) -> _Table:
    """A table written state by state, as the RFC's figures read, keyed by (state, input)."""
    return {
        (state, event): row for state, by_input in rows.items() for event, row in by_input.items()
    }


class _Transaction:
    """What the four machines share: identity, timers and the table driver.

    ``request`` is the request of the transaction while it may still be needed:
    until the final response for a client transaction (after it, only the
    response's retransmissions are absorbed, and an INVITE's ACK for 300-699 is
    built already), until the final response is sent for a non-INVITE server
    transaction, until the 2xx is sent (Accepted) or the ACK received
    (Confirmed) for an INVITE one; then it is None, so that the transactions
    that linger to absorb retransmissions (Timers D, I, J, K, L, M: up to 32 s)
    keep only what that needs.  Server transactions matched the RFC 2543 way
    (no magic cookie in the branch) keep it to their end: matching them reads
    its Request-URI and To tag.
    """

    __slots__ = ("_armed", "_layer", "id", "key", "peer", "reliable", "request", "state")

    TRANSITIONS: ClassVar[_Table]
    #: Where a machine starts and where it ends (the layer forgets it there).
    INITIAL: ClassVar[Enum]
    TERMINATED: ClassVar[Enum]

    state: Enum

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
    ) -> None:
        self._layer = layer
        #: The timers armed in the layer for this transaction, to cancel them.
        self._armed: set[TransactionInput] = set()
        self.id = transaction_id
        #: The index key this transaction is matched by.
        self.key = key
        #: Client: the destination.  Server: the source of the request.
        self.peer = peer
        self.reliable = reliable
        self.request: Request | None = request
        self.state = self.INITIAL

    def __repr__(self) -> str:
        method = self.key[3] if isinstance(self, _ServerBase) else self.key[1]
        return f"<{type(self).__name__} {self.id} {method} {self.state.value}>"

    def _apply(self, event: TransactionInput, now: float, message: Message | None) -> bool:
        """Run one table row; False when the table has none for (state, event)."""
        row = self.TRANSITIONS.get((self.state, event))
        if row is None:
            return False
        target, action = row
        self.state = target
        if action is not None:
            action(self, now, message)
        # Ids are never reused: the id is still in the table until _remove.
        if target is self.TERMINATED and self.id in self._layer._transactions:
            self._layer._remove(self)
        return True

    # -- helpers for the side effects -------------------------------------------
    def _send(self, message: Message) -> None:
        self._layer._outbox.append((message, self.peer))

    def _start_timer(self, timer: TransactionInput, delay: float, now: float) -> None:
        # A zero-length timer (D, I, J, K over reliable transports) fires at
        # once: the row it triggers runs now rather than on the next tick.
        if delay <= 0:
            self._apply(timer, now, None)
        else:
            self._layer._arm(self, timer, now, delay)

    def _stop_timers(self) -> None:
        self._layer._disarm_all(self)

    def _timed_out(self, now: float, message: Message | None) -> None:
        """Tell the TU the transaction failed with a timeout (408)."""
        request = self.request
        assert request is not None  # kept until a final response (Timers B, F, H)
        self._layer._events.append(TransactionTimedOut(transaction_id=self.id, request=request))

    def _transport_failed(self, now: float, message: Message | None) -> None:
        """Tell the TU the transport failed (503)."""
        self._layer._events.append(TransportFailed(transaction_id=self.id, request=self.request))


class _ClientBase(_Transaction):
    __slots__ = ("_interval",)

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
    ) -> None:
        super().__init__(layer, transaction_id, request, peer, reliable, key)
        self._interval = layer.config.t1

    def _resend(self) -> None:
        """Send the request (Calling, Trying, Proceeding: it is still held)."""
        request = self.request
        assert request is not None
        self._send(request)

    def _pass_up(self, now: float, message: Message | None) -> None:
        """Hand the response to the TU."""
        assert isinstance(message, Response)
        self._layer._events.append(ResponseReceived(response=message, transaction_id=self.id))


class InviteClientTransaction(_ClientBase):
    """RFC 3261 section 17.1.1 as updated by RFC 6026 section 7.2."""

    __slots__ = ("_ack", "_cancel_id", "_cancel_pending")

    INITIAL: ClassVar[Enum] = InviteClientState.CALLING
    TERMINATED: ClassVar[Enum] = InviteClientState.TERMINATED

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
    ) -> None:
        super().__init__(layer, transaction_id, request, peer, reliable, key)
        self._ack: Request | None = None
        #: The id given to the CANCEL by TransactionLayer.cancel, if any.
        self._cancel_id: TransactionId | None = None
        #: cancel() was called before any provisional response arrived.
        self._cancel_pending = False

    def _start(self, now: float) -> None:
        self._resend()
        if not self.reliable:
            self._layer._arm(self, TransactionInput.TIMER_A, now, self._interval)
        self._layer._arm(self, TransactionInput.TIMER_B, now, 64 * self._layer.config.t1)

    def _retransmit(self, now: float, message: Message | None) -> None:
        """Timer A: resend the INVITE and double the interval (no cap)."""
        self._resend()
        self._layer.retransmissions += 1
        self._interval *= 2
        self._layer._arm(self, TransactionInput.TIMER_A, now, self._interval)

    def _on_provisional(self, now: float, message: Message | None) -> None:
        """First 1xx: stop retransmitting, pass it up, send a CANCEL held back."""
        self._stop_timers()
        self._pass_up(now, message)
        if self._cancel_pending:
            self._cancel_pending = False
            self._layer._start_cancel(self, now)

    def _on_2xx(self, now: float, message: Message | None) -> None:
        """2xx: pass it up and wait 64*T1 for its retransmissions (Timer M)."""
        self._stop_timers()
        self._drop_pending_cancel()
        self.request = None  # Accepted passes 2xx up; it never sends the INVITE again
        self._pass_up(now, message)
        self._start_timer(TransactionInput.TIMER_M, 64 * self._layer.config.t1, now)

    def _on_failure(self, now: float, message: Message | None) -> None:
        """300-699: send the ACK (section 17.1.1.3), pass it up, start Timer D."""
        assert isinstance(message, Response)
        self._stop_timers()
        self._drop_pending_cancel()
        self._ack = self._build_ack(message)
        self.request = None  # Completed resends the ACK; it never sends the INVITE again
        self._send(self._ack)
        self._pass_up(now, message)
        self._start_timer(
            TransactionInput.TIMER_D, 0.0 if self.reliable else self._layer.config.timer_d, now
        )

    def _resend_ack(self, now: float, message: Message | None) -> None:
        """A retransmitted final response: absorb it and resend the ACK."""
        if self._ack is not None:
            self._send(self._ack)

    def _hold_cancel(self, now: float, message: Message | None) -> None:
        """No provisional response yet: the CANCEL waits for one (section 9.1)."""
        self._cancel_pending = True

    def _send_cancel(self, now: float, message: Message | None) -> None:
        """Start the CANCEL's own client transaction."""
        self._layer._start_cancel(self, now)

    def _cancel_timed_out(self, now: float, message: Message | None) -> None:
        """No final response 64*T1 after the CANCEL: consider the INVITE cancelled."""
        request = self.request
        assert request is not None  # Proceeding
        self._layer._events.append(
            TransactionTimedOut(transaction_id=self.id, request=request, status_hint=487)
        )

    def _drop_pending_cancel(self) -> None:
        if self._cancel_pending and self._cancel_id is not None:
            self._cancel_pending = False
            self._layer._events.append(TransactionTerminated(transaction_id=self._cancel_id))

    def _build_ack(self, response: Response) -> Request:
        # RFC 3261 section 17.1.1.3: Request-URI, Call-ID, From and the CSeq
        # number of the request, To of the response, one Via equal to the
        # top Via of the request, and the request's Route header fields.
        request = self.request
        assert request is not None  # Calling or Proceeding
        headers = Headers()
        headers.add("Via", str(request.top_via))
        for route in request.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", request.headers.get("From") or "")
        headers.add("To", response.headers.get("To") or "")
        headers.add("Call-ID", request.call_id)
        headers.add("CSeq", f"{request.cseq.seq} ACK")
        return Request("ACK", request.uri, headers)

    TRANSITIONS: ClassVar[_Table] = _by_state(
        {
            InviteClientState.CALLING: {
                TransactionInput.TIMER_A: (InviteClientState.CALLING, _retransmit),
                TransactionInput.TIMER_B: (InviteClientState.TERMINATED, _Transaction._timed_out),
                TransactionInput.RECV_1XX: (InviteClientState.PROCEEDING, _on_provisional),
                TransactionInput.RECV_2XX: (InviteClientState.ACCEPTED, _on_2xx),
                TransactionInput.RECV_3XX_6XX: (InviteClientState.COMPLETED, _on_failure),
                TransactionInput.CANCEL: (InviteClientState.CALLING, _hold_cancel),
                TransactionInput.TRANSPORT_ERROR: (
                    InviteClientState.TERMINATED,
                    _Transaction._transport_failed,
                ),
            },
            InviteClientState.PROCEEDING: {
                TransactionInput.RECV_1XX: (InviteClientState.PROCEEDING, _ClientBase._pass_up),
                TransactionInput.RECV_2XX: (InviteClientState.ACCEPTED, _on_2xx),
                TransactionInput.RECV_3XX_6XX: (InviteClientState.COMPLETED, _on_failure),
                TransactionInput.CANCEL: (InviteClientState.PROCEEDING, _send_cancel),
                TransactionInput.TIMER_CANCEL: (InviteClientState.TERMINATED, _cancel_timed_out),
                TransactionInput.TRANSPORT_ERROR: (
                    InviteClientState.TERMINATED,
                    _Transaction._transport_failed,
                ),
            },
            InviteClientState.COMPLETED: {
                TransactionInput.RECV_3XX_6XX: (InviteClientState.COMPLETED, _resend_ack),
                TransactionInput.CANCEL: (InviteClientState.COMPLETED, None),
                TransactionInput.TIMER_D: (InviteClientState.TERMINATED, None),
                TransactionInput.TRANSPORT_ERROR: (InviteClientState.TERMINATED, None),
            },
            InviteClientState.ACCEPTED: {
                TransactionInput.RECV_2XX: (InviteClientState.ACCEPTED, _ClientBase._pass_up),
                TransactionInput.CANCEL: (InviteClientState.ACCEPTED, None),
                TransactionInput.TIMER_M: (InviteClientState.TERMINATED, None),
                TransactionInput.TRANSPORT_ERROR: (InviteClientState.TERMINATED, None),
            },
        }
    )


class NonInviteClientTransaction(_ClientBase):
    """RFC 3261 section 17.1.2."""

    __slots__ = ()

    INITIAL: ClassVar[Enum] = NonInviteClientState.TRYING
    TERMINATED: ClassVar[Enum] = NonInviteClientState.TERMINATED

    def _start(self, now: float) -> None:
        self._resend()
        if not self.reliable:
            self._layer._arm(self, TransactionInput.TIMER_E, now, self._interval)
        self._layer._arm(self, TransactionInput.TIMER_F, now, 64 * self._layer.config.t1)

    def _retransmit(self, now: float, message: Message | None) -> None:
        """Timer E: resend; the interval doubles up to T2, and is T2 in Proceeding."""
        self._resend()
        self._layer.retransmissions += 1
        t2 = self._layer.config.t2
        if self.state is NonInviteClientState.PROCEEDING:
            self._interval = t2
        else:
            self._interval = min(2 * self._interval, t2)
        self._layer._arm(self, TransactionInput.TIMER_E, now, self._interval)

    def _on_final(self, now: float, message: Message | None) -> None:
        """200-699: pass it up, then absorb retransmissions until Timer K."""
        self._stop_timers()
        self.request = None  # Completed only absorbs retransmitted responses
        self._pass_up(now, message)
        self._start_timer(
            TransactionInput.TIMER_K, 0.0 if self.reliable else self._layer.config.t4, now
        )

    TRANSITIONS: ClassVar[_Table] = _by_state(
        {
            NonInviteClientState.TRYING: {
                TransactionInput.TIMER_E: (NonInviteClientState.TRYING, _retransmit),
                TransactionInput.TIMER_F: (
                    NonInviteClientState.TERMINATED,
                    _Transaction._timed_out,
                ),
                TransactionInput.RECV_1XX: (NonInviteClientState.PROCEEDING, _ClientBase._pass_up),
                TransactionInput.RECV_2XX: (NonInviteClientState.COMPLETED, _on_final),
                TransactionInput.RECV_3XX_6XX: (NonInviteClientState.COMPLETED, _on_final),
                TransactionInput.TRANSPORT_ERROR: (
                    NonInviteClientState.TERMINATED,
                    _Transaction._transport_failed,
                ),
            },
            NonInviteClientState.PROCEEDING: {
                TransactionInput.TIMER_E: (NonInviteClientState.PROCEEDING, _retransmit),
                TransactionInput.TIMER_F: (
                    NonInviteClientState.TERMINATED,
                    _Transaction._timed_out,
                ),
                TransactionInput.RECV_1XX: (NonInviteClientState.PROCEEDING, _ClientBase._pass_up),
                TransactionInput.RECV_2XX: (NonInviteClientState.COMPLETED, _on_final),
                TransactionInput.RECV_3XX_6XX: (NonInviteClientState.COMPLETED, _on_final),
                TransactionInput.TRANSPORT_ERROR: (
                    NonInviteClientState.TERMINATED,
                    _Transaction._transport_failed,
                ),
            },
            NonInviteClientState.COMPLETED: {
                TransactionInput.RECV_2XX: (NonInviteClientState.COMPLETED, None),
                TransactionInput.RECV_3XX_6XX: (NonInviteClientState.COMPLETED, None),
                TransactionInput.TIMER_K: (NonInviteClientState.TERMINATED, None),
                TransactionInput.TRANSPORT_ERROR: (NonInviteClientState.TERMINATED, None),
            },
        }
    )


class _ServerBase(_Transaction):
    __slots__ = ("last_response",)

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
    ) -> None:
        super().__init__(layer, transaction_id, request, peer, reliable, key)
        #: The last response sent, resent when the request is retransmitted.
        self.last_response: Response | None = None

    def _respond(self, now: float, message: Message | None) -> None:
        """Send the TU's response and remember it."""
        assert isinstance(message, Response)
        self.last_response = message
        self._send(message)

    def _resend_last(self, now: float, message: Message | None) -> None:
        """A retransmitted request: resend the last response, if any."""
        if self.last_response is not None:
            self._send(self.last_response)

    def _let_go_of_request(self) -> None:
        # Matched by branch and sent-by (RFC 3261), the transaction needs the
        # request no more; matched the RFC 2543 way, it does (_matches_2543).
        if len(self.key) == 4:
            self.request = None


class InviteServerTransaction(_ServerBase):
    """RFC 3261 section 17.2.1 as updated by RFC 6026 section 7.1."""

    __slots__ = ("_interval",)

    INITIAL: ClassVar[Enum] = InviteServerState.PROCEEDING
    TERMINATED: ClassVar[Enum] = InviteServerState.TERMINATED

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
    ) -> None:
        super().__init__(layer, transaction_id, request, peer, reliable, key)
        self._interval = layer.config.t1

    def _respond_2xx(self, now: float, message: Message | None) -> None:
        """Send the 2xx; RFC 6026 keeps the transaction 64*T1 (Timer L)."""
        self._respond(now, message)
        self._let_go_of_request()
        self._start_timer(TransactionInput.TIMER_L, 64 * self._layer.config.t1, now)

    def _respond_failure(self, now: float, message: Message | None) -> None:
        """Send 300-699 and wait for the ACK: Timer G resends, Timer H gives up."""
        self._respond(now, message)
        if not self.reliable:
            self._layer._arm(self, TransactionInput.TIMER_G, now, self._interval)
        self._layer._arm(self, TransactionInput.TIMER_H, now, 64 * self._layer.config.t1)

    def _retransmit(self, now: float, message: Message | None) -> None:
        """Timer G: resend the final response, doubling the interval up to T2."""
        self._resend_last(now, message)
        self._layer.retransmissions += 1
        self._interval = min(2 * self._interval, self._layer.config.t2)
        self._layer._arm(self, TransactionInput.TIMER_G, now, self._interval)

    def _on_ack(self, now: float, message: Message | None) -> None:
        """The ACK for our 300-699: absorb further ACKs until Timer I."""
        self._stop_timers()
        self._let_go_of_request()
        self._start_timer(
            TransactionInput.TIMER_I, 0.0 if self.reliable else self._layer.config.t4, now
        )

    def _pass_ack(self, now: float, message: Message | None) -> None:
        """An ACK matching the transaction in Accepted goes to the TU (RFC 6026)."""
        assert isinstance(message, Request)
        self._layer._events.append(AckReceived(request=message, source=self._layer._source))

    TRANSITIONS: ClassVar[_Table] = _by_state(
        {
            InviteServerState.PROCEEDING: {
                TransactionInput.RECV_REQUEST: (
                    InviteServerState.PROCEEDING,
                    _ServerBase._resend_last,
                ),
                TransactionInput.SEND_1XX: (InviteServerState.PROCEEDING, _ServerBase._respond),
                TransactionInput.SEND_2XX: (InviteServerState.ACCEPTED, _respond_2xx),
                TransactionInput.SEND_3XX_6XX: (InviteServerState.COMPLETED, _respond_failure),
                TransactionInput.TRANSPORT_ERROR: (
                    InviteServerState.TERMINATED,
                    _Transaction._transport_failed,
                ),
            },
            InviteServerState.COMPLETED: {
                TransactionInput.RECV_REQUEST: (
                    InviteServerState.COMPLETED,
                    _ServerBase._resend_last,
                ),
                TransactionInput.RECV_ACK: (InviteServerState.CONFIRMED, _on_ack),
                TransactionInput.TIMER_G: (InviteServerState.COMPLETED, _retransmit),
                TransactionInput.TIMER_H: (InviteServerState.TERMINATED, _Transaction._timed_out),
                TransactionInput.TRANSPORT_ERROR: (
                    InviteServerState.TERMINATED,
                    _Transaction._transport_failed,
                ),
            },
            InviteServerState.CONFIRMED: {
                TransactionInput.RECV_REQUEST: (InviteServerState.CONFIRMED, None),
                TransactionInput.RECV_ACK: (InviteServerState.CONFIRMED, None),
                TransactionInput.TIMER_I: (InviteServerState.TERMINATED, None),
                TransactionInput.TRANSPORT_ERROR: (InviteServerState.TERMINATED, None),
            },
            InviteServerState.ACCEPTED: {
                TransactionInput.RECV_REQUEST: (InviteServerState.ACCEPTED, None),
                TransactionInput.RECV_ACK: (InviteServerState.ACCEPTED, _pass_ack),
                TransactionInput.SEND_2XX: (InviteServerState.ACCEPTED, _ServerBase._respond),
                TransactionInput.TIMER_L: (InviteServerState.TERMINATED, None),
                TransactionInput.TRANSPORT_ERROR: (InviteServerState.TERMINATED, None),
            },
        }
    )


class NonInviteServerTransaction(_ServerBase):
    """RFC 3261 section 17.2.2."""

    __slots__ = ()

    INITIAL: ClassVar[Enum] = NonInviteServerState.TRYING
    TERMINATED: ClassVar[Enum] = NonInviteServerState.TERMINATED

    def _respond_final(self, now: float, message: Message | None) -> None:
        """Send the final response; absorb request retransmissions until Timer J."""
        self._respond(now, message)
        self._let_go_of_request()
        delay = 0.0 if self.reliable else 64 * self._layer.config.t1
        self._start_timer(TransactionInput.TIMER_J, delay, now)

    TRANSITIONS: ClassVar[_Table] = _by_state(
        {
            NonInviteServerState.TRYING: {
                TransactionInput.RECV_REQUEST: (NonInviteServerState.TRYING, None),
                TransactionInput.SEND_1XX: (NonInviteServerState.PROCEEDING, _ServerBase._respond),
                TransactionInput.SEND_2XX: (NonInviteServerState.COMPLETED, _respond_final),
                TransactionInput.SEND_3XX_6XX: (NonInviteServerState.COMPLETED, _respond_final),
                TransactionInput.TRANSPORT_ERROR: (
                    NonInviteServerState.TERMINATED,
                    _Transaction._transport_failed,
                ),
            },
            NonInviteServerState.PROCEEDING: {
                TransactionInput.RECV_REQUEST: (
                    NonInviteServerState.PROCEEDING,
                    _ServerBase._resend_last,
                ),
                TransactionInput.SEND_1XX: (NonInviteServerState.PROCEEDING, _ServerBase._respond),
                TransactionInput.SEND_2XX: (NonInviteServerState.COMPLETED, _respond_final),
                TransactionInput.SEND_3XX_6XX: (NonInviteServerState.COMPLETED, _respond_final),
                TransactionInput.TRANSPORT_ERROR: (
                    NonInviteServerState.TERMINATED,
                    _Transaction._transport_failed,
                ),
            },
            NonInviteServerState.COMPLETED: {
                TransactionInput.RECV_REQUEST: (
                    NonInviteServerState.COMPLETED,
                    _ServerBase._resend_last,
                ),
                TransactionInput.TIMER_J: (NonInviteServerState.TERMINATED, None),
                TransactionInput.TRANSPORT_ERROR: (
                    NonInviteServerState.TERMINATED,
                    _Transaction._transport_failed,
                ),
            },
        }
    )


ClientTransaction = InviteClientTransaction | NonInviteClientTransaction
ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
Transaction = ClientTransaction | ServerTransaction


def describe_transitions(machine: type[_Transaction]) -> list[tuple[str, str, str, str]]:
    """Rows ``(state, input, target, effect)`` of a machine's table, for documentation.

    ``effect`` is the first line of the side effect's docstring, or ``""``.
    """
    rows = []
    for (state, event), (target, action) in machine.TRANSITIONS.items():
        doc = (action.__doc__ or "").strip().split("\n")[0] if action is not None else ""
        rows.append((str(state.value), str(event.value), str(target.value), doc))
    return rows


# -- the layer ---------------------------------------------------------------------


def stamp_top_via(request: Request, source: Address) -> None:
    """Fill in ``received`` (RFC 3261 18.2.1) and ``rport`` (RFC 3581) on the top Via.

    Responses copy the Via, so the peer learns the address it was seen from,
    which is how a phone behind NAT (or pjsua2 with no port in its From)
    finds out where it is reachable.
    """
    via = request.top_via
    host = source.host if ":" not in source.host else f"[{source.host}]"
    wants_rport = via.has_rport and via.rport is None
    if not wants_rport and via.host.lower() == host.lower():
        return
    params: dict[str, str | None] = {"received": host}
    if wants_rport:
        params["rport"] = str(source.port)
    stamped_via = via.with_params(**params)
    lines = request.headers.get_all("via")
    first = split_list(lines[0])
    first[0] = str(stamped_via)
    request.headers.remove("via")
    for line in reversed([", ".join(first), *lines[1:]]):
        request.headers.prepend("Via", line)


def _status_input(status: int, *, local: bool) -> TransactionInput:
    if status < 200:
        return TransactionInput.SEND_1XX if local else TransactionInput.RECV_1XX
    if status < 300:
        return TransactionInput.SEND_2XX if local else TransactionInput.RECV_2XX
    return TransactionInput.SEND_3XX_6XX if local else TransactionInput.RECV_3XX_6XX


def _default_port(transport: str) -> int:
    return 5061 if transport.upper() in ("TLS", "TLS-SCTP") else 5060


class TransactionLayer:
    """All the transactions of one SIP element, client and server.

    Args:
        config: timer values and options; the defaults are RFC 3261's.
    """

    def __init__(self, config: TransactionConfig | None = None) -> None:
        self.config = config if config is not None else TransactionConfig()
        self._sent_by = frozenset((host.lower(), port) for host, port in self.config.sent_by)
        self._transactions: dict[TransactionId, Transaction] = {}
        self._client_index: dict[_Key, ClientTransaction] = {}
        self._server_index: dict[_Key, ServerTransaction] = {}
        # RFC 2543 requests: the key leaves out the Request-URI and To tag
        # (a response has neither), so a key holds a short list.
        self._server_2543: dict[_Key, list[ServerTransaction]] = {}
        self._outbox: list[tuple[Message, Address]] = []
        self._events: deque[Event] = deque()
        # The live timers, keyed by (transaction, timer): a key holds the id,
        # not the transaction, so no terminated transaction (and its request)
        # stays alive in the heap until its deadline.  A transaction that
        # ends cancels its timers.
        self._timers: Timers[tuple[TransactionId, TransactionInput]] = Timers()
        self._next_id = 0
        #: Requests and responses sent again because a timer fired (Timers A, E
        #: and G): a lossy path or a silent peer.  A count for metrics.
        self.retransmissions = 0
        # The source of the message being received (for AckReceived).
        self._source = Address("0.0.0.0", 0)

    # -- introspection -------------------------------------------------------------
    def __len__(self) -> int:
        """The number of live transactions."""
        return len(self._transactions)

    def transaction(self, transaction_id: TransactionId) -> Transaction | None:
        """The live transaction with this id, or None once it has terminated."""
        return self._transactions.get(transaction_id)

    # -- output --------------------------------------------------------------------
    def has_pending_work(self) -> bool:
        """True while a transaction still waits for something that matters.

        A request waiting for its answer, a request the TU has not answered,
        an INVITE failure waiting for its ACK.  Transactions that only linger
        to absorb retransmissions (Timers D, I, J, K, L, M) do not count: a
        shutdown need not wait for them.
        """
        return any(txn.state in _WAITING_STATES for txn in self._transactions.values())

    def messages_to_send(self) -> list[tuple[Message, Address]]:
        """Return and forget the messages to send, oldest first, with their destinations."""
        out = self._outbox
        self._outbox = []
        return out

    def next_event(self) -> Event | None:
        """Return the oldest pending event, or None."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Return and forget every pending event, oldest first."""
        out = list(self._events)
        self._events.clear()
        return out

    # -- timers --------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """The earliest deadline at which :meth:`handle_timer` must be called, or None."""
        return self._timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline is at or before ``now``, earliest first."""
        for transaction_id, timer in self._timers.pop_due(now):
            # A transaction that ended cancelled its timers: this one is live.
            txn = self._transactions[transaction_id]
            txn._armed.discard(timer)
            txn._apply(timer, now, None)
        if not self._transactions:
            self._shrink()

    def _shrink(self) -> None:
        """Give back the tables of the last burst once every transaction has ended.

        A dict never shrinks: after a burst of, say, 100,000 transactions the
        empty tables would keep megabytes until the process ends.  The timers
        left are all cancelled ones (every live timer belongs to a live
        transaction), waiting in the heap for their deadline to pass.
        """
        self._transactions = {}
        self._client_index = {}
        self._server_index = {}
        self._server_2543 = {}
        self._timers = Timers()

    def _arm(self, txn: _Transaction, timer: TransactionInput, now: float, delay: float) -> None:
        txn._armed.add(timer)
        self._timers.arm((txn.id, timer), now + delay)

    def _disarm_all(self, txn: _Transaction) -> None:
        for timer in txn._armed:
            self._timers.cancel((txn.id, timer))
        txn._armed.clear()

    def _armed_timers(self) -> dict[TransactionId, list[TransactionInput]]:
        """The live timers of every transaction, as the layer's timers hold them (for tests)."""
        armed: dict[TransactionId, list[TransactionInput]] = {}
        for tid in self._transactions:
            timers = [timer for timer in TIMERS if (tid, timer) in self._timers]
            if timers:
                armed[tid] = timers
        return armed

    # -- client side ---------------------------------------------------------------
    def send_request(
        self,
        request: Request,
        destination: Address,
        now: float,
        *,
        reliable: bool | None = None,
        branch: str | None = None,
    ) -> TransactionId:
        """Start a client transaction and send its request.

        The request must carry its Via, with a branch from :func:`new_branch`.
        Send ACKs for 2xx with :meth:`send_stateless` instead.

        Args:
            request: the request (not ACK).
            destination: where to send it, now and on every retransmission.
            now: the current time.
            reliable: whether the transport is reliable; None takes
                ``destination.reliable``.
            branch: the top Via's branch, from a caller that wrote that Via
                and holds the value: the Via is then not parsed back.

        Returns:
            The id of the new client transaction.

        Raises:
            LocalProtocolError: ACK, no RFC 3261 branch, CSeq method not the
                request method, or a transaction with this branch and
                method already exists.
        """
        if not isinstance(request, Request):
            raise LocalProtocolError("send_request takes a Request")
        method = request.method
        if method == "ACK":
            raise LocalProtocolError("an ACK has no client transaction: use send_stateless")
        try:
            if branch is None:
                branch = request.top_via.branch
            cseq = request.cseq
        except SIPParseError as exc:
            raise LocalProtocolError(f"cannot send this request: {exc.reason}") from None
        if branch is None or len(branch) <= 7 or not branch.startswith("z9hG4bK"):
            raise LocalProtocolError("the top Via needs a branch from new_branch()")
        if cseq.method != method:
            raise LocalProtocolError(f"CSeq method {cseq.method} is not {method}")
        key = (branch, method)
        if key in self._client_index:
            raise LocalProtocolError(f"a client transaction for {key} already exists")
        if reliable is None:
            reliable = destination.reliable
        tid = self._new_id()
        txn: ClientTransaction
        if method == "INVITE":
            txn = InviteClientTransaction(self, tid, request, destination, reliable, key)
        else:
            txn = NonInviteClientTransaction(self, tid, request, destination, reliable, key)
        self._transactions[tid] = txn
        self._client_index[key] = txn
        txn._start(now)
        return tid

    def cancel(self, transaction_id: TransactionId, now: float) -> TransactionId | None:
        """Cancel a client INVITE transaction (RFC 3261 section 9.1).

        The CANCEL gets its own non-INVITE client transaction, whose id is
        returned (responses to the CANCEL carry it).  Before any provisional
        response the CANCEL is held back and sent when one arrives; if a
        final response comes first, it is never sent and only a
        :class:`TransactionTerminated` is reported for its id.  Calling
        again returns the same id.

        Returns:
            The CANCEL's transaction id, or None when there is nothing left
            to cancel (a final response was received, or the INVITE
            transaction has terminated).

        Raises:
            LocalProtocolError: the id is not of a client INVITE transaction.
        """
        txn = self._transactions.get(transaction_id)
        if txn is None:
            if not 0 <= transaction_id < self._next_id:
                raise LocalProtocolError(f"no transaction {transaction_id}")
            return None
        if not isinstance(txn, InviteClientTransaction):
            raise LocalProtocolError("only a client INVITE transaction can be cancelled")
        if txn._cancel_id is not None:
            return txn._cancel_id
        if txn.state in (InviteClientState.COMPLETED, InviteClientState.ACCEPTED):
            txn._apply(TransactionInput.CANCEL, now, None)
            return None
        txn._cancel_id = self._new_id()
        txn._apply(TransactionInput.CANCEL, now, None)
        return txn._cancel_id

    def _start_cancel(self, invite: InviteClientTransaction, now: float) -> None:
        # RFC 3261 section 9.1: Request-URI, Call-ID, To, From and the CSeq
        # number of the request being cancelled, one Via equal to its top
        # Via (so the same branch), and its Route header fields.
        assert invite._cancel_id is not None
        request = invite.request
        assert request is not None  # Calling or Proceeding
        headers = Headers()
        headers.add("Via", str(request.top_via))
        for route in request.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        for name in ("From", "To"):
            headers.add(name, request.headers.get(name) or "")
        headers.add("Call-ID", request.call_id)
        headers.add("CSeq", f"{request.cseq.seq} CANCEL")
        cancel = Request("CANCEL", request.uri, headers)
        key = (invite.key[0], "CANCEL")
        if key in self._client_index:
            return  # the TU sent its own CANCEL with send_request
        txn = NonInviteClientTransaction(
            self, invite._cancel_id, cancel, invite.peer, invite.reliable, key
        )
        self._transactions[txn.id] = txn
        self._client_index[key] = txn
        txn._start(now)
        invite._start_timer(TransactionInput.TIMER_CANCEL, 64 * self.config.t1, now)

    # -- server side ---------------------------------------------------------------
    def send_response(
        self,
        response: Response,
        now: float,
        *,
        transaction_id: TransactionId | None = None,
    ) -> None:
        """Send a response through the server transaction it answers.

        The transaction is found from the response's top Via and CSeq (and,
        for an RFC 2543 request, its Call-ID, From tag and To tag), so build
        the response with :func:`vidim.sip.make_response`.  It goes to the
        address the request came from.

        Args:
            response: the response.
            now: the current time.
            transaction_id: the server transaction, from
                :class:`RequestReceived`; only needed to tell apart RFC 2543
                requests that differ in nothing but their Request-URI.

        Raises:
            LocalProtocolError: no server transaction matches, or its state
                does not allow this response (for instance a second final).
        """
        if not isinstance(response, Response):
            raise LocalProtocolError("send_response takes a Response")
        if transaction_id is not None:
            found = self._transactions.get(transaction_id)
            if not isinstance(found, (InviteServerTransaction, NonInviteServerTransaction)):
                raise LocalProtocolError(f"no server transaction {transaction_id}")
            self._respond(found, response, now)
            return
        try:
            via = response.top_via
            cseq = response.cseq
            if via.is_rfc3261_branch:
                host, port = via.sent_by
                txn = self._server_index.get((via.branch, host, port, cseq.method))
            else:
                key = (via, response.call_id, cseq.seq, cseq.method, response.from_addr.tag)
                txn = self._match_2543_response(key, response.to_addr.tag)
        except SIPParseError as exc:
            raise LocalProtocolError(f"cannot send this response: {exc.reason}") from None
        if txn is None:
            raise LocalProtocolError(f"no server transaction for this {cseq.method} response")
        self._respond(txn, response, now)

    def _respond(self, txn: ServerTransaction, response: Response, now: float) -> None:
        if not txn._apply(_status_input(response.status, local=True), now, response):
            raise LocalProtocolError(
                f"cannot send {response.status} in state {txn.state.value} of {txn!r}"
            )

    def transaction_of(self, message: Message) -> TransactionId | None:
        """The live transaction that sends ``message``, for a transport error report.

        A request: its client transaction (top Via branch and method); a
        response: the server transaction it answers.  None for a message no
        transaction holds (an ACK, a stateless reply) or one that has ended.
        """
        try:
            via = message.top_via
            txn: Transaction | None
            if isinstance(message, Request):
                txn = self._client_index.get((via.branch, message.method))
            elif via.is_rfc3261_branch:
                host, port = via.sent_by
                txn = self._server_index.get((via.branch, host, port, message.cseq.method))
            else:
                return None
        except SIPParseError:
            return None
        return txn.id if txn is not None else None

    def report_transport_error(self, transaction_id: TransactionId, now: float) -> bool:
        """The transport could not send a message of this transaction.

        The transaction terminates; before a final response, the TU gets
        :class:`TransportFailed` (status hint 503, RFC 3261 sections 8.1.3.1
        and 17.1.4).

        Returns:
            False when the transaction had already terminated.
        """
        txn = self._transactions.get(transaction_id)
        if txn is None:
            return False
        return txn._apply(TransactionInput.TRANSPORT_ERROR, now, None)

    def report_send_failure(self, request: Request, now: float) -> bool:
        """The transport could not send ``request`` (e.g. no TCP connection could be opened).

        For the I/O layer, which holds the request but not its transaction id:
        the client transaction is found from the request's top Via branch and
        method, and fails as in :meth:`report_transport_error`.

        Returns:
            False when no live client transaction sent ``request`` (an ACK, a
            response, a transaction already over).
        """
        try:
            key = (request.top_via.branch, request.method)
        except SIPParseError:
            return False
        txn = self._client_index.get(key)
        if txn is None:
            return False
        return self.report_transport_error(txn.id, now)

    # -- input ---------------------------------------------------------------------
    def send_stateless(self, message: Message, destination: Address) -> None:
        """Send a message outside any transaction: an ACK for 2xx, a stateless reply."""
        if not isinstance(message, Message):
            raise LocalProtocolError("send_stateless takes a Message")
        self._outbox.append((message, destination))

    def receive(
        self,
        message: Message,
        source: Address,
        now: float,
        *,
        reliable: bool | None = None,
    ) -> None:
        """Handle a parsed message that arrived from ``source``.

        Args:
            message: the Request or Response (from :func:`vidim.sip.parse_message`).
            source: where it came from; responses to a request go back there.
            now: the current time.
            reliable: whether it came over a reliable transport; None takes
                ``source.reliable``.
        """
        if reliable is None:
            reliable = source.reliable
        try:
            if isinstance(message, Response):
                self._receive_response(message, now)
            elif isinstance(message, Request):
                stamp_top_via(message, source)
                self._receive_request(message, source, reliable, now)
            else:
                raise LocalProtocolError("receive takes a Request or a Response")
        except SIPParseError as exc:
            self._discard(message, f"malformed: {exc.reason}")

    def _discard(self, message: Message, reason: str) -> None:
        self._events.append(MessageDiscarded(message=message, reason=reason))

    def _receive_response(self, response: Response, now: float) -> None:
        via = response.top_via
        if self._sent_by:
            host, port = via.sent_by
            if (host, port or _default_port(via.transport)) not in self._sent_by:
                self._discard(response, f"top Via sent-by {via.host} is not ours")
                return
        # RFC 3261 section 17.1.3: the branch of the top Via and the CSeq method.
        txn = self._client_index.get((via.branch, response.cseq.method))
        if txn is None:
            self._discard(response, "matches no client transaction")
            return
        if not txn._apply(_status_input(response.status, local=False), now, response):
            self._discard(response, f"{response.status} not expected in {txn.state.value}")

    def _server_key(self, request: Request, via: Via, method: str) -> _Key:
        if via.is_rfc3261_branch:
            # RFC 3261 section 17.2.3: branch, sent-by, and method (ACK as INVITE).
            host, port = via.sent_by
            return (via.branch, host, port, method)
        # RFC 2543: the rest of the comparison is done by _matches_2543.
        return (via, request.call_id, request.cseq.seq, method, request.from_addr.tag)

    @staticmethod
    def _matches_2543(txn: ServerTransaction, request: Request, *, ack: bool) -> bool:
        # RFC 3261 section 17.2.3 for requests without the magic cookie: the
        # key held the top Via, Call-ID, CSeq number, method and From tag;
        # the Request-URI and To tag remain.  An ACK's To tag must be that
        # of the response the transaction sent.
        kept = txn.request
        if kept is None or request.uri != kept.uri:
            return False
        if ack:
            sent = txn.last_response
            expected = sent.to_addr.tag if sent is not None else None
        else:
            expected = kept.to_addr.tag
        return request.to_addr.tag == expected

    def _find_server(self, request: Request, via: Via, method: str) -> ServerTransaction | None:
        key = self._server_key(request, via, method)
        if via.is_rfc3261_branch:
            return self._server_index.get(key)
        ack = request.method == "ACK"
        for txn in self._server_2543.get(key, ()):
            if self._matches_2543(txn, request, ack=ack):
                return txn
        return None

    def _match_2543_response(self, key: _Key, to_tag: str | None) -> ServerTransaction | None:
        # A response to an in-dialog request carries the request's To tag;
        # otherwise take the newest transaction whose request had none.
        candidates = self._server_2543.get(key, ())
        for txn in candidates:
            kept = txn.request
            if to_tag is not None and kept is not None and kept.to_addr.tag == to_tag:
                return txn
        for txn in reversed(candidates):
            kept = txn.request
            if kept is not None and kept.to_addr.tag is None:
                return txn
        return None

    def _receive_request(
        self, request: Request, source: Address, reliable: bool, now: float
    ) -> None:
        via = request.top_via
        method = request.method
        self._source = source
        if method == "ACK":
            txn = self._find_server(request, via, "INVITE")
            if txn is None:
                # The ACK for a 2xx is its own transaction: the TU's business.
                self._events.append(AckReceived(request=request, source=source))
            elif not txn._apply(TransactionInput.RECV_ACK, now, request):
                self._discard(request, f"ACK not expected in {txn.state.value}")
            return
        txn = self._find_server(request, via, method)
        if txn is not None:
            # A retransmission: every state has a row for it.
            txn._apply(TransactionInput.RECV_REQUEST, now, request)
            return
        key = self._server_key(request, via, method)
        tid = self._new_id()
        if method == "INVITE":
            txn = InviteServerTransaction(self, tid, request, source, reliable, key)
        else:
            txn = NonInviteServerTransaction(self, tid, request, source, reliable, key)
        self._transactions[tid] = txn
        if via.is_rfc3261_branch:
            self._server_index[key] = txn
        else:
            self._server_2543.setdefault(key, []).append(txn)
        if method == "CANCEL":
            self._answer_cancel(txn, request, via, now)
            return
        self._events.append(RequestReceived(request=request, source=source, transaction_id=tid))
        if method == "INVITE" and self.config.auto_100_trying:
            headers = [("Timestamp", value) for value in request.headers.get_all("Timestamp")]
            txn._apply(TransactionInput.SEND_1XX, now, make_response(request, 100, headers=headers))

    def _answer_cancel(self, txn: ServerTransaction, cancel: Request, via: Via, now: float) -> None:
        # RFC 3261 section 9.2: match the CANCEL as if it were the INVITE;
        # answer 200 if it matches (with the To tag of the INVITE's
        # responses), 481 if not.  Only an INVITE still without a final
        # response is reported, for the TU to answer 487.
        target = self._find_server(cancel, via, "INVITE")
        if target is None:
            response = make_response(cancel, 481, to_tag=new_tag())
        else:
            sent = target.last_response
            tag = sent.to_addr.tag if sent is not None else None
            response = make_response(cancel, 200, to_tag=tag or new_tag())
        txn._apply(
            TransactionInput.SEND_2XX if target is not None else TransactionInput.SEND_3XX_6XX,
            now,
            response,
        )
        if target is not None and target.state is InviteServerState.PROCEEDING:
            self._events.append(RequestCancelled(transaction_id=target.id, request=cancel))

    # -- bookkeeping ---------------------------------------------------------------
    def _new_id(self) -> TransactionId:
        tid = TransactionId(self._next_id)
        self._next_id += 1
        return tid

    def _remove(self, txn: _Transaction) -> None:
        del self._transactions[txn.id]
        if isinstance(txn, (InviteClientTransaction, NonInviteClientTransaction)):
            if self._client_index.get(txn.key) is txn:
                del self._client_index[txn.key]
        elif self._server_index.get(txn.key) is txn:
            del self._server_index[txn.key]
        elif txn.key in self._server_2543:
            bucket = self._server_2543[txn.key]
            bucket[:] = [other for other in bucket if other is not txn]
            if not bucket:
                del self._server_2543[txn.key]
        self._disarm_all(txn)
        self._events.append(TransactionTerminated(transaction_id=txn.id))
