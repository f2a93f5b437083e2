"""Subscriptions (RFC 6665): the Event and Subscription-State headers, and one usage.

A :class:`Subscription` is a usage of a dialog (RFC 5057) and holds no
clock: ``expires`` is the duration last granted, which the transaction
user turns into a deadline.  :class:`~vidim.sip.dialog.Dialog` keeps its
subscriptions current from the SUBSCRIBEs and NOTIFYs it sends and receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from .errors import SIPParseError
from .headers import Params, parse_params

__all__ = [
    "EventHeader",
    "Subscription",
    "SubscriptionState",
    "SubscriptionStatus",
    "parse_event",
    "parse_subscription_state",
]

T = TypeVar("T")

#: The characters of an RFC 3261 token besides letters and digits.
_TOKEN_MARKS = "-.!%*_+`'~"


@dataclass(frozen=True, slots=True)
class EventHeader:
    """An Event header (RFC 6665 8.2.1): package, optional ``id``, other params."""

    package: str
    id: str | None = None
    params: Params = ()

    def matches(self, package: str, id: str | None) -> bool:
        # Event packages are tokens compared without case; the id is opaque.
        return self.package.lower() == package.lower() and self.id == id

    def __str__(self) -> str:
        return self.package + "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)


def parse_event(value: str) -> EventHeader:
    """Parse ``Event: package *( ;param )``; raises :class:`SIPParseError` (400)."""
    package, semi, rest = value.strip().partition(";")
    package = package.strip()
    if not package or not all(c.isalnum() or c in _TOKEN_MARKS for c in package):
        raise SIPParseError(f"malformed Event {value!r}")
    params = parse_params(semi + rest, f"Event {value!r}") if semi else ()
    event_id = next((v for k, v in params if k.lower() == "id"), None)
    return EventHeader(package=package, id=event_id, params=params)


class SubscriptionState(Enum):
    """A subscription's state (RFC 6665 4.1.2, 4.2.2); NOTIFY_WAIT: no NOTIFY yet."""

    NOTIFY_WAIT = "notify-wait"
    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """A parsed Subscription-State header (RFC 6665 8.2.3)."""

    state: SubscriptionState
    reason: str | None = None
    expires: int | None = None
    retry_after: int | None = None

    def __str__(self) -> str:
        # NOTIFY_WAIT is ours alone: on the wire it is pending.
        waiting = self.state is SubscriptionState.NOTIFY_WAIT
        parts = ["pending" if waiting else self.state.value]
        if self.reason is not None:
            parts.append(f"reason={self.reason}")
        if self.expires is not None:
            parts.append(f"expires={self.expires}")
        if self.retry_after is not None:
            parts.append(f"retry-after={self.retry_after}")
        return ";".join(parts)


def parse_delta_seconds(value: str | None, what: str) -> int | None:
    """``delta-seconds`` (RFC 3261 25.1), or None when absent; :class:`SIPParseError` if bad."""
    if value is None:
        return None
    if not value.isascii() or not value.isdigit():
        raise SIPParseError(f"malformed {what} {value!r}")
    return int(value)


def parse_subscription_state(value: str) -> SubscriptionStatus:
    """Parse Subscription-State; an unknown substate counts as pending (RFC 6665 8.2.3)."""
    substate, semi, rest = value.strip().partition(";")
    substate = substate.strip().lower()
    if not substate:
        raise SIPParseError(f"malformed Subscription-State {value!r}")
    params = parse_params(semi + rest, f"Subscription-State {value!r}") if semi else ()
    named = {k.lower(): v for k, v in params}
    if substate == "active":
        state = SubscriptionState.ACTIVE
    elif substate == "terminated":
        state = SubscriptionState.TERMINATED
    else:
        state = SubscriptionState.PENDING
    return SubscriptionStatus(
        state=state,
        reason=named.get("reason"),
        expires=parse_delta_seconds(named.get("expires"), "expires"),
        retry_after=parse_delta_seconds(named.get("retry-after"), "retry-after"),
    )


@dataclass(slots=True, eq=False)
class Subscription:
    """One subscription usage of a dialog (RFC 6665).

    ``notifier`` is False when we subscribed (we receive the NOTIFYs) and
    True when the peer subscribed to us.  ``expires`` is the duration last
    granted, in seconds: the dialog has no clock, so the TU turns it into a
    deadline.
    """

    event: str
    id: str | None = None
    state: SubscriptionState = SubscriptionState.NOTIFY_WAIT
    expires: int | None = None
    reason: str | None = None
    retry_after: int | None = None
    notifier: bool = False

    @property
    def terminated(self) -> bool:
        return self.state is SubscriptionState.TERMINATED

    def matches(self, event: EventHeader) -> bool:
        return event.matches(self.event, self.id)

    def apply(self, status: SubscriptionStatus) -> None:
        """Take in a Subscription-State we received (or sent, as notifier)."""
        self.state = status.state
        if status.expires is not None:
            self.expires = status.expires
        if status.state is SubscriptionState.TERMINATED:
            self.reason = status.reason
            self.retry_after = status.retry_after

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "id": self.id,
            "state": self.state.value,
            "expires": self.expires,
            "reason": self.reason,
            "retry_after": self.retry_after,
            "notifier": self.notifier,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Subscription:
        return cls(
            event=str(data["event"]),
            id=optional(str, data["id"]),
            state=SubscriptionState(data["state"]),
            expires=optional(int, data["expires"]),
            reason=optional(str, data["reason"]),
            retry_after=optional(int, data["retry_after"]),
            notifier=bool(data["notifier"]),
        )


def optional(kind: type[T], value: object) -> T | None:
    """``value`` from stored data when it is None or a ``kind``; TypeError otherwise."""
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__} or None, got {value!r}")
    return value
