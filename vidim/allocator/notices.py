"""What people read: the invitations and the texts of the IMs to the requester.

Every IM goes out as a MESSAGE (through the proxy when there is one); the
invitation carries an ``X-Vidim-Conference`` header with the invitee's join
URI for software that reads it.
"""

from __future__ import annotations

from ..sip import Response, new_branch, parse_uri
from ..vocabulary import Mode
from .conference import Conference, Participant
from .context import Context, Pending, Purpose
from .events import InvitationFailed, InvitationSent
from .profiles import join_uri

__all__ = [
    "Invitations",
    "conference_header",
    "describe",
    "invitation_text",
    "ready_text",
    "status_text",
    "with_article",
]


def conference_header(conference: Conference, participant: Participant, joined: str) -> str:
    """``X-Vidim-Conference``: the participant's join URI, its mode and the conference id."""
    return f"<{joined}>;mode={participant.mode.value};id={conference.id}"


def with_article(mode: Mode) -> str:
    """``a video``, ``an audio``: the mode with its article."""
    text = mode.value
    return f"an {text}" if text[0] in "aeiou" else f"a {text}"


def name_of(uri: str) -> str:
    """A URI as people read it: without ``sip:``."""
    return uri.removeprefix("sip:")


def describe(participant: Participant) -> str:
    """An invitee and its mode, with why it got less than it asked for."""
    name = name_of(participant.uri)
    if participant.mode is participant.requested_mode:
        return f"{name} ({participant.mode.value})"
    why = "not reachable by phone" if participant.mode is Mode.CHAT else "no video"
    asked = participant.requested_mode.value
    return f"{name} ({participant.mode.value}, asked {asked}: {why})"


def ready_text(conference: Conference, joined: str) -> str:
    """The requester's IM when the focus has answered."""
    invited = ", ".join(describe(p) for p in conference.invitees)
    return "\n".join(
        [
            f"Your {conference.mode.value} conference is ready. Call {joined} to join.",
            f"Invited: {invited}.",
            f"Send /end to end it, /status for who is there, /add <name> to invite more "
            f"(conference #{conference.id}).",
        ]
    )


def invitation_text(conference: Conference, participant: Participant, joined: str) -> str:
    inviter = name_of(conference.requester)
    if participant.mode is Mode.CHAT:
        return (
            f"{inviter} invites you to {with_article(conference.mode)} conference. You take "
            "part by instant message: updates will come here."
        )
    mode = with_article(participant.mode)
    return f"{inviter} invites you to {mode} conference. Call {joined} to join."


def status_text(conference: Conference) -> str:
    """The answer to ``/status``: the conference and each participant's status."""
    lines = [f"Conference #{conference.id} ({conference.mode.value}), {conference.state.value}:"]
    for participant in conference.participants:
        # The requester was given the conference URI when it became ready.
        ready = conference.conference_uri is not None
        told = participant.invited or (participant.requester and ready)
        status = participant.status or ("invited" if told else "not yet invited")
        role = " (requester)" if participant.requester else ""
        lines.append(f"- {name_of(participant.uri)}{role}: {participant.mode.value}, {status}")
    return "\n".join(lines)


class Invitations:
    """An IM to each invitee not invited yet, and word to the requester when one fails."""

    def __init__(self, context: Context) -> None:
        self._context = context

    def send(self, conference: Conference, now: float) -> None:
        context = self._context
        uninvited = [p for p in conference.invitees if not p.invited]
        if not uninvited:
            return
        conference_uri = parse_uri(conference.conference_uri or "")
        for participant in uninvited:
            participant.invited = True
            joined = join_uri(conference_uri, participant.credential)
            branch = new_branch()
            message = context.out_of_dialog(
                "MESSAGE",
                participant.uri,
                branch=branch,
                headers=[
                    ("X-Vidim-Conference", conference_header(conference, participant, joined)),
                    ("Content-Type", "text/plain;charset=UTF-8"),
                ],
                body=invitation_text(conference, participant, joined).encode("utf-8"),
            )
            context.send(
                message,
                context.route(participant.uri),
                now,
                Pending(Purpose.INVITATION, conference.id, message, participant.uri),
                branch=branch,
            )
            context.emit(
                InvitationSent(
                    conference_id=conference.id, invitee=participant.uri, mode=participant.mode
                )
            )

    def on_answer(
        self, conference: Conference, pending: Pending, response: Response, now: float
    ) -> None:
        if response.status < 300:
            return
        reason = f"{response.status} {response.reason}".strip()
        self._context.emit(
            InvitationFailed(conference_id=conference.id, invitee=pending.target, reason=reason)
        )
        self._context.tell_requester(
            conference,
            f"The invitation to {name_of(pending.target)} was not delivered ({reason}).",
            now,
        )
