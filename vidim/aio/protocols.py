"""What :class:`vidim.aio.SipServer` drives: the sans-IO core's side of the contract."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Protocol, TypeVar, runtime_checkable

from ..core import RecordChange
from ..sip import Address, Message, Request, Response

__all__ = ["FollowUpRouter", "SendFailureCore", "SipCore", "SipMessageCore", "StatefulCore"]

EventT_co = TypeVar("EventT_co", covariant=True)


@runtime_checkable
class SipCore(Protocol[EventT_co]):
    """What :class:`~vidim.aio.SipServer` drives: a sans-IO SIP element (aioquic's three inputs).

    Every clock reading is an argument; the core reports its next deadline.
    """

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        """One whole message (a UDP datagram) from ``source``."""

    def get_timer(self) -> float | None:
        """The next deadline on the server's clock, or None when nothing is pending."""

    def handle_timer(self, now: float) -> None:
        """Fire whatever is due at ``now``."""

    def messages_to_send(self) -> Iterable[tuple[Message, Address]]:
        """Take the messages queued since the last call, with their destinations."""

    def events(self) -> Iterable[EventT_co]:
        """Take the events queued since the last call."""


@runtime_checkable
class SipMessageCore(SipCore[EventT_co], Protocol[EventT_co]):
    """A core that also takes parsed messages, so the server parses only once.

    ``receive(parse_message(data), source, now)`` must do what
    ``receive_datagram(data, source, now)`` does when ``data`` parses.
    """

    def receive(self, message: Request | Response, source: Address, now: float) -> None:
        """One parsed message from ``source``."""


@runtime_checkable
class SendFailureCore(SipCore[EventT_co], Protocol[EventT_co]):
    """A core told when a message could not be sent (the allocator and the focus are).

    Without it a failed send is only logged, and the core's timers find out.
    """

    def send_failed(self, message: Message, destination: Address, now: float) -> None:
        """``message`` could not be sent to ``destination`` (e.g. a TCP connect failed)."""


@runtime_checkable
class StatefulCore(SipCore[EventT_co], Protocol[EventT_co]):
    """A core whose records a state store keeps (the allocator and the focus are)."""

    namespace: ClassVar[str]

    def record_changes(self) -> None:
        """Start noting changes for :meth:`take_changes`."""

    def note_all_changed(self) -> None:
        """Have the next :meth:`take_changes` return every live record."""

    def take_changes(self) -> list[RecordChange]:
        """Take the records changed since the last call."""


class FollowUpRouter(Protocol):
    """Sees each request before the core (``vidim.aio.Cluster`` is one)."""

    def intercept(self, request: Request, source: Address) -> bool:
        """True: the router took the request (the core does not get it now)."""
