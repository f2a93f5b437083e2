"""One media core per conference, addressed by focus port: what the relay drives.

The audio mixers (:mod:`vidim.focus.mixers`) and the video switches
(:mod:`vidim.focus.switches`) are kept the same way, so the way is written
once here: :class:`ConferenceBank` keeps one sans-IO core per conference of
the focus's plan in step with it (:meth:`ConferenceBank.apply`: members
joined, changed on a re-INVITE, gone; cores ended) and translates between
the relay's world (datagrams on focus ports) and the cores' (participants
of a conference):

* :meth:`ConferenceBank.receive_datagram` with what arrived on a focus
  port (RTP on the member's port, RTCP on the port + 1 or multiplexed on
  the RTP port, RFC 5761) and the time;
* :meth:`ConferenceBank.handle_timer` at :meth:`ConferenceBank.get_timer`
  (the earliest deadline of any core);
* out: :meth:`ConferenceBank.datagrams_to_send` as ``(focus port, bytes)``
  (the member's RTP port, or for RTCP its ``rtcp_port``: the port + 1, or
  the RTP port when it multiplexes), to be sent from that port to the
  participant, and :meth:`ConferenceBank.events` with the
  conference each came from.

What the negotiation narrowed is enforced here: RTP from a member that does
not send (``watch``, or a phone that holds) is dropped, and no RTP is sent
to a member that does not receive.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

from ..rtp import is_rtcp
from .mixer import MediaPacket

__all__ = ["ConferenceBank", "MediaCore", "MediaGroup", "MediaMember"]

Event = TypeVar("Event", covariant=True)


class MediaCore(Protocol[Event]):
    """A conference's sans-IO media core: an audio mixer or a video switch."""

    def receive_datagram(self, key: str, data: bytes, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def packets_to_send(self) -> list[MediaPacket]: ...
    def events(self) -> Iterator[Event]: ...


class MediaMember(Protocol):
    """A participant's stream in a core, as the plan gives it."""

    @property
    def participant(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def sends(self) -> bool: ...
    @property
    def receives(self) -> bool: ...
    @property
    def rtcp_port(self) -> int: ...


Member = TypeVar("Member", bound=MediaMember)
GroupMember = TypeVar("GroupMember", bound=MediaMember, covariant=True)
Core = TypeVar("Core", bound=MediaCore[object])
Wrapped = TypeVar("Wrapped")


class MediaGroup(Protocol[GroupMember]):
    """One conference's core in the plan: who is in it."""

    @property
    def conference(self) -> str: ...
    @property
    def members(self) -> tuple[GroupMember, ...]: ...


class ConferenceBank(ABC, Generic[Core, Member, Wrapped]):
    """One core per conference of the plan (see the module docstring).

    A subclass says how a core is made, how members join, change and leave
    it, and how its events are labelled with their conference.
    """

    def __init__(self) -> None:
        self._cores: dict[str, Core] = {}
        self._members: dict[str, dict[str, Member]] = {}
        #: focus port (RTP and RTCP) -> (conference, member)
        self._ports: dict[int, tuple[str, Member]] = {}
        self._to_send: list[tuple[int, bytes]] = []
        self._events: list[Wrapped] = []

    # -- what a subclass says --------------------------------------------------------------

    @abstractmethod
    def _new_core(self) -> Core:
        """A core for a conference that appears in the plan."""

    @abstractmethod
    def _join(self, core: Core, member: Member, now: float) -> None:
        """``member`` joins ``core``."""

    @abstractmethod
    def _change(self, core: Core, old: Member, member: Member, now: float) -> None:
        """A member's stream changed (a re-INVITE): ``old`` is what it was."""

    @abstractmethod
    def _leave(self, core: Core, key: str, now: float) -> None:
        """The member ``key`` leaves ``core`` (its port is still known while this runs)."""

    @abstractmethod
    def _wrap(self, conference: str, event: object) -> Wrapped:
        """A core's event, labelled with its conference."""

    # -- the bank ------------------------------------------------------------------------

    def core(self, conference: str) -> Core | None:
        """The conference's core, if the plan has one for it now."""
        return self._cores.get(conference)

    def __contains__(self, port: object) -> bool:
        """Whether a focus port (RTP or RTCP) belongs to a member of one of the cores."""
        return port in self._ports

    def apply(self, groups: Iterable[MediaGroup[Member]], now: float) -> None:
        """Make the cores what ``groups`` says: members joined, changed, gone; cores ended."""
        wanted = {group.conference: group for group in groups}
        for conference in list(self._cores):
            if conference not in wanted:
                self._update(conference, (), now)
                del self._cores[conference], self._members[conference]
        for conference, group in wanted.items():
            if conference not in self._cores:
                self._cores[conference] = self._new_core()
                self._members[conference] = {}
            self._update(conference, group.members, now)
        self._ports = {
            port: (conference, member)
            for conference, members in self._members.items()
            for member in members.values()
            for port in (member.port, member.port + 1)
        }

    def _update(self, conference: str, members: Iterable[Member], now: float) -> None:
        core = self._cores[conference]
        current = self._members[conference]
        wanted = {member.participant: member for member in members}
        for key in list(current):
            if key not in wanted:
                self._leave(core, key, now)
                self._drain(conference)  # e.g. an RTCP BYE, while the port is known
                del current[key]
        for key, member in wanted.items():
            old = current.get(key)
            if old is None:
                self._join(core, member, now)
            elif old != member:
                current[key] = member  # what the change sends leaves from the new port
                self._change(core, old, member, now)
            current[key] = member
        self._drain(conference)

    def receive_datagram(self, port: int, data: bytes, now: float) -> None:
        """What arrived on a member's focus port (RTP on its port, RTCP on + 1)."""
        found = self._ports.get(port)
        if found is None:
            return
        conference, member = found
        if port == member.port and not member.sends and not is_rtcp(data):
            return  # a watch participant's or a held stream's media reaches nobody
        self._cores[conference].receive_datagram(member.participant, data, now)
        self._drain(conference)

    def get_timer(self) -> float | None:
        """The earliest deadline of any core (None: none is waiting)."""
        timers = [t for core in self._cores.values() if (t := core.get_timer()) is not None]
        return min(timers, default=None)

    def get_timer_of(self, port: int) -> float | None:
        """The deadline of the core a focus port belongs to (cheaper than :meth:`get_timer`
        after a datagram: only that conference's core can have changed)."""
        found = self._ports.get(port)
        return self._cores[found[0]].get_timer() if found is not None else None

    def handle_timer(self, now: float) -> None:
        """Run every core whose deadline is due by ``now``, once each (a mixer behind is due
        again at once: :meth:`~vidim.focus.mixer.AudioMixer.handle_timer` says why)."""
        for conference, core in self._cores.items():
            timer = core.get_timer()
            if timer is not None and timer <= now:
                core.handle_timer(now)
                self._drain(conference)

    def datagrams_to_send(self) -> list[tuple[int, bytes]]:
        """``(focus port, data)`` produced since the last call: send each from that port."""
        datagrams, self._to_send = self._to_send, []
        return datagrams

    def events(self) -> Iterator[Wrapped]:
        """The cores' events since the last call, with their conference."""
        events, self._events = self._events, []
        yield from events

    def _drain(self, conference: str) -> None:
        core = self._cores[conference]
        members = self._members[conference]
        for packet in core.packets_to_send():
            member = members.get(packet.participant)
            if member is None or (not member.receives and not packet.rtcp):
                continue
            self._to_send.append((member.rtcp_port if packet.rtcp else member.port, packet.data))
        self._events.extend(self._wrap(conference, event) for event in core.events())
