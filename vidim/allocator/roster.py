"""The roster: who is in each conference, from the focus's conference events.

With the ``rfc4579`` profile the allocator subscribes to the conference
URI (RFC 4575 ``Event: conference``), folds each NOTIFY into its view and
tells the requester who joined and who left.  With the ``asterisk``
profile the application reports the same from Asterisk's AMI
(:meth:`Roster.on_presence`).  A lost or reordered NOTIFY
makes the view stale: the subscription is refreshed, which brings full state.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..conference_info import (
    CONFERENCE_INFO_TYPE,
    ConferenceInfo,
    apply_update,
    parse_conference_info,
)
from ..sip import Dialog, LocalProtocolError, RemoteProtocolError, Request, Response
from ..vocabulary import Mode
from .conference import Conference, ConferenceInput, ConferenceState, Deadline, Participant
from .context import Context, Pending, Purpose
from .events import MessageIgnored, ParticipantJoined, ParticipantLeft
from .notices import name_of
from .profiles import FocusProfile

__all__ = ["Roster", "Subscription"]


@dataclass(slots=True)
class Subscription:
    dialog: Dialog
    #: When it was last (re)newed.
    renewed: float


class Roster:
    def __init__(self, context: Context) -> None:
        self._context = context
        #: The conference-event subscription of each conference that has one.
        self.subscriptions: dict[str, Subscription] = {}
        #: What the focus last said of who is there, per conference.
        self.views: dict[str, ConferenceInfo] = {}

    def _subscribe_headers(self) -> list[tuple[str, str]]:
        return [
            ("Event", "conference"),
            ("Expires", str(self._context.config.subscription_expires)),
            ("Accept", CONFERENCE_INFO_TYPE),
        ]

    def subscribe(self, conference: Conference, now: float) -> None:
        context = self._context
        uri = conference.conference_uri
        if context.config.profile is not FocusProfile.RFC4579 or uri is None:
            return
        subscribe = context.initial_request(
            conference, "SUBSCRIBE", uri, headers=self._subscribe_headers()
        )
        pending = Pending(Purpose.SUBSCRIBE, conference.id, subscribe)
        context.send(subscribe, subscribe.uri, now, pending)

    def on_subscribe_answer(
        self, conference: Conference, pending: Pending, response: Response, now: float
    ) -> None:
        if not 200 <= response.status < 300:
            return
        dialog = self._context.dialogs.receive_response(pending.request, response)
        if dialog is not None and conference.id not in self.subscriptions:
            self.subscriptions[conference.id] = Subscription(dialog, now)

    def renew_if_due(self, conference: Conference, now: float) -> None:
        """Renew the subscription when half of its lifetime is gone."""
        subscription = self.subscriptions.get(conference.id)
        half = self._context.config.subscription_expires / 2
        if subscription is not None and now - subscription.renewed >= half:
            self._refresh(conference, subscription.dialog, now)

    def _refresh(self, conference: Conference, dialog: Dialog, now: float) -> None:
        context = self._context
        self.subscriptions[conference.id] = Subscription(dialog, now)
        try:
            refresh = dialog.create_request("SUBSCRIBE", headers=self._subscribe_headers())
        except LocalProtocolError:
            return  # the subscription dialog has ended: nothing to refresh
        context.send(
            refresh,
            dialog,
            now,
            Pending(Purpose.RESUBSCRIBE, conference.id, refresh),
        )

    def on_notify(
        self, conference: Conference, request: Request, dialog: Dialog, now: float
    ) -> None:
        """A NOTIFY on the subscription (answered already): fold it in, tell who came and went."""
        context = self._context
        self.subscriptions.setdefault(conference.id, Subscription(dialog, now))
        if not request.body:
            return
        try:
            update = parse_conference_info(request.body)
        except RemoteProtocolError as error:
            context.emit(MessageIgnored(reason=error.reason, summary="NOTIFY conference"))
            return
        try:
            roster = apply_update(self.views.get(conference.id), update)
        except RemoteProtocolError as error:
            # A lost or reordered NOTIFY (RFC 4575 section 4.6): our view is
            # stale; refresh the subscription, which brings full state.
            context.emit(MessageIgnored(reason=error.reason, summary="NOTIFY conference"))
            self.views.pop(conference.id, None)
            self._refresh(conference, dialog, now)
            return
        self.views[conference.id] = roster
        connected = {user.entity: user for user in roster.users if user.status == "connected"}
        for participant in conference.participants:
            user = connected.get(participant.uri)
            mode = None if user is None else user.mode
            self._mark(conference, participant, user is not None, mode, now)
        self._changed(conference)

    def on_presence(
        self, conference: Conference, credential: str, present: bool, now: float
    ) -> bool:
        """The focus said (out of SIP: Asterisk's AMI) that a key's caller joined or left.

        The same notices and events as a NOTIFY; False when no participant has the key.
        """
        for participant in conference.participants:
            if participant.credential == credential:
                self._mark(conference, participant, present, None, now)
                self._changed(conference)
                return True
        return False

    def _mark(
        self,
        conference: Conference,
        participant: Participant,
        present: bool,
        mode: Mode | None,
        now: float,
    ) -> None:
        """Note one participant as there or gone; tell the requester when that changed."""
        context = self._context
        was = participant.status == "connected"
        if present and not was:
            participant.status = "connected"
            context.emit(
                ParticipantJoined(
                    conference_id=conference.id, participant=participant.uri, mode=mode
                )
            )
            text = f"{name_of(participant.uri)} joined ({participant.mode.value})."
        elif not present and was:
            participant.status = "disconnected"
            context.emit(ParticipantLeft(conference_id=conference.id, participant=participant.uri))
            text = f"{name_of(participant.uri)} left."
        else:
            return
        context.conferences.touch(conference.id)
        if not participant.requester:
            context.tell_requester(conference, text, now)

    def _changed(self, conference: Conference) -> None:
        context = self._context
        if conference.state in (ConferenceState.ACTIVE, ConferenceState.ENDING):
            context.move(conference, ConferenceInput.ROSTER_CHANGED)
        if any(p.status in ("connected", "disconnected") for p in conference.participants):
            # Somebody came: the idle rule no longer applies.
            context.disarm(conference, Deadline.IDLE)

    def forget(self, conference: Conference) -> Dialog | None:
        """A conference is over: drop its view; returns its subscription dialog, if any."""
        self.views.pop(conference.id, None)
        subscription = self.subscriptions.pop(conference.id, None)
        return None if subscription is None else subscription.dialog
