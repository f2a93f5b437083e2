"""The I/O boundary the allocator and the built-in focus share.

Both servers own a transaction layer, an outbox and an event queue, and
take the same three inputs (aioquic's ``QuicConnection`` shape): datagrams,
the clock, API calls.  What happens at that boundary is the same for both,
word for word: a datagram is parsed, or reported and, when it can be, answered
400 without reaching the server; what goes out is the transaction layer's
messages plus the server's own; the next deadline is the earlier of the
layer's and the server's.  :class:`SipCoreBase` is that boundary, written
once so that ``vidim.aio.SipServer`` drives either server the same way.  Each
server says what its messages mean (``receive``), what its own timers are
(``_next_own_timer``, ``handle_timer``) and how it reports input it ignores
(``_ignored``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from .sip import (
    Address,
    Message,
    Request,
    Response,
    SIPParseError,
    TransactionLayer,
    parse_message,
    salvage_response,
)

__all__ = ["RecordChange", "SipCoreBase"]

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class RecordChange:
    """A record a core changed: the state store writes it before the core's messages leave.

    Write-ahead: whoever sends a core's messages first stores its changes, so
    that nobody is told of a conference a restart would not know.
    """

    id: str
    #: Plain JSON data (the core's ``snapshot``); None: the record is gone.
    record: dict[str, Any] | None
    #: Secondary keys the store indexes, e.g. ``(("requester", "sip:alice@example.com"),)``.
    index: tuple[tuple[str, str], ...] = ()


class SipCoreBase(ABC, Generic[E]):
    """Transaction layer, outbox and events; unparsable input answered when possible."""

    #: Where a state store keeps this core's records ("allocator", "focus").
    namespace: ClassVar[str] = "core"

    _layer: TransactionLayer
    _outbox: list[tuple[Message, Address]]
    _events: deque[E]

    def _init_core(self, layer: TransactionLayer) -> None:
        self._layer = layer
        self._outbox = []
        self._events = deque()

    # -- what each server provides ------------------------------------------------------
    @abstractmethod
    def receive(self, message: Request | Response, source: Address, now: float) -> None:
        """Handle one parsed message."""

    @abstractmethod
    def handle_timer(self, now: float) -> None:
        """Fire whatever is due at ``now`` (the layer's timers and the server's own)."""

    @abstractmethod
    def _next_own_timer(self) -> float | None:
        """The server's earliest deadline beside the transaction layer's, or None."""

    @abstractmethod
    def _ignored(self, reason: str, summary: str) -> E:
        """The server's own "message ignored" event."""

    @abstractmethod
    def _warning_host(self) -> str:
        """The host named in the Warning header of a 400 to unparsable input."""

    @abstractmethod
    def _drain(self, now: float) -> None:
        """Handle the transaction layer's events queued so far."""

    # -- shared -------------------------------------------------------------------------
    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        """Parse and receive; what cannot be parsed is reported, never raised.

        A malformed request that can still be answered gets its 400 (or the
        status the parser suggests) with a Warning saying why.
        """
        try:
            message = parse_message(data)
        except SIPParseError as error:
            summary = data.split(b"\n", 1)[0][:80].decode("utf-8", "replace").strip()
            self._events.append(self._ignored(error.reason, summary))
            answer = salvage_response(data, error, warning_host=self._warning_host())
            if answer is not None:
                self._outbox.append((answer, source))
            return
        self.receive(message, source, now)

    def send_failed(self, message: Message, destination: Address, now: float) -> None:
        """The I/O layer could not send ``message`` to ``destination`` (no TCP connection).

        A request's client transaction fails with
        :class:`~vidim.sip.TransportFailed` (RFC 3261 section 8.1.3.1: as a
        503), which the server handles as it would a timeout; anything else
        (a response, an ACK) is left to the peer's retransmissions.
        """
        if isinstance(message, Request) and self._layer.report_send_failure(message, now):
            self._drain(now)

    def has_pending_work(self) -> bool:
        """True while a transaction still waits for an answer (see the transaction layer)."""
        return self._layer.has_pending_work()

    def get_timer(self) -> float | None:
        """The earliest deadline at which ``handle_timer`` must be called, or None."""
        deadlines = [d for d in (self._layer.get_timer(), self._next_own_timer()) if d is not None]
        return min(deadlines, default=None)

    def messages_to_send(self) -> list[tuple[Message, Address]]:
        """Return and forget the messages to send, with their destinations."""
        self._outbox.extend(self._layer.messages_to_send())
        out, self._outbox = self._outbox, []
        return out

    def record_changes(self) -> None:
        """Keep, from now on, the changes :meth:`take_changes` returns.

        Off until called, so that an application without a state store does not
        keep a list of changes nobody takes.  A store calls it before restoring
        records: what a restored conference then does is recorded too.
        """

    def note_all_changed(self) -> None:
        """Have :meth:`take_changes` return every live record (a store that lost them)."""

    def take_changes(self) -> list[RecordChange]:
        """Return and forget the records changed since the last call (none: no state to keep)."""
        return []

    def next_event(self) -> E | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[E]:
        """Return and forget every event not yet taken, oldest first."""
        out = list(self._events)
        self._events.clear()
        return out
