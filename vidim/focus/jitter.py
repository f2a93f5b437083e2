"""A small adaptive jitter buffer for one incoming audio stream, played one frame per tick.

The mixer calls :meth:`JitterBuffer.pop` once per 20 ms tick and plays what
it returns, or conceals when it returns None.  The buffer orders packets by
sequence number and decides, packet by packet:

* the next packet is here: play it;
* it is not, and nothing else is (underflow, or the sender is in DTX):
  play nothing and wait for it, without skipping it; the playout point
  moves one frame later, which is how the delay grows under jitter;
* it is not, but later ones are (lost, or reordered): wait while at most
  ``max(target, 1)`` are queued and we have not already waited that many
  ticks for it, then declare it lost and play the next one;
* the packet waited for arrives after 1 to ``max_target`` on-time ticks
  went by without it (and without the marker bit, which starts a talk
  spurt after DTX): the network was that many frames late, and ``target``
  (the frames of delay kept in reserve) rises to it;
* a packet for a frame already played arrives (late): drop it and raise
  ``target`` by one (up to ``max_target``): reordering is being seen;
* when, over half a second, the buffer never held fewer than ``target + n``
  frames after a pop, ``n`` frames are dropped: those were only delay (a
  burst after a stall of the network or the host), and the delay shrinks back.
  ``target`` falls by one after five seconds without a late packet; it
  starts at 0, as a clean network needs no reserve.

The tick's own lateness is not the network's: a tick the mixer runs late
(``pop(behind=True)``: the host stalled, or the mixer had too much to do)
may find its packet merely not read yet.  Its wait raises no target, and
the frame of delay it adds is owed: the next pop that finds the following
frame queued as well drops it, so the delay is back within a tick or two
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
    """Packets of one SSRC, in sequence order, released one per tick."""

    def __init__(self, *, capacity: int = 16, max_target: int = 5) -> None:
        self.capacity = capacity
        self.max_target = max_target
        self.target = 0
        """Frames of delay kept in reserve for the network's jitter (0 to ``max_target``)."""
        self._packets: dict[int, Buffered] = {}
        self._next: int | None = None
        self._waited = 0
        """Ticks that went by without the next packet."""
        self._waited_on_time = 0
        """... of which the mixer ran on time: the network's lateness."""
        self._owed = 0
        """Frames of delay added by ticks run late or skipped, to be shed."""
        self._owed_since = 0
        """The pop at which the first of them was owed (they expire a window later)."""
        self._low_water = capacity
        self._pops = 0
        self._pops_since_late = 0
        self.lost = 0
        self.late = 0
        self.dropped = 0
        """Frames dropped to shrink the delay or because the buffer was full."""

    def __len__(self) -> int:
        return len(self._packets)

    def push(self, packet: RtpPacket, arrival: float) -> Push:
        """Queue a packet (of this buffer's SSRC)."""
        seq = packet.sequence_number
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
        if len(self._packets) >= self.capacity:
            self._drop_earliest()
        self._packets[seq] = Buffered(packet, arrival)
        return result

    def pop(self, *, behind: bool = False) -> Buffered | None:
        """The packet to play at this tick, or None (conceal).

        ``behind``: the mixer runs this tick late, so a packet it misses may
        only be unread (see the module docstring).
        """
        self._adapt()
        item = self._take()
        if item is None:
            if self._next is not None:
                self._waited += 1
                if behind:
                    self._owe(1)
                else:
                    self._waited_on_time += 1
            return None
        while self._owed and self._next in self._packets:
            # Frames of delay that late or skipped ticks added, and the next frame is here.
            self._owed -= 1
            self.dropped += 1
            item = self._packets.pop(self._next)
            self._next = seq_add(self._next, 1)
        self._waited = self._waited_on_time = 0
        self._low_water = min(self._low_water, len(self._packets))
        return item

    def skip(self, frames: int) -> None:
        """The mixer skipped ``frames`` ticks (it was far behind): drop the frames they
        would have played, those queued now and, up to ``capacity``, those still to come."""
        queued = min(frames, len(self._packets))
        for _ in range(queued):
            self._drop_earliest()
        if frames > queued:
            self._owe(frames - queued)

    def _take(self) -> Buffered | None:
        """The next packet, or the one after a gap once it was waited for long enough."""
        if not self._packets:
            return None
        if self._next is None:
            self._next = self._earliest()
        item = self._packets.pop(self._next, None)
        if item is None:
            patience = max(self.target, 1)
            if len(self._packets) <= patience and self._waited < patience:
                return None
            earliest = self._earliest()
            self.lost += seq_diff(earliest, self._next)
            item = self._packets.pop(earliest)
        self._next = seq_add(item.packet.sequence_number, 1)
        return item

    def _owe(self, frames: int) -> None:
        if not self._owed:
            self._owed_since = self._pops
        self._owed = min(self._owed + frames, self.capacity)

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
            # Frames that were queued all along were never needed: only delay.
            for _ in range(min(self._low_water - self.target, len(self._packets))):
                self._drop_earliest()
            self._low_water = self.capacity
        if self._owed and self._pops - self._owed_since > SHRINK_WINDOW:
            self._owed = 0  # no frame came to shed (DTX): the sender's silence took it
        if self._pops_since_late >= DECAY_WINDOW:
            self.target = max(self.target - 1, 0)
            self._pops_since_late = 0
