"""A small adaptive jitter buffer for one incoming audio stream, played one frame per tick.

The mixer calls :meth:`JitterBuffer.pop` once per 20 ms tick, saying how
much audio it needs to make the tick's frame, and decodes the packets it
returns, or conceals when they fall short.  Everything is counted in time
(RTP timestamp units; ``target`` and lateness in frames, i.e. ticks), not in
packets, so packets of any length play alike: two 10 ms packets make a frame,
a 30 ms one a frame and a half (the mixer keeps the rest for the next tick).
How long a packet is the buffer learns from the timestamps of packets close
in sequence (``step``; a frame until two such packets came).  The buffer
orders packets by sequence number and decides, packet by packet:

* the next packet is here: play it;
* it is not, and nothing else is (underflow, or the sender is in DTX):
  play nothing more this tick and wait for it, without skipping it; the
  playout point moves one frame later, which is how the delay grows under jitter;
* it is not, but later ones are (lost, or reordered): wait while at most
  ``max(target, 1)`` frames of audio are queued and we have not already
  waited that many ticks for it, then declare it lost and play the next one;
* the packet waited for arrives after 1 to ``max_target`` on-time ticks
  went by without it (and without the marker bit, which starts a talk
  spurt after DTX): the network was that many frames late, and ``target``
  (the frames of delay kept in reserve) rises to it;
* a packet for audio already played arrives (late): drop it and raise
  ``target`` by one (up to ``max_target``): reordering is being seen;
* when, over half a second, the buffer never held less than ``target + n``
  frames of audio after a pop, ``n`` frames' worth is dropped: that was only
  delay (a burst after a stall of the network or the host), and the delay
  shrinks back.  ``target`` falls by one after five seconds without a late
  packet; it starts at 0, as a clean network needs no reserve.

The tick's own lateness is not the network's: a tick the mixer runs late
(``pop(behind=True)``: the host stalled, or the mixer had too much to do)
may find its packet merely not read yet.  Its wait raises no target, and
the frame of delay it adds is owed: the next pops that find more queued
than they need drop that much, so the delay is back within a tick or two
of the packets coming in again.  A tick the mixer skips altogether (far
behind) drops its frame the same way (:meth:`JitterBuffer.skip`).  A frame
owed that no packet comes to pay (the sender was in DTX) is forgotten half a
second later.

A jump of more than :data:`MAX_MISORDER` backwards or :data:`MAX_DROPOUT`
forwards (a restarted sender) resets the buffer, as RFC 3550 appendix A.1 does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..rtp import RtpPacket, seq_add, seq_diff

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "Buffered", "JitterBuffer", "Push"]

#: A packet this far behind the playout point starts a new stream (RFC 3550 A.1).
MAX_MISORDER = 100
#: ... and one this far ahead.
MAX_DROPOUT = 3000
#: The longest packet whose length is learned (Opus's longest, 120 ms), in frames.
MAX_PACKET_FRAMES = 6
#: Pops per shrink window (0.5 s of 20 ms ticks) and per target decay (5 s).
SHRINK_WINDOW = 25
DECAY_WINDOW = 250


class Push(enum.Enum):
    """What :meth:`JitterBuffer.push` did with a packet."""

    QUEUED = "queued"
    LATE = "late"
    DUPLICATE = "duplicate"
    RESTARTED = "restarted"
    """The packet was too far from the playout point: the buffer started over with it."""


@dataclass(frozen=True, slots=True)
class Buffered:
    """A packet and when it arrived."""

    packet: RtpPacket
    arrival: float


class JitterBuffer:
    """Packets of one SSRC, in sequence order, released a frame's worth per tick."""

    def __init__(self, *, frame_step: int = 160, capacity: int = 16, max_target: int = 5) -> None:
        self.frame_step = frame_step
        """RTP timestamp units in one frame (20 ms): 160 at an 8 kHz clock, 960 at 48 kHz."""
        self.capacity = capacity
        """Frames of audio queued at most; the earliest packet is dropped beyond."""
        self.max_target = max_target
        self.target = 0
        """Frames of delay kept in reserve for the network's jitter (0 to ``max_target``)."""
        self.step = frame_step
        """RTP timestamp units in one packet, as the latest timestamps say (a frame at first)."""
        self._packets: dict[int, Buffered] = {}
        self._next: int | None = None
        self._last_pushed: RtpPacket | None = None
        self._waited = 0
        """Ticks that went by without the next packet."""
        self._waited_on_time = 0
        """... of which the mixer ran on time: the network's lateness."""
        self._owed = 0
        """Timestamp units of delay added by ticks run late or skipped, to be shed."""
        self._owed_since = 0
        """The pop at which the first of them was owed (they expire a window later)."""
        self._low_water = self._most
        self._pops = 0
        self._pops_since_late = 0
        self.lost = 0
        self.late = 0
        self.dropped = 0
        """Packets dropped to shrink the delay or because the buffer was full."""

    def __len__(self) -> int:
        return len(self._packets)

    @property
    def queued(self) -> int:
        """The audio queued, in RTP timestamp units."""
        return len(self._packets) * self.step

    @property
    def _most(self) -> int:
        return self.capacity * self.frame_step

    def push(self, packet: RtpPacket, arrival: float) -> Push:
        """Queue a packet (of this buffer's SSRC)."""
        seq = packet.sequence_number
        self._learn_step(packet)
        result = Push.QUEUED
        if self._next is not None:
            ahead = seq_diff(seq, self._next)
            if ahead < -MAX_MISORDER or ahead > MAX_DROPOUT:
                self._packets.clear()
                self._next = None
                self._waited = self._waited_on_time = self._owed = 0
                result = Push.RESTARTED
            elif ahead < 0:
                self.late += 1
                self._raise_target(self.target + 1)
                return Push.LATE
            elif ahead == 0 and not packet.marker and self._waited_on_time <= self.max_target:
                self._raise_target(self._waited_on_time)  # it came that many ticks late
        if seq in self._packets:
            return Push.DUPLICATE
        while self._packets and self.queued >= self._most:
            self._drop_earliest()
        self._packets[seq] = Buffered(packet, arrival)
        return result

    def pop(self, *, need: int | None = None, behind: bool = False) -> list[Buffered]:
        """The packets to decode at this tick, in order: as many as make ``need`` RTP
        timestamp units of audio (None: a frame; 0 or less: the mixer still holds
        the tick's audio, and none is taken), or fewer when the next is still
        awaited (the tick conceals; those given are played at the next).

        Called once per tick.  ``behind``: the mixer runs this tick late, so a
        packet it misses may only be unread (see the module docstring).
        """
        self._adapt()
        short = self.frame_step if need is None else need
        taken: list[Buffered] = []
        while short > 0 and (item := self._take()) is not None:
            taken.append(item)
            short -= self.step
            self._waited = self._waited_on_time = 0
        if short > 0:
            if self._next is not None:
                self._waited += 1
                if behind:
                    self._owe(self.frame_step)
                else:
                    self._waited_on_time += 1
            return taken
        while taken and self._owed > 0 and self._next in self._packets:
            # Delay that late or skipped ticks added, and later audio is here: play that.
            self._owed = max(self._owed - self.step, 0)
            self.dropped += 1
            del taken[0]
            taken.append(self._packets.pop(self._next))
            self._next = seq_add(self._next, 1)
        self._low_water = min(self._low_water, self.queued)
        return taken

    def skip(self, frames: int) -> None:
        """The mixer skipped ``frames`` ticks (it was far behind): drop the audio they
        would have played, what is queued now and, up to ``capacity``, what is still to come."""
        to_drop = frames * self.frame_step
        while to_drop > 0 and self._packets:
            self._drop_earliest()
            to_drop -= self.step
        if to_drop > 0:
            self._owe(to_drop)

    def _learn_step(self, packet: RtpPacket) -> None:
        """A packet's length from its timestamp and an earlier one's close in sequence
        (not across a talk spurt's start: the timestamps jump over the silence)."""
        last, self._last_pushed = self._last_pushed, packet
        if last is None or packet.marker:
            return
        apart = seq_diff(packet.sequence_number, last.sequence_number)
        if 0 < apart <= 4:
            step = ((packet.timestamp - last.timestamp) & 0xFFFFFFFF) // apart
            if 0 < step <= MAX_PACKET_FRAMES * self.frame_step:
                self.step = step

    def _take(self) -> Buffered | None:
        """The next packet, or the one after a gap once it was waited for long enough."""
        if not self._packets:
            return None
        if self._next is None:
            self._next = self._earliest()
        item = self._packets.pop(self._next, None)
        if item is None:
            patience = max(self.target, 1)
            if self.queued <= patience * self.frame_step and self._waited < patience:
                return None
            earliest = self._earliest()
            self.lost += seq_diff(earliest, self._next)
            item = self._packets.pop(earliest)
        self._next = seq_add(item.packet.sequence_number, 1)
        return item

    def _owe(self, units: int) -> None:
        if not self._owed:
            self._owed_since = self._pops
        self._owed = min(self._owed + units, self._most)

    def _raise_target(self, frames: int) -> None:
        """The network was seen ``frames`` late: keep that much in reserve from now on."""
        if frames > 0:
            self.target = max(self.target, min(frames, self.max_target))
            self._pops_since_late = 0

    def _earliest(self) -> int:
        """The queued sequence number closest after the playout point."""
        origin = self._next if self._next is not None else next(iter(self._packets))
        return min(self._packets, key=lambda seq: seq_diff(seq, origin))

    def _drop_earliest(self) -> None:
        earliest = self._earliest()
        del self._packets[earliest]
        self.dropped += 1
        if self._next is not None and seq_diff(earliest, self._next) >= 0:
            self._next = seq_add(earliest, 1)

    def _adapt(self) -> None:
        """Shrink the delay when the buffer runs fuller than its target; let the target decay."""
        self._pops += 1
        self._pops_since_late += 1
        if self._pops % SHRINK_WINDOW == 0:
            # Audio that was queued all along was never needed: only delay.
            surplus = min(self._low_water, self.queued) - self.target * self.frame_step
            while surplus >= self.step:
                self._drop_earliest()
                surplus -= self.step
            self._low_water = self._most
        if self._owed and self._pops - self._owed_since > SHRINK_WINDOW:
            self._owed = 0  # no audio came to shed (DTX): the sender's silence took it
        if self._pops_since_late >= DECAY_WINDOW:
            self.target = max(self.target - 1, 0)
            self._pops_since_late = 0
