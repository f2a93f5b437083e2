"""Every conference's audio mixer, addressed by focus port: what the relay drives.

The focus's plan (:class:`~vidim.focus.media.ForwardingPlan`) lists one
:class:`~vidim.focus.media.AudioMix` per conference; :class:`MixerBank`
keeps one :class:`~vidim.focus.mixer.AudioMixer` per mix in step with it
(:meth:`MixerBank.apply`: members added, updated on a re-INVITE, removed)
and translates between the relay's world (datagrams on focus ports) and the
mixers' (participants of a conference).  Sans-IO like the mixers:

* :meth:`MixerBank.receive_datagram` with what arrived on a mixed port
  (RTP, or RTCP on the port + 1 or multiplexed on the RTP port) and the time;
* :meth:`MixerBank.handle_timer` at :meth:`MixerBank.get_timer` (the
  earliest tick of any mixer; each mixer's own rate follows its members);
* out: :meth:`MixerBank.datagrams_to_send` as ``(focus port, bytes)``: the
  RTP port of the listener's stream, or for RTCP its
  :attr:`~vidim.focus.media.MixMember.rtcp_port` (the port + 1, or the RTP
  port itself when the member multiplexes, RFC 5761), to be sent from that
  port to the participant's address for it; and
  :meth:`MixerBank.events` (levels, source changes, refused packets) with
  the conference they belong to.

The bookkeeping is :class:`~vidim.focus.bank.ConferenceBank`'s, shared with
the video switches: what the negotiation narrowed is enforced there (RTP
from a member that does not send, ``watch`` or a phone that holds, is
dropped, and nothing is sent to a member that does not receive), and RTCP
is told from RTP by its packet type (:func:`vidim.rtp.is_rtcp`), on
whichever of the two ports it arrives.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from .bank import ConferenceBank
from .codecs import AudioCodec, codec_for
from .media import MixMember
from .mixer import AudioMixer, MixerConfig, MixerEvent

__all__ = ["ConferenceMixerEvent", "MixerBank"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceMixerEvent:
    """A mixer's event, with the conference whose mixer it came from."""

    conference: str
    event: MixerEvent


def _codec(member: MixMember) -> AudioCodec:
    name = member.codec.partition("/")[0]
    return codec_for(name, member.payload_type, max_bit_rate=member.max_bit_rate)


class MixerBank(ConferenceBank[AudioMixer, MixMember, ConferenceMixerEvent]):
    """One :class:`AudioMixer` per conference of the plan (see the module docstring).

    Args:
        config: every mixer's configuration.
        ntp_offset: added to the time given to turn it into the wall clock of
            sender reports (settable until the first mixer is made).
        random32: where SSRCs and initial sequence numbers come from (tests).
    """

    def __init__(
        self,
        config: MixerConfig | None = None,
        *,
        ntp_offset: float = 0.0,
        random32: Callable[[], int] = lambda: secrets.randbits(32),
    ) -> None:
        super().__init__()
        self.config = config or MixerConfig()
        self.ntp_offset = ntp_offset
        self._random32 = random32

    def mixer(self, conference: str) -> AudioMixer | None:
        """The conference's mixer, if its audio is mixed now."""
        return self.core(conference)

    def _new_core(self) -> AudioMixer:
        return AudioMixer(self.config, ntp_offset=self.ntp_offset, random32=self._random32)

    def _join(self, core: AudioMixer, member: MixMember, now: float) -> None:
        core.add(member.participant, mode=member.mode, codec=_codec(member), now=now)

    def _change(self, core: AudioMixer, old: MixMember, member: MixMember, now: float) -> None:
        """A new mode or codec ends the old stream (RTCP BYE) and starts a new one."""
        heard = (member.mode, member.codec, member.payload_type, member.max_bit_rate)
        if (old.mode, old.codec, old.payload_type, old.max_bit_rate) != heard:
            core.update(member.participant, mode=member.mode, codec=_codec(member), now=now)

    def _leave(self, core: AudioMixer, key: str, now: float) -> None:
        core.remove(key)

    def _wrap(self, conference: str, event: object) -> ConferenceMixerEvent:
        assert isinstance(event, MixerEvent)
        return ConferenceMixerEvent(conference=conference, event=event)
