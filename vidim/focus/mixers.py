"""Every conference's audio mixer, addressed by focus port: what the relay drives.

The focus's plan (:class:`~vidim.focus.media.ForwardingPlan`) lists one
:class:`~vidim.focus.media.AudioMix` per conference; :class:`MixerBank`
keeps one :class:`~vidim.focus.mixer.AudioMixer` per mix in step with it
(:meth:`MixerBank.apply`: members added, updated on a re-INVITE, removed)
and translates between the relay's world (datagrams on focus ports) and the
mixers' (participants of a conference).  Sans-IO like the mixers:

* :meth:`MixerBank.receive_datagram` with what arrived on a mixed port
  (RTP, or RTCP on the port + 1) and the time;
* :meth:`MixerBank.handle_timer` at :meth:`MixerBank.get_timer` (the
  earliest tick of any mixer; each mixer's own rate follows its members);
* out: :meth:`MixerBank.datagrams_to_send` as ``(focus port, bytes)``: the
  RTP port of the listener's stream, or its port + 1 for RTCP, to be sent
  from that port to the participant's address for it; and
  :meth:`MixerBank.events` (levels, source changes, refused packets) with
  the conference they belong to.

What the negotiation narrowed is enforced here: RTP from a member that does
not send (``watch``, or a phone that holds) is dropped, and nothing is sent
to a member that does not receive.  RTCP (RFC 5761 multiplexing is not
answered by the focus's SDP) always uses the port + 1.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..rtp import is_rtcp
from .codecs import AudioCodec, codec_for
from .media import AudioMix, MixMember
from .mixer import AudioMixer, MixerConfig, MixerEvent

__all__ = ["ConferenceMixerEvent", "MixerBank"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ConferenceMixerEvent:
    """A mixer's event, with the conference whose mixer it came from."""

    conference: str
    event: MixerEvent


def _codec(member: MixMember) -> AudioCodec:
    return codec_for(member.codec.partition("/")[0], member.payload_type)


class MixerBank:
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
        self.config = config or MixerConfig()
        self.ntp_offset = ntp_offset
        self._random32 = random32
        self._mixers: dict[str, AudioMixer] = {}
        self._members: dict[str, dict[str, MixMember]] = {}
        #: focus port (RTP and RTCP) -> (conference, member)
        self._ports: dict[int, tuple[str, MixMember]] = {}
        self._to_send: list[tuple[int, bytes]] = []
        self._events: list[ConferenceMixerEvent] = []

    def mixer(self, conference: str) -> AudioMixer | None:
        """The conference's mixer, if its audio is mixed now."""
        return self._mixers.get(conference)

    def apply(self, mixes: Iterable[AudioMix], now: float) -> None:
        """Make the mixers what ``mixes`` says: members joined, changed, gone; mixers ended."""
        wanted = {mix.conference: mix for mix in mixes}
        for conference in list(self._mixers):
            if conference not in wanted:
                self._update(conference, (), now)
                del self._mixers[conference], self._members[conference]
        for conference, mix in wanted.items():
            if conference not in self._mixers:
                self._mixers[conference] = AudioMixer(
                    self.config, ntp_offset=self.ntp_offset, random32=self._random32
                )
                self._members[conference] = {}
            self._update(conference, mix.members, now)
        self._ports = {
            port: (conference, member)
            for conference, members in self._members.items()
            for member in members.values()
            for port in (member.port, member.port + 1)
        }

    def _update(self, conference: str, members: Iterable[MixMember], now: float) -> None:
        mixer = self._mixers[conference]
        current = self._members[conference]
        wanted = {member.participant: member for member in members}
        for key in list(current):
            if key not in wanted:
                mixer.remove(key)
                self._drain(conference)  # the BYE, while its port is known
                del current[key]
        for key, member in wanted.items():
            old = current.get(key)
            if old is None:
                mixer.add(key, mode=member.mode, codec=_codec(member), now=now)
            elif (old.mode, old.codec, old.payload_type) != (
                member.mode,
                member.codec,
                member.payload_type,
            ):
                current[key] = member  # a BYE for the old stream leaves from its port
                mixer.update(key, mode=member.mode, codec=_codec(member), now=now)
            current[key] = member
        self._drain(conference)

    def receive_datagram(self, port: int, data: bytes, now: float) -> None:
        """What arrived on a mixed focus port (RTP on the member's port, RTCP on + 1)."""
        found = self._ports.get(port)
        if found is None:
            return
        conference, member = found
        if port == member.port and not member.sends and not is_rtcp(data):
            return  # a watch participant's or a held stream's audio reaches nobody
        self._mixers[conference].receive_datagram(member.participant, data, now)
        self._drain(conference)

    def get_timer(self) -> float | None:
        """The earliest tick due in any mixer (None: no mixer)."""
        timers = [t for mixer in self._mixers.values() if (t := mixer.get_timer()) is not None]
        return min(timers, default=None)

    def handle_timer(self, now: float) -> None:
        """Run the tick due by ``now`` of every mixer, one each (a mixer behind is due
        again at once: :meth:`AudioMixer.handle_timer` says why)."""
        for conference, mixer in self._mixers.items():
            timer = mixer.get_timer()
            if timer is not None and timer <= now:
                mixer.handle_timer(now)
                self._drain(conference)

    def datagrams_to_send(self) -> list[tuple[int, bytes]]:
        """``(focus port, data)`` produced since the last call: send each from that port."""
        datagrams, self._to_send = self._to_send, []
        return datagrams

    def events(self) -> Iterator[ConferenceMixerEvent]:
        """The mixers' events since the last call."""
        events, self._events = self._events, []
        yield from events

    def _drain(self, conference: str) -> None:
        mixer = self._mixers[conference]
        members = self._members[conference]
        for packet in mixer.packets_to_send():
            member = members.get(packet.participant)
            if member is None or (not member.receives and not packet.rtcp):
                continue
            self._to_send.append((member.port + 1 if packet.rtcp else member.port, packet.data))
        self._events.extend(
            ConferenceMixerEvent(conference=conference, event=event) for event in mixer.events()
        )
