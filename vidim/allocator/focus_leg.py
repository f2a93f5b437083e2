"""The focus leg: the allocator's one dialog with the focus, the conference's anchor.

INVITE a focus (the next one on failure or silence), take its answer (the
conference URI), re-INVITE it after ``/add``, check it lives with an
in-dialog OPTIONS, answer its session refreshes, and hang up with BYE: the
conference lives as long as this dialog does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ..sip import (
    Dialog,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    TransactionId,
    new_branch,
)
from .conference import Conference, ConferenceInput, ConferenceState, Deadline
from .context import Context, Pending, Purpose, focus_target
from .events import ConferenceEnded, ConferenceFailed, ConferenceReady, FocusFailover
from .notices import Invitations, conference_header, ready_text
from .profiles import anchor_session_id, conference_uri, focus_request, join_uri
from .roster import Roster

__all__ = ["FocusLeg"]

#: Answers to the keepalive OPTIONS that mean the focus forgot the conference.
_DEAD_STATUSES = (408, 481, 503)


class FocusLeg:
    def __init__(
        self,
        context: Context,
        roster: Roster,
        invitations: Invitations,
        retire: Callable[[Conference], None],
    ) -> None:
        self._context = context
        self._roster = roster
        self._invitations = invitations
        #: Forget a conference that is over (see ``Allocator._retire``).
        self._retire = retire
        #: The INVITE dialog with the focus, per active conference.
        self.anchors: dict[str, Dialog] = {}
        #: The INVITE to the focus in flight, per allocating conference.
        self.invites: dict[str, TransactionId] = {}
        #: The focus list a conference began allocating with, kept when the
        #: configured list changed since (``Allocator.reconfigure``): its
        #: ``focus_index`` counts in that list.
        self.focus_lists: dict[str, tuple[str, ...]] = {}

    def focus_uris(self, conference_id: str) -> tuple[str, ...]:
        """The foci a conference tries, in order: its own list, or the configured one."""
        return self.focus_lists.get(conference_id, self._context.config.focus_uris)

    # -- allocating -------------------------------------------------------------------
    def _offer(self, conference: Conference) -> tuple[tuple[tuple[str, str], ...], bytes, str]:
        """Headers, body and content type of the INVITE (and re-INVITE) for the profile."""
        config = self._context.config
        content = focus_request(
            config.profile,
            conference,
            address=config.local.host,
            session_id=anchor_session_id(conference.id),
        )
        return content.headers, content.body, content.content_type

    def invite(self, conference: Conference, now: float) -> None:
        context = self._context
        uri, party = focus_target(self.focus_uris(conference.id)[conference.focus_index])
        headers, body, content_type = self._offer(conference)
        branch = new_branch()
        invite = context.initial_request(
            conference,
            "INVITE",
            uri,
            to=party,
            headers=headers,
            body=body,
            content_type=content_type,
            branch=branch,
        )
        pending = Pending(Purpose.FOCUS_INVITE, conference.id, invite, str(conference.focus_index))
        context.arm(conference, Deadline.FOCUS, now + context.config.focus_timeout)
        tid = context.send(invite, uri, now, pending, branch=branch)
        if tid is not None:  # else it fails at once (no transport): the next focus is tried
            self.invites[conference.id] = tid

    def resent(self, old: TransactionId, new: TransactionId, pending: Pending) -> None:
        """``pending``'s request went again (with credentials): a CANCEL goes to the new one."""
        conference_id = pending.conference_id
        if conference_id is not None and self.invites.get(conference_id) == old:
            self.invites[conference_id] = new

    def _cancel_invite(self, conference: Conference, now: float) -> None:
        tid = self.invites.pop(conference.id, None)
        if tid is not None and self._context.layer.transaction(tid) is not None:
            self._context.layer.cancel(tid, now)

    def on_invite_answer(
        self, conference: Conference, pending: Pending, response: Response, now: float
    ) -> None:
        status = response.status
        current = conference.state is ConferenceState.ALLOCATING and pending.target == str(
            conference.focus_index
        )
        dialog = self._context.dialogs.receive_response(pending.request, response)
        if status < 200:
            return
        if status >= 300:
            if current:
                reason = f"{status} {response.reason}".strip()
                self._failed(conference, reason, now, retry=status >= 500 or status == 408)
            return
        if dialog is None:
            if current:
                self._failed(conference, "the focus answered without a To tag", now)
            return
        self._send_ack(dialog, response)
        if self.anchors.get(conference.id) is dialog:
            return  # the 2xx again (our ACK was lost): ACK it again, nothing more
        config = self._context.config
        uri = conference_uri(
            config.profile,
            response,
            focus_uri=focus_target(self.focus_uris(conference.id)[int(pending.target)])[0],
            conference=conference,
        )
        if current and uri is not None:
            self._answered(conference, dialog, uri, now)
            return
        self.abandon(dialog, now)
        if current:
            self._failed(conference, "no conference URI (;isfocus) in the answer", now)

    def on_late_answer(self, pending: Pending, response: Response, now: float) -> None:
        """A focus answered for a conference that is over: hang up on it."""
        if pending.purpose is not Purpose.FOCUS_INVITE or not 200 <= response.status < 300:
            return
        dialog = self._context.dialogs.receive_response(pending.request, response)
        if dialog is not None:
            self._send_ack(dialog, response)
            self.abandon(dialog, now)

    def on_invite_timeout(self, conference: Conference, now: float) -> None:
        if conference.state is ConferenceState.ALLOCATING:
            self._cancel_invite(conference, now)
            timeout = self._context.config.focus_timeout
            self._failed(conference, f"no answer within {timeout:g} s", now)

    def _send_ack(self, dialog: Dialog, response: Response) -> None:
        self._context.send_stateless(dialog.create_ack(response), dialog)

    def abandon(self, dialog: Dialog, now: float) -> None:
        """A conference we no longer want (late answer after failover or /end): hang up."""
        if dialog.terminated:
            return  # hung up already: this was the 2xx again
        bye = dialog.create_request("BYE")
        self._send_in_dialog(dialog, bye, now, Pending(Purpose.CLEANUP, None, bye))

    def _send_in_dialog(
        self, dialog: Dialog, request: Request, now: float, pending: Pending
    ) -> None:
        self._context.send(request, dialog, now, pending)

    def _failed(
        self, conference: Conference, reason: str, now: float, *, retry: bool = True
    ) -> None:
        """This focus will not host it: try the next one, or give up."""
        context = self._context
        focus_uris = self.focus_uris(conference.id)
        conference.focus_failures.append(f"{focus_uris[conference.focus_index]}: {reason}")
        context.disarm(conference, Deadline.FOCUS)
        self.invites.pop(conference.id, None)
        if retry and conference.focus_index + 1 < len(focus_uris):
            conference.focus_index += 1
            context.move(conference, ConferenceInput.FOCUS_FAILED_TRY_NEXT)
            context.emit(
                FocusFailover(
                    conference_id=conference.id,
                    failed=focus_uris[conference.focus_index - 1],
                    next=focus_uris[conference.focus_index],
                    reason=reason,
                )
            )
            self.invite(conference, now)
            return
        context.move(conference, ConferenceInput.FOCUS_FAILED_NO_MORE)
        failures = "; ".join(conference.focus_failures)
        conference.reason = f"no conference focus could host it ({failures})"
        context.emit(ConferenceFailed(conference_id=conference.id, reason=conference.reason))
        context.tell_requester(
            conference,
            f"Sorry, your {conference.mode.value} conference could not be set up: "
            f"{conference.reason}.",
            now,
        )
        self._retire(conference)

    def _answered(self, conference: Conference, dialog: Dialog, uri: str, now: float) -> None:
        context = self._context
        conference.conference_uri = uri
        context.disarm(conference, Deadline.FOCUS)
        self.invites.pop(conference.id, None)
        self.anchors[conference.id] = dialog
        context.move(conference, ConferenceInput.FOCUS_ANSWERED)
        context.emit(ConferenceReady(conference_id=conference.id, conference_uri=uri))
        self._invitations.send(conference, now)
        requester = conference.participants[0]
        joined = join_uri(uri, requester.credential)
        header = conference_header(conference, requester, joined)
        context.tell_requester(
            conference,
            ready_text(conference, joined),
            now,
            headers=[("X-Vidim-Conference", header)],
        )
        self._roster.subscribe(conference, now)
        context.arm(conference, Deadline.KEEPALIVE, now + context.config.keepalive_interval)
        if context.config.knows_who_joined:
            # Without a roster nobody is ever seen to join: no idle end on a guess.
            context.arm(conference, Deadline.IDLE, now + context.config.idle_timeout)

    # -- active -----------------------------------------------------------------------
    def update(self, conference: Conference, now: float) -> None:
        """After ``/add``: tell the focus the new list with a re-INVITE."""
        anchor = self.anchors.get(conference.id)
        if anchor is None:
            return
        headers, body, content_type = self._offer(conference)
        try:
            reinvite = anchor.create_request(
                "INVITE", headers=headers, body=body, content_type=content_type
            )
        except LocalProtocolError:
            return  # a re-INVITE is already pending: the next /add will carry everyone
        self._send_in_dialog(
            anchor, reinvite, now, Pending(Purpose.REINVITE, conference.id, reinvite)
        )

    def on_reinvite_answer(
        self, conference: Conference, pending: Pending, response: Response, now: float
    ) -> None:
        anchor = self.anchors.get(conference.id)
        if anchor is None:
            return
        try:
            anchor.receive_response(pending.request, response)
        except RemoteProtocolError:
            return
        self._context.conferences.touch(conference.id)  # the anchor's target may have moved
        if 200 <= response.status < 300:
            self._send_ack(anchor, response)
            self._invitations.send(conference, now)
        elif response.status >= 300:
            names = [p.uri for p in conference.invitees if not p.invited]
            self._context.tell_requester(
                conference,
                f"The focus refused to add {', '.join(names)}: "
                f"{response.status} {response.reason}.",
                now,
            )
            if response.status in (408, 481):
                self._gone(conference, now)

    def keepalive(self, conference: Conference, now: float) -> None:
        """The keepalive deadline: check the anchor lives, renew the subscription when due."""
        anchor = self.anchors.get(conference.id)
        if conference.state is not ConferenceState.ACTIVE or anchor is None:
            return
        self._roster.renew_if_due(conference, now)
        options = anchor.create_request("OPTIONS")
        self._send_in_dialog(
            anchor, options, now, Pending(Purpose.KEEPALIVE, conference.id, options)
        )
        interval = self._context.config.keepalive_interval
        self._context.arm(conference, Deadline.KEEPALIVE, now + interval)

    def on_keepalive_answer(
        self, conference: Conference, pending: Pending, response: Response, now: float
    ) -> None:
        anchor = self.anchors.get(conference.id)
        if anchor is not None and response.status >= 200:
            with contextlib.suppress(RemoteProtocolError):
                anchor.receive_response(pending.request, response)
        if response.status in _DEAD_STATUSES and conference.state is ConferenceState.ACTIVE:
            self._gone(conference, now)

    def on_refresh(
        self, conference: Conference, dialog: Dialog, request: Request, now: float
    ) -> None:
        """A session refresh (re-INVITE) from the focus: answer with the same inactive offer."""
        self._context.conferences.touch(conference.id)  # the focus's target may have moved
        _, body, content_type = self._offer(conference)
        response = dialog.create_response(request, 200, body=body, content_type=content_type)
        self._context.respond(response, now)

    def on_bye(self, conference: Conference, dialog: Dialog, now: float) -> None:
        """A BYE from the focus: on the anchor, it ended the conference."""
        if self.anchors.get(conference.id) is not dialog:
            return
        if conference.state is ConferenceState.ACTIVE:
            self._context.move(conference, ConferenceInput.FOCUS_ENDED)
            self.finish(conference, "the focus ended the conference", now)
        elif conference.state is ConferenceState.ENDING:
            self._context.move(conference, ConferenceInput.FOCUS_ENDED)
            self.finish(conference, conference.reason, now)

    def on_idle(self, conference: Conference, now: float) -> None:
        # A record restored under a configuration without a roster may carry the deadline.
        if conference.state is ConferenceState.ACTIVE and self._context.config.knows_who_joined:
            idle = f"nobody joined within {self._context.config.idle_timeout:g} s"
            self._hang_up(conference, ConferenceInput.IDLE_TIMEOUT, idle, now)

    # -- ending -----------------------------------------------------------------------
    def end(self, conference: Conference, reason: str, now: float) -> None:
        """End a conference on request (``/end``, the operator)."""
        state = conference.state
        if state is ConferenceState.ACTIVE:
            self._hang_up(conference, ConferenceInput.END_REQUESTED, reason, now)
        elif state in (
            ConferenceState.REQUESTED,
            ConferenceState.PROBING,
            ConferenceState.ALLOCATING,
        ):
            self._cancel_invite(conference, now)
            self._context.move(conference, ConferenceInput.END_REQUESTED)
            self.finish(conference, reason, now)

    def _hang_up(
        self, conference: Conference, event: ConferenceInput, reason: str, now: float
    ) -> None:
        conference.reason = reason
        self._context.move(conference, event)
        self.send_bye(conference, now)

    def send_bye(self, conference: Conference, now: float) -> None:
        anchor = self.anchors.get(conference.id)
        if anchor is None:
            self._bye_done(conference, now)
            return
        if anchor.terminated:
            # Restored in ENDING: our BYE ended the dialog before the record was
            # saved and went with the lost transaction; send it again (same CSeq).
            bye = anchor._build("BYE", anchor.local_cseq or 1, [], b"", None)
        else:
            bye = anchor.create_request("BYE")
        self._send_in_dialog(anchor, bye, now, Pending(Purpose.BYE, conference.id, bye))
        # The BYE's own transaction times out after 64*T1; this is a backstop.
        backstop = now + 64 * self._context.config.transactions.t1 + 1.0
        self._context.arm(conference, Deadline.ENDING, backstop)

    def on_bye_answer(
        self, conference: Conference, pending: Pending, response: Response, now: float
    ) -> None:
        if response.status >= 200:
            self.on_ending_timeout(conference, now)

    def on_ending_timeout(self, conference: Conference, now: float) -> None:
        if conference.state is ConferenceState.ENDING:
            self._bye_done(conference, now)

    def _bye_done(self, conference: Conference, now: float) -> None:
        self._context.move(conference, ConferenceInput.BYE_DONE)
        self.finish(conference, conference.reason, now)

    def _gone(self, conference: Conference, now: float) -> None:
        self._context.move(conference, ConferenceInput.FOCUS_DEAD)
        self.finish(conference, "the conference focus stopped answering", now)

    def finish(self, conference: Conference, reason: str, now: float) -> None:
        """The conference is over: say so, to the application and to the requester."""
        conference.reason = reason
        self._context.emit(ConferenceEnded(conference_id=conference.id, reason=reason))
        self._context.tell_requester(
            conference, f"Your {conference.mode.value} conference has ended: {reason}.", now
        )
        self._retire(conference)
