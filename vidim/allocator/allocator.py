"""The conference allocator: the sans-IO object the daemon is a thin loop around.

Three inputs, as in aioquic's ``QuicConnection``:

* messages: :meth:`Allocator.receive` (parsed) or :meth:`Allocator.receive_datagram`;
* the clock: :meth:`Allocator.get_timer` gives the next deadline and
  :meth:`Allocator.handle_timer` fires what is due;
* API calls: :meth:`Allocator.end_conference`, :meth:`Allocator.end_all`,
  :meth:`Allocator.restore`, :meth:`Allocator.reconfigure`.

After any of them, store :meth:`Allocator.take_changes` (when there is a
state store: see :meth:`Allocator.record_changes`), then send
:meth:`Allocator.messages_to_send` and read :meth:`Allocator.next_event`.

The allocator itself only routes: each input goes to the part that knows
what to do with it.  The parts share one :class:`~.context.Context` (the
transaction layer, the dialogs, the conference table, the timers):

* :class:`~.commands.Commands`: MESSAGEs in, 202 or a refusal out; the commands;
* :class:`~.probing.Probing`: OPTIONS to the invitees, their capabilities;
* :class:`~.focus_leg.FocusLeg`: the INVITE dialog with the focus, failover, BYE;
* :class:`~.roster.Roster`: the conference-event subscription;
* :class:`~.notices.Invitations`: the invitation IMs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..core import RecordChange, SipCoreBase
from ..sip import (
    AckReceived,
    Address,
    Dialog,
    Event,
    LocalProtocolError,
    MessageDiscarded,
    RemoteProtocolError,
    Request,
    RequestReceived,
    Response,
    ResponseReceived,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    make_response,
    summary,
)
from .authentication import CHALLENGES, Authentication
from .commands import Commands, FollowUp, NewConferenceAsked
from .conference import Conference, ConferenceState, Deadline
from .config import AllocatorConfig
from .context import Context, Pending, Purpose, address_of
from .events import AllocatorEvent, MessageIgnored, MessageNotSent
from .focus_leg import FocusLeg
from .notices import Invitations
from .probing import Probing
from .roster import Roster

__all__ = ["Allocator", "AllocatorConfig", "FollowUp", "NewConferenceAsked", "address_of"]

#: The states of a conference whose focus is not chosen for good yet.
_SETTING_UP = (ConferenceState.REQUESTED, ConferenceState.PROBING, ConferenceState.ALLOCATING)

#: Answers that :class:`~.authentication.Authentication` looks at first: a
#: challenge, or a refusal of our credentials.
_AUTHENTICATION_STATUSES = (*CHALLENGES, 403)

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

#: What :meth:`Allocator.reconfigure` cannot change: the transaction layer, the
#: Via, Contact and From, the Warning host, and how the focus is spoken to are
#: built from them once (a new Allocator is needed).
_FIXED: tuple[tuple[str, Callable[[AllocatorConfig], object]], ...] = (
    ("local", lambda config: config.local),
    ("transactions", lambda config: config.transactions),
    ("profile", lambda config: config.profile),
    ("requests.domain", lambda config: config.requests.domain),
    ("requests.service_uri", lambda config: config.requests.service_uri),
)

#: A handler of the answer to a request the allocator sent.
AnswerHandler = Callable[[Conference, Pending, Response, float], None]


def _check_record(conference: Conference) -> None:
    """Refuse a restored record whose texts could not have come from vidim.

    They go into header values of the requests vidim builds: a control
    character there would split a header line.
    """
    texts = [conference.id, conference.requester, conference.conference_uri or ""]
    for participant in conference.participants:
        texts += (participant.uri, participant.credential)
    for text in texts:
        if _CONTROL_RE.search(text):
            raise LocalProtocolError(f"control character in conference record: {text!r}")


class Allocator(SipCoreBase[AllocatorEvent]):
    """Turns vidim requests into conferences on a focus, and looks after them."""

    namespace = "allocator"

    def __init__(self, config: AllocatorConfig | None = None) -> None:
        self.config = config if config is not None else AllocatorConfig()
        self._context = context = Context(self.config, self._emit)
        self._init_core(context.layer)
        self._invitations = Invitations(context)
        self._roster = Roster(context)
        self._focus = FocusLeg(context, self._roster, self._invitations, self._retire)
        self._probing = Probing(context, self._focus)
        self._commands = Commands(context, self._probing, self._focus)
        self._authentication = Authentication(context)
        #: Who handles the answer to each kind of request (none: nothing to do).
        self._answer_handlers: dict[Purpose, AnswerHandler] = {
            Purpose.PROBE: self._probing.on_answer,
            Purpose.FOCUS_INVITE: self._focus.on_invite_answer,
            Purpose.REINVITE: self._focus.on_reinvite_answer,
            Purpose.KEEPALIVE: self._focus.on_keepalive_answer,
            Purpose.BYE: self._focus.on_bye_answer,
            Purpose.INVITATION: self._invitations.on_answer,
            Purpose.SUBSCRIBE: self._roster.on_subscribe_answer,
        }
        #: Who acts when each kind of deadline of a conference is due.
        self._deadline_handlers: dict[Deadline, Callable[[Conference, float], None]] = {
            Deadline.PROBE: self._probing.on_deadline,
            Deadline.FOCUS: self._focus.on_invite_timeout,
            Deadline.IDLE: self._focus.on_idle,
            Deadline.KEEPALIVE: self._focus.keepalive,
            Deadline.ENDING: self._focus.on_ending_timeout,
        }

    def _emit(self, event: AllocatorEvent) -> None:
        self._events.append(event)

    # -- the I/O boundary ----------------------------------------------------------------
    def receive(self, message: Request | Response, source: Address, now: float) -> None:
        self._layer.receive(message, source, now)
        self._drain(now)

    def _ignored(self, reason: str, summary: str) -> AllocatorEvent:
        return MessageIgnored(reason=reason, summary=summary)

    def _not_sent(self, summary: str, destination: Address, reason: str) -> AllocatorEvent:
        return MessageNotSent(summary=summary, destination=destination, reason=reason)

    def _warning_host(self) -> str:
        return self.config.warning_host

    def _next_own_timer(self) -> float | None:
        return self._context.timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        self._commands.rate.sweep_if_due(now)
        self._layer.handle_timer(now)
        self._drain(now)
        for conference_id, kind in self._context.timers.pop_due(now):
            conference = self._context.conferences.get(conference_id)
            if conference is None or conference.deadlines.pop(kind, None) is None:
                continue
            self._context.conferences.touch(conference_id)
            self._deadline_handlers[kind](conference, now)
            self._drain(now)

    # -- API -------------------------------------------------------------------------------
    @property
    def conferences(self) -> dict[str, Conference]:
        """Live conferences by id (do not modify)."""
        return self._context.conferences.by_id

    def snapshot(self, conference_id: str) -> dict[str, Any]:
        """The record of a live conference as plain data, dialogs included."""
        record = self.conferences[conference_id].to_dict()
        anchor = self._focus.anchors.get(conference_id)
        if anchor is not None:
            # Serialized here only: the live record keeps no copy of the dialog.
            record["anchor"] = anchor.to_dict()
        return record

    def record_changes(self) -> None:
        self._context.conferences.record_changes()

    def note_all_changed(self) -> None:
        for conference_id in self.conferences:
            self._context.conferences.touch(conference_id)

    def refuse_new_conferences(self, reason: str | None) -> None:
        """Refuse new conferences with 503 and ``reason`` (None: accept them again).

        Follow-up commands on live conferences are still served: e.g. while
        the state store is unreachable, conferences go on from memory.
        """
        self._commands.refusing_new = reason

    @property
    def refusing_new_conferences(self) -> str | None:
        """Why new conferences are refused now (:meth:`refuse_new_conferences`), or None."""
        return self._commands.refusing_new

    def classify(self, request: Request, source: Address) -> NewConferenceAsked | FollowUp | None:
        """What daemons sharing a store settle before :meth:`receive` takes ``request``.

        :class:`NewConferenceAsked`: count it against the requester's rate in
        the store, then :meth:`decide_rate`.  :class:`FollowUp`: a command
        about a conference this allocator does not drive: for the daemon that
        drives it, or for this one to adopt first (:meth:`restore`).
        """
        return self._commands.classify(request, source)

    def decide_rate(self, requester: str, allowed: bool) -> None:
        """Whether ``requester``'s next new conference is within the rate (counted elsewhere)."""
        self._commands.rate.decide(requester, allowed)

    def release(self, conference_id: str) -> None:
        """Stop driving a conference, without ending it or deleting its record.

        For daemons sharing a store: another daemon drives it now.  Its timers
        stop; answers to its requests in flight are ignored.
        """
        conference = self.conferences.get(conference_id)
        if conference is not None:
            self._retire(conference, keep_record=True)

    def take_changes(self) -> list[RecordChange]:
        """Each conference changed since the last call: its snapshot, or None when it is over.

        Indexed by requester, so that any daemon sharing the store finds the
        conference a follow-up command is about.
        """
        changes = []
        for conference_id in self._context.conferences.take_changed():
            conference = self.conferences.get(conference_id)
            if conference is None:
                changes.append(RecordChange(conference_id, None))
            else:
                record = self.snapshot(conference_id)
                changes.append(
                    RecordChange(conference_id, record, (("requester", conference.requester),))
                )
        return changes

    def end_conference(
        self, conference_id: str, now: float, reason: str = "ended by the operator"
    ) -> None:
        conference = self.conferences.get(conference_id)
        if conference is None:
            raise LocalProtocolError(f"no live conference {conference_id!r}")
        self._focus.end(conference, reason, now)
        self._drain(now)

    def report_presence(
        self, conference_id: str, credential: str, *, present: bool, now: float
    ) -> bool:
        """The focus says, out of SIP, that the caller with ``credential`` joined or left.

        For a focus without RFC 4575 events (Asterisk's ConfbridgeJoin and
        ConfbridgeLeave over AMI): the requester gets the same join and leave
        IMs, ``/status`` the same statuses, and a join disarms the idle end
        (with :attr:`AllocatorConfig.presence_reported`).  False, and nothing
        changes, for a conference or key this allocator does not know.
        """
        conference = self.conferences.get(conference_id)
        if conference is None:
            return False
        known = self._roster.on_presence(conference, credential, present, now)
        self._drain(now)
        return known

    def end_all(self, now: float, reason: str = "the allocator is shutting down") -> int:
        """Clean shutdown: end every live conference (BYE on each anchor); how many.

        As :meth:`end_conference` does for one: an active conference's anchor
        gets its BYE (the conference is over when it is answered or times out),
        one still being set up is cancelled.  Conferences already ending go on.
        """
        ending = [c for c in self.conferences.values() if c.state is not ConferenceState.ENDING]
        for conference in ending:
            self._focus.end(conference, reason, now)
        self._drain(now)
        return len(ending)

    def reconfigure(self, config: AllocatorConfig) -> None:
        """Take a new configuration at run time (the daemon's SIGHUP).

        Trust, limits, timeouts, the proxy and the focus list apply from now
        on: to requests from now on, and to the timers armed from now on (a
        deadline already armed keeps its time).  A conference still being set
        up keeps trying the focus list it started with.  Raises
        :class:`LocalProtocolError` naming the fields that need a new
        Allocator (:data:`_FIXED`), and then changes nothing.
        """
        fixed = [name for name, value in _FIXED if value(config) != value(self.config)]
        if fixed:
            raise LocalProtocolError(f"cannot change at run time: {', '.join(fixed)}")
        old_foci = self.config.focus_uris
        if config.focus_uris != old_foci:
            for conference in self.conferences.values():
                if conference.state in _SETTING_UP:
                    self._focus.focus_lists.setdefault(conference.id, old_foci)
        self._commands.reconfigure(config)
        self.config = self._context.config = config

    def restore(self, record: dict[str, Any], now: float) -> Conference:
        """Resume managing a conference saved with :meth:`snapshot`.

        Transactions in flight when it was saved are gone: what they were
        doing is done again (probes, the focus INVITE, the BYE); deadlines
        come back from the record.  A live conference's anchor is checked at
        once with an in-dialog OPTIONS (the keepalive); one whose anchor was
        made by an allocator at another address (a daemon sharing the store
        took it over) also gets a re-INVITE with this allocator's Contact, so
        that the focus's in-dialog requests come here.
        """
        context = self._context
        conference = Conference.from_dict(record)
        if not conference.live:
            raise LocalProtocolError(f"conference {conference.id} is over")
        _check_record(conference)
        context.conferences.add(conference)
        moved = False
        if conference.anchor is not None:
            anchor = Dialog.from_dict(conference.anchor, local_via=context.via)
            conference.anchor = None  # the live Dialog is the state now (see snapshot)
            # Made by another allocator (one sharing the store, at another address):
            # the focus must send its in-dialog requests here from now on.
            moved = anchor.local_contact != context.contact
            anchor.local_contact = context.contact
            context.dialogs.add(anchor)
            self._focus.anchors[conference.id] = anchor
            context.conferences.add_call_id(conference, anchor.call_id)
        for kind, when in list(conference.deadlines.items()):
            context.arm(conference, kind, when)
        state = conference.state
        if state is ConferenceState.REQUESTED:
            self._probing.start(conference, now)
        elif state is ConferenceState.PROBING:
            for participant in self._probing.to_probe(conference):
                self._probing.send(conference, participant, now)
        elif state is ConferenceState.ALLOCATING:
            self._focus.invite(conference, now)
        elif state is ConferenceState.ACTIVE:
            # Is the anchor still there?  An in-dialog OPTIONS now, not at the
            # next keepalive: 481 or no answer ends the conference, with a
            # notice to the requester.
            self._focus.keepalive(conference, now)
            if moved:
                # A target refresh (RFC 3261 section 12.2): the focus's BYE and
                # re-INVITEs reach this allocator, not the one that made the dialog.
                self._focus.update(conference, now)
            self._roster.subscribe(conference, now)
        elif state is ConferenceState.ENDING:
            self._focus.send_bye(conference, now)
        self._drain(now)
        return conference

    # -- routing -----------------------------------------------------------------------
    def _drain(self, now: float) -> None:
        context = self._context
        while True:
            if (event := self._layer.next_event()) is not None:
                self._on_transaction_event(event, now)
            elif context.unsent:
                # Not sent (no transport there): answered as a transport error would be.
                pending, reason = context.unsent.pop(0)
                self._on_answer(pending, make_response(pending.request, 503, reason), now)
            else:
                return

    def _on_transaction_event(self, event: Event, now: float) -> None:
        context = self._context
        if isinstance(event, RequestReceived):
            request = event.request
            if request.to_addr.tag is None:
                self._commands.on_request(request, event.source, now)
            else:
                self._on_in_dialog_request(request, now)
        elif isinstance(event, ResponseReceived):
            pending = context.pending.get(event.transaction_id)
            if pending is None:
                return
            if event.response.status in _AUTHENTICATION_STATUSES:
                retried = self._authentication.on_answer(
                    event.transaction_id, pending, event.response, now
                )
                if retried is not None:
                    self._focus.resent(event.transaction_id, retried, pending)
                    return
            self._on_answer(pending, event.response, now)
            if event.response.status >= 200 and pending.request.method not in (
                "INVITE",
                "SUBSCRIBE",
            ):
                # Nothing more comes for a non-INVITE request after its final
                # response (the transaction only absorbs retransmissions for
                # Timer K); INVITE and SUBSCRIBE wait for 2xx retransmissions
                # and forks until their transaction ends.
                context.forget(event.transaction_id)
        elif isinstance(event, (TransactionTimedOut, TransportFailed)):
            pending = context.pending.get(event.transaction_id)
            if isinstance(event, TransportFailed) and pending is not None:
                retried = context.fall_back_to_udp(event.transaction_id, now)
                if retried is not None:
                    self._focus.resent(event.transaction_id, retried, pending)
                    return
            if pending is not None:
                why = "no answer" if isinstance(event, TransactionTimedOut) else "transport error"
                made_up = make_response(pending.request, event.status_hint, f"Local {why}")
                self._on_answer(pending, made_up, now)
        elif isinstance(event, TransactionTerminated):
            pending = context.pending.get(event.transaction_id)
            if pending is not None and pending.request.method in ("INVITE", "SUBSCRIBE"):
                context.dialogs.forget(pending.request)
            context.forget(event.transaction_id)
        elif isinstance(event, MessageDiscarded):
            self._emit(MessageIgnored(reason=event.reason, summary=summary(event.message)))
        elif isinstance(event, AckReceived):
            pass  # ACK for a 2xx we sent: nothing to do (vidim answers no INVITE with 2xx)

    def _on_answer(self, pending: Pending, response: Response, now: float) -> None:
        """An answer (or a made-up one, for a timeout) to a request the allocator sent."""
        conference = self._context.conferences.get(pending.conference_id)
        if conference is None:
            self._focus.on_late_answer(pending, response, now)
            return
        handler = self._answer_handlers.get(pending.purpose)
        if handler is not None:
            handler(conference, pending, response, now)

    def _on_in_dialog_request(self, request: Request, now: float) -> None:
        context = self._context
        try:
            dialog, automatic = context.dialogs.receive_request(request)
        except RemoteProtocolError as error:
            self._commands.refuse_plain(request, error.status_hint, error.reason, now)
            return
        if automatic is not None:
            # The dialog answers BYE and NOTIFY itself (200), and refuses what
            # it must (481, 500, 491); a 2xx still needs acting on below.
            context.respond(automatic, now)
            if automatic.status >= 300:
                return
        method = request.method
        if dialog is None:
            if automatic is None and method != "ACK":
                self._commands.refuse_plain(request, 481, "no dialog matches this request", now)
            return
        if method == "ACK":
            return
        conference = context.conferences.by_call_id(request.call_id)
        if method in ("NOTIFY", "BYE"):
            if automatic is None:
                context.respond(dialog.create_response(request, 200), now)
            if conference is not None and method == "NOTIFY":
                self._roster.on_notify(conference, request, dialog, now)
            elif conference is not None:
                self._focus.on_bye(conference, dialog, now)
        elif method == "INVITE" and conference is not None:
            self._focus.on_refresh(conference, dialog, request, now)
        else:
            status = 200 if method == "OPTIONS" else 501
            context.respond(dialog.create_response(request, status), now)

    def _retire(self, conference: Conference, *, keep_record: bool = False) -> None:
        """Forget a conference that is over (or driven elsewhere), and everything kept for it."""
        context = self._context
        for kind in Deadline:
            context.timers.cancel((conference.id, kind))
        call_ids = context.conferences.remove(conference, keep_record=keep_record)
        self._focus.invites.pop(conference.id, None)
        self._focus.focus_lists.pop(conference.id, None)
        anchor = self._focus.anchors.pop(conference.id, None)
        subscription = self._roster.forget(conference)
        # Its dialogs go, so that later requests on them get 481 ...
        for dialog in (anchor, subscription):
            if dialog is not None and context.dialogs.get(dialog.id) is dialog:
                context.dialogs.remove(dialog)
        # ... nor may a late NOTIFY make a new one.
        for pending in context.subscribes.values():
            if pending.request.call_id in call_ids:
                context.dialogs.forget(pending.request)
