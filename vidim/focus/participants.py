"""Admission and the participants' calls: who may join, the SDP each gets, the media plan.

A participant INVITE to a conference URI is admitted only when the ``key``
parameter of the Request-URI is an invitee's join credential, or when it
comes from a trusted network with a ``P-Asserted-Identity`` naming an
invitee (a proxy that authenticated the caller); anyone else gets 403.
The SDP answer allows exactly the invitee's mode, with an RTP/RTCP port
pair per stream from the configured range.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from ..conference_info import UserInfo
from ..sdp import SDP_TYPE, Codec
from ..sip import (
    Address,
    RemoteProtocolError,
    Request,
    RequestRejectedError,
    Response,
    SIPParseError,
    check_request,
)
from ..vocabulary import Mode
from .config import NOT_INVITED
from .events import MediaPlanChanged, ParticipantAdmitted, ParticipantLeft, ParticipantRefused
from .lifecycle import ConferenceInput, ParticipantInput
from .media import ParticipantMedia, PortPool, forwarding_plan
from .negotiation import negotiate, new_session_id, reversion, sdp_part, video_codecs_for
from .records import Call, Conference, Leg, Owner
from .signalling import ALLOW, POLICY, Signalling
from .subscriptions import Subscriptions

__all__ = ["Participants"]


class Participants:
    """Participants' calls in every conference of one focus."""

    def __init__(
        self, signalling: Signalling, subscriptions: Subscriptions, pool: PortPool
    ) -> None:
        self._signalling = signalling
        self._subscriptions = subscriptions
        self._pool = pool

    def refuse(
        self,
        conference: Conference | None,
        request: Request,
        source: Address,
        status: int,
        reason: str,
        now: float,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._signalling.refuse(request, status, reason, now, headers)
        self._signalling.emit(
            ParticipantRefused(
                conference_uri=conference.uri if conference is not None else None,
                call_id=request.call_id,
                status=status,
                reason=reason,
                source=f"{source.host}:{source.port}",
            )
        )

    def join(self, conference: Conference, request: Request, source: Address, now: float) -> None:
        """An INVITE to the conference URI: admit an invitee, or refuse."""
        signalling = self._signalling
        config = signalling.config
        try:
            check_request(request, POLICY)
        except RequestRejectedError as rejected:
            self.refuse(
                conference,
                request,
                source,
                rejected.status_hint,
                rejected.reason,
                now,
                rejected.headers,
            )
            return
        found = conference.identify(request, trusted=signalling.trusted(source))
        if found is None:
            self.refuse(conference, request, source, 403, NOT_INVITED, now)
            return
        invitee, how = found
        if invitee.mode is Mode.CHAT:
            self.refuse(conference, request, source, 488, "chat participants take part by IM", now)
            return
        offer = sdp_part(request)
        if offer is None:
            reason = "an SDP offer is required in the INVITE"
            self.refuse(conference, request, source, 488, reason, now)
            return
        session_id = new_session_id()
        try:
            negotiated = negotiate(
                offer,
                invitee.mode,
                address=config.media_address,
                pool=self._pool,
                current={},
                session_id=session_id,
                version=1,
                video_codecs=self._video_codecs(conference, invitee.uri),
            )
        except RemoteProtocolError as error:
            self.refuse(
                conference, request, source, error.status_hint, error.reason, now, error.headers
            )
            return
        try:
            dialog = signalling.dialogs.accept(request, local_contact=conference.contact)
        except RemoteProtocolError as error:
            for port in negotiated.ports.values():
                self._pool.release(port)
            self.refuse(conference, request, source, error.status_hint, error.reason, now)
            return
        previous = conference.calls.get(invitee.uri)
        if previous is not None:
            # The invitee called again (another device, or a call the focus
            # never heard end): the new call replaces the old one.
            signalling.send_in_dialog(previous.dialog, previous.source, "BYE", now)
            self.hang_up(conference, previous, ParticipantInput.REPLACED, "replaced by a new call")
        call = Call(
            invitee=invitee,
            dialog=dialog,
            source=source,
            streams=negotiated.streams,
            ports=negotiated.ports,
            answer=negotiated.answer,
            session_id=session_id,
        )
        conference.calls[invitee.uri] = call
        conference.advance(ConferenceInput.PARTICIPANT_JOINED)
        signalling.owners[dialog.id] = Owner(conference.user, Leg.PARTICIPANT, invitee.uri)
        response = dialog.create_response(
            request, 200, headers=[("Allow", ALLOW)], body=call.answer, content_type=SDP_TYPE
        )
        self._answer(conference, call, request, response, now)
        signalling.emit(
            ParticipantAdmitted(
                conference_uri=conference.uri,
                uri=invitee.uri,
                mode=invitee.mode,
                call_id=request.call_id,
                how=how,
            )
        )
        user = UserInfo(
            entity=invitee.uri,
            display_name=invitee.display_name,
            state="full",
            status="connected",
            mode=invitee.mode,
            media=tuple(s.kind for s in call.streams),
        )
        conference.roster[invitee.uri] = user
        self._subscriptions.notify_all(conference, [user], now)
        self.replan(conference)

    @staticmethod
    def _video_codecs(conference: Conference, uri: str) -> tuple[Codec, ...]:
        """The focus's video codecs for ``uri``, the conference's (the others') first."""
        return video_codecs_for(
            stream for other in conference.calls.values() if other.uri != uri
            for stream in other.streams
        )  # fmt: skip

    def _answer(
        self, conference: Conference, call: Call, request: Request, response: Response, now: float
    ) -> None:
        """Send a 200 on the call; an INVITE's moves the invitee on (ACK awaited over UDP)."""
        resent = self._signalling.respond_2xx(
            conference.user, call.dialog, request, response, call.source, now
        )
        if request.method != "INVITE":
            return
        if resent:
            call.unacknowledged.add(request.cseq.seq)
            call.invitee.advance(ParticipantInput.ANSWERED)
        else:
            call.invitee.advance(ParticipantInput.ANSWERED_RELIABLY)

    def acknowledged(self, call: Call, cseq: int) -> None:
        """The ACK for our 200 to the call's INVITE with ``cseq`` arrived."""
        call.unacknowledged.discard(cseq)
        if not call.unacknowledged:
            call.invitee.advance(ParticipantInput.ACK)

    def update(
        self, conference: Conference, call: Call, request: Request, source: Address, now: float
    ) -> None:
        """A re-INVITE or UPDATE from a participant: hold, resume, new ports, refresh."""
        signalling = self._signalling
        dialog = call.dialog
        try:
            offer = sdp_part(request)
        except SIPParseError as error:
            signalling.refuse(request, 400, error.reason, now, dialog=dialog)
            return
        if offer is None:
            if request.method == "UPDATE":
                signalling.respond(dialog.create_response(request, 200), now)
                return
            # A re-INVITE without an offer: ours (the current answer) goes in the 200;
            # the answer in the ACK is not needed, the streams stay as they are.
            call.version += 1
            body = reversion(call.answer, call.version)
            response = dialog.create_response(request, 200, body=body, content_type=SDP_TYPE)
            self._answer(conference, call, request, response, now)
            return
        try:
            negotiated = negotiate(
                offer,
                call.mode,
                address=signalling.config.media_address,
                pool=self._pool,
                current=call.ports,
                session_id=call.session_id,
                version=call.version + 1,
                streams=call.streams,
                video_codecs=self._video_codecs(conference, call.uri),
            )
        except RemoteProtocolError as error:
            live = signalling.dialogs.match_request(request)
            if live is not None:
                signalling.refuse(
                    request, error.status_hint, error.reason, now, error.headers, dialog=live
                )
            return
        for kind, port in call.ports.items():
            if negotiated.ports.get(kind) != port:
                self._pool.release(port)
        call.version += 1
        call.answer, call.ports, call.streams = (
            negotiated.answer,
            negotiated.ports,
            negotiated.streams,
        )
        response = dialog.create_response(request, 200, body=call.answer, content_type=SDP_TYPE)
        self._answer(conference, call, request, response, now)
        media = tuple(s.kind for s in call.streams)
        user = conference.roster.get(call.uri)
        if user is not None and user.media != media:
            user = dataclasses.replace(user, media=media)
            conference.roster[call.uri] = user
            self._subscriptions.notify_all(conference, [user], now)
        self.replan(conference)

    def hang_up(
        self, conference: Conference, call: Call, event: ParticipantInput, reason: str
    ) -> None:
        """Forget a call: free its ports, stop its 200s, report it (no roster change)."""
        call.invitee.advance(event)
        if conference.calls.get(call.uri) is call:
            del conference.calls[call.uri]
        for port in call.ports.values():
            self._pool.release(port)
        signalling = self._signalling
        signalling.owners.pop(call.dialog.id, None)
        signalling.forget_resends(dialog=call.dialog.id)
        if call.dialog.terminated:
            signalling.dialogs.remove(call.dialog)
        signalling.emit(ParticipantLeft(conference_uri=conference.uri, uri=call.uri, reason=reason))

    def disconnected(self, conference: Conference, uri: str, now: float) -> None:
        """After a participant left a conference that goes on: roster, NOTIFYs, media plan."""
        user = UserInfo(entity=uri, state="partial", status="disconnected")
        old = conference.roster.get(uri)
        if old is not None:
            conference.roster[uri] = dataclasses.replace(old, status="disconnected")
        self._subscriptions.notify_all(conference, [user], now)
        self.replan(conference)

    def replan(self, conference: Conference) -> None:
        plan = forwarding_plan(
            (
                ParticipantMedia(uri=c.uri, mode=c.mode, streams=c.streams)
                for c in conference.calls.values()
            ),
            conference=conference.uri,
        )
        if plan != conference.plan:
            conference.plan = plan
            self._signalling.emit(MediaPlanChanged(conference_uri=conference.uri, plan=plan))
