"""The conference's anchor: creation by a factory INVITE, invitees added by re-INVITE.

Only the allocator creates conferences: a factory INVITE from a source
outside the focus's ``trusted_networks`` gets 403 with a Warning, before
its body is read (otherwise anyone could open conferences, join them with
keys of their own, and use the focus as a media relay; issue 18).  From a
trusted source, a factory INVITE (Request-URI user in ``factory_users``)
with an RFC 5366 resource list creates a conference
``sip:conf-<128 random bits>@host:port``: 200 with
``Contact: <conference URI>;isfocus`` and an SDP answer that rejects every
offered m-line (the anchor carries no media).  The INVITE
dialog is the conference's *anchor*: a re-INVITE on it with a list adds
invitees (none is ever removed); its BYE ends the conference.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from ..resource_lists import RESOURCE_LISTS_TYPE, ListEntry
from ..sdp import SDP_TYPE
from ..sip import (
    Address,
    RemoteProtocolError,
    Request,
    RequestRejectedError,
    SipURI,
    check_request,
    summary,
)
from .events import ConferenceCreated, InviteesAdded, MessageIgnored
from .lifecycle import ConferenceInput
from .negotiation import address_of_record, anchor_sdp, list_part, new_session_id, sdp_part
from .records import Conference, Invitee, Leg, Owner, TimerKey, TimerKind
from .signalling import ALLOW, POLICY, Signalling

__all__ = ["UNTRUSTED_FACTORY", "Anchors"]

#: The Warning text of the 403 to a factory INVITE from an untrusted source.
UNTRUSTED_FACTORY = "only the conference allocator may create conferences"


class Anchors:
    """Creates conferences and takes the re-INVITEs on their anchors."""

    def __init__(self, signalling: Signalling) -> None:
        self._signalling = signalling
        self._default_mode = signalling.config.default_mode

    def create(
        self, request: Request, source: Address, now: float, *, live: int
    ) -> Conference | None:
        """A factory INVITE: the new conference (answered 200), or None (refused).

        ``live``: how many conferences the focus has now, for ``max_conferences``.
        """
        signalling = self._signalling
        if not signalling.trusted(source):
            reason = f"{UNTRUSTED_FACTORY} ({source.host} is not a trusted network)"
            signalling.refuse(request, 403, reason, now)
            signalling.emit(MessageIgnored(reason=reason, summary=summary(request)))
            return None
        try:
            check_request(request, POLICY)
        except RequestRejectedError as rejected:
            signalling.refuse(request, rejected.status_hint, rejected.reason, now, rejected.headers)
            return None
        if live >= signalling.config.max_conferences:
            reason = "too many live conferences"
            signalling.refuse(request, 503, reason, now, [("Retry-After", "30")])
            return None
        try:
            entries = list_part(request)
            if entries is None:
                raise RemoteProtocolError(
                    f"no {RESOURCE_LISTS_TYPE} part (RFC 5366) in the INVITE", status_hint=400
                )
            if not entries:
                raise RemoteProtocolError("the resource list names nobody", status_hint=400)
            offer = sdp_part(request)
            session_id = new_session_id()
            body = anchor_sdp(offer, signalling.config.media_address, session_id, 1)
        except RemoteProtocolError as error:
            signalling.refuse(request, error.status_hint, error.reason, now, error.headers)
            return None
        user = "conf-" + secrets.token_hex(16)
        local = signalling.config.local
        conference_uri = str(SipURI(host=local.host, port=local.port, user=user))
        anchor = signalling.dialogs.accept(request, local_contact=f"<{conference_uri}>;isfocus")
        conference = Conference(
            user=user,
            uri=conference_uri,
            anchor=anchor,
            anchor_source=source,
            created_at=now,
            ends_at=now + signalling.config.conference_ttl,
            session_id=session_id,
        )
        self._add_invitees(conference, entries)
        signalling.owners[anchor.id] = Owner(user, Leg.ANCHOR)
        response = anchor.create_response(
            request,
            200,
            headers=[("Allow", ALLOW), ("Allow-Events", "conference")],
            body=body,
            content_type=SDP_TYPE,
        )
        signalling.respond_2xx(user, anchor, request, response, source, now)
        signalling.timers.arm(TimerKey(TimerKind.TIME_LIMIT, anchor.id), conference.ends_at)
        signalling.emit(
            ConferenceCreated(
                conference_uri=conference_uri,
                call_id=request.call_id,
                invitees=tuple(conference.invitees),
            )
        )
        return conference

    def _add_invitees(self, conference: Conference, entries: Iterable[ListEntry]) -> list[str]:
        added = []
        for entry in entries:
            if entry.uri in conference.invitees:
                continue
            conference.invitees[entry.uri] = Invitee(
                uri=entry.uri,
                aor=address_of_record(entry.uri),
                mode=entry.mode if entry.mode is not None else self._default_mode,
                credential=entry.credential,
                display_name=entry.display_name,
            )
            added.append(entry.uri)
        return added

    def reinvite(
        self, conference: Conference, request: Request, source: Address, now: float
    ) -> None:
        """A re-INVITE on the anchor: new invitees in its list are added; 200 either way."""
        signalling = self._signalling
        dialog = conference.anchor
        try:
            check_request(request, POLICY)
            entries = list_part(request)
            conference.sdp_version += 1
            offer = sdp_part(request)
            address = signalling.config.media_address
            body = anchor_sdp(offer, address, conference.session_id, conference.sdp_version)
        except RemoteProtocolError as error:
            signalling.refuse(
                request, error.status_hint, error.reason, now, error.headers, dialog=dialog
            )
            return
        added = self._add_invitees(conference, entries or ())
        response = dialog.create_response(request, 200, body=body, content_type=SDP_TYPE)
        signalling.respond_2xx(conference.user, dialog, request, response, source, now)
        if added:
            conference.advance(ConferenceInput.INVITEES_ADDED)
            signalling.emit(InviteesAdded(conference_uri=conference.uri, invitees=tuple(added)))
