"""The transaction layer: RFC 3261 section 17, with RFC 6026's correction.

Rule 1: everything that decides how a transaction moves lives in the four
``TRANSITIONS`` tables below, keyed by ``(state, input)`` in the manner of
h2's ``_transitions``.  Each row gives the target state and the side effect
(a method of the transaction) that runs on the way.  The tables are plain
data: :func:`describe_transitions` turns one into rows for documentation.

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

from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import Enum
from sys import intern
from typing import Any, ClassVar, Final, Generic, NewType, TypeVar, cast

from .errors import LocalProtocolError, SIPParseError
from .headers import Headers, Via, split_list
from .ids import new_tag
from .message import Message, Request, Response, make_response
from .value import FieldRecord

__all__ = [
    "RELIABLE_TRANSPORTS",
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
RELIABLE_TRANSPORTS: Final = frozenset(("TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"))

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

    @property
    def reliable(self) -> bool:
        """True for TCP, TLS, SCTP and WebSocket transports."""
        transport = self.transport
        return transport != "UDP" and transport.upper() in RELIABLE_TRANSPORTS


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


class Event(FieldRecord):
    """Base class of everything :meth:`TransactionLayer.next_event` returns.

    Events are plain classes with a keyword-only constructor of their own
    (``==``, ``hash`` and ``repr`` as the frozen dataclasses they were): compiled
    by mypyc, making one is a direct call, where a dataclass's generated
    ``__init__`` runs as Python.  Treat them as read-only.
    """

    __slots__ = ()


class RequestReceived(Event):
    """A new request arrived and a server transaction was created for it.

    Answer it with :meth:`TransactionLayer.send_response`.
    """

    __slots__ = ("request", "source", "transaction_id")

    request: Request
    """The request."""
    source: Address
    """Where it came from; responses go back there."""
    transaction_id: TransactionId
    """The server transaction."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("request", "source", "transaction_id")

    def __init__(self, *, request: Request, source: Address, transaction_id: TransactionId) -> None:
        self.request = request
        self.source = source
        self.transaction_id = transaction_id


class ResponseReceived(Event):
    """A response for one of our client transactions.

    For INVITE, retransmissions of 2xx (and 2xx from other forks) are passed
    up too (RFC 6026): the TU sends the ACK for each, with
    :meth:`TransactionLayer.send_stateless`.
    """

    __slots__ = ("response", "transaction_id")

    response: Response
    """The response."""
    transaction_id: TransactionId
    """The client transaction."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("response", "transaction_id")

    def __init__(self, *, response: Response, transaction_id: TransactionId) -> None:
        self.response = response
        self.transaction_id = transaction_id


class AckReceived(Event):
    """An ACK for a 2xx: it belongs to no transaction, so the TU handles it."""

    __slots__ = ("request", "source")

    request: Request
    """The ACK."""
    source: Address
    """Where it came from."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("request", "source")

    def __init__(self, *, request: Request, source: Address) -> None:
        self.request = request
        self.source = source


class RequestCancelled(Event):
    """A CANCEL matched a server INVITE transaction that has no final response yet.

    The layer has already answered the CANCEL with 200; the TU should now
    answer the INVITE with 487 (RFC 3261 section 9.2).
    """

    __slots__ = ("request", "transaction_id")

    transaction_id: TransactionId
    """The INVITE server transaction."""
    request: Request
    """The CANCEL."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("transaction_id", "request")

    def __init__(self, *, transaction_id: TransactionId, request: Request) -> None:
        self.transaction_id = transaction_id
        self.request = request


class TransactionTimedOut(Event):
    """A transaction gave up: Timer B, F or H fired, or a CANCEL went unanswered."""

    __slots__ = ("request", "status_hint", "transaction_id")

    transaction_id: TransactionId
    """The transaction."""
    request: Request
    """The request of the transaction."""
    status_hint: int
    """The status to act as if received: 408, or 487 for a cancelled INVITE."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("transaction_id", "request", "status_hint")

    def __init__(
        self, *, transaction_id: TransactionId, request: Request, status_hint: int = 408
    ) -> None:
        self.transaction_id = transaction_id
        self.request = request
        self.status_hint = status_hint


class TransportFailed(Event):
    """The TU reported a transport error (RFC 3261 sections 8.1.3.1 and 17.1.4)."""

    __slots__ = ("request", "status_hint", "transaction_id")

    transaction_id: TransactionId
    """The transaction."""
    request: Request | None
    """The request of the transaction.

    None when a server transaction fails after its final response: by then it
    keeps only that response (see :attr:`Transaction.request <_Transaction.request>`).
    """
    status_hint: int
    """The status to act as if received."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("transaction_id", "request", "status_hint")

    def __init__(
        self, *, transaction_id: TransactionId, request: Request | None, status_hint: int = 503
    ) -> None:
        self.transaction_id = transaction_id
        self.request = request
        self.status_hint = status_hint


class TransactionTerminated(Event):
    """A transaction reached Terminated and left the layer; its id is now unknown."""

    __slots__ = ("transaction_id",)

    transaction_id: TransactionId
    """The transaction."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("transaction_id",)

    def __init__(self, *, transaction_id: TransactionId) -> None:
        self.transaction_id = transaction_id


class MessageDiscarded(Event):
    """A received message was dropped: stray, not ours, or not allowed now.

    Purely diagnostic: the RFC says to drop these silently.
    """

    __slots__ = ("message", "reason")

    message: Message
    """The message."""
    reason: str
    """Why."""

    _FIELDS: ClassVar[tuple[str, ...]] = ("message", "reason")

    def __init__(self, *, message: Message, reason: str) -> None:
        self.message = message
        self.reason = reason


# -- the state machines -----------------------------------------------------------


class TransactionInput(Enum):
    """What can happen to a transaction: the second half of a table key."""

    __hash__ = object.__hash__  # members are singletons: C-level hash for the table lookups

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


_I = TransactionInput
#: Inputs that come from the TU: a missing table row for them is API misuse.
_LOCAL_INPUTS = frozenset((_I.SEND_1XX, _I.SEND_2XX, _I.SEND_3XX_6XX, _I.CANCEL))


class InviteClientState(Enum):
    """RFC 3261 Figure 5, with RFC 6026's Accepted state."""

    __hash__ = object.__hash__  # members are singletons: C-level hash for the table lookups

    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class NonInviteClientState(Enum):
    """RFC 3261 Figure 6."""

    __hash__ = object.__hash__  # members are singletons: C-level hash for the table lookups

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class InviteServerState(Enum):
    """RFC 3261 Figure 7, with RFC 6026's Accepted state."""

    __hash__ = object.__hash__  # members are singletons: C-level hash for the table lookups

    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class NonInviteServerState(Enum):
    """RFC 3261 Figure 8."""

    __hash__ = object.__hash__  # members are singletons: C-level hash for the table lookups

    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


#: A side effect: an unbound transaction method taking ``(now, message)``.
_Action = Callable[[Any, float, Message | None], None]
_Key = tuple[Hashable, ...]
#: The state enum of one machine (erased by mypyc: a subclass may not narrow
#: an inherited attribute's type, a type parameter may).
_StateT = TypeVar("_StateT", bound=Enum)
#: The tables, filled in after their classes (their rows name the classes' methods).
_TableDict = dict[tuple[Enum, TransactionInput], tuple[Enum, _Action | None]]
_INVITE_CLIENT: Final[_TableDict] = {}
_ICS = InviteClientState
_NON_INVITE_CLIENT: Final[_TableDict] = {}
_NCS = NonInviteClientState
_INVITE_SERVER: Final[_TableDict] = {}
_ISS = InviteServerState
_NON_INVITE_SERVER: Final[_TableDict] = {}
_NSS = NonInviteServerState


# Members as constants: mypyc reads a Final from a C global, not an Enum class attribute.
_CANCEL: Final[TransactionInput] = TransactionInput.CANCEL
_RECV_1XX: Final[TransactionInput] = TransactionInput.RECV_1XX
_RECV_2XX: Final[TransactionInput] = TransactionInput.RECV_2XX
_RECV_3XX_6XX: Final[TransactionInput] = TransactionInput.RECV_3XX_6XX
_RECV_ACK: Final[TransactionInput] = TransactionInput.RECV_ACK
_RECV_REQUEST: Final[TransactionInput] = TransactionInput.RECV_REQUEST
_SEND_1XX: Final[TransactionInput] = TransactionInput.SEND_1XX
_SEND_2XX: Final[TransactionInput] = TransactionInput.SEND_2XX
_SEND_3XX_6XX: Final[TransactionInput] = TransactionInput.SEND_3XX_6XX
_TIMER_A: Final[TransactionInput] = TransactionInput.TIMER_A
_TIMER_B: Final[TransactionInput] = TransactionInput.TIMER_B
_TIMER_CANCEL: Final[TransactionInput] = TransactionInput.TIMER_CANCEL
_TIMER_D: Final[TransactionInput] = TransactionInput.TIMER_D
_TIMER_E: Final[TransactionInput] = TransactionInput.TIMER_E
_TIMER_F: Final[TransactionInput] = TransactionInput.TIMER_F
_TIMER_G: Final[TransactionInput] = TransactionInput.TIMER_G
_TIMER_H: Final[TransactionInput] = TransactionInput.TIMER_H
_TIMER_I: Final[TransactionInput] = TransactionInput.TIMER_I
_TIMER_J: Final[TransactionInput] = TransactionInput.TIMER_J
_TIMER_K: Final[TransactionInput] = TransactionInput.TIMER_K
_TIMER_L: Final[TransactionInput] = TransactionInput.TIMER_L
_TIMER_M: Final[TransactionInput] = TransactionInput.TIMER_M
_TRANSPORT_ERROR: Final[TransactionInput] = TransactionInput.TRANSPORT_ERROR
_IC_ACCEPTED: Final[InviteClientState] = InviteClientState.ACCEPTED
_IC_CALLING: Final[InviteClientState] = InviteClientState.CALLING
_IC_COMPLETED: Final[InviteClientState] = InviteClientState.COMPLETED
_IC_PROCEEDING: Final[InviteClientState] = InviteClientState.PROCEEDING
_IC_TERMINATED: Final[InviteClientState] = InviteClientState.TERMINATED
_IS_COMPLETED: Final[InviteServerState] = InviteServerState.COMPLETED
_IS_PROCEEDING: Final[InviteServerState] = InviteServerState.PROCEEDING
_IS_TERMINATED: Final[InviteServerState] = InviteServerState.TERMINATED
_NC_PROCEEDING: Final[NonInviteClientState] = NonInviteClientState.PROCEEDING
_NC_TERMINATED: Final[NonInviteClientState] = NonInviteClientState.TERMINATED
_NC_TRYING: Final[NonInviteClientState] = NonInviteClientState.TRYING
_NS_PROCEEDING: Final[NonInviteServerState] = NonInviteServerState.PROCEEDING
_NS_TERMINATED: Final[NonInviteServerState] = NonInviteServerState.TERMINATED
_NS_TRYING: Final[NonInviteServerState] = NonInviteServerState.TRYING
#: The final state of each machine.
_TERMINATED_STATES: Final = frozenset(
    (_IC_TERMINATED, _NC_TERMINATED, _IS_TERMINATED, _NS_TERMINATED)
)

#: The timers, by the index a timer queue entry holds in its code's low bits.
_TIMERS: Final[tuple[TransactionInput, ...]] = (
    _TIMER_A,
    _TIMER_B,
    _TIMER_CANCEL,
    _TIMER_D,
    _TIMER_E,
    _TIMER_F,
    _TIMER_G,
    _TIMER_H,
    _TIMER_I,
    _TIMER_J,
    _TIMER_K,
    _TIMER_L,
    _TIMER_M,
)
_TIMER_INDEX: Final[dict[TransactionInput, int]] = {timer: i for i, timer in enumerate(_TIMERS)}
#: An entry's code is ``generation << _GEN_SHIFT | index`` (see _TimerQueue).
_GEN_SHIFT: Final = 4
_INDEX_MASK: Final = (1 << _GEN_SHIFT) - 1


class _TimerQueue:
    """The timer entries of one duration, in deadline order, as three parallel deques.

    An entry is (deadline, transaction id, code), where the code is the
    transaction's timer generation when it was armed, shifted, and the timer's
    index in ``_TIMERS``: a small int, shared by CPython.  Three deques of
    pointers rather than one of tuples: no tuple and no boxed sequence number
    per entry, about 60 bytes an entry instead of 150 (the entries of cancelled
    Timers B and F stay until their deadline, 32 s).
    """

    __slots__ = ("codes", "deadlines", "tids")

    def __init__(self) -> None:
        self.deadlines: deque[float] = deque()
        self.tids: deque[TransactionId] = deque()
        self.codes: deque[int] = deque()

    def __len__(self) -> int:
        return len(self.deadlines)

    def push(self, deadline: float, tid: TransactionId, code: int) -> None:
        deadlines = self.deadlines
        if deadlines and deadline < deadlines[-1]:
            # The clock went back (a caller's virtual clock): keep the queue sorted.
            i = bisect_right(deadlines, deadline)
            deadlines.insert(i, deadline)
            self.tids.insert(i, tid)
            self.codes.insert(i, code)
        else:
            deadlines.append(deadline)
            self.tids.append(tid)
            self.codes.append(code)

    def pop(self) -> None:
        self.deadlines.popleft()
        self.tids.popleft()
        self.codes.popleft()


class _Transaction(Generic[_StateT]):
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

    __slots__ = ("_gen", "_layer", "id", "key", "peer", "reliable", "request", "state")

    TRANSITIONS: ClassVar[_TableDict]
    TERMINATED: ClassVar[Enum]

    state: _StateT

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
        state: _StateT,
    ) -> None:
        self._layer = layer
        #: The timer generation: a timer queue entry of this transaction is live
        #: when it was armed in this one (stopping every timer starts the next);
        #: an entry that fired has left its queue.  One int, not a table of
        #: armed timers: no transaction has two armed timers of one kind.
        self._gen = 0
        self.id = transaction_id
        #: The index key this transaction is matched by.
        self.key = key
        #: Client: the destination.  Server: the source of the request.
        self.peer = peer
        self.reliable = reliable
        self.request: Request | None = request
        self.state = state

    def __repr__(self) -> str:
        method = self.key[3] if isinstance(self, _ServerBase) else self.key[1]
        return f"<{type(self).__name__} {self.id} {method} {self.state.value}>"

    def _apply(self, event: TransactionInput, now: float, message: Message | None) -> bool:
        """Run one table row; False when the table has none for (state, event)."""
        row = self.TRANSITIONS.get((self.state, event))
        if row is None:
            return False
        target, action = row
        self.state = cast(_StateT, target)
        if action is not None:
            action(self, now, message)
        # Ids are never reused: the id is still in the table until _remove.
        if target in _TERMINATED_STATES and self.id in self._layer._transactions:
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


class _ClientBase(_Transaction[_StateT]):
    __slots__ = ("_interval",)

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
        state: _StateT,
    ) -> None:
        super().__init__(layer, transaction_id, request, peer, reliable, key, state)
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


class InviteClientTransaction(_ClientBase[InviteClientState]):
    """RFC 3261 section 17.1.1 as updated by RFC 6026 section 7.2."""

    __slots__ = ("_ack", "_cancel_id", "_cancel_pending")

    TERMINATED: ClassVar[Enum] = _IC_TERMINATED

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
    ) -> None:
        super().__init__(layer, transaction_id, request, peer, reliable, key, _IC_CALLING)
        self._ack: Request | None = None
        #: The id given to the CANCEL by TransactionLayer.cancel, if any.
        self._cancel_id: TransactionId | None = None
        #: cancel() was called before any provisional response arrived.
        self._cancel_pending = False

    def _start(self, now: float) -> None:
        self._resend()
        if not self.reliable:
            self._layer._arm(self, _TIMER_A, now, self._interval)
        self._layer._arm(self, _TIMER_B, now, 64 * self._layer.config.t1)

    def _retransmit(self, now: float, message: Message | None) -> None:
        """Timer A: resend the INVITE and double the interval (no cap)."""
        self._resend()
        self._interval *= 2
        self._layer._arm(self, _TIMER_A, now, self._interval)

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
        self._start_timer(_TIMER_M, 64 * self._layer.config.t1, now)

    def _on_failure(self, now: float, message: Message | None) -> None:
        """300-699: send the ACK (section 17.1.1.3), pass it up, start Timer D."""
        assert isinstance(message, Response)
        self._stop_timers()
        self._drop_pending_cancel()
        self._ack = self._build_ack(message)
        self.request = None  # Completed resends the ACK; it never sends the INVITE again
        self._send(self._ack)
        self._pass_up(now, message)
        self._start_timer(_TIMER_D, 0.0 if self.reliable else self._layer.config.timer_d, now)

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

    TRANSITIONS: ClassVar[_TableDict] = _INVITE_CLIENT


_ICT = InviteClientTransaction
_INVITE_CLIENT.update(
    {
        (_ICS.CALLING, _I.TIMER_A): (_ICS.CALLING, _ICT._retransmit),
        (_ICS.CALLING, _I.TIMER_B): (_ICS.TERMINATED, _Transaction._timed_out),
        (_ICS.CALLING, _I.RECV_1XX): (_ICS.PROCEEDING, _ICT._on_provisional),
        (_ICS.CALLING, _I.RECV_2XX): (_ICS.ACCEPTED, _ICT._on_2xx),
        (_ICS.CALLING, _I.RECV_3XX_6XX): (_ICS.COMPLETED, _ICT._on_failure),
        (_ICS.CALLING, _I.CANCEL): (_ICS.CALLING, _ICT._hold_cancel),
        (_ICS.CALLING, _I.TRANSPORT_ERROR): (_ICS.TERMINATED, _Transaction._transport_failed),
        (_ICS.PROCEEDING, _I.RECV_1XX): (_ICS.PROCEEDING, _ClientBase._pass_up),
        (_ICS.PROCEEDING, _I.RECV_2XX): (_ICS.ACCEPTED, _ICT._on_2xx),
        (_ICS.PROCEEDING, _I.RECV_3XX_6XX): (_ICS.COMPLETED, _ICT._on_failure),
        (_ICS.PROCEEDING, _I.CANCEL): (_ICS.PROCEEDING, _ICT._send_cancel),
        (_ICS.PROCEEDING, _I.TIMER_CANCEL): (_ICS.TERMINATED, _ICT._cancel_timed_out),
        (_ICS.PROCEEDING, _I.TRANSPORT_ERROR): (_ICS.TERMINATED, _Transaction._transport_failed),
        (_ICS.COMPLETED, _I.RECV_3XX_6XX): (_ICS.COMPLETED, _ICT._resend_ack),
        (_ICS.COMPLETED, _I.CANCEL): (_ICS.COMPLETED, None),
        (_ICS.COMPLETED, _I.TIMER_D): (_ICS.TERMINATED, None),
        (_ICS.COMPLETED, _I.TRANSPORT_ERROR): (_ICS.TERMINATED, None),
        (_ICS.ACCEPTED, _I.RECV_2XX): (_ICS.ACCEPTED, _ClientBase._pass_up),
        (_ICS.ACCEPTED, _I.CANCEL): (_ICS.ACCEPTED, None),
        (_ICS.ACCEPTED, _I.TIMER_M): (_ICS.TERMINATED, None),
        (_ICS.ACCEPTED, _I.TRANSPORT_ERROR): (_ICS.TERMINATED, None),
    }
)


class NonInviteClientTransaction(_ClientBase[NonInviteClientState]):
    """RFC 3261 section 17.1.2."""

    __slots__ = ()

    TERMINATED: ClassVar[Enum] = _NC_TERMINATED

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
    ) -> None:
        super().__init__(layer, transaction_id, request, peer, reliable, key, _NC_TRYING)

    def _start(self, now: float) -> None:
        self._resend()
        if not self.reliable:
            self._layer._arm(self, _TIMER_E, now, self._interval)
        self._layer._arm(self, _TIMER_F, now, 64 * self._layer.config.t1)

    def _retransmit(self, now: float, message: Message | None) -> None:
        """Timer E: resend; the interval doubles up to T2, and is T2 in Proceeding."""
        self._resend()
        t2 = self._layer.config.t2
        if self.state is _NC_PROCEEDING:
            self._interval = t2
        else:
            self._interval = min(2 * self._interval, t2)
        self._layer._arm(self, _TIMER_E, now, self._interval)

    def _on_final(self, now: float, message: Message | None) -> None:
        """200-699: pass it up, then absorb retransmissions until Timer K."""
        self._stop_timers()
        self.request = None  # Completed only absorbs retransmitted responses
        self._pass_up(now, message)
        self._start_timer(_TIMER_K, 0.0 if self.reliable else self._layer.config.t4, now)

    TRANSITIONS: ClassVar[_TableDict] = _NON_INVITE_CLIENT


_NCT = NonInviteClientTransaction
_NON_INVITE_CLIENT.update(
    {
        (_NCS.TRYING, _I.TIMER_E): (_NCS.TRYING, _NCT._retransmit),
        (_NCS.TRYING, _I.TIMER_F): (_NCS.TERMINATED, _Transaction._timed_out),
        (_NCS.TRYING, _I.RECV_1XX): (_NCS.PROCEEDING, _ClientBase._pass_up),
        (_NCS.TRYING, _I.RECV_2XX): (_NCS.COMPLETED, _NCT._on_final),
        (_NCS.TRYING, _I.RECV_3XX_6XX): (_NCS.COMPLETED, _NCT._on_final),
        (_NCS.TRYING, _I.TRANSPORT_ERROR): (_NCS.TERMINATED, _Transaction._transport_failed),
        (_NCS.PROCEEDING, _I.TIMER_E): (_NCS.PROCEEDING, _NCT._retransmit),
        (_NCS.PROCEEDING, _I.TIMER_F): (_NCS.TERMINATED, _Transaction._timed_out),
        (_NCS.PROCEEDING, _I.RECV_1XX): (_NCS.PROCEEDING, _ClientBase._pass_up),
        (_NCS.PROCEEDING, _I.RECV_2XX): (_NCS.COMPLETED, _NCT._on_final),
        (_NCS.PROCEEDING, _I.RECV_3XX_6XX): (_NCS.COMPLETED, _NCT._on_final),
        (_NCS.PROCEEDING, _I.TRANSPORT_ERROR): (_NCS.TERMINATED, _Transaction._transport_failed),
        (_NCS.COMPLETED, _I.RECV_2XX): (_NCS.COMPLETED, None),
        (_NCS.COMPLETED, _I.RECV_3XX_6XX): (_NCS.COMPLETED, None),
        (_NCS.COMPLETED, _I.TIMER_K): (_NCS.TERMINATED, None),
        (_NCS.COMPLETED, _I.TRANSPORT_ERROR): (_NCS.TERMINATED, None),
    }
)


class _ServerBase(_Transaction[_StateT]):
    __slots__ = ("last_response",)

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
        state: _StateT,
    ) -> None:
        super().__init__(layer, transaction_id, request, peer, reliable, key, state)
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


class InviteServerTransaction(_ServerBase[InviteServerState]):
    """RFC 3261 section 17.2.1 as updated by RFC 6026 section 7.1."""

    __slots__ = ("_interval",)

    TERMINATED: ClassVar[Enum] = _IS_TERMINATED

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
    ) -> None:
        super().__init__(layer, transaction_id, request, peer, reliable, key, _IS_PROCEEDING)
        self._interval = layer.config.t1

    def _respond_2xx(self, now: float, message: Message | None) -> None:
        """Send the 2xx; RFC 6026 keeps the transaction 64*T1 (Timer L)."""
        self._respond(now, message)
        self._let_go_of_request()
        self._start_timer(_TIMER_L, 64 * self._layer.config.t1, now)

    def _respond_failure(self, now: float, message: Message | None) -> None:
        """Send 300-699 and wait for the ACK: Timer G resends, Timer H gives up."""
        self._respond(now, message)
        if not self.reliable:
            self._layer._arm(self, _TIMER_G, now, self._interval)
        self._layer._arm(self, _TIMER_H, now, 64 * self._layer.config.t1)

    def _retransmit(self, now: float, message: Message | None) -> None:
        """Timer G: resend the final response, doubling the interval up to T2."""
        self._resend_last(now, message)
        self._interval = min(2 * self._interval, self._layer.config.t2)
        self._layer._arm(self, _TIMER_G, now, self._interval)

    def _on_ack(self, now: float, message: Message | None) -> None:
        """The ACK for our 300-699: absorb further ACKs until Timer I."""
        self._stop_timers()
        self._let_go_of_request()
        self._start_timer(_TIMER_I, 0.0 if self.reliable else self._layer.config.t4, now)

    def _pass_ack(self, now: float, message: Message | None) -> None:
        """An ACK matching the transaction in Accepted goes to the TU (RFC 6026)."""
        assert isinstance(message, Request)
        self._layer._events.append(AckReceived(request=message, source=self._layer._source))

    TRANSITIONS: ClassVar[_TableDict] = _INVITE_SERVER


_IST = InviteServerTransaction
_INVITE_SERVER.update(
    {
        (_ISS.PROCEEDING, _I.RECV_REQUEST): (_ISS.PROCEEDING, _ServerBase._resend_last),
        (_ISS.PROCEEDING, _I.SEND_1XX): (_ISS.PROCEEDING, _ServerBase._respond),
        (_ISS.PROCEEDING, _I.SEND_2XX): (_ISS.ACCEPTED, _IST._respond_2xx),
        (_ISS.PROCEEDING, _I.SEND_3XX_6XX): (_ISS.COMPLETED, _IST._respond_failure),
        (_ISS.PROCEEDING, _I.TRANSPORT_ERROR): (_ISS.TERMINATED, _Transaction._transport_failed),
        (_ISS.COMPLETED, _I.RECV_REQUEST): (_ISS.COMPLETED, _ServerBase._resend_last),
        (_ISS.COMPLETED, _I.RECV_ACK): (_ISS.CONFIRMED, _IST._on_ack),
        (_ISS.COMPLETED, _I.TIMER_G): (_ISS.COMPLETED, _IST._retransmit),
        (_ISS.COMPLETED, _I.TIMER_H): (_ISS.TERMINATED, _Transaction._timed_out),
        (_ISS.COMPLETED, _I.TRANSPORT_ERROR): (_ISS.TERMINATED, _Transaction._transport_failed),
        (_ISS.CONFIRMED, _I.RECV_REQUEST): (_ISS.CONFIRMED, None),
        (_ISS.CONFIRMED, _I.RECV_ACK): (_ISS.CONFIRMED, None),
        (_ISS.CONFIRMED, _I.TIMER_I): (_ISS.TERMINATED, None),
        (_ISS.CONFIRMED, _I.TRANSPORT_ERROR): (_ISS.TERMINATED, None),
        (_ISS.ACCEPTED, _I.RECV_REQUEST): (_ISS.ACCEPTED, None),
        (_ISS.ACCEPTED, _I.RECV_ACK): (_ISS.ACCEPTED, _IST._pass_ack),
        (_ISS.ACCEPTED, _I.SEND_2XX): (_ISS.ACCEPTED, _ServerBase._respond),
        (_ISS.ACCEPTED, _I.TIMER_L): (_ISS.TERMINATED, None),
        (_ISS.ACCEPTED, _I.TRANSPORT_ERROR): (_ISS.TERMINATED, None),
    }
)


class NonInviteServerTransaction(_ServerBase[NonInviteServerState]):
    """RFC 3261 section 17.2.2."""

    __slots__ = ()

    TERMINATED: ClassVar[Enum] = _NS_TERMINATED

    def __init__(
        self,
        layer: TransactionLayer,
        transaction_id: TransactionId,
        request: Request,
        peer: Address,
        reliable: bool,
        key: _Key,
    ) -> None:
        super().__init__(layer, transaction_id, request, peer, reliable, key, _NS_TRYING)

    def _respond_final(self, now: float, message: Message | None) -> None:
        """Send the final response; absorb request retransmissions until Timer J."""
        self._respond(now, message)
        self._let_go_of_request()
        delay = 0.0 if self.reliable else 64 * self._layer.config.t1
        self._start_timer(_TIMER_J, delay, now)

    TRANSITIONS: ClassVar[_TableDict] = _NON_INVITE_SERVER


_NST = NonInviteServerTransaction
_NON_INVITE_SERVER.update(
    {
        (_NSS.TRYING, _I.RECV_REQUEST): (_NSS.TRYING, None),
        (_NSS.TRYING, _I.SEND_1XX): (_NSS.PROCEEDING, _ServerBase._respond),
        (_NSS.TRYING, _I.SEND_2XX): (_NSS.COMPLETED, _NST._respond_final),
        (_NSS.TRYING, _I.SEND_3XX_6XX): (_NSS.COMPLETED, _NST._respond_final),
        (_NSS.TRYING, _I.TRANSPORT_ERROR): (_NSS.TERMINATED, _Transaction._transport_failed),
        (_NSS.PROCEEDING, _I.RECV_REQUEST): (_NSS.PROCEEDING, _ServerBase._resend_last),
        (_NSS.PROCEEDING, _I.SEND_1XX): (_NSS.PROCEEDING, _ServerBase._respond),
        (_NSS.PROCEEDING, _I.SEND_2XX): (_NSS.COMPLETED, _NST._respond_final),
        (_NSS.PROCEEDING, _I.SEND_3XX_6XX): (_NSS.COMPLETED, _NST._respond_final),
        (_NSS.PROCEEDING, _I.TRANSPORT_ERROR): (_NSS.TERMINATED, _Transaction._transport_failed),
        (_NSS.COMPLETED, _I.RECV_REQUEST): (_NSS.COMPLETED, _ServerBase._resend_last),
        (_NSS.COMPLETED, _I.TIMER_J): (_NSS.TERMINATED, None),
        (_NSS.COMPLETED, _I.TRANSPORT_ERROR): (_NSS.TERMINATED, _Transaction._transport_failed),
    }
)


ClientTransaction = InviteClientTransaction | NonInviteClientTransaction
ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
Transaction = ClientTransaction | ServerTransaction

_MACHINES: tuple[type[_Transaction[Any]], ...] = (
    InviteClientTransaction,
    NonInviteClientTransaction,
    InviteServerTransaction,
    NonInviteServerTransaction,
)


#: The first line of each side effect's docstring, for describe_transitions (mypyc
#: keeps no docstrings; tests/sip/test_transaction_machines.py checks they agree).
_EFFECTS: Final[dict[_Action, str]] = {
    _ICT._retransmit: "Timer A: resend the INVITE and double the interval (no cap).",
    _Transaction._timed_out: "Tell the TU the transaction failed with a timeout (408).",
    _ICT._on_provisional: "First 1xx: stop retransmitting, pass it up, send a CANCEL held back.",
    _ICT._on_2xx: "2xx: pass it up and wait 64*T1 for its retransmissions (Timer M).",
    _ICT._on_failure: "300-699: send the ACK (section 17.1.1.3), pass it up, start Timer D.",
    _ICT._hold_cancel: "No provisional response yet: the CANCEL waits for one (section 9.1).",
    _Transaction._transport_failed: "Tell the TU the transport failed (503).",
    _ClientBase._pass_up: "Hand the response to the TU.",
    _ICT._send_cancel: "Start the CANCEL's own client transaction.",
    _ICT._cancel_timed_out: (
        "No final response 64*T1 after the CANCEL: consider the INVITE cancelled."
    ),
    _ICT._resend_ack: "A retransmitted final response: absorb it and resend the ACK.",
    _NCT._retransmit: "Timer E: resend; the interval doubles up to T2, and is T2 in Proceeding.",
    _NCT._on_final: "200-699: pass it up, then absorb retransmissions until Timer K.",
    _ServerBase._resend_last: "A retransmitted request: resend the last response, if any.",
    _ServerBase._respond: "Send the TU's response and remember it.",
    _IST._respond_2xx: "Send the 2xx; RFC 6026 keeps the transaction 64*T1 (Timer L).",
    _IST._respond_failure: "Send 300-699 and wait for the ACK: Timer G resends, Timer H gives up.",
    _IST._on_ack: "The ACK for our 300-699: absorb further ACKs until Timer I.",
    _IST._retransmit: "Timer G: resend the final response, doubling the interval up to T2.",
    _IST._pass_ack: "An ACK matching the transaction in Accepted goes to the TU (RFC 6026).",
    _NST._respond_final: "Send the final response; absorb request retransmissions until Timer J.",
}


def describe_transitions(machine: type[_Transaction[Any]]) -> list[tuple[str, str, str, str]]:
    """Rows ``(state, input, target, effect)`` of a machine's table, for documentation.

    ``effect`` is the first line of the side effect's docstring, or ``""``.
    """
    rows = []
    for (state, event), (target, action) in machine.TRANSITIONS.items():
        doc = _EFFECTS[action] if action is not None else ""
        rows.append((str(state.value), str(event.value), str(target.value), doc))
    return rows


# -- the layer ---------------------------------------------------------------------


def _stamp_top_via(request: Request, source: Address) -> None:
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
    request.headers._cache["via"] = stamped_via  # what parsing the new top Via gives


def _status_input(status: int, *, local: bool) -> TransactionInput:
    if status < 200:
        return _SEND_1XX if local else _RECV_1XX
    if status < 300:
        return _SEND_2XX if local else _RECV_2XX
    return _SEND_3XX_6XX if local else _RECV_3XX_6XX


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
        # Timers, as (deadline, transaction id, timer code) entries in one
        # FIFO queue per duration (see _TimerQueue).  RFC 3261's timers have a handful of
        # durations (T1 doublings, T2, T4, 64*T1), and the entries of one
        # duration are armed in deadline order: arming and firing are O(1),
        # with no heap to sift, nor to rebuild (a rebuild of a heap of 100,000
        # mostly cancelled entries was a pause of tens of ms under load).
        # Entries are deleted lazily: an entry is live only while its
        # transaction is and is still in the timer generation the entry was
        # armed in (stopping a transaction's timers starts its next one); a
        # dead one is dropped when it reaches the head of its queue, by its
        # deadline at the latest.  An entry that fires leaves its queue.  An
        # entry holds the id, not the transaction, so that it keeps no
        # terminated transaction (and its request) alive.  Equal deadlines
        # fire in the order of their queue, and across queues the older
        # transaction's first.
        self._queues: dict[float, _TimerQueue] = {}
        self._next_id = 0
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
        waiting = {
            _IC_CALLING,
            _IC_PROCEEDING,
            _NC_TRYING,
            _NC_PROCEEDING,
            _IS_PROCEEDING,
            _IS_COMPLETED,
            _NS_TRYING,
            _NS_PROCEEDING,
        }
        return any(txn.state in waiting for txn in self._transactions.values())

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
        transactions = self._transactions
        earliest: float | None = None
        for queue in self._queues.values():
            deadlines = queue.deadlines
            while deadlines:
                txn = transactions.get(queue.tids[0])
                if txn is not None and queue.codes[0] >> _GEN_SHIFT == txn._gen:
                    deadline = deadlines[0]
                    if earliest is None or deadline < earliest:
                        earliest = deadline
                    break
                queue.pop()
        return earliest

    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline is at or before ``now``, earliest first."""
        transactions = self._transactions
        queues = self._queues
        while True:
            due: _TimerQueue | None = None
            first = 0.0
            first_tid = 0
            for queue in queues.values():
                deadlines = queue.deadlines
                if deadlines:
                    deadline = deadlines[0]
                    if deadline <= now and (
                        due is None
                        or deadline < first
                        or (deadline == first and queue.tids[0] < first_tid)
                    ):
                        due, first, first_tid = queue, deadline, queue.tids[0]
            if due is None:
                break
            tid = due.tids[0]
            code = due.codes[0]
            due.pop()
            txn = transactions.get(tid)
            if txn is None or code >> _GEN_SHIFT != txn._gen:
                continue  # terminated, or its timers stopped since
            txn._apply(_TIMERS[code & _INDEX_MASK], now, None)
        if not transactions and transactions is self._transactions:
            self._shrink()

    def _shrink(self) -> None:
        """Give back the tables of the last burst once every transaction has ended.

        A dict never shrinks: after a burst of, say, 100,000 transactions the
        empty tables would keep megabytes until the process ends.
        """
        self._transactions = {}
        self._client_index = {}
        self._server_index = {}
        self._server_2543 = {}

    def _arm(
        self, txn: _Transaction[Any], timer: TransactionInput, now: float, delay: float
    ) -> None:
        queue = self._queues.get(delay)
        if queue is None:
            queue = self._queues[delay] = _TimerQueue()
        queue.push(now + delay, txn.id, txn._gen << _GEN_SHIFT | _TIMER_INDEX[timer])

    def _disarm_all(self, txn: _Transaction[Any]) -> None:
        txn._gen += 1

    def _queued(self) -> list[tuple[float, TransactionId, TransactionInput, bool]]:
        """Every timer queue entry as (deadline, transaction, timer, live); for tests."""
        transactions = self._transactions
        entries = []
        for queue in self._queues.values():
            for deadline, tid, code in zip(queue.deadlines, queue.tids, queue.codes, strict=True):
                txn = transactions.get(tid)
                live = txn is not None and code >> _GEN_SHIFT == txn._gen
                entries.append((deadline, tid, _TIMERS[code & _INDEX_MASK], live))
        return entries

    def _armed_timers(self) -> dict[TransactionId, list[TransactionInput]]:
        """The live timers of every transaction, from the queues (for tests: O(entries))."""
        armed: dict[TransactionId, list[TransactionInput]] = {}
        for _, tid, timer, live in self._queued():
            if live:
                armed.setdefault(tid, []).append(timer)
        return armed

    # -- client side ---------------------------------------------------------------
    def send_request(
        self,
        request: Request,
        destination: Address,
        now: float,
        *,
        reliable: bool | None = None,
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
            via = request.top_via
            cseq = request.cseq
        except SIPParseError as exc:
            raise LocalProtocolError(f"cannot send this request: {exc.reason}") from None
        branch = via.branch
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
        if txn.state in (_IC_COMPLETED, _IC_ACCEPTED):
            txn._apply(_CANCEL, now, None)
            return None
        txn._cancel_id = self._new_id()
        txn._apply(_CANCEL, now, None)
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
        invite._start_timer(_TIMER_CANCEL, 64 * self.config.t1, now)

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
        return txn._apply(_TRANSPORT_ERROR, now, None)

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
                _stamp_top_via(message, source)
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
            elif not txn._apply(_RECV_ACK, now, request):
                self._discard(request, f"ACK not expected in {txn.state.value}")
            return
        txn = self._find_server(request, via, method)
        if txn is not None:
            # A retransmission: every state has a row for it.
            txn._apply(_RECV_REQUEST, now, request)
            return
        key: _Key
        if via.is_rfc3261_branch:
            # The key stays up to 32 s (Timer J): the sent-by host and the
            # method, which every request of a peer repeats, are shared texts.
            host, port = via.sent_by
            key = (via.branch, intern(host), port, intern(method))
        else:
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
            txn._apply(_SEND_1XX, now, make_response(request, 100, headers=headers))

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
        txn._apply(_SEND_2XX if target is not None else _SEND_3XX_6XX, now, response)
        if target is not None and target.state is _IS_PROCEEDING:
            self._events.append(RequestCancelled(transaction_id=target.id, request=cancel))

    # -- bookkeeping ---------------------------------------------------------------
    def _new_id(self) -> TransactionId:
        tid = TransactionId(self._next_id)
        self._next_id += 1
        return tid

    def _remove(self, txn: _Transaction[Any]) -> None:
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
