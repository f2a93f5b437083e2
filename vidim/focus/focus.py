"""The built-in conference focus: the embedded default "second server" (RFC 4579 profile).

Sans-IO, with the same shape as :class:`vidim.allocator.allocator.Allocator`
(and aioquic's ``QuicConnection``).  Three inputs:

* messages: :meth:`ConferenceFocus.receive` (parsed) or
  :meth:`ConferenceFocus.receive_datagram` (bytes; never raises);
* the clock: :meth:`ConferenceFocus.get_timer` gives the next deadline and
  :meth:`ConferenceFocus.handle_timer` fires what is due;
* API calls: :meth:`ConferenceFocus.end_all`, :meth:`ConferenceFocus.end_conference`,
  :meth:`ConferenceFocus.restore`, :meth:`ConferenceFocus.ports_unavailable`.

After any of them, store :meth:`ConferenceFocus.take_changes` (write-ahead:
before anything is sent), send :meth:`ConferenceFocus.messages_to_send` and
read :meth:`ConferenceFocus.next_event`; on :class:`MediaPlanChanged`, apply
:attr:`ConferenceFocus.forwarding_plan` to the RTP relay
(:class:`vidim.aio.FocusMedia` does).

Restart (issue 16): each conference's record (:meth:`ConferenceFocus.snapshot`,
layout in :mod:`.stored`) holds its dialogs, media ports and deadlines;
:meth:`ConferenceFocus.restore` takes it back in a new focus, which then
answers in-dialog requests as the old one would have and asks the relay for
the same ports again.  See docs/focus.md, "Restart".

What it does on the wire:

* **Factory INVITE** (Request-URI user in ``factory_users``) from a trusted
  network (the allocator; others get 403) with an RFC 5366 resource list: a
  new conference, whose INVITE dialog is its *anchor* (:mod:`.anchor`);
  in-dialog OPTIONS get 200.
* Every request but ACK: a Request-URI over 2048 characters gets 414, a
  header value over 8192 gets 400 (:func:`vidim.sip.check_sizes`).
* **Participant INVITE** to a conference URI: admission and SDP per mode
  (:mod:`.participants`).
* **SUBSCRIBE** ``Event: conference`` to a conference URI (from a trusted
  network, or with a join credential): the roster (:mod:`.subscriptions`).
* **Conference end** (this module): the anchor's BYE, the last connected
  participant hanging up (once somebody had joined), the conference TTL, or
  the API.
  Every connected participant gets BYE, the anchor gets BYE unless the
  allocator sent one, subscribers get the terminated NOTIFY.

The conference's and each invitee's states move by :mod:`.lifecycle`'s
tables; :mod:`.signalling` holds the dialogs, the timers and what is sent.

Limits, on purpose: no delayed offer (an INVITE without SDP gets 488), no
mixing or transcoding (see :mod:`vidim.focus.media`), no dial-out, no
removal of invitees by re-INVITE (the allocator only ever adds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from ..conference_info import UserInfo
from ..core import RecordChange, SipCoreBase
from ..resource_lists import RESOURCE_LISTS_TYPE
from ..sdp import SDP_TYPE
from ..sip import (
    AckReceived,
    Address,
    Dialog,
    Event,
    LocalProtocolError,
    MessageDiscarded,
    RemoteProtocolError,
    Request,
    RequestCancelled,
    RequestReceived,
    Response,
    ResponseReceived,
    SIPParseError,
    SipURI,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    check_sizes,
    make_response,
    new_tag,
    parse_uri,
    summary,
)
from ..vocabulary import IPNetwork
from .anchor import Anchors
from .config import NOT_INVITED, ConferenceSnapshot, FocusConfig
from .events import (
    ConferenceEnded,
    FocusEvent,
    KeyframeWanted,
    MediaPlanChanged,
    MediaPortUnavailable,
    MessageIgnored,
    MessageNotSent,
)
from .keyframes import MEDIA_CONTROL_TYPE, is_picture_fast_update, picture_fast_update_body
from .lifecycle import ConferenceInput, ConferenceState, ParticipantInput
from .media import ForwardingPlan, PortPool
from .participants import Participants
from .records import Call, Conference, Leg, Owner, Resend, TimerKey, TimerKind
from .signalling import ALLOW, Signalling
from .stored import from_record, to_record
from .subscriptions import Subscriptions

__all__ = [
    "NOT_INVITED",
    "ConferenceFocus",
    "ConferenceSnapshot",
    "FocusConfig",
    "IPNetwork",
]

#: Why a conference ended, as :class:`ConferenceEnded` says it.
_END_REASONS = {
    ConferenceInput.ANCHOR_BYE: "the allocator ended the conference",
    ConferenceInput.ANCHOR_NOT_ACKNOWLEDGED: "the allocator never acknowledged the conference",
    ConferenceInput.TIME_LIMIT: "the conference time limit was reached",
    ConferenceInput.LAST_PARTICIPANT_LEFT: "the last participant left",
}


class ConferenceFocus(SipCoreBase[FocusEvent]):
    """Hosts conferences for the allocator: admission, SDP per mode, roster, media plan."""

    namespace: ClassVar[str] = "focus"

    def __init__(self, config: FocusConfig | None = None) -> None:
        self.config = config if config is not None else FocusConfig()
        self._init_core(TransactionLayer(self.config.transactions))
        self._signalling = Signalling(self.config, self._layer, self._emit)
        self._pool = PortPool(*self.config.rtp_ports, choose=self.config.choose_port)
        self._subscriptions = Subscriptions(self._signalling)
        self._participants = Participants(self._signalling, self._subscriptions, self._pool)
        self._anchors = Anchors(self._signalling)
        self._conferences: dict[str, Conference] = {}
        #: Conferences (by user) touched since the last take_changes: their records are
        #: due.  None until record_changes(): nobody takes them.
        self._changed: set[str] | None = None
        self._on_timer: dict[TimerKind, Callable[[TimerKey, float], None]] = {
            TimerKind.TIME_LIMIT: self._time_limit_reached,
            TimerKind.RESEND: self._resend,
            TimerKind.SUBSCRIPTION_EXPIRY: self._subscription_expired,
        }

    # -- the I/O boundary ------------------------------------------------------
    def receive(self, message: Request | Response, source: Address, now: float) -> None:
        """Take in a parsed message that arrived from ``source``."""
        self._layer.receive(message, source, now)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        """Fire everything due at or before ``now``."""
        self._layer.handle_timer(now)
        self._drain(now)
        for key in self._signalling.timers.pop_due(now):
            self._touch(self._owning(key))
            self._on_timer[key.kind](key, now)
            self._drain(now)

    def _next_own_timer(self) -> float | None:
        return self._signalling.timers.next_deadline()

    def _ignored(self, reason: str, summary: str) -> FocusEvent:
        return MessageIgnored(reason=reason, summary=summary)

    def _not_sent(self, summary: str, destination: Address, reason: str) -> FocusEvent:
        return MessageNotSent(summary=summary, destination=destination, reason=reason)

    def _warning_host(self) -> str:
        return self._signalling.warn

    def _emit(self, event: FocusEvent) -> None:
        self._events.append(event)

    def _touch(self, conference: Conference | str | None) -> None:
        """Mark a conference's record as due for the store (too often is harmless)."""
        if self._changed is None:
            return
        if isinstance(conference, Conference):
            self._changed.add(conference.user)
        elif conference is not None:
            self._changed.add(conference)

    def record_changes(self) -> None:
        if self._changed is None:
            self._changed = set()

    def note_all_changed(self) -> None:
        for user in self._conferences:
            self._touch(user)

    def take_changes(self) -> list[RecordChange]:
        """The record of every conference changed since the last call (None: it ended).

        Store them before sending :meth:`messages_to_send` (write-ahead).
        """
        if not self._changed:
            return []
        changes = [
            RecordChange(user, self.snapshot(user) if user in self._conferences else None)
            for user in sorted(self._changed)
        ]
        self._changed.clear()
        return changes

    # -- API -------------------------------------------------------------------
    @property
    def forwarding_plan(self) -> ForwardingPlan:
        """Every live conference's routes together: what the relay should apply."""
        return ForwardingPlan.merge(c.plan for c in self._conferences.values())

    @property
    def ports_in_use(self) -> frozenset[int]:
        """The RTP ports (even; RTCP is + 1) handed out to live calls."""
        return self._pool.in_use

    def conferences(self) -> list[ConferenceSnapshot]:
        return [
            ConferenceSnapshot(
                uri=c.uri,
                invitees=tuple((i.uri, i.mode) for i in c.invitees.values()),
                connected=tuple(c.calls),
                subscribers=len(c.subscriptions),
                created_at=c.created_at,
                ends_at=c.ends_at,
                state=c.state,
                participants=tuple((i.uri, i.state) for i in c.invitees.values()),
            )
            for c in self._conferences.values()
        ]

    def snapshot(self, conference_id: str) -> dict[str, Any]:
        """The record of a live conference (by its URI's user part) as plain JSON data."""
        conference = self._conferences.get(conference_id)
        if conference is None:
            raise LocalProtocolError(f"no live conference {conference_id!r}")
        resends = [e for e in self._signalling.resends.values() if e.conference == conference_id]
        return to_record(conference, resends)

    def restore(self, record: dict[str, Any], now: float) -> str:
        """Take back a conference from its :meth:`snapshot`; returns its URI.

        Its dialogs answer in-dialog requests as before, its deadlines come
        back at their stored (absolute) times, and its calls' RTP ports are
        handed out again: a :class:`MediaPlanChanged` asks the relay for them.
        A deadline that passed meanwhile fires at the next :meth:`handle_timer`
        (``now`` is not needed for that; it is taken as
        :meth:`~vidim.allocator.Allocator.restore` takes it).
        Transactions in flight when it was stored are gone.  Raises
        :class:`~vidim.sip.LocalProtocolError`, changing nothing, for a
        record that is not a live conference's, names a control character in a
        header text, or clashes with what the focus has (the same conference,
        a dialog or a port in use).
        """
        signalling = self._signalling
        stored = from_record(record, local_via=signalling.dialogs.local_via)
        conference = stored.conference
        if conference.state is ConferenceState.ENDED:
            raise LocalProtocolError(f"conference {conference.user} is over")
        if self._find_user(conference.uri) != conference.user:
            raise LocalProtocolError(f"conference URI {conference.uri!r} does not name it")
        if conference.user in self._conferences:
            raise LocalProtocolError(f"conference {conference.user} is live already")
        legs = self._legs(conference)
        ids = [dialog.id for dialog, _ in legs]
        if len(set(ids)) < len(ids) or any(signalling.dialogs.get(i) is not None for i in ids):
            raise LocalProtocolError(f"a dialog of conference {conference.user} is live already")
        ports = [port for call in conference.calls.values() for port in call.ports.values()]
        if len(set(ports)) < len(ports) or set(ports) & self._pool.in_use:
            raise LocalProtocolError(f"an RTP port of conference {conference.user} is in use")
        self._conferences[conference.user] = conference
        for dialog, owner in legs:
            signalling.dialogs.add(dialog)
            signalling.owners[dialog.id] = owner
        for port in ports:
            self._pool.reserve(port)
        signalling.timers.arm(
            TimerKey(TimerKind.TIME_LIMIT, conference.anchor.id), conference.ends_at
        )
        for sub in conference.subscriptions:
            key = TimerKey(TimerKind.SUBSCRIPTION_EXPIRY, sub.dialog.id)
            signalling.timers.arm(key, sub.expires_at)
        for entry in stored.resends:
            signalling.resend_restored(entry)
        self._participants.replan(conference)
        return conference.uri

    def ports_unavailable(self, errors: Mapping[int, str], now: float) -> None:
        """The relay cannot bind these ports (RTP or RTCP; the OS's reason each).

        Each call using one is ended with BYE (:class:`MediaPortUnavailable`,
        then :class:`ParticipantLeft`), so that the rest of the plan can be
        bound; ports no live call uses are ignored.
        """
        for conference in list(self._conferences.values()):
            for call in list(conference.calls.values()):
                pairs = {p for rtp in call.ports.values() for p in (rtp, rtp + 1)}
                port = min(pairs & errors.keys(), default=None)
                if port is None or conference.state is ConferenceState.ENDED:
                    continue  # not this call's; or the conference ended with an earlier call
                self._touch(conference)
                self._emit(
                    MediaPortUnavailable(
                        conference_uri=conference.uri, uri=call.uri, port=port, reason=errors[port]
                    )
                )
                self._signalling.send_in_dialog(call.dialog, call.source, "BYE", now)
                reason = f"media port {port} unavailable"
                self._leave(conference, call, ParticipantInput.NO_MEDIA_PORT, reason, now)
        self._drain(now)

    def request_keyframe(self, conference_uri: str, participant: str, now: float) -> None:
        """Ask a participant's video encoder for a keyframe with SIP INFO (RFC 5168).

        For the video switch's
        :class:`~vidim.focus.video.PictureFastUpdateWanted`: the phone
        negotiated no RTCP PLI or FIR.  Nothing is sent for a call that has
        gone meanwhile; the answer to the INFO is not waited for (the switch
        asks again while the keyframe does not come).
        """
        conference = self._find(conference_uri)
        call = conference.calls.get(participant) if conference is not None else None
        if call is None:
            return
        self._signalling.send_in_dialog(
            call.dialog,
            call.source,
            "INFO",
            now,
            body=picture_fast_update_body(),
            content_type=MEDIA_CONTROL_TYPE,
        )
        self._drain(now)

    def end_conference(self, conference_uri: str, now: float, reason: str = "ended") -> None:
        conference = self._find(conference_uri)
        if conference is None:
            raise LocalProtocolError(f"no live conference {conference_uri!r}")
        self._touch(conference)
        self._end(conference, ConferenceInput.END_REQUESTED, now, reason=reason)
        self._drain(now)

    def trust(self, networks: tuple[IPNetwork, ...]) -> None:
        """Take factory INVITEs and believe P-Asserted-Identity from these networks (SIGHUP)."""
        self.config = dataclasses.replace(self.config, trusted_networks=networks)
        self._signalling.config = self.config

    def end_all(self, now: float, reason: str = "the focus is shutting down") -> None:
        """Clean shutdown: BYE to every participant and anchor, terminated NOTIFYs."""
        for conference in list(self._conferences.values()):
            self._touch(conference)
            self._end(conference, ConferenceInput.END_REQUESTED, now, reason=reason)
        self._drain(now)

    # -- timers ----------------------------------------------------------------
    def _time_limit_reached(self, key: TimerKey, now: float) -> None:
        conference = self._owning(key)
        if conference is not None:
            self._end(conference, ConferenceInput.TIME_LIMIT, now)

    def _resend(self, key: TimerKey, now: float) -> None:
        given_up = self._signalling.resend(key, now)
        if given_up is not None:
            self._no_ack(given_up, now)

    def _subscription_expired(self, key: TimerKey, now: float) -> None:
        conference = self._owning(key)
        if conference is not None:
            sub = next((s for s in conference.subscriptions if s.dialog.id == key.dialog), None)
            if sub is not None:
                self._subscriptions.expire(conference, sub, now)

    def _owning(self, key: TimerKey) -> Conference | None:
        """The live conference whose dialog a timer is about."""
        owner = self._signalling.owners.get(key.dialog)
        return self._conferences.get(owner.conference) if owner is not None else None

    # -- plumbing --------------------------------------------------------------
    def _drain(self, now: float) -> None:
        while (event := self._layer.next_event()) is not None:
            self._on_transaction_event(event, now)

    def _find(self, uri_text: str) -> Conference | None:
        user = self._find_user(uri_text)
        return self._conferences.get(user) if user is not None else None

    @staticmethod
    def _find_user(uri_text: str) -> str | None:
        """The user part of a SIP URI: a conference's key; None for anything else."""
        try:
            uri = parse_uri(uri_text)
        except SIPParseError:
            return None
        return uri.user if isinstance(uri, SipURI) else None

    @staticmethod
    def _legs(conference: Conference) -> list[tuple[Dialog, Owner]]:
        """Every dialog of a conference and whose it is."""
        user = conference.user
        return [
            (conference.anchor, Owner(user, Leg.ANCHOR)),
            *((c.dialog, Owner(user, Leg.PARTICIPANT, c.uri)) for c in conference.calls.values()),
            *(
                (s.dialog, Owner(user, Leg.SUBSCRIPTION, s.subscriber))
                for s in conference.subscriptions
            ),
        ]

    # -- transaction events ------------------------------------------------------
    def _on_transaction_event(self, event: Event, now: float) -> None:
        if isinstance(event, RequestReceived):
            self._guarded(event.request, event.source, now)
        elif isinstance(event, AckReceived):
            self._on_ack(event.request)
        elif isinstance(event, RequestCancelled):
            txn = self._layer.transaction(event.transaction_id)
            if txn is not None:
                invite = txn.request
                assert isinstance(invite, Request)
                self._signalling.refuse(invite, 487, "cancelled", now)
        elif isinstance(event, ResponseReceived):
            self._touch(self._subscriptions.conference_of(event.transaction_id))
            self._subscriptions.on_answer(event.transaction_id, event.response)
        elif isinstance(event, (TransactionTimedOut, TransportFailed)):
            self._touch(self._subscriptions.conference_of(event.transaction_id))
            self._subscriptions.on_failure(event.transaction_id, event.status_hint)
        elif isinstance(event, TransactionTerminated):
            self._subscriptions.on_terminated(event.transaction_id)
        elif isinstance(event, MessageDiscarded):
            self._emit(MessageIgnored(reason=event.reason, summary=summary(event.message)))

    def _guarded(self, request: Request, source: Address, now: float) -> None:
        """Handle a request; a malformed header found late is answered, never raised."""
        try:
            self._on_request(request, source, now)
        except RemoteProtocolError as error:
            if request.method != "ACK":
                self._signalling.refuse(
                    request, error.status_hint, error.reason, now, error.headers
                )
            self._emit(MessageIgnored(reason=error.reason, summary=summary(request)))
        except LocalProtocolError as error:
            if request.method != "ACK":
                self._signalling.refuse(request, 500, error.reason, now)
            self._emit(MessageIgnored(reason=error.reason, summary=summary(request)))

    def _on_request(self, request: Request, source: Address, now: float) -> None:
        method = request.method
        if method != "ACK":
            check_sizes(request)  # 414/400 by _guarded: nothing oversized reaches a dialog
        if method == "INVITE" and self._signalling.answer_again(request, source):
            return
        if request.to_addr.tag is not None:
            self._in_dialog(request, source, now)
            return
        if method == "ACK":
            return
        if method == "OPTIONS":
            headers = [
                ("Allow", ALLOW),
                ("Accept", f"{SDP_TYPE}, multipart/mixed, {RESOURCE_LISTS_TYPE}"),
                ("Supported", "recipient-list-invite"),
                ("Allow-Events", "conference"),
            ]
            response = make_response(request, 200, to_tag=new_tag(), headers=headers)
            self._signalling.respond(response, now)
            return
        uri = request.uri
        user = uri.user if isinstance(uri, SipURI) else None
        if method == "INVITE" and user is not None and user in self.config.factory_users:
            created = self._anchors.create(request, source, now, live=len(self._conferences))
            if created is not None:
                self._conferences[created.user] = created
                self._touch(created)
            return
        if method not in ("INVITE", "SUBSCRIBE"):
            reason = f"the focus does not take {method}"
            self._signalling.refuse(request, 405, reason, now, [("Allow", ALLOW)])
            return
        conference = self._find(str(request.uri))
        self._touch(conference)
        if method == "INVITE":
            if conference is None:
                self._participants.refuse(None, request, source, 404, "no such conference", now)
            else:
                self._participants.join(conference, request, source, now)
        elif conference is None:
            self._signalling.refuse(request, 404, "no such conference", now)
        else:
            self._subscriptions.subscribe(conference, request, source, now)

    # -- in-dialog requests ----------------------------------------------------------
    def _in_dialog(self, request: Request, source: Address, now: float) -> None:
        signalling = self._signalling
        dialog, automatic = signalling.dialogs.receive_request(request)
        owner = signalling.owners.get(dialog.id) if dialog is not None else None
        if owner is not None:
            self._touch(owner.conference)  # the dialog's CSeq or target may have moved
        if automatic is not None:
            signalling.respond(automatic, now)
            if automatic.status >= 300:
                return
        if dialog is None:
            return
        method = request.method
        if method == "ACK":
            self._on_ack(request)
            return
        conference = self._conferences.get(owner.conference) if owner is not None else None
        if owner is None or conference is None:
            if automatic is None:
                signalling.respond(dialog.create_response(request, 481), now)
            return
        call = conference.calls.get(owner.uri) if owner.leg is Leg.PARTICIPANT else None
        if call is not None and call.dialog is not dialog:
            call = None  # a call replaced since
        if method == "BYE":
            if owner.leg is Leg.ANCHOR:
                self._end(conference, ConferenceInput.ANCHOR_BYE, now)
            elif call is not None:
                self._leave(conference, call, ParticipantInput.HUNG_UP, "hung up", now)
            elif owner.leg is Leg.SUBSCRIPTION:
                sub = self._subscriptions.find(conference, dialog)
                if sub is not None:
                    self._subscriptions.drop(conference, sub, "BYE")
            return
        if method == "INVITE" and owner.leg is Leg.ANCHOR:
            self._anchors.reinvite(conference, request, source, now)
        elif method in ("INVITE", "UPDATE") and call is not None:
            self._participants.update(conference, call, request, source, now)
        elif method == "UPDATE" and owner.leg is Leg.ANCHOR:
            signalling.respond(dialog.create_response(request, 200), now)
        elif method == "SUBSCRIBE" and owner.leg is Leg.SUBSCRIPTION:
            self._subscriptions.refresh(conference, dialog, request, now)
        else:
            if (
                method == "INFO"
                and call is not None
                and is_picture_fast_update(
                    request.content_type.mime if request.content_type else None, request.body
                )
            ):
                self._emit(KeyframeWanted(conference_uri=conference.uri, uri=call.uri))
            status = 200 if method in ("OPTIONS", "INFO") else 501
            response = dialog.create_response(request, status, headers=[("Allow", ALLOW)])
            signalling.respond(response, now)

    # -- ACKs --------------------------------------------------------------------------
    def _on_ack(self, ack: Request) -> None:
        acknowledged = self._signalling.acknowledge(ack)
        if acknowledged is None:
            return
        entry, cseq = acknowledged
        self._touch(entry.conference)
        call = self._call_of(entry)
        if call is not None:
            self._participants.acknowledged(call, cseq)

    def _call_of(self, entry: Resend) -> Call | None:
        """The live call whose 200 ``entry`` resends; None for an anchor's."""
        owner = self._signalling.owners.get(entry.dialog)
        conference = self._conferences.get(entry.conference)
        if owner is None or conference is None or owner.leg is not Leg.PARTICIPANT:
            return None
        call = conference.calls.get(owner.uri)
        return call if call is not None and call.dialog.id == entry.dialog else None

    def _no_ack(self, entry: Resend, now: float) -> None:
        """RFC 3261 13.3.1.4: no ACK within 64*T1: the session is over."""
        conference = self._conferences.get(entry.conference)
        owner = self._signalling.owners.get(entry.dialog)
        if conference is None or owner is None:
            return
        if owner.leg is Leg.ANCHOR:
            self._end(conference, ConferenceInput.ANCHOR_NOT_ACKNOWLEDGED, now)
            return
        call = self._call_of(entry)
        if call is not None:
            self._signalling.send_in_dialog(call.dialog, call.source, "BYE", now)
            self._leave(conference, call, ParticipantInput.ACK_MISSING, "no ACK for the 200", now)

    # -- leaving and the end -------------------------------------------------------------
    def _leave(
        self,
        conference: Conference,
        call: Call,
        event: ParticipantInput,
        reason: str,
        now: float,
    ) -> None:
        """A participant left: roster update, or the end when it was the last one."""
        self._participants.hang_up(conference, call, event, reason)
        if not conference.calls and conference.state is ConferenceState.LIVE:
            self._end(conference, ConferenceInput.LAST_PARTICIPANT_LEFT, now, also_left=[call.uri])
            return
        conference.advance(ConferenceInput.PARTICIPANT_LEFT)
        self._participants.disconnected(conference, call.uri, now)

    def _end(
        self,
        conference: Conference,
        event: ConferenceInput,
        now: float,
        *,
        reason: str = "",
        also_left: Iterable[str] = (),
    ) -> None:
        if conference.state is ConferenceState.ENDED:
            return  # a late cause: the conference has already ended
        conference.advance(event)
        signalling = self._signalling
        del self._conferences[conference.user]
        signalling.timers.cancel(TimerKey(TimerKind.TIME_LIMIT, conference.anchor.id))
        left = list(also_left)
        for call in list(conference.calls.values()):
            signalling.send_in_dialog(call.dialog, call.source, "BYE", now)
            self._participants.hang_up(
                conference, call, ParticipantInput.CONFERENCE_ENDED, "conference ended"
            )
            left.append(call.uri)
        for uri in left:
            old = conference.roster.get(uri)
            if old is not None:
                conference.roster[uri] = dataclasses.replace(old, status="disconnected")
        gone = [UserInfo(entity=uri, state="partial", status="disconnected") for uri in left]
        self._subscriptions.end(conference, gone, now)
        anchor = conference.anchor
        if not anchor.terminated:
            signalling.send_in_dialog(anchor, conference.anchor_source, "BYE", now)
        signalling.forget_resends(conference=conference.user)
        for dialog_id in [
            d for d, o in signalling.owners.items() if o.conference == conference.user
        ]:
            del signalling.owners[dialog_id]
        signalling.dialogs.prune()
        if conference.plan.routes:
            conference.plan = ForwardingPlan()
            self._emit(MediaPlanChanged(conference_uri=conference.uri, plan=conference.plan))
        self._emit(
            ConferenceEnded(conference_uri=conference.uri, reason=reason or _END_REASONS[event])
        )
