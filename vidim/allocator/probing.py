"""Probing: an OPTIONS to each invitee, to learn what their phone can do.

A conference starts here: with invitees to probe it waits (``PROBING``) for
their answers or the probe deadline; each invitee's mode is then lowered to
what its device can take (:func:`~vidim.vocabulary.effective_mode`) and the
focus is invited.  After ``/add`` the new invitees are probed the same way
and the focus is told with a re-INVITE.
"""

from __future__ import annotations

from ..sdp import capabilities_from_feature_tags, capabilities_from_sdp
from ..sip import RemoteProtocolError, Response, new_branch
from ..vocabulary import Capabilities, Mode, effective_mode
from .conference import Conference, ConferenceInput, ConferenceState, Deadline, Participant
from .conference import ProbeResult as Probe
from .context import Context, Pending, Purpose
from .focus_leg import FocusLeg

__all__ = ["UNREACHABLE_STATUSES", "Probing", "capabilities_of", "known_capabilities"]

#: Probe answers that mean "this invitee has no phone to call with now".
UNREACHABLE_STATUSES = frozenset((404, 408, 410, 480, 503, 504, 603, 604))


def capabilities_of(response: Response) -> Capabilities | None:
    """What a 2xx to OPTIONS says the device can do: its SDP, else its Contact's feature tags."""
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


def known_capabilities(participant: Participant) -> Capabilities | None:
    """What probing learnt of a participant, or None when it learnt nothing."""
    if participant.probe is Probe.UNREACHABLE:
        return Capabilities.unreachable()
    if participant.audio is None or participant.video is None:
        return None
    return Capabilities(audio=participant.audio, video=participant.video)


def _awaits_probe(participant: Participant) -> bool:
    """An invitee with a phone to ask about, not asked yet (or not answered)."""
    return (
        not participant.requester
        and participant.probe is Probe.UNKNOWN
        and participant.requested_mode is not Mode.CHAT
    )


class Probing:
    def __init__(self, context: Context, focus: FocusLeg) -> None:
        self._context = context
        self._focus = focus

    def start(self, conference: Conference, now: float) -> None:
        """A new conference: probe its invitees, or invite the focus at once."""
        if self.to_probe(conference):
            self._context.move(conference, ConferenceInput.START_PROBING)
            self.probe(conference, now)
        else:
            self._context.move(conference, ConferenceInput.START_ALLOCATING)
            self._focus.invite(conference, now)

    def to_probe(self, conference: Conference) -> list[Participant]:
        if not self._context.config.probe:
            return []
        return [p for p in conference.participants if _awaits_probe(p)]

    def probe(self, conference: Conference, now: float) -> None:
        """Probe whoever is still unknown, or go on at once when nobody is."""
        to_probe = self.to_probe(conference)
        if not to_probe:
            self.done(conference, now)
            return
        self._context.arm(conference, Deadline.PROBE, now + self._context.config.probe_timeout)
        for participant in to_probe:
            self.send(conference, participant, now)

    def send(self, conference: Conference, participant: Participant, now: float) -> None:
        context = self._context
        branch = new_branch()
        options = context.out_of_dialog(
            "OPTIONS",
            participant.uri,
            branch=branch,
            headers=[("Accept", "application/sdp"), ("Contact", str(context.contact))],
        )
        context.send(
            options,
            context.route(participant.uri),
            now,
            Pending(Purpose.PROBE, conference.id, options, participant.uri),
            branch=branch,
        )

    def on_answer(
        self, conference: Conference, pending: Pending, response: Response, now: float
    ) -> None:
        participant = conference.participant(pending.target)
        if response.status < 200 or participant is None or participant.probe is not Probe.UNKNOWN:
            return
        self._context.conferences.touch(conference.id)  # what the probe found is kept
        status = response.status
        if 200 <= status < 300:
            participant.probe = Probe.ANSWERED
            capabilities = capabilities_of(response)
            if capabilities is not None:
                participant.audio, participant.video = capabilities.audio, capabilities.video
        elif status in UNREACHABLE_STATUSES:
            participant.probe = Probe.UNREACHABLE
        else:
            # The device exists but will not say (405, 501...): keep the request.
            participant.probe = Probe.ANSWERED
        waiting = any(_awaits_probe(p) for p in conference.participants)
        if Deadline.PROBE in conference.deadlines and not waiting:
            self._context.disarm(conference, Deadline.PROBE)
            self.done(conference, now)

    def on_deadline(self, conference: Conference, now: float) -> None:
        if conference.state in (ConferenceState.PROBING, ConferenceState.ACTIVE):
            self.done(conference, now)

    def done(self, conference: Conference, now: float) -> None:
        """Every answer is in, or the time is up: fix each mode and go to the focus."""
        for participant in conference.invitees:
            if self._context.config.probe and _awaits_probe(participant):
                participant.probe = Probe.UNREACHABLE  # silent until the deadline
            participant.mode = effective_mode(
                participant.requested_mode, known_capabilities(participant)
            )
        if conference.state is ConferenceState.PROBING:
            self._context.move(conference, ConferenceInput.PROBES_DONE)
            self._focus.invite(conference, now)
        elif conference.state is ConferenceState.ACTIVE:
            self._focus.update(conference, now)
