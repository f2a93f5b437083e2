"""Every conference's video switch, addressed by focus port: what the relay drives.

The video counterpart of :mod:`vidim.focus.mixers`: the focus's plan lists
one :class:`~vidim.focus.media.SwitchedVideo` per conference with video,
and :class:`SwitchBank` keeps one :class:`~vidim.focus.video.VideoSwitch`
per conference in step with it (:meth:`SwitchBank.apply`: members added,
updated on a re-INVITE, removed), translating between the relay's world
(datagrams on focus ports) and the switches' (participants of a
conference).  Sans-IO:

* :meth:`SwitchBank.receive_datagram` with what arrived on a switched port
  (RTP, or RTCP on the port + 1) and the time;
* :meth:`SwitchBank.audio_level` with each
  :class:`~vidim.focus.mixer.AudioLevelMeasured` of the conference's mixer:
  who speaks decides whose video is shown;
* :meth:`SwitchBank.handle_timer` at :meth:`SwitchBank.get_timer`;
* out: :meth:`SwitchBank.datagrams_to_send` as ``(focus port, bytes)``, and
  :meth:`SwitchBank.events` (talker and source changes, keyframe requests,
  :class:`~vidim.focus.video.PictureFastUpdateWanted` for the signalling)
  with the conference they belong to.

The bookkeeping (ports, members, what the negotiation narrowed) is
:class:`~vidim.focus.bank.ConferenceBank`'s, shared with the mixers.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from .bank import ConferenceBank
from .media import SwitchMember
from .mixer import PacketRefused
from .video import VideoConfig, VideoEvent, VideoSwitch

__all__ = ["ConferenceVideoEvent", "SwitchBank"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceVideoEvent:
    """A video switch's event, with the conference whose switch it came from."""

    conference: str
    event: VideoEvent | PacketRefused


class SwitchBank(ConferenceBank[VideoSwitch, SwitchMember, ConferenceVideoEvent]):
    """One :class:`VideoSwitch` per conference of the plan (see the module docstring).

    Args:
        config: every switch's configuration.
        ntp_offset: added to the time given to turn it into the wall clock of
            sender reports (settable until the first switch is made).
        random32: where SSRCs and initial sequence numbers come from (tests).
    """

    def __init__(
        self,
        config: VideoConfig | None = None,
        *,
        ntp_offset: float = 0.0,
        random32: Callable[[], int] = lambda: secrets.randbits(32),
    ) -> None:
        super().__init__()
        self.config = config or VideoConfig()
        self.ntp_offset = ntp_offset
        self._random32 = random32

    def switch(self, conference: str) -> VideoSwitch | None:
        """The conference's video switch, if it has video now."""
        return self.core(conference)

    def audio_level(self, conference: str, participant: str, level: int, now: float) -> None:
        """A participant's audio level (RFC 6464 -dBov) from the conference's mixer."""
        switch = self.core(conference)
        if switch is not None and participant in switch:
            switch.audio_level(participant, level, now)
            self._drain(conference)

    def keyframe_wanted(self, conference: str, participant: str, now: float) -> None:
        """A participant asked for a keyframe by SIP INFO (the focus's
        :class:`~vidim.focus.events.KeyframeWanted`): passed on to the source it watches."""
        switch = self.core(conference)
        if switch is not None:
            switch.keyframe_wanted(participant, now)
            self._drain(conference)

    def _new_core(self) -> VideoSwitch:
        return VideoSwitch(self.config, ntp_offset=self.ntp_offset, random32=self._random32)

    def _join(self, core: VideoSwitch, member: SwitchMember, now: float) -> None:
        core.add(
            member.participant,
            mode=member.mode,
            codec=member.codec,
            feedback=member.feedback,
            now=now,
        )

    def _change(
        self, core: VideoSwitch, old: SwitchMember, member: SwitchMember, now: float
    ) -> None:
        if (old.mode, old.codec, old.feedback) != (member.mode, member.codec, member.feedback):
            core.update(
                member.participant,
                mode=member.mode,
                codec=member.codec,
                feedback=member.feedback,
                now=now,
            )

    def _leave(self, core: VideoSwitch, key: str, now: float) -> None:
        core.remove(key, now)

    def _wrap(self, conference: str, event: object) -> ConferenceVideoEvent:
        assert isinstance(event, VideoEvent | PacketRefused)
        return ConferenceVideoEvent(conference=conference, event=event)
