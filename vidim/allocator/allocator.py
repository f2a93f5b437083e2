"""The conference allocator: the sans-IO object the daemon is a thin loop around.

Three inputs, as in aioquic's ``QuicConnection``:

* messages: :meth:`Allocator.receive` (parsed) or :meth:`Allocator.receive_datagram`;
* the clock: :meth:`Allocator.get_timer` gives the next deadline and
  :meth:`Allocator.handle_timer` fires what is due;
* API calls: :meth:`Allocator.end_conference`, :meth:`Allocator.restore`.

After any of them, send :meth:`Allocator.messages_to_send` and read
:meth:`Allocator.next_event`.  The allocator owns a
:class:`~vidim.sip.TransactionLayer` and a :class:`~vidim.sip.DialogManager`;
each conference is a :class:`~vidim.allocator.conference.Conference` record
that moves through its transition table and serializes to plain data.
"""

from __future__ import annotations

import binascii
import contextlib
import heapq
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Final

from ..conference_info import (
    CONFERENCE_INFO_TYPE,
    ConferenceInfo,
    apply_update,
    parse_conference_info,
)
from ..core import SipCoreBase
from ..sdp import capabilities_from_feature_tags, capabilities_from_sdp
from ..sip import (
    DEFAULT_POLICY,
    URI,
    AckReceived,
    Address,
    CSeq,
    Dialog,
    DialogManager,
    Event,
    LocalProtocolError,
    MessageDiscarded,
    NameAddr,
    RemoteProtocolError,
    Request,
    RequestReceived,
    RequestRejectedError,
    Response,
    ResponseReceived,
    ServerPolicy,
    SipURI,
    TransactionConfig,
    TransactionId,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    Via,
    check_request,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_uri,
    summary,
    warning_value,
)
from ..sip.ids import random_bytes
from ..vocabulary import Capabilities, Mode, effective_mode, is_trusted
from .conference import (
    NO_TIMER,
    Conference,
    ConferenceInput,
    ConferenceState,
    Participant,
    ProbeResult,
)
from .events import (
    AllocatorEvent,
    ConferenceEnded,
    ConferenceFailed,
    ConferenceReady,
    ConferenceStateChanged,
    InvitationFailed,
    InvitationSent,
    MessageIgnored,
    ParticipantJoined,
    ParticipantLeft,
    RequestAccepted,
    RequestRefused,
)
from .profiles import (
    FocusProfile,
    anchor_session_id,
    conference_uri,
    focus_request,
    join_uri,
)
from .requests import (
    AddInvitees,
    Command,
    EndConference,
    Invitee,
    NewConference,
    RequestPolicy,
    RequestRefusedError,
    ShowHelp,
    ShowStatus,
    help_text,
    parse_request,
)

__all__ = ["Allocator", "AllocatorConfig", "address_of"]

_ALLOW = "MESSAGE, OPTIONS, NOTIFY, BYE, ACK, CANCEL"
#: Probe answers that mean "this invitee has no phone to call with now".
_UNREACHABLE = frozenset((404, 408, 410, 480, 503, 504, 603, 604))
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocatorConfig:
    """Everything an :class:`Allocator` is told; every default is documented in docs/."""

    #: Where the allocator receives: its Via and Contact.
    local: Address = field(default_factory=lambda: Address("127.0.0.1", 5070))
    #: Request forms, trust and limits (see :mod:`vidim.allocator.requests`).
    requests: RequestPolicy = field(default_factory=RequestPolicy)
    #: Focus URIs in failover order.
    focus_uris: tuple[str, ...] = ("sip:conference-factory@127.0.0.1:5080",)
    profile: FocusProfile = FocusProfile.RFC4579
    #: The IM server: all IMs and probes go through it when set.
    proxy: Address | None = None
    #: Capability probing with OPTIONS.
    probe: bool = True
    probe_timeout: float = 2.0
    #: How long a focus has to answer the INVITE before the next one is tried.
    focus_timeout: float = 8.0
    #: A conference nobody joined within this time ends.
    idle_timeout: float = 300.0
    #: In-dialog OPTIONS on the anchor to check that the focus lives.
    keepalive_interval: float = 30.0
    subscription_expires: int = 3600
    #: New conferences per requester per window.
    rate_limit: int = 5
    rate_window: float = 60.0
    max_conferences: int = 100_000
    transactions: TransactionConfig = field(default_factory=TransactionConfig)

    @property
    def warning_host(self) -> str:
        return self.requests.domain


class _Purpose(Enum):
    __hash__ = object.__hash__  # members are singletons: C-level hash

    PROBE = "probe"
    FOCUS_INVITE = "focus invite"
    REINVITE = "re-invite"
    INVITATION = "invitation"
    NOTICE = "notice"
    SUBSCRIBE = "subscribe"
    RESUBSCRIBE = "resubscribe"
    KEEPALIVE = "keepalive"
    BYE = "bye"
    CLEANUP = "cleanup"


class _Pending:
    """What a request we sent is for (a plain class: compiled, its constructor is a C call)."""

    __slots__ = ("conference_id", "purpose", "request", "target")

    purpose: _Purpose
    conference_id: str | None
    request: Request
    #: The participant URI, or the focus index.
    target: str

    def __init__(
        self, purpose: _Purpose, conference_id: str | None, request: Request, target: str = ""
    ) -> None:
        self.purpose = purpose
        self.conference_id = conference_id
        self.request = request
        self.target = target


# Enum members as constants: compiled, a Final is a C global, a class attribute a lookup.
_IN_ADD_INVITEES: Final = ConferenceInput.ADD_INVITEES
_IN_BYE_DONE: Final = ConferenceInput.BYE_DONE
_IN_END_REQUESTED: Final = ConferenceInput.END_REQUESTED
_IN_FOCUS_ANSWERED: Final = ConferenceInput.FOCUS_ANSWERED
_IN_FOCUS_DEAD: Final = ConferenceInput.FOCUS_DEAD
_IN_FOCUS_ENDED: Final = ConferenceInput.FOCUS_ENDED
_IN_FOCUS_FAILED_NO_MORE: Final = ConferenceInput.FOCUS_FAILED_NO_MORE
_IN_FOCUS_FAILED_TRY_NEXT: Final = ConferenceInput.FOCUS_FAILED_TRY_NEXT
_IN_IDLE_TIMEOUT: Final = ConferenceInput.IDLE_TIMEOUT
_IN_PROBES_DONE: Final = ConferenceInput.PROBES_DONE
_IN_ROSTER_CHANGED: Final = ConferenceInput.ROSTER_CHANGED
_IN_START_ALLOCATING: Final = ConferenceInput.START_ALLOCATING
_IN_START_PROBING: Final = ConferenceInput.START_PROBING
_MODE_CHAT: Final = Mode.CHAT
_PROFILE_RFC4579: Final = FocusProfile.RFC4579
_PR_ANSWERED: Final = ProbeResult.ANSWERED
_PR_UNKNOWN: Final = ProbeResult.UNKNOWN
_PR_UNREACHABLE: Final = ProbeResult.UNREACHABLE
_P_BYE: Final = _Purpose.BYE
_P_CLEANUP: Final = _Purpose.CLEANUP
_P_FOCUS_INVITE: Final = _Purpose.FOCUS_INVITE
_P_INVITATION: Final = _Purpose.INVITATION
_P_KEEPALIVE: Final = _Purpose.KEEPALIVE
_P_NOTICE: Final = _Purpose.NOTICE
_P_PROBE: Final = _Purpose.PROBE
_P_REINVITE: Final = _Purpose.REINVITE
_P_RESUBSCRIBE: Final = _Purpose.RESUBSCRIBE
_P_SUBSCRIBE: Final = _Purpose.SUBSCRIBE
_ST_ACTIVE: Final = ConferenceState.ACTIVE
_ST_ALLOCATING: Final = ConferenceState.ALLOCATING
_ST_ENDING: Final = ConferenceState.ENDING
_ST_PROBING: Final = ConferenceState.PROBING
_ST_REQUESTED: Final = ConferenceState.REQUESTED
#: Why a conference moved, in words, per input (the same: ``.value``, looked up in C).
_INPUT_TEXT: Final[dict[ConferenceInput, str]] = {event: event.value for event in ConferenceInput}


def address_of(uri_text: str) -> Address:
    """Where to send a request for ``uri_text`` with no proxy (host literal, port, transport).

    Name resolution (RFC 3263) is the I/O layer's business: a host name is
    passed on as it is.
    """
    return _address_of_uri(parse_uri(uri_text))


def _address_of_uri(uri: URI) -> Address:
    """:func:`address_of` for a URI already parsed (a dialog's target or route)."""
    if not isinstance(uri, SipURI):
        raise LocalProtocolError(f"cannot send to a non-SIP URI {str(uri)!r}")
    host = uri.param("maddr") or uri.host
    host = host[1:-1] if host.startswith("[") else host
    transport = (uri.transport or ("tls" if uri.scheme == "sips" else "udp")).upper()
    port = uri.port or (5061 if transport == "TLS" else 5060)
    return Address(host, port, transport)


def _address_text(address: Address) -> str:
    return f"{address.host}|{address.port}|{address.transport}"


def _address_from_text(text: str) -> Address:
    host, port, transport = text.rsplit("|", 2)
    return Address(host, int(port), transport)


class Allocator(SipCoreBase[AllocatorEvent]):
    """Turns vidim requests into conferences on a focus, and looks after them."""

    def __init__(self, config: AllocatorConfig | None = None) -> None:
        self.config = config if config is not None else AllocatorConfig()
        local = self.config.local
        self._init_core(TransactionLayer(self.config.transactions))
        self._via = Via(local.transport, local.host, local.port, (("rport", None),))
        self._dialogs = DialogManager(local_via=self._via, warn_agent=self.config.warning_host)
        self._service = NameAddr(uri=self.config.requests.service_uri)
        # What every out-of-dialog request's Via, From and Call-ID start with,
        # written once: each request appends its fresh branch, tag and id.
        self._via_text = str(self._via) + ";branch="
        self._via_params = self._via.params
        self._from_text = str(self._service) + ";tag="
        self._call_id_suffix = "@" + local.host
        host = f"[{local.host}]" if ":" in local.host else local.host
        self._contact = NameAddr(uri=parse_uri(f"sip:vidim@{host}:{local.port}"))
        self._conferences: dict[str, Conference] = {}
        #: Per requester with several live conferences: the newest (with one,
        #: its id in _by_requester is the newest: no entry here).
        self._latest: dict[str, str] = {}
        self._anchors: dict[str, Dialog] = {}
        self._by_call_id: dict[str, str] = {}
        #: Per conference: its Call-IDs, so that retiring it costs what it owns.
        self._call_ids: dict[str, tuple[str, ...]] = {}
        #: Per requester: the ids of their live conferences: the id itself
        #: while they have one (most do: a list of one costs 64 bytes more),
        #: a list once they have several (a set would cost 216 bytes).
        self._by_requester: dict[str, str | list[str]] = {}
        #: The conference-event view of each subscribed conference; while it
        #: is empty (nobody there: full state, no users, no counts, about the
        #: conference URI), only its version: the object is rebuilt when read.
        self._rosters: dict[str, ConferenceInfo | int] = {}
        #: The conference-event subscription dialog, and when it was last (re)newed.
        self._subscriptions: dict[str, tuple[Dialog, float]] = {}
        self._focus_tid: dict[str, TransactionId] = {}
        self._pending: dict[TransactionId, _Pending] = {}
        #: The SUBSCRIBEs among them: what retiring a conference must look at.
        self._pending_subscribes: dict[TransactionId, _Pending] = {}
        #: Per requester: when their recent new conferences were asked for
        #: (oldest first): the one time itself while there is one (a list of
        #: one costs 64 bytes more); swept every rate window so that it holds
        #: only the requesters of the last window.
        self._requests_seen: dict[str, float | list[float]] = {}
        self._next_sweep = 0.0
        #: One entry (deadline, conference id) per conference with a deadline:
        #: the earliest, when it was armed (see _arm and _fire_due).
        self._timers: list[tuple[float, str]] = []
        #: Where each focus URI is sent to, worked out on first use.
        self._focus_addresses: dict[str, Address] = {}

    # -- the I/O boundary ------------------------------------------------------
    def receive(self, message: Request | Response, source: Address, now: float) -> None:
        self._layer.receive(message, source, now)
        self._drain(now)

    def _ignored(self, reason: str, summary: str) -> AllocatorEvent:
        return MessageIgnored(reason=reason, summary=summary)

    def _warning_host(self) -> str:
        return self.config.warning_host

    def handle_timer(self, now: float) -> None:
        if now >= self._next_sweep:
            self._sweep_requests_seen(now)
        self._layer.handle_timer(now)
        self._drain(now)
        timers = self._timers
        conferences = self._conferences
        while timers and timers[0][0] <= now:
            when, conference_id = heapq.heappop(timers)
            conference = conferences.get(conference_id)
            if conference is None or conference._timer_at != when:
                continue  # over, or an earlier entry took over
            conference._timer_at = NO_TIMER
            if _earliest_deadline(conference) == when:
                # Every deadline due at ``when``, in a fixed order; a later one
                # gets the entry that _rearm pushes (fired in turn if due).
                for kind in _DEADLINE_KINDS:
                    if _deadline(conference, kind) == when:
                        _set_deadline(conference, kind, None)
                        self._on_deadline(conference, kind, now)
                        self._drain(now)
                        if conferences.get(conference_id) is not conference:
                            break  # ended by that deadline
            # Else its deadline was cleared or moved later: on to the earliest.
            if conferences.get(conference_id) is conference:
                self._rearm(conference)

    # -- API ---------------------------------------------------------------------
    @property
    def conferences(self) -> dict[str, Conference]:
        """Live conferences by id (do not modify)."""
        return self._conferences

    def snapshot(self, conference_id: str) -> dict[str, Any]:
        """The record of a live conference as plain data, dialogs included."""
        conference = self._conferences[conference_id]
        record = conference.to_dict()
        anchor = self._anchors.get(conference_id)
        if anchor is not None:
            # Serialized here only: the live record keeps no copy of the dialog.
            record["anchor"] = anchor.to_dict()
        return record

    def end_conference(
        self, conference_id: str, now: float, reason: str = "ended by the operator"
    ) -> None:
        conference = self._conferences.get(conference_id)
        if conference is None:
            raise LocalProtocolError(f"no live conference {conference_id!r}")
        self._end(conference, reason, now)
        self._drain(now)

    def restore(self, record: dict[str, Any], now: float) -> Conference:
        """Resume managing a conference saved with :meth:`snapshot`.

        Transactions in flight when it was saved are gone: what they were
        doing is done again (probes, the focus INVITE, the BYE); deadlines
        come back from the record.
        """
        conference = Conference.from_dict(record)
        if not conference.live:
            raise LocalProtocolError(f"conference {conference.id} is over")
        _check_record(conference)
        self._own(conference)
        if conference.anchor is not None:
            anchor = Dialog.from_dict(conference.anchor, local_via=self._via)
            conference.anchor = None  # the live Dialog is the state now (see snapshot)
            self._dialogs.add(anchor)
            self._anchors[conference.id] = anchor
            self._track_call_id(conference.id, anchor.call_id)
        for kind in ("probe", "focus", "idle", "keepalive", "ending"):
            deadline = _deadline(conference, kind)
            if deadline is not None:
                self._arm(conference, kind, deadline)
        state = conference.state
        if state is _ST_REQUESTED:
            self._start(conference, now)
        elif state is _ST_PROBING:
            for participant in self._to_probe(conference):
                self._send_probe(conference, participant, now)
        elif state is _ST_ALLOCATING:
            self._invite_focus(conference, now)
        elif state is _ST_ACTIVE:
            if conference.keepalive_deadline is None:
                self._arm(conference, "keepalive", now + self.config.keepalive_interval)
            self._subscribe(conference, now)
        elif state is _ST_ENDING:
            self._send_bye(conference, now)
        self._drain(now)
        return conference

    # -- plumbing ----------------------------------------------------------------
    def _next_own_timer(self) -> float | None:
        timers = self._timers
        while timers:
            when, conference_id = timers[0]
            conference = self._conferences.get(conference_id)
            if conference is not None and conference._timer_at == when:
                if _earliest_deadline(conference) == when:
                    return when
                # Its deadline was cleared or moved later: the entry moves on.
                heapq.heappop(timers)
                conference._timer_at = NO_TIMER
                self._rearm(conference)
                continue
            heapq.heappop(timers)
        return None

    def _track_call_id(self, conference_id: str, call_id: str) -> None:
        self._by_call_id[call_id] = conference_id
        # A tuple: 56 bytes for the usual two, where a list grown by append is 88.
        ids = self._call_ids.get(conference_id)
        self._call_ids[conference_id] = (call_id,) if ids is None else (*ids, call_id)

    def _own(self, conference: Conference) -> None:
        """Index a new or restored live conference by its requester."""
        self._conferences[conference.id] = conference
        requester = conference.requester
        held = self._by_requester.get(requester)
        if held is None:
            self._by_requester[requester] = conference.id  # their only one: the newest
            return
        if isinstance(held, str):
            if held == conference.id:
                return  # restored again: still their only one
            self._by_requester[requester] = [held, conference.id]
            latest_id = held
        else:
            if conference.id not in held:
                held.append(conference.id)
            latest_id = self._latest.get(requester, "")
        latest = self._conferences.get(latest_id)
        if latest is None or latest.created_at <= conference.created_at:
            self._latest[requester] = conference.id
        else:
            self._latest[requester] = latest_id

    def _arm(self, conference: Conference, kind: str, when: float) -> None:
        # One timer entry per conference, for its earliest deadline: a new entry
        # only for an earlier one (the entry it replaces is then dead); a
        # deadline moved later or cleared is found out when its entry is due.
        _set_deadline(conference, kind, when)
        if when < conference._timer_at:
            conference._timer_at = when
            heapq.heappush(self._timers, (when, conference.id))

    def _rearm(self, conference: Conference) -> None:
        """After its entry was due: an entry for the earliest deadline left, if any."""
        when = _earliest_deadline(conference)
        if when is not None and when < conference._timer_at:
            conference._timer_at = when
            heapq.heappush(self._timers, (when, conference.id))

    def _drain(self, now: float) -> None:
        while (event := self._layer.next_event()) is not None:
            self._on_transaction_event(event, now)

    def _move(self, conference: Conference, event: ConferenceInput) -> None:
        old = conference.state
        new = conference.move(event)
        if new is not old:
            self._events.append(
                ConferenceStateChanged(
                    conference_id=conference.id, old=old, new=new, reason=_INPUT_TEXT[event]
                )
            )

    def _send(self, request: Request, destination: Address, now: float, pending: _Pending) -> None:
        tid = self._layer.send_request(request, destination, now)
        request.compact()  # kept until the transaction ends; read again only on an answer
        self._pending[tid] = pending
        if request.method == "SUBSCRIBE":
            self._pending_subscribes[tid] = pending

    def _out_of_dialog(
        self,
        method: str,
        uri: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Request:
        # Trusted construction: every value here is one vidim wrote from parts
        # it made or parsed (URIs, ids, modes, credentials; restored records are
        # checked by restore()), so the SIP core need not scan them again.
        # The top Via and the CSeq go along parsed too: the transaction layer
        # reads both, and need not parse them back from the text.
        branch = new_branch()
        local = self.config.local
        via = Via(local.transport, local.host, local.port, (*self._via_params, ("branch", branch)))
        lines = [
            ("Via", self._via_text + branch),
            ("Max-Forwards", "70"),
            ("From", self._from_text + new_tag()),
            ("To", f"<{uri}>"),
            ("Call-ID", new_call_id() + self._call_id_suffix),
            ("CSeq", f"1 {method}"),
        ]
        lines.extend(headers)
        return Request.trusted(
            method, uri, lines, body, parsed={"via": via, "cseq": CSeq(1, method)}
        )

    def _route(self, uri: str, direct: Address | None = None) -> Address:
        if self.config.proxy is not None:
            return self.config.proxy
        return direct if direct is not None else address_of(uri)

    def _in_dialog_destination(self, dialog: Dialog) -> Address:
        target, routes = dialog.request_target()
        return _address_of_uri(routes[0].uri if routes else target)

    # -- transaction events ------------------------------------------------------
    def _on_transaction_event(self, event: Event, now: float) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event.request, event.source, now)
            # Handled: its server transaction keeps it (Timer J), its parsed values can go.
            event.request.compact()
        elif isinstance(event, ResponseReceived):
            pending = self._pending.get(event.transaction_id)
            if pending is not None:
                self._on_response(pending, event.response, event.transaction_id, now)
                if event.response.status >= 200:
                    if pending.request.method in ("INVITE", "SUBSCRIBE"):
                        # Kept until the transaction ends: 2xx retransmissions
                        # and forks are answered, the dialogs forget it then.
                        pending.request.compact()
                    else:
                        # Nothing more comes for a non-INVITE request after its
                        # final response (the transaction only absorbs
                        # retransmissions for Timer K): let go of it now.
                        self._forget_pending(event.transaction_id)
        elif isinstance(event, (TransactionTimedOut, TransportFailed)):
            pending = self._pending.get(event.transaction_id)
            if pending is not None:
                reason = (
                    "no answer" if isinstance(event, TransactionTimedOut) else "transport error"
                )
                made_up = make_response(pending.request, event.status_hint, f"Local {reason}")
                self._on_response(pending, made_up, event.transaction_id, now)
        elif isinstance(event, TransactionTerminated):
            pending = self._pending.get(event.transaction_id)
            if pending is not None and pending.request.method in ("INVITE", "SUBSCRIBE"):
                self._pending_subscribes.pop(event.transaction_id, None)
                self._dialogs.forget(pending.request)
            self._forget_pending(event.transaction_id)
        elif isinstance(event, MessageDiscarded):
            self._events.append(MessageIgnored(reason=event.reason, summary=summary(event.message)))
        elif isinstance(event, AckReceived):
            pass  # ACK for a 2xx we sent: nothing to do (vidim answers no INVITE with 2xx)

    def _forget_pending(self, tid: TransactionId) -> None:
        self._pending.pop(tid, None)
        if not self._pending:
            # A dict keeps the table of its largest size: after a burst of
            # setups that is ~100 bytes per conference ever in flight at once.
            self._pending = {}
            self._pending_subscribes = {}

    def _respond(self, response: Response, now: float) -> None:
        self._layer.send_response(response, now)
        response.compact()  # the server transaction keeps it to answer retransmissions

    def _on_request(self, request: Request, source: Address, now: float) -> None:
        method = request.method
        if method == "MESSAGE" and request.to_addr.tag is None:
            self._on_message(request, source, now)
            return
        if request.to_addr.tag is not None:
            self._on_in_dialog_request(request, now)
            return
        if method == "OPTIONS":
            self._respond(
                make_response(
                    request,
                    200,
                    to_tag=new_tag(),
                    headers=[("Allow", _ALLOW), ("Accept", "text/plain, multipart/mixed")],
                ),
                now,
            )
            return
        if method == "NOTIFY":
            # A NOTIFY that beats the 2xx to our SUBSCRIBE has a To tag; one
            # without is for nothing of ours.
            self._refuse_plain(request, 481, "no subscription matches this NOTIFY", now)
            return
        self._respond(
            make_response(
                request,
                405,
                to_tag=new_tag(),
                headers=[
                    ("Allow", _ALLOW),
                    ("Warning", warning_value(self.config.warning_host, "vidim takes no calls")),
                ],
            ),
            now,
        )

    def _refuse_plain(self, request: Request, status: int, reason: str, now: float) -> None:
        self._respond(
            make_response(
                request,
                status,
                to_tag=new_tag(),
                headers=[("Warning", warning_value(self.config.warning_host, reason))],
            ),
            now,
        )

    def _on_in_dialog_request(self, request: Request, now: float) -> None:
        try:
            dialog, automatic = self._dialogs.receive_request(request)
        except RemoteProtocolError as error:
            self._refuse_plain(request, error.status_hint, error.reason, now)
            return
        if automatic is not None:
            # The dialog answers BYE and NOTIFY itself (200), and refuses what
            # it must (481, 500, 491); a 2xx still needs acting on below.
            self._respond(automatic, now)
            if automatic.status >= 300:
                return
        if dialog is None:
            if automatic is None and request.method != "ACK":
                self._refuse_plain(request, 481, "no dialog matches this request", now)
            return
        method = request.method
        if method == "ACK":
            return
        conference = self._conferences.get(self._by_call_id.get(request.call_id, ""))
        if method == "NOTIFY":
            if automatic is None:
                self._respond(dialog.create_response(request, 200), now)
            if conference is not None:
                self._on_notify(conference, request, dialog, now)
            return
        if method == "BYE":
            if automatic is None:
                self._respond(dialog.create_response(request, 200), now)
            if conference is not None and self._anchors.get(conference.id) is dialog:
                if conference.state is _ST_ACTIVE:
                    self._move(conference, _IN_FOCUS_ENDED)
                    self._finish(conference, "the focus ended the conference", now)
                elif conference.state is _ST_ENDING:
                    self._move(conference, _IN_FOCUS_ENDED)
                    self._finish(conference, conference.reason, now)
            return
        if method == "INVITE" and conference is not None:
            # A session refresh from the focus: answer with the same inactive offer.
            profile_request = focus_request(
                self.config.profile,
                conference,
                address=self.config.local.host,
                session_id=anchor_session_id(conference.id),
            )
            self._respond(
                dialog.create_response(
                    request,
                    200,
                    body=profile_request.body,
                    content_type=profile_request.content_type,
                ),
                now,
            )
            return
        self._respond(dialog.create_response(request, 200 if method == "OPTIONS" else 501), now)

    # -- requests to vidim ----------------------------------------------------------
    def _on_message(self, request: Request, source: Address, now: float) -> None:
        try:
            # vidim's own checks first: its refusals say why and reach the requester.
            # parse_request judged the body (a header-form note may be of any type).
            command = parse_request(request, source_host=source.host, policy=self.config.requests)
            body_type = request.content_type
            check_request(request, _message_checks(body_type.mime if body_type else None))
        except RequestRefusedError as error:
            self._refuse(request, source, error, error.requester, now)
            return
        except RequestRejectedError as rejected:
            # (Not "as error" again: mypyc types one name per function.)
            self._refuse(request, source, rejected, None, now)
            return
        self._on_command(command, request, source, now)

    def _trusted(self, source: Address) -> bool:
        return is_trusted(source.host, self.config.requests.trusted_networks)

    def _refuse(
        self,
        request: Request,
        source: Address,
        error: RemoteProtocolError,
        requester: SipURI | str | None,
        now: float,
    ) -> None:
        headers = [("Warning", warning_value(self.config.warning_host, error.reason))]
        headers.extend(error.headers)
        self._respond(
            make_response(request, error.status_hint, to_tag=new_tag(), headers=headers), now
        )
        who = str(requester) if requester is not None else None
        self._events.append(
            RequestRefused(
                call_id=request.call_id,
                requester=who,
                status=error.status_hint,
                reason=error.reason,
            )
        )
        # Tell a person in words, but never answer a source we do not trust
        # with a new request (it could make vidim a reflector).
        if who is not None and self._trusted(source):
            self._notice(who, f"vidim could not do that: {error.reason}.", now, direct=source)

    def _on_command(self, command: Command, request: Request, source: Address, now: float) -> None:
        requester = str(command.requester)
        if isinstance(command, NewConference):
            self._new_conference(command, request, source, now)
            return
        if isinstance(command, ShowHelp):
            self._accept(request, requester, "help", None, now)
            self._notice(requester, help_text(self.config.requests), now, direct=source)
            return
        conference = self._find(command.conference_id, requester)
        if conference is None:
            which = f"#{command.conference_id}" if command.conference_id else "of yours"
            self._refuse(
                request,
                source,
                RequestRefusedError(f"no live conference {which}", status_hint=404),
                requester,
                now,
            )
            return
        if isinstance(command, EndConference):
            if conference.requester != requester:
                self._refuse(
                    request,
                    source,
                    RequestRefusedError(
                        f"only {conference.requester} may end this conference", status_hint=403
                    ),
                    requester,
                    now,
                )
                return
            self._accept(request, requester, "end", conference.id, now)
            self._end(conference, f"ended by {requester}", now)
        elif isinstance(command, ShowStatus):
            self._accept(request, requester, "status", conference.id, now)
            self._notice(requester, self._status_text(conference), now, direct=source)
        elif isinstance(command, AddInvitees):
            self._add(conference, command, request, source, now)

    def _accept(
        self, request: Request, requester: str, command: str, conference_id: str | None, now: float
    ) -> None:
        self._respond(make_response(request, 202, to_tag=new_tag()), now)
        self._events.append(
            RequestAccepted(
                call_id=request.call_id,
                requester=requester,
                command=command,
                conference_id=conference_id,
            )
        )

    def _find(self, conference_id: str | None, requester: str) -> Conference | None:
        if conference_id is not None:
            return self._conferences.get(conference_id)
        latest = self._latest.get(requester)
        if latest is None:
            held = self._by_requester.get(requester)
            latest = held if isinstance(held, str) else None
        return self._conferences.get(latest) if latest is not None else None

    def _over_rate(self, requester: str, now: float) -> bool:
        if now >= self._next_sweep:
            self._sweep_requests_seen(now)
        horizon = now - self.config.rate_window
        seen = self._requests_seen.get(requester)
        if seen is None:
            self._requests_seen[requester] = now
            return False
        if not isinstance(seen, list):
            seen = [seen]
            self._requests_seen[requester] = seen
        if seen[0] <= horizon:
            seen[:] = [when for when in seen if when > horizon]
        if len(seen) >= self.config.rate_limit:
            return True
        seen.append(now)
        return False

    def _sweep_requests_seen(self, now: float) -> None:
        """Forget the requesters with nothing left in the rate window."""
        horizon = now - self.config.rate_window
        seen = self._requests_seen
        for requester in [
            r
            for r, times in seen.items()
            if (times[-1] if isinstance(times, list) else times) <= horizon
        ]:
            del seen[requester]
        self._next_sweep = now + self.config.rate_window

    def _new_conference(
        self, command: NewConference, request: Request, source: Address, now: float
    ) -> None:
        requester = str(command.requester)
        if len(self._conferences) >= self.config.max_conferences:
            error = RequestRefusedError(
                "too many live conferences; try again later", status_hint=503
            )
            error.headers = (("Retry-After", "30"),)
            self._refuse(request, source, error, requester, now)
            return
        if self._over_rate(requester, now):
            limit = f"{self.config.rate_limit} per {self.config.rate_window:g} s"
            self._refuse(
                request,
                source,
                RequestRefusedError(f"too many new conferences (at most {limit})", status_hint=403),
                requester,
                now,
            )
            return
        participants = [
            Participant(
                uri=requester,
                requested_mode=command.mode,
                mode=command.mode,
                credential=_token(),
                requester=True,
            )
        ]
        participants += [self._participant(invitee, command.mode) for invitee in command.invitees]
        conference = Conference(
            id=_token(),
            requester=requester,
            mode=command.mode,
            # One string for every conference asked through the same proxy.
            requester_address=sys.intern(_address_text(source)),
            participants=participants,
            created_at=now,
        )
        self._own(conference)
        self._accept(request, requester, "new", conference.id, now)
        self._start(conference, now)

    def _participant(self, invitee: Invitee, default: Mode) -> Participant:
        mode = invitee.mode or default
        return Participant(
            uri=str(invitee.uri),
            requested_mode=mode,
            mode=mode,
            credential=_token(),
        )

    def _start(self, conference: Conference, now: float) -> None:
        to_probe = self._to_probe(conference)
        if to_probe:
            self._move(conference, _IN_START_PROBING)
            self._arm(conference, "probe", now + self.config.probe_timeout)
            for participant in to_probe:
                self._send_probe(conference, participant, now)
        else:
            self._move(conference, _IN_START_ALLOCATING)
            self._invite_focus(conference, now)

    # -- probing ---------------------------------------------------------------------
    def _to_probe(self, conference: Conference) -> list[Participant]:
        if not self.config.probe:
            return []
        return [
            p
            for p in conference.participants
            if not p.requester and p.probe is _PR_UNKNOWN and p.requested_mode is not _MODE_CHAT
        ]

    def _send_probe(self, conference: Conference, participant: Participant, now: float) -> None:
        probe = self._out_of_dialog(
            "OPTIONS",
            participant.uri,
            headers=[("Accept", "application/sdp"), ("Contact", str(self._contact))],
        )
        self._send(
            probe,
            self._route(participant.uri),
            now,
            _Pending(_P_PROBE, conference.id, probe, participant.uri),
        )

    def _on_probe_answer(
        self, conference: Conference, uri: str, response: Response, now: float
    ) -> None:
        participant = conference.participant(uri)
        if participant is None or participant.probe is not _PR_UNKNOWN:
            return
        status = response.status
        if 200 <= status < 300:
            capabilities = _capabilities(response)
            participant.probe = _PR_ANSWERED
            if capabilities is not None:
                participant.audio, participant.video = capabilities.audio, capabilities.video
        elif status in _UNREACHABLE:
            participant.probe = _PR_UNREACHABLE
        else:
            # The device exists but will not say (405, 501...): keep the request.
            participant.probe = _PR_ANSWERED
        if conference.probe_deadline is not None and not self._waiting_for_probes(conference):
            conference.probe_deadline = None
            self._probes_done(conference, now)

    def _waiting_for_probes(self, conference: Conference) -> bool:
        return any(
            p.probe is _PR_UNKNOWN and not p.requester and p.requested_mode is not _MODE_CHAT
            for p in conference.participants
        )

    def _probes_done(self, conference: Conference, now: float) -> None:
        for participant in conference.participants:
            if participant.requester:
                continue
            silent = participant.probe is _PR_UNKNOWN and self.config.probe
            if silent and participant.requested_mode is not _MODE_CHAT:
                participant.probe = _PR_UNREACHABLE  # silent until the deadline
            participant.mode = effective_mode(participant.requested_mode, _known(participant))
        if conference.state is _ST_PROBING:
            self._move(conference, _IN_PROBES_DONE)
            self._invite_focus(conference, now)
        elif conference.state is _ST_ACTIVE:
            self._update_focus(conference, now)

    # -- the focus -------------------------------------------------------------------
    def _invite_focus(self, conference: Conference, now: float) -> None:
        focus_uri = self.config.focus_uris[conference.focus_index]
        content = focus_request(
            self.config.profile,
            conference,
            address=self.config.local.host,
            session_id=anchor_session_id(conference.id),
        )
        invite = self._dialogs.create_initial_request(
            "INVITE",
            focus_uri,
            from_addr=self._service,
            to_addr=focus_uri,
            contact=self._contact,
            headers=content.headers,
            body=content.body,
            content_type=content.content_type,
        )
        self._track_call_id(conference.id, invite.call_id)
        destination = self._focus_addresses.get(focus_uri)
        if destination is None:
            destination = self._focus_addresses[focus_uri] = address_of(focus_uri)
        tid = self._layer.send_request(invite, destination, now)
        self._pending[tid] = _Pending(
            _P_FOCUS_INVITE, conference.id, invite, str(conference.focus_index)
        )
        self._focus_tid[conference.id] = tid
        self._arm(conference, "focus", now + self.config.focus_timeout)

    def _on_focus_answer(
        self, conference: Conference, pending: _Pending, response: Response, now: float
    ) -> None:
        status = response.status
        current = conference.state is _ST_ALLOCATING and pending.target == str(
            conference.focus_index
        )
        dialog = self._dialogs.receive_response(pending.request, response)
        if status < 200:
            return
        if 200 <= status < 300:
            if dialog is None:
                if current:
                    self._focus_failed(conference, "the focus answered without a To tag", now)
                return
            self._send_in_dialog_ack(dialog, response)
            if self._anchors.get(conference.id) is dialog:
                return  # the 2xx again (our ACK was lost): ACK it again, nothing more
            uri = conference_uri(
                self.config.profile,
                response,
                focus_uri=self.config.focus_uris[int(pending.target)],
                conference=conference,
            )
            if not current or uri is None:
                self._abandon(dialog, now)
                if current:
                    self._focus_failed(
                        conference, "no conference URI (;isfocus) in the answer", now
                    )
                return
            self._focus_answered(conference, dialog, uri, now)
            return
        if not current:
            return
        reason = f"{status} {response.reason}".strip()
        self._focus_failed(conference, reason, now, retry=status >= 500 or status == 408)

    def _send_in_dialog_ack(self, dialog: Dialog, response: Response) -> None:
        self._layer.send_stateless(dialog.create_ack(response), self._in_dialog_destination(dialog))

    def _abandon(self, dialog: Dialog, now: float) -> None:
        """A conference we no longer want (late answer after failover or /end): hang up."""
        if dialog.terminated:
            return  # hung up already: this was the 2xx again
        bye = dialog.create_request("BYE")
        self._send(bye, self._in_dialog_destination(dialog), now, _Pending(_P_CLEANUP, None, bye))

    def _focus_failed(
        self, conference: Conference, reason: str, now: float, *, retry: bool = True
    ) -> None:
        focus_uri = self.config.focus_uris[conference.focus_index]
        conference.focus_failures.append(f"{focus_uri}: {reason}")
        conference.focus_deadline = None
        self._focus_tid.pop(conference.id, None)
        if retry and conference.focus_index + 1 < len(self.config.focus_uris):
            conference.focus_index += 1
            self._move(conference, _IN_FOCUS_FAILED_TRY_NEXT)
            self._invite_focus(conference, now)
            return
        self._move(conference, _IN_FOCUS_FAILED_NO_MORE)
        conference.reason = (
            "no conference focus could host it (" + "; ".join(conference.focus_failures) + ")"
        )
        self._events.append(ConferenceFailed(conference_id=conference.id, reason=conference.reason))
        self._notice(
            conference.requester,
            f"Sorry, your {conference.mode.value} conference could not be set up: "
            f"{conference.reason}.",
            now,
            direct=_address_from_text(conference.requester_address),
        )
        self._retire(conference)

    def _focus_answered(self, conference: Conference, dialog: Dialog, uri: str, now: float) -> None:
        conference.conference_uri = uri
        conference.focus_deadline = None
        self._focus_tid.pop(conference.id, None)
        self._anchors[conference.id] = dialog
        self._move(conference, _IN_FOCUS_ANSWERED)
        self._events.append(ConferenceReady(conference_id=conference.id, conference_uri=uri))
        self._send_invitations(conference, now)
        requester = conference.participants[0]
        joined = join_uri(uri, requester.credential)
        lines = [
            f"Your {conference.mode.value} conference is ready. Call {joined} to join.",
            "Invited: " + ", ".join(self._describe(p) for p in conference.participants[1:]) + ".",
            f"Send /end to end it, /status for who is there, /add <name> to invite more "
            f"(conference #{conference.id}).",
        ]
        self._notice(
            conference.requester,
            "\n".join(lines),
            now,
            direct=_address_from_text(conference.requester_address),
            headers=[("X-Vidim-Conference", _conference_header(conference, requester, joined))],
        )
        self._subscribe(conference, now)
        self._arm(conference, "keepalive", now + self.config.keepalive_interval)
        self._arm(conference, "idle", now + self.config.idle_timeout)

    def _update_focus(self, conference: Conference, now: float) -> None:
        """After ``/add``: tell the focus the new list with a re-INVITE."""
        anchor = self._anchors.get(conference.id)
        if anchor is None:
            return
        content = focus_request(
            self.config.profile,
            conference,
            address=self.config.local.host,
            session_id=anchor_session_id(conference.id),
        )
        try:
            reinvite = anchor.create_request(
                "INVITE",
                headers=content.headers,
                body=content.body,
                content_type=content.content_type,
            )
        except LocalProtocolError:
            return  # a re-INVITE is already pending: the next /add will carry everyone
        self._send(
            reinvite,
            self._in_dialog_destination(anchor),
            now,
            _Pending(_P_REINVITE, conference.id, reinvite),
        )

    def _on_reinvite_answer(
        self, conference: Conference, pending: _Pending, response: Response, now: float
    ) -> None:
        anchor = self._anchors.get(conference.id)
        if anchor is None:
            return
        try:
            anchor.receive_response(pending.request, response)
        except RemoteProtocolError:
            return
        if 200 <= response.status < 300:
            self._send_in_dialog_ack(anchor, response)
            self._send_invitations(conference, now)
        elif response.status >= 300:
            names = [p.uri for p in conference.participants if not p.invited and not p.requester]
            self._notice(
                conference.requester,
                f"The focus refused to add {', '.join(names)}: "
                f"{response.status} {response.reason}.",
                now,
                direct=_address_from_text(conference.requester_address),
            )
            if response.status in (408, 481):
                self._focus_gone(conference, now)

    # -- invitations and notices ----------------------------------------------------
    def _describe(self, participant: Participant) -> str:
        name = participant.uri.removeprefix("sip:")
        if participant.mode is participant.requested_mode:
            return f"{name} ({participant.mode.value})"
        why = "not reachable by phone" if participant.mode is _MODE_CHAT else "no video"
        asked = participant.requested_mode.value
        return f"{name} ({participant.mode.value}, asked {asked}: {why})"

    def _send_invitations(self, conference: Conference, now: float) -> None:
        for participant in conference.participants:
            if participant.requester or participant.invited:
                continue
            participant.invited = True
            inviter = conference.requester.removeprefix("sip:")
            mode = participant.mode
            joined = join_uri(conference.conference_uri or "", participant.credential)
            if mode is _MODE_CHAT:
                text = (
                    f"{inviter} invites you to {_a(conference.mode)} conference. You take "
                    "part by instant message: updates will come here."
                )
            else:
                text = f"{inviter} invites you to {_a(mode)} conference. Call {joined} to join."
            message = self._out_of_dialog(
                "MESSAGE",
                participant.uri,
                headers=[
                    ("X-Vidim-Conference", _conference_header(conference, participant, joined)),
                    ("Content-Type", "text/plain;charset=UTF-8"),
                ],
                body=text.encode("utf-8"),
            )
            self._send(
                message,
                self._route(participant.uri),
                now,
                _Pending(_P_INVITATION, conference.id, message, participant.uri),
            )
            self._events.append(
                InvitationSent(conference_id=conference.id, invitee=participant.uri, mode=mode)
            )

    def _notice(
        self,
        uri: str,
        text: str,
        now: float,
        *,
        direct: Address | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """An IM to a person: the requester's answers, roster updates, failures."""
        message = self._out_of_dialog(
            "MESSAGE",
            uri,
            headers=[*headers, ("Content-Type", "text/plain;charset=UTF-8")],
            body=text.encode("utf-8"),
        )
        self._send(message, self._route(uri, direct), now, _Pending(_P_NOTICE, None, message))

    def _status_text(self, conference: Conference) -> str:
        lines = [
            f"Conference #{conference.id} ({conference.mode.value}), {conference.state.value}:"
        ]
        for participant in conference.participants:
            # The requester was given the conference URI when it became ready.
            ready = conference.conference_uri is not None
            told = participant.invited or (participant.requester and ready)
            status = participant.status or ("invited" if told else "not yet invited")
            role = " (requester)" if participant.requester else ""
            lines.append(
                f"- {participant.uri.removeprefix('sip:')}{role}: "
                f"{participant.mode.value}, {status}"
            )
        return "\n".join(lines)

    # -- roster ------------------------------------------------------------------------
    def _subscribe(self, conference: Conference, now: float) -> None:
        if self.config.profile is not _PROFILE_RFC4579 or conference.conference_uri is None:
            return
        subscribe = self._dialogs.create_initial_request(
            "SUBSCRIBE",
            conference.conference_uri,
            from_addr=self._service,
            to_addr=conference.conference_uri,
            contact=self._contact,
            headers=[
                ("Event", "conference"),
                ("Expires", str(self.config.subscription_expires)),
                ("Accept", CONFERENCE_INFO_TYPE),
            ],
        )
        self._track_call_id(conference.id, subscribe.call_id)
        self._send(
            subscribe,
            address_of(conference.conference_uri),
            now,
            _Pending(_P_SUBSCRIBE, conference.id, subscribe),
        )

    def _refresh_subscription(self, conference: Conference, dialog: Dialog, now: float) -> None:
        self._subscriptions[conference.id] = (dialog, now)
        try:
            refresh = dialog.create_request(
                "SUBSCRIBE",
                headers=[
                    ("Event", "conference"),
                    ("Expires", str(self.config.subscription_expires)),
                    ("Accept", CONFERENCE_INFO_TYPE),
                ],
            )
        except LocalProtocolError:
            return  # the subscription dialog has ended: nothing to refresh
        self._send(
            refresh,
            self._in_dialog_destination(dialog),
            now,
            _Pending(_P_RESUBSCRIBE, conference.id, refresh),
        )

    def _on_notify(
        self, conference: Conference, request: Request, dialog: Dialog, now: float
    ) -> None:
        if conference.id not in self._subscriptions:
            self._subscriptions[conference.id] = (dialog, now)
        if not request.body:
            return
        try:
            update = parse_conference_info(request.body)
        except RemoteProtocolError as error:
            self._events.append(MessageIgnored(reason=error.reason, summary="NOTIFY conference"))
            return
        try:
            held = self._rosters.get(conference.id)
            if isinstance(held, int):
                assert conference.conference_uri is not None  # checked when it was kept
                held = ConferenceInfo(entity=conference.conference_uri, version=held)
            roster = apply_update(held, update)
        except RemoteProtocolError as error:
            # A lost or reordered NOTIFY (RFC 4575 section 4.6): our view is
            # stale; refresh the subscription, which brings full state.
            self._events.append(MessageIgnored(reason=error.reason, summary="NOTIFY conference"))
            self._rosters.pop(conference.id, None)
            self._refresh_subscription(conference, dialog, now)
            return
        uri = conference.conference_uri
        if roster.entity != uri:
            self._rosters[conference.id] = roster
        elif not roster.users and roster.active is None and roster.user_count is None:
            # Nobody there yet (the usual first NOTIFY): the version says it all.
            self._rosters[conference.id] = roster.version
        else:
            if roster.entity is not uri:
                # One string for the URI, not a copy per parsed NOTIFY (RFC
                # 4575's entity is the conference URI).
                roster = replace(roster, entity=uri)
            self._rosters[conference.id] = roster
        connected = {user.entity: user for user in roster.users if user.status == "connected"}
        joined_any = False
        for participant in conference.participants:
            user = connected.get(participant.uri)
            was = participant.status == "connected"
            if user is not None and not was:
                participant.status = "connected"
                self._events.append(
                    ParticipantJoined(
                        conference_id=conference.id, participant=participant.uri, mode=user.mode
                    )
                )
                if not participant.requester:
                    self._notice(
                        conference.requester,
                        f"{participant.uri.removeprefix('sip:')} joined "
                        f"({participant.mode.value}).",
                        now,
                        direct=_address_from_text(conference.requester_address),
                    )
            elif user is None and was:
                participant.status = "disconnected"
                self._events.append(
                    ParticipantLeft(conference_id=conference.id, participant=participant.uri)
                )
                if not participant.requester:
                    self._notice(
                        conference.requester,
                        f"{participant.uri.removeprefix('sip:')} left.",
                        now,
                        direct=_address_from_text(conference.requester_address),
                    )
            joined_any = joined_any or participant.status in ("connected", "disconnected")
        if conference.state in (_ST_ACTIVE, _ST_ENDING):
            self._move(conference, _IN_ROSTER_CHANGED)
        if joined_any:
            conference.idle_deadline = None  # somebody came: the idle rule no longer applies

    # -- deadlines ------------------------------------------------------------------
    def _on_deadline(self, conference: Conference, kind: str, now: float) -> None:
        state = conference.state
        if kind == "probe":
            if state in (_ST_PROBING, _ST_ACTIVE):
                self._probes_done(conference, now)
        elif kind == "focus" and state is _ST_ALLOCATING:
            tid = self._focus_tid.pop(conference.id, None)
            if tid is not None and self._layer.transaction(tid) is not None:
                self._layer.cancel(tid, now)
            self._focus_failed(conference, f"no answer within {self.config.focus_timeout:g} s", now)
        elif kind == "idle" and state is _ST_ACTIVE:
            self._move_end(conference, _IN_IDLE_TIMEOUT,
                           f"nobody joined within {self.config.idle_timeout:g} s", now)  # fmt: skip
        elif kind == "keepalive" and state is _ST_ACTIVE:
            anchor = self._anchors.get(conference.id)
            if anchor is None:
                return
            subscription = self._subscriptions.get(conference.id)
            if subscription is not None:
                # Renew the subscription when half of its lifetime is gone.
                dialog, renewed = subscription
                if now - renewed >= self.config.subscription_expires / 2:
                    self._refresh_subscription(conference, dialog, now)
            options = anchor.create_request("OPTIONS")
            self._send(
                options,
                self._in_dialog_destination(anchor),
                now,
                _Pending(_P_KEEPALIVE, conference.id, options),
            )
            self._arm(conference, "keepalive", now + self.config.keepalive_interval)
        elif kind == "ending" and state is _ST_ENDING:
            self._move(conference, _IN_BYE_DONE)
            self._finish(conference, conference.reason, now)

    # -- responses -------------------------------------------------------------------
    def _on_response(
        self, pending: _Pending, response: Response, tid: TransactionId, now: float
    ) -> None:
        purpose = pending.purpose
        conference = self._conferences.get(pending.conference_id or "")
        if purpose is _P_CLEANUP or purpose is _P_NOTICE:
            return
        if conference is None:
            if purpose is _P_FOCUS_INVITE and 200 <= response.status < 300:
                dialog = self._dialogs.receive_response(pending.request, response)
                if dialog is not None:
                    self._send_in_dialog_ack(dialog, response)
                    self._abandon(dialog, now)
            return
        if purpose is _P_PROBE:
            if response.status >= 200:
                self._on_probe_answer(conference, pending.target, response, now)
        elif purpose is _P_FOCUS_INVITE:
            self._on_focus_answer(conference, pending, response, now)
        elif purpose is _P_REINVITE:
            self._on_reinvite_answer(conference, pending, response, now)
        elif purpose is _P_INVITATION:
            if response.status >= 300:
                reason = f"{response.status} {response.reason}".strip()
                self._events.append(
                    InvitationFailed(
                        conference_id=conference.id, invitee=pending.target, reason=reason
                    )
                )
                self._notice(
                    conference.requester,
                    f"The invitation to {pending.target.removeprefix('sip:')} was not delivered "
                    f"({reason}).",
                    now,
                    direct=_address_from_text(conference.requester_address),
                )
        elif purpose is _P_SUBSCRIBE:
            if 200 <= response.status < 300:
                dialog = self._dialogs.receive_response(pending.request, response)
                if dialog is not None and conference.id not in self._subscriptions:
                    self._subscriptions[conference.id] = (dialog, now)
        elif purpose is _P_KEEPALIVE:
            anchor = self._anchors.get(conference.id)
            if anchor is not None and response.status >= 200:
                with contextlib.suppress(RemoteProtocolError):
                    anchor.receive_response(pending.request, response)
            if response.status in (408, 481, 503) and conference.state is _ST_ACTIVE:
                self._focus_gone(conference, now)
        elif purpose is _P_BYE and response.status >= 200 and conference.state is _ST_ENDING:
            self._move(conference, _IN_BYE_DONE)
            self._finish(conference, conference.reason, now)

    # -- ending ----------------------------------------------------------------------
    def _focus_gone(self, conference: Conference, now: float) -> None:
        self._move(conference, _IN_FOCUS_DEAD)
        self._finish(conference, "the conference focus stopped answering", now)

    def _end(self, conference: Conference, reason: str, now: float) -> None:
        state = conference.state
        if state is _ST_ACTIVE:
            self._move_end(conference, _IN_END_REQUESTED, reason, now)
        elif state in (
            _ST_REQUESTED,
            _ST_PROBING,
            _ST_ALLOCATING,
        ):
            tid = self._focus_tid.pop(conference.id, None)
            if tid is not None and self._layer.transaction(tid) is not None:
                self._layer.cancel(tid, now)
            self._move(conference, _IN_END_REQUESTED)
            self._finish(conference, reason, now)

    def _move_end(
        self, conference: Conference, event: ConferenceInput, reason: str, now: float
    ) -> None:
        conference.reason = reason
        self._move(conference, event)
        self._send_bye(conference, now)

    def _send_bye(self, conference: Conference, now: float) -> None:
        anchor = self._anchors.get(conference.id)
        if anchor is None:
            self._move(conference, _IN_BYE_DONE)
            self._finish(conference, conference.reason, now)
            return
        if anchor.terminated:
            # Restored in ENDING: our BYE ended the dialog before the record was
            # saved and went with the lost transaction; send it again (same CSeq).
            bye = anchor._build("BYE", anchor.local_cseq or 1, [], b"", None)
        else:
            bye = anchor.create_request("BYE")
        self._send(
            bye,
            self._in_dialog_destination(anchor),
            now,
            _Pending(_P_BYE, conference.id, bye),
        )
        # The BYE's own transaction times out after 64*T1; this is a backstop.
        self._arm(conference, "ending", now + 64 * self.config.transactions.t1 + 1.0)

    def _finish(self, conference: Conference, reason: str, now: float) -> None:
        conference.reason = reason
        self._events.append(ConferenceEnded(conference_id=conference.id, reason=reason))
        self._notice(
            conference.requester,
            f"Your {conference.mode.value} conference has ended: {reason}.",
            now,
            direct=_address_from_text(conference.requester_address),
        )
        self._retire(conference)

    def _retire(self, conference: Conference) -> None:
        self._conferences.pop(conference.id, None)
        requester = conference.requester
        held = self._by_requester.get(requester)
        if isinstance(held, str):
            if held == conference.id:
                del self._by_requester[requester]
        elif held is not None:
            if conference.id in held:
                held.remove(conference.id)
            if len(held) <= 1:
                # Back to one (or none): that one is the newest, no _latest entry.
                if held:
                    self._by_requester[requester] = held[0]
                else:
                    del self._by_requester[requester]
                self._latest.pop(requester, None)
            elif self._latest.get(requester) == conference.id:
                # The requester's previous live conference is "theirs" again.
                self._latest[requester] = max(held, key=lambda i: self._conferences[i].created_at)
        anchor = self._anchors.pop(conference.id, None)
        subscription = self._subscriptions.pop(conference.id, None)
        self._rosters.pop(conference.id, None)
        self._focus_tid.pop(conference.id, None)
        gone = self._call_ids.pop(conference.id, ())
        for call_id in gone:
            self._by_call_id.pop(call_id, None)
        # Its dialogs go, so that later requests on them get 481 ...
        for dialog in (anchor, subscription[0] if subscription else None):
            if dialog is not None and self._dialogs.get(dialog.id) is dialog:
                self._dialogs.remove(dialog)
        # ... nor may a late NOTIFY make a new one.
        # (Only the SUBSCRIBEs in flight are looked at, not every transaction.)
        for pending in self._pending_subscribes.values():
            if pending.request.call_id in gone:
                self._dialogs.forget(pending.request)

    # -- /add --------------------------------------------------------------------------
    def _add(
        self,
        conference: Conference,
        command: AddInvitees,
        request: Request,
        source: Address,
        now: float,
    ) -> None:
        requester = str(command.requester)
        if conference.state is not _ST_ACTIVE:
            self._refuse(
                request,
                source,
                RequestRefusedError(
                    f"conference #{conference.id} is {conference.state.value}; "
                    "try again in a moment",
                    status_hint=491,
                ),
                requester,
                now,
            )
            return
        known = {p.uri for p in conference.participants}
        new = [i for i in command.invitees if str(i.uri) not in known]
        limit = self.config.requests.max_invitees
        if len(conference.participants) - 1 + len(new) > limit:
            self._refuse(
                request,
                source,
                RequestRefusedError(
                    f"too many invitees: {len(conference.participants) - 1 + len(new)}, "
                    f"at most {limit}",
                    status_hint=400,
                ),
                requester,
                now,
            )
            return
        self._accept(request, requester, "add", conference.id, now)
        if not new:
            return
        conference.participants += [self._participant(i, conference.mode) for i in new]
        self._move(conference, _IN_ADD_INVITEES)
        to_probe = self._to_probe(conference)
        if to_probe:
            self._arm(conference, "probe", now + self.config.probe_timeout)
            for participant in to_probe:
                self._send_probe(conference, participant, now)
        else:
            self._probes_done(conference, now)


_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")


def _token() -> str:
    """``secrets.token_urlsafe(16)``, in C calls only: ids and credentials (os.urandom bytes)."""
    # 16 bytes are 22 base64 characters, then "==" and the newline: cut, not
    # stripped (a method call fewer, and no keyword argument to pass).
    return binascii.b2a_base64(random_bytes(16))[:22].translate(_URLSAFE).decode("ascii")


#: The deadlines of a conference, in the order those due at once are handled.
_DEADLINE_KINDS: Final = ("probe", "focus", "idle", "keepalive", "ending")


def _earliest_deadline(conference: Conference) -> float | None:
    earliest: float | None = None
    for when in (
        conference.probe_deadline,
        conference.focus_deadline,
        conference.idle_deadline,
        conference.keepalive_deadline,
        conference.ending_deadline,
    ):
        if when is not None and (earliest is None or when < earliest):
            earliest = when
    return earliest


def _deadline(conference: Conference, kind: str) -> float | None:
    """The ``<kind>_deadline`` of a conference (explicit: no attribute name built per call)."""
    if kind == "keepalive":
        return conference.keepalive_deadline
    if kind == "focus":
        return conference.focus_deadline
    if kind == "idle":
        return conference.idle_deadline
    if kind == "probe":
        return conference.probe_deadline
    if kind == "ending":
        return conference.ending_deadline
    raise LocalProtocolError(f"no {kind!r} deadline")


def _set_deadline(conference: Conference, kind: str, when: float | None) -> None:
    if kind == "keepalive":
        conference.keepalive_deadline = when
    elif kind == "focus":
        conference.focus_deadline = when
    elif kind == "idle":
        conference.idle_deadline = when
    elif kind == "probe":
        conference.probe_deadline = when
    elif kind == "ending":
        conference.ending_deadline = when
    else:
        raise LocalProtocolError(f"no {kind!r} deadline")


def _check_record(conference: Conference) -> None:
    """Refuse a restored record whose texts could not have come from vidim.

    They go into header values of the requests vidim builds without
    checking them again (``Request.trusted``): a control character there
    would split a header line.
    """
    texts = [conference.id, conference.requester, conference.conference_uri or ""]
    for participant in conference.participants:
        texts += (participant.uri, participant.credential)
    for text in texts:
        if _CONTROL_RE.search(text):
            raise LocalProtocolError(f"control character in conference record: {text!r}")


def _conference_header(conference: Conference, participant: Participant, joined: str) -> str:
    """``X-Vidim-Conference``: the participant's join URI, its mode and the conference id."""
    return f"<{joined}>;mode={participant.mode.value};id={conference.id}"


def _a(mode: Mode) -> str:
    """``a video``, ``an audio``: the mode with its article, for the IMs people read."""
    text = mode.value
    return f"an {text}" if text[0] in "aeiou" else f"a {text}"


def _known(participant: Participant) -> Capabilities | None:
    if participant.probe is _PR_UNREACHABLE:
        return Capabilities.unreachable()
    if participant.audio is None or participant.video is None:
        return None
    return Capabilities(audio=participant.audio, video=participant.video)


def _capabilities(response: Response) -> Capabilities | None:
    ctype = response.content_type
    if response.body and ctype is not None and ctype.mime == "application/sdp":
        try:
            return capabilities_from_sdp(response.body)
        except RemoteProtocolError:
            return None
    for contact in response.contacts:
        found = capabilities_from_feature_tags(contact.params)
        if found is not None:
            return found
    return None


def _message_checks(body_type: str | None) -> ServerPolicy:
    """The SIP core's checks for a MESSAGE that vidim has already parsed and accepted."""
    if body_type is None or body_type in DEFAULT_POLICY.accepted_content_types:
        return DEFAULT_POLICY
    return ServerPolicy(accepted_content_types=DEFAULT_POLICY.accepted_content_types | {body_type})
