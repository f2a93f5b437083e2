"""What every vidim protocol core shares at its I/O boundary.

The allocator and the built-in focus both own a transaction layer, an
outbox and an event queue, and take the same three inputs (aioquic's
``QuicConnection`` shape): messages, the clock, API calls.  This base holds
the parts that are the same word for word; each core says what its own
timers are (``_next_own_timer``, ``handle_timer``) and how it reports input
it ignores (``_ignored``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

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

__all__ = ["SipCoreBase"]

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # no runtime dependency: only a build with mypyc reads the decorator
    if TYPE_CHECKING:
        from _typeshed import IdentityFunction

    def mypyc_attr(*attrs: str, **kwattrs: object) -> IdentityFunction:
        return lambda cls: cls


E = TypeVar("E")


# The built-in focus (vidim.focus, not compiled) derives from it too.
@mypyc_attr(allow_interpreted_subclasses=True)
class SipCoreBase(Generic[E]):
    """Transaction layer, outbox and events; unparsable input answered when possible."""

    _layer: TransactionLayer
    _outbox: list[tuple[Message, Address]]
    #: A list, not a deque: compiled, its append is a direct C call.
    _events: list[E]

    def _init_core(self, layer: TransactionLayer) -> None:
        self._layer = layer
        self._outbox = []
        self._events = []

    # -- what each core provides ---------------------------------------------------
    def receive(self, message: Request | Response, source: Address, now: float) -> None:
        raise NotImplementedError

    def _next_own_timer(self) -> float | None:
        raise NotImplementedError

    def _ignored(self, reason: str, summary: str) -> E:
        """The core's own "message ignored" event."""
        raise NotImplementedError

    def _warning_host(self) -> str:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------
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

    def has_pending_work(self) -> bool:
        """True while a transaction still waits for an answer (see the transaction layer)."""
        return self._layer.has_pending_work()

    def get_timer(self) -> float | None:
        """The earliest deadline at which ``handle_timer`` must be called, or None."""
        deadlines = [d for d in (self._layer.get_timer(), self._next_own_timer()) if d is not None]
        return min(deadlines) if deadlines else None

    def messages_to_send(self) -> list[tuple[Message, Address]]:
        """Return and forget the messages to send, with their destinations."""
        self._outbox.extend(self._layer.messages_to_send())
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> E | None:
        return self._events.pop(0) if self._events else None

    def events(self) -> list[E]:
        out = self._events
        self._events = []
        return out
