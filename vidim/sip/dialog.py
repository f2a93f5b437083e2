"""Dialogs (RFC 3261 sections 12-15) and their subscription usages (RFC 6665).

A dialog is the peer-to-peer relationship that INVITE (or SUBSCRIBE) sets
up: the Call-ID, the two tags, both CSeq counters, the route set and the
remote target.  This layer consumes and produces :class:`Request` and
:class:`Response` objects only; it knows nothing of transactions, sockets or
clocks.  The transaction user (TU) glues the two: it hands every response
that reaches it to :meth:`DialogManager.receive_response` and every request
to :meth:`DialogManager.receive_request`, and it sends what the dialogs build
through new client transactions (or, for ACK to a 2xx, straight to the
transport).

Rule, as in h11's ``_state.py``: every change of :class:`DialogState` goes
through :data:`TRANSITIONS`.  A (role, state, input) that is not in the table
is refused with :class:`LocalProtocolError`; on the receive path that error
is re-raised as :class:`RemoteProtocolError`, since there the peer is the one
who broke the protocol.

Usages (RFC 5057): a dialog carries an INVITE usage when INVITE created it,
plus one usage per :class:`Subscription`.  A dialog made by a subscription
ends when its last subscription does; BYE ends every usage.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, TypeAlias

from .checks import warning_value
from .errors import LocalProtocolError, RemoteProtocolError, SIPParseError
from .headers import (
    CSeq,
    Headers,
    NameAddr,
    Params,
    Via,
    parse_name_addr,
    parse_params,
    parse_via_list,
)
from .ids import new_branch, new_call_id, new_tag
from .message import Request, Response, _check_method, make_response
from .uri import URI, SipURI, parse_uri

__all__ = [
    "DIALOG_CREATING_METHODS",
    "TARGET_REFRESH_METHODS",
    "TRANSITIONS",
    "Dialog",
    "DialogId",
    "DialogInput",
    "DialogManager",
    "DialogRole",
    "DialogState",
    "EventHeader",
    "LocalVia",
    "Subscription",
    "SubscriptionState",
    "SubscriptionStatus",
    "next_dialog_state",
    "parse_event",
    "parse_subscription_state",
    "unknown_dialog_response",
]

#: Requests that may create a dialog when sent outside one (RFC 3261, RFC 6665).
DIALOG_CREATING_METHODS = frozenset(("INVITE", "SUBSCRIBE"))
#: Requests whose Contact replaces the remote target (RFC 3261 12.2, RFC 3311,
#: RFC 6665 section 4.1.2 and 4.2.2, RFC 3515).
TARGET_REFRESH_METHODS = frozenset(("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"))
#: Requests that must carry a Contact (the local target) when we send them.
_CONTACT_METHODS = TARGET_REFRESH_METHODS
#: Headers the dialog writes itself; the caller may not pass them in.
_MANAGED_REQUEST_HEADERS = frozenset(
    ("via", "from", "to", "call-id", "cseq", "route", "contact", "max-forwards", "content-length")
)
_MANAGED_RESPONSE_HEADERS = frozenset(
    ("via", "from", "to", "call-id", "cseq", "record-route", "content-length")
)
#: Final responses to a SUBSCRIBE refresh that end the subscription (RFC 6665 4.1.2.2).
_SUBSCRIBE_FATAL = frozenset((404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604))
_MAX_FORWARDS = "70"
#: to_dict() format; bump it when the layout changes.
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class DialogId:
    """What identifies a dialog at one end (RFC 3261 12): the tags are as seen locally.

    A missing remote tag (an RFC 2543 peer) is the empty string.
    """

    call_id: str
    local_tag: str
    remote_tag: str


# -- the state machine ---------------------------------------------------------------


class DialogState(Enum):
    __hash__ = object.__hash__  # members are singletons: C-level hash for the table lookups

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogRole(Enum):
    """Which side sent the request that created the dialog."""

    __hash__ = object.__hash__  # members are singletons: C-level hash for the table lookups

    UAC = "uac"
    UAS = "uas"


class DialogInput(Enum):
    """What can happen to a dialog; SEND_ for what we do, RECV_ for what the peer does."""

    __hash__ = object.__hash__  # members are singletons: C-level hash for the table lookups

    #: A 101-199 with a To tag to the dialog-creating INVITE.
    RECV_PROVISIONAL = "recv-provisional"
    #: A 2xx to the dialog-creating request (or its retransmission).
    RECV_2XX = "recv-2xx"
    #: A 300-699 to the dialog-creating INVITE (RFC 3261 12.3, 13.2.2.3).
    RECV_FAILURE = "recv-failure"
    #: Our answers to the dialog-creating request.
    SEND_PROVISIONAL = "send-provisional"
    SEND_2XX = "send-2xx"
    SEND_FAILURE = "send-failure"
    #: In-dialog traffic.
    SEND_REQUEST = "send-request"
    SEND_ACK = "send-ack"
    SEND_BYE = "send-bye"
    RECV_REQUEST = "recv-request"
    RECV_ACK = "recv-ack"
    RECV_BYE = "recv-bye"
    RECV_RESPONSE = "recv-response"
    #: A 481 or 408 (or a timeout) for an in-dialog request (RFC 3261 12.2.1.2).
    RECV_DIALOG_FAILURE = "recv-dialog-failure"
    #: The last subscription of a dialog without INVITE usage ended (RFC 5057).
    LAST_USAGE_ENDED = "last-usage-ended"


# Members as constants: mypyc reads a Final from a C global, not an Enum class attribute.
_IN_LAST_USAGE_ENDED: Final[DialogInput] = DialogInput.LAST_USAGE_ENDED
_IN_RECV_2XX: Final[DialogInput] = DialogInput.RECV_2XX
_IN_RECV_ACK: Final[DialogInput] = DialogInput.RECV_ACK
_IN_RECV_BYE: Final[DialogInput] = DialogInput.RECV_BYE
_IN_RECV_DIALOG_FAILURE: Final[DialogInput] = DialogInput.RECV_DIALOG_FAILURE
_IN_RECV_FAILURE: Final[DialogInput] = DialogInput.RECV_FAILURE
_IN_RECV_PROVISIONAL: Final[DialogInput] = DialogInput.RECV_PROVISIONAL
_IN_RECV_REQUEST: Final[DialogInput] = DialogInput.RECV_REQUEST
_IN_RECV_RESPONSE: Final[DialogInput] = DialogInput.RECV_RESPONSE
_IN_SEND_2XX: Final[DialogInput] = DialogInput.SEND_2XX
_IN_SEND_ACK: Final[DialogInput] = DialogInput.SEND_ACK
_IN_SEND_BYE: Final[DialogInput] = DialogInput.SEND_BYE
_IN_SEND_FAILURE: Final[DialogInput] = DialogInput.SEND_FAILURE
_IN_SEND_PROVISIONAL: Final[DialogInput] = DialogInput.SEND_PROVISIONAL
_IN_SEND_REQUEST: Final[DialogInput] = DialogInput.SEND_REQUEST
_ROLE_UAC: Final[DialogRole] = DialogRole.UAC
_ROLE_UAS: Final[DialogRole] = DialogRole.UAS
_STATE_CONFIRMED: Final[DialogState] = DialogState.CONFIRMED
_STATE_EARLY: Final[DialogState] = DialogState.EARLY
_STATE_TERMINATED: Final[DialogState] = DialogState.TERMINATED
_E, _C, _T = _STATE_EARLY, _STATE_CONFIRMED, _STATE_TERMINATED
_I = DialogInput

_SHARED: dict[tuple[DialogState, DialogInput], DialogState] = {
    # Requests inside an early dialog are legal (UPDATE, PRACK, INFO).
    (_E, _I.SEND_REQUEST): _E,
    (_C, _I.SEND_REQUEST): _C,
    (_C, _I.SEND_BYE): _T,
    (_E, _I.RECV_REQUEST): _E,
    (_C, _I.RECV_REQUEST): _C,
    # A request for a dialog we ended is answered 481, without a state change.
    (_T, _I.RECV_REQUEST): _T,
    # The caller may BYE an early dialog (RFC 3261 15); a callee that does so
    # breaks the rule, but honouring its wish to hang up is the useful answer.
    (_E, _I.RECV_BYE): _T,
    (_C, _I.RECV_BYE): _T,
    (_T, _I.RECV_BYE): _T,
    (_E, _I.RECV_RESPONSE): _E,
    (_C, _I.RECV_RESPONSE): _C,
    # The answer to our BYE arrives after the dialog ended.
    (_T, _I.RECV_RESPONSE): _T,
    (_E, _I.RECV_DIALOG_FAILURE): _T,
    (_C, _I.RECV_DIALOG_FAILURE): _T,
    (_T, _I.RECV_DIALOG_FAILURE): _T,
    (_C, _I.LAST_USAGE_ENDED): _T,
    (_T, _I.LAST_USAGE_ENDED): _T,
    # ACK for a 2xx: to the dialog-creating INVITE or a re-INVITE, either way.
    # It still goes out (or arrives) after a BYE that crossed the 2xx.
    (_C, _I.SEND_ACK): _C,
    (_T, _I.SEND_ACK): _T,
    (_C, _I.RECV_ACK): _C,
    (_T, _I.RECV_ACK): _T,
}

#: (role, state, input) -> next state.  What is missing is a protocol error.
TRANSITIONS: dict[tuple[DialogRole, DialogState, DialogInput], DialogState] = {
    **{(_ROLE_UAC, s, i): n for (s, i), n in _SHARED.items()},
    **{(_ROLE_UAS, s, i): n for (s, i), n in _SHARED.items()},
    # UAC (RFC 3261 12.1.2, 13.2.2).
    (_ROLE_UAC, _E, _I.RECV_PROVISIONAL): _E,
    (_ROLE_UAC, _E, _I.RECV_2XX): _C,
    (_ROLE_UAC, _C, _I.RECV_2XX): _C,
    # A 2xx after we BYE'd an early dialog must still be ACKed (then BYE'd).
    (_ROLE_UAC, _T, _I.RECV_2XX): _T,
    (_ROLE_UAC, _T, _I.RECV_PROVISIONAL): _T,
    (_ROLE_UAC, _E, _I.RECV_FAILURE): _T,
    (_ROLE_UAC, _T, _I.RECV_FAILURE): _T,
    # "The caller's UA MAY send a BYE for either confirmed or early dialogs,
    # and the callee's UA MAY send a BYE on confirmed dialogs, but MUST NOT
    # send a BYE on early dialogs" (RFC 3261 15).
    (_ROLE_UAC, _E, _I.SEND_BYE): _T,
    # UAS (RFC 3261 12.1.1, 13.3).
    (_ROLE_UAS, _E, _I.SEND_PROVISIONAL): _E,
    (_ROLE_UAS, _E, _I.SEND_2XX): _C,
    (_ROLE_UAS, _E, _I.SEND_FAILURE): _T,
    # The 487 to the INVITE after the caller BYE'd the early dialog.
    (_ROLE_UAS, _T, _I.SEND_FAILURE): _T,
}


def next_dialog_state(role: DialogRole, state: DialogState, event: DialogInput) -> DialogState:
    """Look ``(role, state, event)`` up in :data:`TRANSITIONS`.

    Raises :class:`LocalProtocolError` when the move is not in the table.
    """
    try:
        return TRANSITIONS[(role, state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"{event.name} is not allowed for a {role.name} dialog in state {state.name}",
            status_hint=500,
        ) from None


# -- Via ---------------------------------------------------------------------------

#: Our Via: a template whose branch is replaced on every request, or a factory
#: called for each request (its branch, if any, is replaced too).
LocalVia: TypeAlias = Via | Callable[[], Via]


def _fresh_via(local_via: LocalVia) -> Via:
    via = local_via if isinstance(local_via, Via) else local_via()
    return via.with_params(branch=new_branch())


# -- event headers -----------------------------------------------------------------


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
    text = value.strip()
    semi = text.find(";")
    package = (text if semi < 0 else text[:semi]).strip()
    if not package or not all(c.isalnum() or c in "-.!%*_+`'~" for c in package):
        raise SIPParseError(f"malformed Event {value!r}")
    params = parse_params(text[semi:], f"Event {value!r}") if semi >= 0 else ()
    event_id = next((v for k, v in params if k.lower() == "id"), None)
    return EventHeader(package=package, id=event_id, params=params)


class SubscriptionState(Enum):
    """A subscription's state (RFC 6665 4.1.2, 4.2.2); NOTIFY_WAIT: no NOTIFY yet."""

    NOTIFY_WAIT = "notify-wait"
    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"


_SUB_ACTIVE: Final[SubscriptionState] = SubscriptionState.ACTIVE
_SUB_NOTIFY_WAIT: Final[SubscriptionState] = SubscriptionState.NOTIFY_WAIT
_SUB_PENDING: Final[SubscriptionState] = SubscriptionState.PENDING
_SUB_TERMINATED: Final[SubscriptionState] = SubscriptionState.TERMINATED


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """A parsed Subscription-State header (RFC 6665 8.2.3)."""

    state: SubscriptionState
    reason: str | None = None
    expires: int | None = None
    retry_after: int | None = None

    def __str__(self) -> str:
        state = self.state.value if self.state is not _SUB_NOTIFY_WAIT else "pending"
        parts = [state]
        if self.reason is not None:
            parts.append(f"reason={self.reason}")
        if self.expires is not None:
            parts.append(f"expires={self.expires}")
        if self.retry_after is not None:
            parts.append(f"retry-after={self.retry_after}")
        return ";".join(parts)


#: Durations as shared int objects: a subscription keeps the one it was last
#: granted (3600 for every conference: 28 bytes each, not cached by CPython).
_DURATIONS: dict[str, int] = {}


def _duration(digits: str) -> int:
    number = _DURATIONS.get(digits)
    if number is None:
        number = int(digits)
        if len(_DURATIONS) < 256:  # bounded: the texts come from peers
            _DURATIONS[digits] = number
    return number


def _delta(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit():
        raise SIPParseError(f"malformed {what} {value!r}")
    return _duration(value)


def parse_subscription_state(value: str) -> SubscriptionStatus:
    """Parse Subscription-State; an unknown substate counts as pending (RFC 6665 8.2.3)."""
    text = value.strip()
    semi = text.find(";")
    substate = (text if semi < 0 else text[:semi]).strip().lower()
    if not substate:
        raise SIPParseError(f"malformed Subscription-State {value!r}")
    params = parse_params(text[semi:], f"Subscription-State {value!r}") if semi >= 0 else ()
    named = {k.lower(): v for k, v in params}
    state = {
        "active": _SUB_ACTIVE,
        "terminated": _SUB_TERMINATED,
    }.get(substate, _SUB_PENDING)
    return SubscriptionStatus(
        state=state,
        reason=named.get("reason"),
        expires=_delta(named.get("expires"), "expires"),
        retry_after=_delta(named.get("retry-after"), "retry-after"),
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
    state: SubscriptionState = _SUB_NOTIFY_WAIT
    expires: int | None = None
    reason: str | None = None
    retry_after: int | None = None
    notifier: bool = False

    @property
    def terminated(self) -> bool:
        return self.state is _SUB_TERMINATED

    def matches(self, event: EventHeader) -> bool:
        return event.matches(self.event, self.id)

    def apply(self, status: SubscriptionStatus) -> None:
        """Take in a Subscription-State we received (or sent, as notifier)."""
        self.state = status.state
        if status.expires is not None:
            self.expires = status.expires
        if status.state is _SUB_TERMINATED:
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
            id=_opt_str(data["id"]),
            state=SubscriptionState(data["state"]),
            expires=_opt_int(data["expires"]),
            reason=_opt_str(data["reason"]),
            retry_after=_opt_int(data["retry_after"]),
            notifier=bool(data["notifier"]),
        )


# -- helpers -----------------------------------------------------------------------


def unknown_dialog_response(request: Request, *, warn_agent: str) -> Response:
    """The 481 for a request with a To tag that matches no dialog (RFC 3261 12.2.2)."""
    return make_response(
        request,
        481,
        headers=[("Warning", warning_value(warn_agent, "no dialog matches this request"))],
    )


def _agent_of(uri: URI, fallback: str = "vidim") -> str:
    if isinstance(uri, SipURI):
        return uri.host if uri.port is None else f"{uri.host}:{uri.port}"
    return fallback


def _opt_str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _opt_int(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _request_uri(uri: URI) -> URI:
    """Strip what a Request-URI may not carry: ``method`` and URI headers (19.1.1)."""
    if not isinstance(uri, SipURI) or (not uri.headers and not uri.has_param("method")):
        return uri
    return SipURI(
        host=uri.host,
        scheme=uri.scheme,
        user=uri.user,
        password=uri.password,
        port=uri.port,
        params=tuple(p for p in uri.params if p[0].lower() != "method"),
    )


def _is_loose(route: NameAddr) -> bool:
    return isinstance(route.uri, SipURI) and route.uri.has_param("lr")


def _check_headers(headers: Iterable[tuple[str, str]], managed: frozenset[str]) -> None:
    for name, _ in headers:
        if name.lower() in managed:
            raise LocalProtocolError(f"the dialog writes the {name} header itself")


def _checked(
    headers: Iterable[tuple[str, str]], content_type: str | None, managed: frozenset[str]
) -> list[tuple[str, str]]:
    """The TU's extra header lines, checked as ``Headers()`` checks them, Content-Type last.

    What the dialog writes itself comes from values it parsed or made, and
    goes into :meth:`Request.trusted` unchecked; only these need the check.
    """
    items = list(headers)
    _check_headers(items, managed)
    if content_type is not None:
        items.append(("Content-Type", content_type))
    return list(Headers(items)) if items else items


def _expires(message: Request | Response) -> int | None:
    value = message.headers.get("expires")
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return _duration(value)


def _event_of(message: Request) -> EventHeader | None:
    value = message.headers.get("event")
    return parse_event(value) if value is not None else None


def _tag(addr: NameAddr) -> str:
    return addr.tag or ""


# -- shared values -----------------------------------------------------------------
#
# A live dialog keeps its parties as shared objects and its remote target as
# text: our From and Contact are the same for every dialog of a UA, a focus's
# To differs only by its tag, proxies write the same Record-Route.  One parsed
# copy per dialog was most of a dialog's size (docs/performance.md, "Memory").
# The caches below are bounded (their keys can come from peers): when one is
# full it starts over, and the dialogs keep the objects they hold.

_CACHE_MAX = 4096


class _Party:
    """A name-addr that dialogs share: its text, and its value parsed on first use.

    ``tagged`` says whether the value has a tag parameter; an untagged party
    stands for a dialog's party without its tag (the dialog keeps the tag).
    The text is the header value as received where there is one, else
    ``str()`` of the value; a party made from a peer's message keeps no
    parsed value until something asks for it (most never do).
    """

    __slots__ = ("_addr", "tagged", "text")

    def __init__(self, text: str, tagged: bool, addr: NameAddr | None = None) -> None:
        self.text = text
        self.tagged = tagged
        self._addr = addr

    @property
    def addr(self) -> NameAddr:
        addr = self._addr
        if addr is None:
            addr = self._addr = parse_name_addr(self.text)
        return addr

    def with_tag(self, tag: str) -> NameAddr:
        addr = self.addr
        if self.tagged or not tag:
            return addr
        return NameAddr(addr.uri, addr.display_name, (*addr.params, ("tag", tag)))

    def text_with_tag(self, tag: str) -> str:
        if self.tagged or not tag:
            return self.text
        return f"{self.text};tag={tag}"


#: A party as a dialog keeps it: the text of a value without a tag parameter
#: (a string shared through _TEXTS, parsed only if asked for: most never
#: are), or a _Party for one with a tag parameter the dialog must not add again.
_PartyRef: TypeAlias = "str | _Party"

#: Texts of untagged values, each kept once: a header value as received (its
#: tag cut off), or ``str()`` of the value.
_TEXTS: dict[str, str] = {}
#: Parties by text: tagged values, routes, and the values a TU gives as text.
_PARTIES: dict[str, _Party] = {}
#: Parties by the identity of a value the TU holds (its From, Contact, focus URI).
_PARTIES_BY_ID: dict[int, tuple[object, _Party]] = {}


def _shared_text(text: str) -> str:
    shared = _TEXTS.get(text)
    if shared is None:
        if len(_TEXTS) >= _CACHE_MAX:
            _TEXTS.clear()
        shared = _TEXTS[text] = text
    return shared


def _party_by_text(text: str, tagged: bool) -> _PartyRef:
    """The shared party whose text is ``text`` (a value that parses, with a tag or not)."""
    if not tagged:
        return _shared_text(text)
    party = _PARTIES.get(text)
    if party is None:
        party = _Party(text, tagged)
        if len(_PARTIES) >= _CACHE_MAX:
            _PARTIES.clear()
        _PARTIES[text] = party
    return party


def _ref_text(ref: _PartyRef, tag: str) -> str:
    """The header value of ``ref`` with ``tag`` ("" for none)."""
    if isinstance(ref, str):
        return f"{ref};tag={tag}" if tag else ref
    return ref.text_with_tag(tag)


def _ref_addr(ref: _PartyRef, tag: str) -> NameAddr:
    """The value of ``ref`` with ``tag`` ("" for none), parsed if it is text."""
    if isinstance(ref, str):
        addr = parse_name_addr(ref)
        if not tag:
            return addr
        return NameAddr(addr.uri, addr.display_name, (*addr.params, ("tag", tag)))
    return ref.with_tag(tag)


def _party_of(value: NameAddr | URI | str) -> _Party:
    """The shared party for a value given by the TU (cached by text, or by identity)."""
    if isinstance(value, str):
        party = _PARTIES.get(value)
        if party is None:
            # Parsed to check it; the text is the value's (as before the cache),
            # and the value is not kept (a UAS often gives each dialog a Contact
            # of its own).
            addr = parse_name_addr(value)
            party = _Party(str(addr), addr.tag is not None)
            if len(_PARTIES) >= _CACHE_MAX:
                _PARTIES.clear()
            _PARTIES[value] = party
        return party
    entry = _PARTIES_BY_ID.get(id(value))
    if entry is not None and entry[0] is value:
        return entry[1]
    addr = value if isinstance(value, NameAddr) else NameAddr(uri=value)
    party = _Party(str(addr), addr.tag is not None, addr)
    if len(_PARTIES_BY_ID) >= _CACHE_MAX:
        _PARTIES_BY_ID.clear()
    _PARTIES_BY_ID[id(value)] = (value, party)
    return party


def _whole_party(addr: NameAddr, raw: str | None) -> _PartyRef:
    """``addr`` as a shared party; ``raw`` is the header value it was parsed from, if single."""
    return _party_by_text(str(addr) if raw is None or "," in raw else raw, addr.tag is not None)


def _split_party(addr: NameAddr, raw: str | None) -> tuple[_PartyRef, str]:
    """``addr`` as (shared party, tag): the party without its tag where it can be.

    The tag comes off when it is the only tag parameter and the last one, so
    that the party's text plus ``;tag=`` and the tag is ``addr`` again.
    ``raw`` is the header value ``addr`` was parsed from.
    """
    params = addr.params
    tag = _tag(addr)
    if tag and params[-1] == ("tag", tag) and not any(k.lower() == "tag" for k, _ in params[:-1]):
        suffix = ";tag=" + tag
        if raw is not None and raw.endswith(suffix) and "," not in raw:
            return _shared_text(raw[: -len(suffix)]), tag
        return _shared_text(str(NameAddr(addr.uri, addr.display_name, params[:-1]))), tag
    return _whole_party(addr, raw), tag


def _route_party(route: NameAddr) -> _Party:
    """A route, shared, with its value kept (every request reads it)."""
    text = str(route)
    party = _PARTIES.get(text)
    if party is None:
        party = _Party(text, route.tag is not None, route)
        if len(_PARTIES) >= _CACHE_MAX:
            _PARTIES.clear()
        _PARTIES[text] = party
    return party


#: Recently used remote targets, parsed, with their text: the ACK and the
#: destination of a new dialog's first request read the target just stored
#: (later requests parse it again), and dialogs made together with the same
#: target (a conference's INVITE and SUBSCRIBE dialogs) share one string.
_URIS: dict[str, tuple[str, URI]] = {}


def _remember_uri(uri: URI, text: str | None = None) -> str:
    """The text of ``uri`` (``text``: what it was parsed from), shared, and remembered."""
    if text is None:
        text = str(uri)
    entry = _URIS.get(text)
    if entry is not None:
        return entry[0]
    if len(_URIS) >= 256:
        _URIS.clear()
    _URIS[text] = (text, uri)
    return text


def _target_of(message: Request | Response) -> str | None:
    """The URI of the first Contact, as text (remembered); None without Contact.

    The text is the one between ``<`` and ``>`` in the header as received
    when it holds a single ``<URI>...`` value, which spares writing the URI
    out again; otherwise ``str()`` of the parsed URI.
    """
    contacts = message.contacts
    if not contacts:
        return None
    uri = contacts[0].uri
    raw = _single(message.headers.get("contact"))
    if raw is not None and raw.startswith("<"):
        end = raw.find(">")
        if end > 0:
            return _remember_uri(uri, raw[1:end])
    return _remember_uri(uri)


def _uri_of(text: str) -> URI:
    entry = _URIS.get(text)
    if entry is None:
        entry = (text, parse_uri(text))
        if len(_URIS) >= 256:
            _URIS.clear()
        _URIS[text] = entry
    return entry[1]


#: A template Via's text and params without its branch, by identity (as _PARTIES_BY_ID).
_VIA_TEXTS: dict[int, tuple[Via, str, Params]] = {}


def _fresh_via_line(local_via: LocalVia) -> tuple[str, Via]:
    """``_fresh_via(local_via)`` as text and value, without writing a template out again.

    The value goes to :meth:`Request.trusted` with the text, so that the
    transaction layer does not parse the text back.
    """
    if not isinstance(local_via, Via):
        via = _fresh_via(local_via)
        return str(via), via
    entry = _VIA_TEXTS.get(id(local_via))
    if entry is None or entry[0] is not local_via:
        kept = tuple(p for p in local_via.params if p[0].lower() != "branch")
        text = str(Via(local_via.transport, local_via.host, local_via.port, kept))
        entry = (local_via, text, kept)
        if len(_VIA_TEXTS) >= 64:
            _VIA_TEXTS.clear()
        _VIA_TEXTS[id(local_via)] = entry
    branch = new_branch()
    via = Via(local_via.transport, local_via.host, local_via.port, (*entry[2], ("branch", branch)))
    return f"{entry[1]};branch={branch}", via


def _routes_of(routes: Iterable[NameAddr]) -> tuple[_Party, ...]:
    return tuple(_route_party(route) for route in routes)


def _single(raw: str | None) -> str | None:
    """A header value that holds one element (no list), or None."""
    return raw if raw is not None and "," not in raw else None


# -- the dialog --------------------------------------------------------------------

_UAS: Final = 1
_SECURE: Final = 2
_INVITE_USAGE: Final = 4
_STATE_SHIFT: Final = 3
_NOT_STATE: Final = (1 << _STATE_SHIFT) - 1
_STATES: Final = (_STATE_EARLY, _STATE_CONFIRMED, _STATE_TERMINATED)


def _state_bits(state: DialogState) -> int:
    if state is _STATE_EARLY:
        return 0
    if state is _STATE_CONFIRMED:
        return 1 << _STATE_SHIFT
    if state is _STATE_TERMINATED:
        return 2 << _STATE_SHIFT
    raise TypeError(f"not a DialogState: {state!r}")


class Dialog:
    """One dialog, seen from our end.

    Build it with :meth:`from_uac` (a response to our INVITE/SUBSCRIBE),
    :meth:`from_notify` (a NOTIFY that beat the 2xx to our SUBSCRIBE),
    :meth:`from_uas` (an INVITE/SUBSCRIBE we are going to answer) or
    :meth:`from_dict`.  Requests it builds are complete: Via with a fresh
    branch, Max-Forwards, Route and Request-URI from the route set.
    """

    __slots__ = (
        "_contact",
        "_flags",
        "_local",
        "_pending_invite",
        "_remote",
        "_routes",
        "_subs",
        "_target",
        "call_id",
        "initial_cseq",
        "initial_method",
        "local_cseq",
        "local_tag",
        "local_via",
        "remote_cseq",
        "remote_tag",
    )

    call_id: str
    local_tag: str
    remote_tag: str
    local_cseq: int | None
    remote_cseq: int | None
    #: CSeq number and method of the request that created the dialog.
    initial_cseq: int
    initial_method: str
    local_via: LocalVia | None
    #: The role (bit 0: UAS), ``secure`` (bit 1), ``has_invite_usage`` (bit 2)
    #: and the state (bits 3-4, its index in _STATES): one small int, not four slots.
    _flags: int
    _pending_invite: int | None
    # Compact state (see "shared values" above): the parties without their
    # tags and the Contact are shared objects, the remote target is text, the
    # route set is a tuple of shared routes, no subscription list until one.
    _local: _PartyRef
    _remote: _PartyRef
    _contact: _PartyRef
    _target: str
    _routes: tuple[_Party, ...]
    #: None, the one subscription, or a list (made when the public list is asked for).
    _subs: Subscription | list[Subscription] | None

    def __new__(cls, *args: Any, **kwargs: Any) -> Dialog:
        # Defined so that _compact can make an instance without __init__ (mypyc
        # compiles cls.__new__(cls) only when the class defines __new__);
        # __init__ checks the arguments.
        return super().__new__(cls)

    def __init__(
        self,
        *,
        role: DialogRole,
        state: DialogState,
        call_id: str,
        local_party: NameAddr,
        remote_party: NameAddr,
        local_contact: NameAddr,
        remote_target: URI,
        route_set: Iterable[NameAddr] = (),
        local_cseq: int | None,
        remote_cseq: int | None,
        initial_cseq: int,
        initial_method: str,
        secure: bool = False,
        local_via: LocalVia | None = None,
    ) -> None:
        if local_party.tag is None:
            raise LocalProtocolError("the local party of a dialog needs a tag")
        local, local_tag = _split_party(local_party, None)
        remote, remote_tag = _split_party(remote_party, None)
        self._setup(
            role,
            state,
            call_id,
            local,
            local_tag,
            remote,
            remote_tag,
            _whole_party(local_contact, None),
            _remember_uri(remote_target),
            _routes_of(route_set),
            local_cseq,
            remote_cseq,
            initial_cseq,
            initial_method,
            secure,
            local_via,
        )

    def _setup(
        self,
        role: DialogRole,
        state: DialogState,
        call_id: str,
        local: _PartyRef,
        local_tag: str,
        remote: _PartyRef,
        remote_tag: str,
        contact: _PartyRef,
        target: str,
        routes: tuple[_Party, ...],
        local_cseq: int | None,
        remote_cseq: int | None,
        initial_cseq: int,
        initial_method: str,
        secure: bool,
        local_via: LocalVia | None,
    ) -> None:
        self._flags = (
            (_UAS if role is _ROLE_UAS else 0)
            | (_SECURE if secure else 0)
            | (_INVITE_USAGE if initial_method == "INVITE" else 0)
            | _state_bits(state)
        )
        self.call_id = call_id
        self._local = local
        self.local_tag = local_tag
        self._remote = remote
        self.remote_tag = remote_tag
        self._contact = contact
        self._target = target
        self._routes = routes
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.initial_cseq = initial_cseq
        self.initial_method = initial_method
        self.local_via = local_via
        self._subs = None
        self._pending_invite = None

    @classmethod
    def _compact(
        cls,
        role: DialogRole,
        state: DialogState,
        call_id: str,
        local: tuple[_PartyRef, str],
        remote: tuple[_PartyRef, str],
        contact: _PartyRef,
        target: str,
        routes: Iterable[NameAddr],
        local_cseq: int | None,
        remote_cseq: int | None,
        cseq: int,
        method: str,
        secure: bool,
        local_via: LocalVia | None,
    ) -> Dialog:
        """A dialog from parts already made shared (the constructor's checks done)."""
        if not local[1] and (isinstance(local[0], str) or not local[0].tagged):
            raise LocalProtocolError("the local party of a dialog needs a tag")
        dialog = cls.__new__(cls)
        dialog._setup(
            role,
            state,
            call_id,
            local[0],
            local[1],
            remote[0],
            remote[1],
            contact,
            target,
            _routes_of(routes),
            local_cseq,
            remote_cseq,
            cseq,
            sys.intern(method),  # one string per method, not one per request
            secure,
            local_via,
        )
        return dialog

    # -- flags -------------------------------------------------------------------
    @property
    def role(self) -> DialogRole:
        """Which side sent the request that created the dialog."""
        return _ROLE_UAS if self._flags & _UAS else _ROLE_UAC

    @role.setter
    def role(self, value: DialogRole) -> None:
        self._flags = (self._flags & ~_UAS) | (_UAS if value is _ROLE_UAS else 0)

    @property
    def state(self) -> DialogState:
        """Early, confirmed or terminated (RFC 3261 12)."""
        return _STATES[self._flags >> _STATE_SHIFT]

    @state.setter
    def state(self, value: DialogState) -> None:
        self._flags = (self._flags & _NOT_STATE) | _state_bits(value)

    @property
    def secure(self) -> bool:
        """True when the dialog was made over TLS with a SIPS URI (RFC 3261 12.1.1)."""
        return bool(self._flags & _SECURE)

    @secure.setter
    def secure(self, value: bool) -> None:
        self._flags = (self._flags & ~_SECURE) | (_SECURE if value else 0)

    @property
    def has_invite_usage(self) -> bool:
        """True while the dialog has its INVITE usage (until BYE or a failed re-INVITE)."""
        return bool(self._flags & _INVITE_USAGE)

    @has_invite_usage.setter
    def has_invite_usage(self, value: bool) -> None:
        self._flags = (self._flags & ~_INVITE_USAGE) | (_INVITE_USAGE if value else 0)

    # -- the parties, as values ----------------------------------------------------
    @property
    def local_party(self) -> NameAddr:
        """Our From (UAC) / To (UAS) value, tag included."""
        return _ref_addr(self._local, self.local_tag)

    @local_party.setter
    def local_party(self, value: NameAddr) -> None:
        if value.tag is None:
            raise LocalProtocolError("the local party of a dialog needs a tag")
        self._local, self.local_tag = _split_party(value, None)

    @property
    def remote_party(self) -> NameAddr:
        """The peer's To (UAC) / From (UAS) value, tag included (absent for RFC 2543 peers)."""
        return _ref_addr(self._remote, self.remote_tag)

    @remote_party.setter
    def remote_party(self, value: NameAddr) -> None:
        self._remote, self.remote_tag = _split_party(value, None)

    @property
    def local_contact(self) -> NameAddr:
        return _ref_addr(self._contact, "")

    @local_contact.setter
    def local_contact(self, value: NameAddr) -> None:
        self._contact = _whole_party(value, None)

    @property
    def remote_target(self) -> URI:
        return _uri_of(self._target)

    @remote_target.setter
    def remote_target(self, value: URI) -> None:
        self._target = _remember_uri(value)

    @property
    def route_set(self) -> tuple[NameAddr, ...]:
        """Routes in the order they go into a Route header."""
        return tuple(route.addr for route in self._routes)

    @route_set.setter
    def route_set(self, value: Iterable[NameAddr]) -> None:
        self._routes = _routes_of(value)

    @property
    def subscriptions(self) -> list[Subscription]:
        """The subscription usages.

        Kept as None or as the one subscription until this list is asked for
        (most dialogs have none, a subscription dialog one): an empty list
        is 56 bytes, a list of one 88.
        """
        subs = self._subs
        if not isinstance(subs, list):
            subs = self._subs = [] if subs is None else [subs]
        return subs

    @subscriptions.setter
    def subscriptions(self, value: list[Subscription]) -> None:
        self._subs = value

    def _sub_list(self) -> Iterable[Subscription]:
        subs = self._subs
        if subs is None:
            return ()
        if isinstance(subs, Subscription):
            return (subs,)
        return subs

    def _append_sub(self, sub: Subscription) -> None:
        subs = self._subs
        if subs is None:
            self._subs = sub
        elif isinstance(subs, Subscription):
            self._subs = [subs, sub]
        else:
            subs.append(sub)

    def _remove_sub(self, sub: Subscription) -> None:
        subs = self._subs
        if subs is sub:
            self._subs = None
        elif isinstance(subs, list):
            subs.remove(sub)

    # -- construction ------------------------------------------------------------
    @classmethod
    def from_uac(
        cls, request: Request, response: Response, *, local_via: LocalVia | None = None
    ) -> Dialog:
        """The dialog a response to our INVITE or SUBSCRIBE creates (RFC 3261 12.1.2).

        INVITE: a 101-199 with a To tag makes an early dialog, a 2xx a confirmed
        one.  SUBSCRIBE: only a 2xx (RFC 6665 4.1.2.1); the subscription named
        by its Event header is attached, waiting for the first NOTIFY.
        """
        method = request.method
        if method not in DIALOG_CREATING_METHODS:
            raise LocalProtocolError(f"{method} does not create dialogs")
        status = response.status
        to_addr = response.to_addr
        if method == "INVITE" and 101 <= status <= 199 and to_addr.tag is not None:
            state = _STATE_EARLY
        elif 200 <= status <= 299:
            state = _STATE_CONFIRMED
        else:
            raise LocalProtocolError(f"a {status} to {method} does not create a dialog")
        cls._check_response(request, response)
        seq = request.cseq.seq
        dialog = cls._compact(
            _ROLE_UAC,
            state,
            request.call_id,
            _split_party(request.from_addr, request.headers.get("from")),
            _split_party(to_addr, response.headers.get("to")),
            cls._our_contact(request),
            # A Contact-less response (broken, but seen on 18x) leaves the
            # request's target in place.
            _target_of(response) or _remember_uri(request.uri),
            reversed(response.record_route),
            seq,
            None,
            seq,
            method,
            request.uri.scheme == "sips",
            local_via,
        )
        if method == "SUBSCRIBE":
            dialog._add_subscriber_usage(request)
            dialog._subscribe_response(request, response)
        return dialog

    @classmethod
    def from_notify(
        cls, subscribe: Request, notify: Request, *, local_via: LocalVia | None = None
    ) -> Dialog:
        """The dialog a NOTIFY creates when it beats the 2xx to our SUBSCRIBE.

        RFC 6665 4.1.2.4: the subscriber builds it as a UAS would (RFC 3261
        12.1.1): route set from the NOTIFY's Record-Route in order, remote
        target from its Contact.  Call :meth:`receive_request` with the same
        NOTIFY next, for the subscription state and the 200.
        """
        if subscribe.method != "SUBSCRIBE" or notify.method != "NOTIFY":
            raise LocalProtocolError("from_notify takes a SUBSCRIBE and a NOTIFY")
        if notify.call_id != subscribe.call_id or notify.to_addr.tag != subscribe.from_addr.tag:
            raise LocalProtocolError("the NOTIFY does not belong to this SUBSCRIBE")
        remote_target = _target_of(notify)
        if remote_target is None:
            raise RemoteProtocolError("NOTIFY without Contact", status_hint=400)
        seq = subscribe.cseq.seq
        dialog = cls._compact(
            _ROLE_UAC,
            _STATE_CONFIRMED,
            subscribe.call_id,
            _split_party(subscribe.from_addr, subscribe.headers.get("from")),
            _split_party(notify.from_addr, notify.headers.get("from")),
            cls._our_contact(subscribe),
            remote_target,
            notify.record_route,
            seq,
            None,
            seq,
            "SUBSCRIBE",
            subscribe.uri.scheme == "sips",
            local_via,
        )
        dialog._add_subscriber_usage(subscribe)
        return dialog

    @classmethod
    def from_uas(
        cls,
        request: Request,
        local_tag: str | None = None,
        local_contact: NameAddr | URI | str | None = None,
        *,
        local_via: LocalVia | None = None,
    ) -> Dialog:
        """The dialog we create by answering an INVITE or SUBSCRIBE (RFC 3261 12.1.1).

        It starts EARLY and becomes CONFIRMED when :meth:`create_response`
        builds the 2xx (TERMINATED on a failure).  The route set is the
        request's Record-Route in order, the remote target its Contact.
        """
        if request.method not in DIALOG_CREATING_METHODS:
            raise LocalProtocolError(f"{request.method} does not create dialogs")
        to_addr = request.to_addr
        if to_addr.tag is not None:
            raise LocalProtocolError("a request with a To tag is inside a dialog already")
        if local_contact is None:
            raise LocalProtocolError("a UAS dialog needs a local Contact")
        remote_target = _target_of(request)
        if remote_target is None:
            raise RemoteProtocolError(f"{request.method} without Contact", status_hint=400)
        if local_tag is not None:
            to_addr.with_tag(local_tag)  # refuses a tag that is not a token
        tag = local_tag if local_tag is not None else new_tag()
        seq = request.cseq.seq
        dialog = cls._compact(
            _ROLE_UAS,
            _STATE_EARLY,
            request.call_id,
            (_whole_party(to_addr, _single(request.headers.get("to"))), tag),
            _split_party(request.from_addr, request.headers.get("from")),
            _party_of(local_contact),
            remote_target,
            request.record_route,
            None,
            seq,
            seq,
            request.method,
            request.uri.scheme == "sips",
            local_via,
        )
        if request.method == "SUBSCRIBE":
            event = _event_of(request)
            if event is None:
                raise RemoteProtocolError("SUBSCRIBE without Event", status_hint=400)
            dialog._append_sub(
                Subscription(event.package, event.id, expires=_expires(request), notifier=True)
            )
        return dialog

    @staticmethod
    def _our_contact(request: Request) -> _PartyRef:
        raw = _single(request.headers.get("contact"))
        if raw is not None:
            # Our usual Contact: no need to parse it again.
            party: _PartyRef | None = _TEXTS.get(raw) or _PARTIES.get(raw)
            if party is not None:
                return party
        contacts = request.contacts
        if not contacts:
            raise LocalProtocolError(f"our {request.method} has no Contact")
        return _whole_party(contacts[0], raw)

    @staticmethod
    def _check_response(request: Request, response: Response) -> None:
        if response.call_id != request.call_id:
            raise LocalProtocolError("the response does not answer this request")
        # A From copied as it was (the usual case) has the same tag, unparsed.
        if (
            response.headers.get("from") != request.headers.get("from")
            and response.from_addr.tag != request.from_addr.tag
        ):
            raise LocalProtocolError("the response does not answer this request")
        cseq = response.cseq
        if cseq.seq != request.cseq.seq or cseq.method != request.method:
            raise LocalProtocolError("the response's CSeq does not match the request")

    # -- identity and usages -----------------------------------------------------
    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @property
    def terminated(self) -> bool:
        return self.state is _STATE_TERMINATED

    @property
    def warn_agent(self) -> str:
        """Our host[:port] for Warning headers, taken from our Contact."""
        return _agent_of(_ref_addr(self._contact, "").uri)

    def find_subscription(self, event: EventHeader, *, notifier: bool) -> Subscription | None:
        for sub in self._sub_list():
            if sub.notifier is notifier and sub.matches(event):
                return sub
        return None

    def add_subscription(self, subscription: Subscription) -> None:
        """Attach a usage the dialog cannot see by itself (a REFER's implicit one)."""
        if self.terminated:
            raise LocalProtocolError("the dialog is terminated")
        self._append_sub(subscription)

    def _add_subscriber_usage(self, subscribe: Request) -> Subscription:
        event = _event_of(subscribe)
        if event is None:
            raise LocalProtocolError("a SUBSCRIBE needs an Event header")
        sub = self.find_subscription(event, notifier=False)
        if sub is None or sub.terminated:
            if sub is not None:
                self._remove_sub(sub)
            sub = Subscription(event.package, event.id)
            self._append_sub(sub)
        return sub

    def _end_subscription(self, sub: Subscription, reason: str | None) -> None:
        if not sub.terminated:
            sub.apply(SubscriptionStatus(_SUB_TERMINATED, reason=reason))
        if not self._flags & _INVITE_USAGE and all(s.terminated for s in self._sub_list()):
            self._fire(_IN_LAST_USAGE_ENDED)

    def _fire(self, event: DialogInput) -> None:
        self.state = next_dialog_state(self.role, self.state, event)
        if self.state is _STATE_TERMINATED:
            self._flags &= ~_INVITE_USAGE
            for sub in self._sub_list():
                if not sub.terminated:
                    sub.apply(SubscriptionStatus(_SUB_TERMINATED, reason=None))

    def _fire_remote(self, event: DialogInput) -> None:
        try:
            self._fire(event)
        except LocalProtocolError as exc:
            raise RemoteProtocolError(exc.reason, status_hint=exc.status_hint) from exc

    # -- sending -----------------------------------------------------------------
    def create_request(
        self,
        method: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """Build an in-dialog request (RFC 3261 12.2.1.1) with the next local CSeq.

        BYE ends the dialog at once (15.1.1: the session is over once BYE is
        handed to its transaction).  An INVITE may not overlap another of our
        INVITEs (14.1).  A SUBSCRIBE adds (or refreshes) the subscription of
        its Event header.  A NOTIFY we send as notifier updates ours.
        """
        method = method.upper()
        if method in ("ACK", "CANCEL"):
            raise LocalProtocolError(
                f"{method} is not built this way: create_ack() for a 2xx, the "
                "transaction layer for CANCEL"
            )
        # Check everything before the state moves.
        _check_method(method)
        extra = _checked(headers, content_type, _MANAGED_REQUEST_HEADERS)
        self._check_can_send()
        if method == "INVITE" and self._pending_invite is not None:
            raise LocalProtocolError("an INVITE is already in progress in this dialog (491)")
        seq = (self.local_cseq or 0) + 1
        if seq >= 2**31:
            raise LocalProtocolError("the local CSeq ran past 2**31")
        if method in ("SUBSCRIBE", "NOTIFY"):
            probe = Headers.trusted(extra)
            event = probe.get("event")
            if event is not None:
                parse_event(event)
            if method == "SUBSCRIBE" and event is None:
                raise LocalProtocolError("a SUBSCRIBE needs an Event header")
            if method == "NOTIFY" and (event is None or probe.get("subscription-state") is None):
                raise LocalProtocolError("a NOTIFY needs Event and Subscription-State headers")
        self._fire(_IN_SEND_BYE if method == "BYE" else _IN_SEND_REQUEST)
        self.local_cseq = seq
        request = self._build(method, seq, extra, body)
        if method == "INVITE":
            self._pending_invite = seq
        elif method == "SUBSCRIBE":
            self._add_subscriber_usage(request)
        elif method == "NOTIFY":
            self._sent_notify(request)
        return request

    def _check_can_send(self) -> None:
        if self.local_via is None:
            raise LocalProtocolError("the dialog has no local Via to send requests with")

    def create_ack(
        self, response: Response, *, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """The ACK for a 2xx to an INVITE (RFC 3261 13.2.2.4).

        CSeq number of the INVITE, method ACK, Route/Request-URI as for any
        in-dialog request, a branch of its own.  Hand the 2xx to
        :meth:`receive_response` first, so the remote target is current.
        """
        cseq = response.cseq
        if not 200 <= response.status <= 299 or cseq.method != "INVITE":
            raise LocalProtocolError("only a 2xx to an INVITE is ACKed by the dialog")
        if response.call_id != self.call_id or _tag(response.to_addr) != self.remote_tag:
            raise LocalProtocolError("the 2xx belongs to another dialog")
        extra = _checked((), content_type, _MANAGED_REQUEST_HEADERS)
        self._check_can_send()
        self._fire(_IN_SEND_ACK)
        return self._build("ACK", cseq.seq, extra, body)

    def _build(
        self,
        method: str,
        seq: int,
        extra: list[tuple[str, str]],
        body: bytes,
        content_type: str | None = None,
    ) -> Request:
        """The request, with ``extra`` (checked by :func:`_checked`) after the dialog's lines.

        ``content_type`` is for callers that pass it apart (the allocator's
        BYE sent again); it is checked here.
        """
        assert self.local_via is not None  # _check_can_send() ran
        if content_type is not None:
            extra = [*extra, *_checked((), content_type, _MANAGED_REQUEST_HEADERS)]
        uri, routes = self._target_and_routes()
        via_text, via = _fresh_via_line(self.local_via)
        headers: list[tuple[str, str]] = [
            ("Via", via_text),
            ("Max-Forwards", _MAX_FORWARDS),
        ]
        if routes:
            headers.append(("Route", ", ".join(routes)))
        headers += [
            ("From", _ref_text(self._local, self.local_tag)),
            ("To", _ref_text(self._remote, self.remote_tag)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{seq} {method}"),
        ]
        if method in _CONTACT_METHODS:
            headers.append(("Contact", _ref_text(self._contact, "")))
        headers += extra
        parsed = {"via": via, "cseq": CSeq(seq, method)}
        return Request.trusted(method, uri, headers, body, parsed=parsed)

    def request_target(self) -> tuple[URI, list[NameAddr]]:
        """Request-URI and Route values for the next request (RFC 3261 12.2.1.1).

        Empty route set: the remote target, no Route.  Loose (``lr``) first
        route: the remote target, the route set as Route.  Strict first route:
        that route's URI (stripped of what a Request-URI may not hold), the
        remaining routes with the remote target appended.
        """
        routes = self._routes
        if not routes:
            return _request_uri(_uri_of(self._target)), []
        first = routes[0].addr
        if _is_loose(first):
            return _request_uri(_uri_of(self._target)), [route.addr for route in routes]
        return _request_uri(first.uri), [
            *(route.addr for route in routes[1:]),
            NameAddr(uri=_uri_of(self._target)),
        ]

    def _target_and_routes(self) -> tuple[URI, list[str]]:
        """:meth:`request_target` with the Route values as text."""
        routes = self._routes
        if not routes:
            return _request_uri(_uri_of(self._target)), []
        first = routes[0].addr
        if _is_loose(first):
            return _request_uri(_uri_of(self._target)), [route.text for route in routes]
        return _request_uri(first.uri), [
            *(route.text for route in routes[1:]),
            f"<{self._target}>",
        ]

    def _sent_notify(self, notify: Request) -> None:
        event = _event_of(notify)
        state = notify.headers.get("subscription-state")
        # create_request checked that both are there.
        assert event is not None
        assert state is not None
        sub = self.find_subscription(event, notifier=True)
        if sub is None:
            return
        status = parse_subscription_state(state)
        sub.apply(status)
        if status.state is _SUB_TERMINATED:
            self._end_subscription(sub, status.reason)

    def create_response(
        self,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Response:
        """Answer a request of this dialog: our To tag, Contact where needed.

        For the request that created a UAS dialog the response also copies its
        Record-Route (12.1.1) and moves the dialog: 1xx keeps it early, 2xx
        confirms it, a failure ends it.
        """
        if request.call_id != self.call_id or _tag(request.from_addr) != self.remote_tag:
            raise LocalProtocolError("the request belongs to another dialog")
        headers = list(headers)
        _check_headers(headers, _MANAGED_RESPONSE_HEADERS)
        initial = (
            self.role is _ROLE_UAS
            and request.method == self.initial_method
            and request.cseq.seq == self.initial_cseq
            and request.to_addr.tag is None
        )
        extra: list[tuple[str, str]] = []
        if initial and 101 <= status <= 299:
            extra += [("Record-Route", value) for value in request.headers.get_all("record-route")]
        if 101 <= status <= 299 and request.method in _CONTACT_METHODS:
            _check_headers(headers, frozenset(("contact",)))
            extra.append(("Contact", _ref_text(self._contact, "")))
        if content_type is not None:
            extra.append(("Content-Type", content_type))
        if initial and status > 100:
            if status < 200:
                self._fire(_IN_SEND_PROVISIONAL)
            elif status < 300:
                self._fire(_IN_SEND_2XX)
            else:
                self._fire(_IN_SEND_FAILURE)
        return make_response(
            request, status, reason, to_tag=self.local_tag, headers=extra + headers, body=body
        )

    def _error_response(self, request: Request, status: int, text: str) -> Response:
        return make_response(
            request,
            status,
            to_tag=self.local_tag,
            headers=[("Warning", warning_value(self.warn_agent, text))],
        )

    # -- receiving ---------------------------------------------------------------
    def receive_response(self, request: Request, response: Response) -> None:
        """Take in a response to a request this dialog sent.

        Moves the state (1xx/2xx/failure to the dialog-creating INVITE; 481
        and 408 end the dialog, 12.2.1.2), refreshes the remote target on a
        2xx to a target refresh request, and keeps subscriptions current.  A
        transaction timeout should be passed in as a 408 the TU makes up.
        Raises :class:`RemoteProtocolError` for a response that cannot happen
        in the current state (drop it).
        """
        self._check_response(request, response)
        if response.call_id != self.call_id or _tag(response.to_addr) != self.remote_tag:
            if response.status < 200 and response.to_addr.tag is None:
                return  # a 100 Trying (or a tagless 1xx) concerns no dialog
            raise LocalProtocolError("the response belongs to another dialog")
        status = response.status
        method = request.method
        if method == "INVITE" and status >= 200 and request.cseq.seq == self._pending_invite:
            self._pending_invite = None
        initial = (
            self.role is _ROLE_UAC
            and method == self.initial_method
            and request.cseq.seq == self.initial_cseq
        )
        if initial and method == "INVITE":
            self._initial_invite_response(response)
        elif status in (408, 481):
            self._fire_remote(_IN_RECV_DIALOG_FAILURE)
        elif initial and 200 <= status <= 299:
            # A 2xx to our SUBSCRIBE after its NOTIFY made the dialog.
            self._fire_remote(_IN_RECV_2XX)
        else:
            self._fire_remote(_IN_RECV_RESPONSE)
            if 200 <= status <= 299 and method in TARGET_REFRESH_METHODS:
                self._refresh_target(response)
        if method == "SUBSCRIBE" and not self.terminated:
            self._subscribe_response(request, response)

    def _initial_invite_response(self, response: Response) -> None:
        status = response.status
        if status < 200:
            if response.to_addr.tag is None:
                return
            before = self.state
            self._fire_remote(_IN_RECV_PROVISIONAL)
            if before is _STATE_EARLY:
                self._refresh_target(response)
        elif status < 300:
            before = self.state
            self._fire_remote(_IN_RECV_2XX)
            if before is _STATE_EARLY:
                # 13.2.2.4: the route set is recomputed from the 2xx.
                self._routes = _routes_of(reversed(response.record_route))
                self._refresh_target(response)
        else:
            self._fire_remote(_IN_RECV_FAILURE)

    def _refresh_target(self, message: Request | Response) -> None:
        target = _target_of(message)
        if target is not None:
            self._target = target

    def _subscribe_response(self, request: Request, response: Response) -> None:
        event = _event_of(request)
        sub = self.find_subscription(event, notifier=False) if event is not None else None
        if sub is None or response.status < 200:
            return
        if response.status < 300:
            expires = _expires(response)
            if expires is not None:
                sub.expires = expires
        elif sub.state is _SUB_NOTIFY_WAIT or response.status in _SUBSCRIBE_FATAL:
            # The first SUBSCRIBE failed, or a refresh failed for good (6665 4.1.2.2).
            self._end_subscription(sub, "rejected")

    def receive_request(self, request: Request) -> Response | None:
        """Take in a request the peer sent in this dialog; maybe answer it.

        Returns the response the dialog can give by itself: 200 to BYE and to a
        NOTIFY of a known subscription; 481 once terminated (but 200 to a BYE
        that crossed ours) or for an unknown subscription; 500 for a CSeq below
        the last one (12.2.2); 491 for an INVITE while ours is pending (14.2);
        400 for a malformed NOTIFY.
        None: the TU answers (use :meth:`create_response`); always None for ACK.
        """
        if request.call_id != self.call_id or request.to_addr.tag != self.local_tag:
            raise LocalProtocolError("the request belongs to another dialog")
        if _tag(request.from_addr) != self.remote_tag:
            raise LocalProtocolError("the request belongs to another dialog")
        method = request.method
        if method == "ACK":
            self._fire_remote(_IN_RECV_ACK)
            return None
        seq = request.cseq.seq
        live = self.state is not _STATE_TERMINATED
        if live and self.remote_cseq is not None and seq < self.remote_cseq:
            return self._error_response(
                request, 500, f"CSeq {seq} is below {self.remote_cseq}, out of order"
            )
        self._fire_remote(_IN_RECV_BYE if method == "BYE" else _IN_RECV_REQUEST)
        if self.state is _STATE_TERMINATED and method != "BYE":
            return self._error_response(request, 481, "the dialog has ended")
        if self.remote_cseq is None or seq > self.remote_cseq:
            self.remote_cseq = seq
        if method == "BYE":
            return make_response(request, 200, to_tag=self.local_tag)
        if method in TARGET_REFRESH_METHODS:
            self._refresh_target(request)
        if method == "INVITE" and self._pending_invite is not None:
            return make_response(request, 491, to_tag=self.local_tag)
        if method == "NOTIFY":
            return self._receive_notify(request)
        if method == "SUBSCRIBE":
            self._receive_subscribe(request)
        return None

    def _receive_notify(self, request: Request) -> Response:
        try:
            event = _event_of(request)
            state = request.headers.get("subscription-state")
            if event is None or state is None:
                raise SIPParseError("NOTIFY without Event or Subscription-State")
            status = parse_subscription_state(state)
        except SIPParseError as exc:
            return self._error_response(request, exc.status_hint, exc.reason)
        sub = self.find_subscription(event, notifier=False)
        if sub is None or sub.terminated:
            return self._error_response(request, 481, f"no subscription to {event}")
        sub.apply(status)
        if status.state is _SUB_TERMINATED:
            self._end_subscription(sub, status.reason)
        return self.create_response(request, 200)

    def _receive_subscribe(self, request: Request) -> None:
        # A refresh of a subscription the peer holds with us; the TU answers.
        event = _event_of(request)
        sub = self.find_subscription(event, notifier=True) if event is not None else None
        if sub is not None:
            expires = _expires(request)
            if expires is not None:
                sub.expires = expires

    # -- persistence -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The dialog as JSON types only, for a store (see :meth:`from_dict`).

        A ``local_via`` factory is not data: it is left out and must be given
        again to :meth:`from_dict`; a template Via is kept.
        """
        return {
            "format": _FORMAT,
            "role": self.role.value,
            "state": self.state.value,
            "call_id": self.call_id,
            "local_party": _ref_text(self._local, self.local_tag),
            "remote_party": _ref_text(self._remote, self.remote_tag),
            "local_contact": _ref_text(self._contact, ""),
            "remote_target": self._target,
            "route_set": [route.text for route in self._routes],
            "local_cseq": self.local_cseq,
            "remote_cseq": self.remote_cseq,
            "initial_cseq": self.initial_cseq,
            "initial_method": self.initial_method,
            "secure": self.secure,
            "has_invite_usage": self.has_invite_usage,
            "subscriptions": [sub.to_dict() for sub in self._sub_list()],
            "pending_invite": self._pending_invite,
            "local_via": str(self.local_via) if isinstance(self.local_via, Via) else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, local_via: LocalVia | None = None) -> Dialog:
        """Rebuild a dialog from :meth:`to_dict`; ``local_via`` overrides the stored one.

        Raises :class:`LocalProtocolError` for data that is not a stored dialog.
        """
        try:
            if data["format"] != _FORMAT:
                raise ValueError(f"unknown dialog format {data['format']!r}")
            stored_via = _opt_str(data["local_via"])
            if local_via is None and stored_via is not None:
                local_via = _parse_one_via(stored_via)
            local_party = data["local_party"]
            remote_party = data["remote_party"]
            local_contact = data["local_contact"]
            dialog = cls._compact(
                DialogRole(data["role"]),
                DialogState(data["state"]),
                str(data["call_id"]),
                _split_party(parse_name_addr(local_party), local_party),
                _split_party(parse_name_addr(remote_party), remote_party),
                _whole_party(parse_name_addr(local_contact), local_contact),
                _remember_uri(parse_uri(data["remote_target"]), data["remote_target"]),
                [parse_name_addr(route) for route in data["route_set"]],
                _opt_int(data["local_cseq"]),
                _opt_int(data["remote_cseq"]),
                int(data["initial_cseq"]),
                str(data["initial_method"]),
                bool(data["secure"]),
                local_via,
            )
            dialog.has_invite_usage = bool(data["has_invite_usage"])
            for item in data["subscriptions"]:
                dialog._append_sub(Subscription.from_dict(item))
            dialog._pending_invite = _opt_int(data["pending_invite"])
        except (AttributeError, KeyError, TypeError, ValueError, SIPParseError) as exc:
            raise LocalProtocolError(f"not a stored dialog: {exc}") from exc
        return dialog

    def __repr__(self) -> str:
        return f"<Dialog {self.role.name} {self.state.name} {self.id}>"


def _parse_one_via(value: str) -> Via:
    vias = parse_via_list(value)
    if len(vias) != 1:
        raise ValueError(f"expected one Via, got {value!r}")
    return vias[0]


# -- the manager -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pending:
    """An out-of-dialog INVITE/SUBSCRIBE of ours that may still create dialogs."""

    request: Request
    event: EventHeader | None
    #: The dialogs (forks) it created so far: ending them takes no scan of the table.
    forks: list[Dialog] = field(default_factory=list)


class DialogManager:
    """All the dialogs of one UA, keyed by :class:`DialogId`.

    It creates dialogs from responses to the INVITEs and SUBSCRIBEs it is
    told about (:meth:`track`, or built with :meth:`create_initial_request`):
    forked responses with different To tags make different dialogs, and a
    NOTIFY that beats the 2xx to a SUBSCRIBE makes the dialog too.  The TU
    calls :meth:`forget` when the client transaction of such a request ends
    (64*T1 after the first 2xx, RFC 3261 13.2.2.4).
    """

    __slots__ = ("_count", "_dialogs", "_pending", "local_via", "warn_agent")

    def __init__(self, *, local_via: LocalVia, warn_agent: str | None = None) -> None:
        self.local_via = local_via
        if warn_agent is None:
            if isinstance(local_via, Via):
                port = f":{local_via.port}" if local_via.port is not None else ""
                warn_agent = local_via.host + port
            else:
                warn_agent = "vidim"
        self.warn_agent = warn_agent
        # Keyed by Call-ID (the dialog's own string, so the key costs nothing):
        # one dialog, or a list when several share the Call-ID (forks).  A
        # DialogId key was an object of 56 bytes per dialog, made again for
        # every lookup.
        self._dialogs: dict[str, Dialog | list[Dialog]] = {}
        self._count = 0
        self._pending: dict[tuple[str, str], _Pending] = {}

    # -- the table ---------------------------------------------------------------
    def _values(self) -> list[Dialog]:
        out: list[Dialog] = []
        for entry in self._dialogs.values():
            if isinstance(entry, Dialog):
                out.append(entry)
            else:
                out.extend(entry)
        return out

    def _find(self, call_id: str, local_tag: str, remote_tag: str) -> Dialog | None:
        entry = self._dialogs.get(call_id)
        if entry is None:
            return None
        if isinstance(entry, Dialog):
            if entry.local_tag == local_tag and entry.remote_tag == remote_tag:
                return entry
            return None
        for dialog in entry:
            if dialog.local_tag == local_tag and dialog.remote_tag == remote_tag:
                return dialog
        return None

    def _insert(self, dialog: Dialog) -> None:
        """Put ``dialog`` in the table (no dialog with its id is there)."""
        call_id = dialog.call_id
        entry = self._dialogs.get(call_id)
        if entry is None:
            self._dialogs[call_id] = dialog
        elif isinstance(entry, Dialog):
            self._dialogs[call_id] = [entry, dialog]
        else:
            entry.append(dialog)
        self._count += 1

    def __iter__(self) -> Iterator[Dialog]:
        return iter(self._values())

    def __len__(self) -> int:
        return self._count

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._find(dialog_id.call_id, dialog_id.local_tag, dialog_id.remote_tag)

    def add(self, dialog: Dialog) -> None:
        if self._find(dialog.call_id, dialog.local_tag, dialog.remote_tag) is not None:
            raise LocalProtocolError(f"dialog {dialog.id} exists already")
        if dialog.local_via is None:
            dialog.local_via = self.local_via
        self._insert(dialog)

    def remove(self, dialog: Dialog) -> None:
        """Drop the dialog with ``dialog``'s id, if there is one."""
        call_id = dialog.call_id
        entry = self._dialogs.get(call_id)
        if entry is None:
            return
        local_tag, remote_tag = dialog.local_tag, dialog.remote_tag
        if isinstance(entry, Dialog):
            if entry.local_tag == local_tag and entry.remote_tag == remote_tag:
                del self._dialogs[call_id]
                self._count -= 1
            return
        for index, other in enumerate(entry):
            if other.local_tag == local_tag and other.remote_tag == remote_tag:
                del entry[index]
                self._count -= 1
                if len(entry) == 1:
                    self._dialogs[call_id] = entry[0]
                return

    def prune(self) -> list[Dialog]:
        """Drop the terminated dialogs and return them."""
        gone = [d for d in self._values() if d.terminated]
        for dialog in gone:
            self.remove(dialog)
        return gone

    def dialogs_of(self, request: Request) -> list[Dialog]:
        """The dialogs (forks) that an out-of-dialog request of ours created."""
        entry = self._dialogs.get(request.call_id)
        if entry is None:
            return []
        tag = _tag(request.from_addr)
        candidates = [entry] if isinstance(entry, Dialog) else entry
        return [d for d in candidates if d.local_tag == tag]

    # -- out-of-dialog requests --------------------------------------------------
    def create_initial_request(
        self,
        method: str,
        uri: URI | str,
        *,
        from_addr: NameAddr | URI | str,
        to_addr: NameAddr | URI | str,
        contact: NameAddr | URI | str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        call_id: str | None = None,
        cseq: int = 1,
    ) -> Request:
        """An out-of-dialog request: new Call-ID and From tag, fresh Via.

        INVITE and SUBSCRIBE are tracked, so that their responses (and a
        SUBSCRIBE's NOTIFYs) create dialogs.
        """
        method = method.upper()
        _check_method(method)
        extra = _checked(headers, content_type, _MANAGED_REQUEST_HEADERS)
        # The parties are shared and their texts made once (see _party_of):
        # the TU gives the same From, To and Contact for request after request.
        local = _party_of(from_addr)
        remote = _party_of(to_addr)
        if remote.tagged:
            raise LocalProtocolError("an out-of-dialog request has no To tag")
        target = _uri_of(uri) if isinstance(uri, str) else uri
        if local.tagged:
            tag = local.addr.tag or new_tag()
            from_text = str(local.addr.with_tag(tag))
        else:
            tag = new_tag()
            from_text = f"{local.text};tag={tag}"
        if call_id is not None:
            call_id = Headers([("Call-ID", call_id)]).get("call-id")
        via_text, via = _fresh_via_line(self.local_via)
        out: list[tuple[str, str]] = [
            ("Via", via_text),
            ("Max-Forwards", _MAX_FORWARDS),
            ("From", from_text),
            ("To", remote.text),
            ("Call-ID", call_id or new_call_id()),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", _party_of(contact).text),
            *extra,
        ]
        parsed = {"via": via, "cseq": CSeq(cseq, method)}
        request = Request.trusted(method, _request_uri(target), out, body, parsed=parsed)
        if method in DIALOG_CREATING_METHODS:
            self._track(request, tag)
        return request

    def track(self, request: Request) -> None:
        """Let responses to this out-of-dialog INVITE/SUBSCRIBE create dialogs."""
        if request.method not in DIALOG_CREATING_METHODS:
            raise LocalProtocolError(f"{request.method} does not create dialogs")
        tag = request.from_addr.tag
        if tag is None:
            raise LocalProtocolError("our request has no From tag")
        self._track(request, tag)

    def _track(self, request: Request, tag: str) -> None:
        event = _event_of(request) if request.method == "SUBSCRIBE" else None
        if request.method == "SUBSCRIBE" and event is None:
            raise LocalProtocolError("a SUBSCRIBE needs an Event header")
        self._pending[(request.call_id, tag)] = _Pending(request, event)

    def forget(self, request: Request) -> list[Dialog]:
        """Stop tracking ``request``; its still-early dialogs end (13.2.2.4).

        Returns the dialogs that this terminated.
        """
        pending = self._pending.pop((request.call_id, _tag(request.from_addr)), None)
        ended = []
        for dialog in self._forks(pending):
            if dialog.state is _STATE_EARLY:
                dialog._fire(_IN_RECV_FAILURE)
                ended.append(dialog)
        return ended

    # -- receiving ---------------------------------------------------------------
    def receive_response(self, request: Request, response: Response) -> Dialog | None:
        """Route a response to the dialog it belongs to, creating one if due.

        Returns that dialog (look at its ``state``), or None when the response
        concerns no dialog (a 100, a failure that created nothing).  A non-2xx
        final to a tracked request ends every early dialog it made (12.3).
        """
        call_id = request.call_id
        local_tag = _tag(request.from_addr)
        to_tag = response.to_addr.tag
        pending = self._pending.get((call_id, local_tag))
        tracked = pending is not None and pending.request.cseq == request.cseq
        status = response.status
        dialog = None
        if to_tag is not None or status >= 200:
            dialog = self._find(call_id, local_tag, to_tag or "")
        if dialog is not None:
            dialog.receive_response(request, response)
        elif tracked and self._creates_dialog(request, response):
            dialog = Dialog.from_uac(request, response, local_via=self.local_via)
            self._insert(dialog)
            assert pending is not None
            pending.forks.append(dialog)
        if tracked and status >= 300:
            for other in self._forks(pending):
                if other.state is _STATE_EARLY:
                    other._fire(_IN_RECV_FAILURE)
        return dialog

    @staticmethod
    def _creates_dialog(request: Request, response: Response) -> bool:
        status = response.status
        if 200 <= status <= 299:
            return True
        return (
            request.method == "INVITE" and 101 <= status <= 199 and response.to_addr.tag is not None
        )

    def match_request(self, request: Request) -> Dialog | None:
        """The live dialog a peer's request belongs to, or None."""
        local_tag = request.to_addr.tag
        if local_tag is None:
            return None
        dialog = self._find(request.call_id, local_tag, _tag(request.from_addr))
        if dialog is not None and dialog.terminated:
            return None
        return dialog

    def receive_request(self, request: Request) -> tuple[Dialog | None, Response | None]:
        """Route a peer's request to its dialog; returns (dialog, automatic response).

        (None, None): no To tag, the request is out of dialog and the TU's
        business (a new INVITE: see :meth:`accept`), or a stray ACK to drop.
        (None, 481): a To tag that matches no dialog (12.2.2).  A NOTIFY that
        matches a tracked SUBSCRIBE creates its dialog (RFC 6665 4.1.2.4).
        """
        local_tag = request.to_addr.tag
        if local_tag is None:
            return None, None
        dialog = self.match_request(request)
        if dialog is None and request.method == "BYE":
            # A BYE that crossed ours: the dialog has ended here, and still
            # the peer's BYE gets its 200, not a 481 (RFC 3261 15.1.2).
            ended = self._find(request.call_id, local_tag, _tag(request.from_addr))
            if ended is not None:
                return ended, ended.receive_request(request)
        if dialog is None and request.method == "NOTIFY":
            dialog = self._dialog_from_notify(request)
        if dialog is None:
            if request.method == "ACK":
                return None, None
            return None, unknown_dialog_response(request, warn_agent=self.warn_agent)
        return dialog, dialog.receive_request(request)

    def _dialog_from_notify(self, notify: Request) -> Dialog | None:
        pending = self._pending.get((notify.call_id, notify.to_addr.tag or ""))
        if pending is None or pending.event is None:
            return None
        try:
            event = _event_of(notify)
        except SIPParseError:
            return None
        if event is None or not pending.event.matches(event.package, event.id):
            return None
        dialog = Dialog.from_notify(pending.request, notify, local_via=self.local_via)
        self._insert(dialog)
        pending.forks.append(dialog)
        return dialog

    def _forks(self, pending: _Pending | None) -> list[Dialog]:
        """The dialogs a tracked request created that are still in the table."""
        if pending is None:
            return []
        return [d for d in pending.forks if self._find(d.call_id, d.local_tag, d.remote_tag) is d]

    def accept(
        self,
        request: Request,
        *,
        local_contact: NameAddr | URI | str,
        local_tag: str | None = None,
    ) -> Dialog:
        """A UAS dialog for an INVITE/SUBSCRIBE we will answer (see :meth:`Dialog.from_uas`)."""
        dialog = Dialog.from_uas(request, local_tag, local_contact, local_via=self.local_via)
        self.add(dialog)
        return dialog

    # -- persistence -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The live dialogs as JSON types (tracked requests die with their transactions)."""
        return {"dialogs": [d.to_dict() for d in self._values() if not d.terminated]}

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, local_via: LocalVia, warn_agent: str | None = None
    ) -> DialogManager:
        manager = cls(local_via=local_via, warn_agent=warn_agent)
        for item in data["dialogs"]:
            manager.add(Dialog.from_dict(item, local_via=local_via))
        return manager
