"""What the focus knows of a stream it receives, for the report blocks of its RTCP (RFC 3550).

Sequence accounting follows RFC 3550 appendix A.1 and A.3 (extended highest
sequence number, cumulative and interval loss), the interarrival jitter
appendix A.8, and LSR/DLSR section 6.4.1 (from the last sender report the
source sent us).
"""

from __future__ import annotations

from ..rtp import ReportBlock, seq_diff

__all__ = ["ReceptionStats"]


class ReceptionStats:
    """Counters of one incoming SSRC; times are the caller's clock, in seconds."""

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.received = 0
        self._base: int | None = None
        self._max = 0
        self._cycles = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._transit: float | None = None
        self.jitter = 0.0
        """Interarrival jitter in timestamp units (RFC 3550 A.8)."""
        self._last_sr = 0
        self._last_sr_at: float | None = None

    def update(self, sequence: int, timestamp: int, arrival: float) -> None:
        """Count one packet of the stream."""
        self.received += 1
        if self._base is None:
            self._base = self._max = sequence
        elif seq_diff(sequence, self._max) > 0:
            if sequence < self._max:  # wrapped past 65535
                self._cycles += 1 << 16
            self._max = sequence
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            delta = abs(transit - self._transit)
            self.jitter += (delta - self.jitter) / 16
        self._transit = transit

    def sender_report_received(self, ntp_timestamp: int, now: float) -> None:
        """Remember the source's last SR, for LSR and DLSR."""
        self._last_sr = (ntp_timestamp >> 16) & 0xFFFFFFFF
        self._last_sr_at = now

    @property
    def extended_max(self) -> int:
        return self._cycles | self._max

    @property
    def expected(self) -> int:
        return 0 if self._base is None else self.extended_max - self._base + 1

    def report_block(self, now: float) -> ReportBlock:
        """A report block about this source; starts a new interval for ``fraction_lost``."""
        expected = self.expected
        interval_expected = expected - self._expected_prior
        interval_received = self.received - self._received_prior
        self._expected_prior, self._received_prior = expected, self.received
        interval_lost = interval_expected - interval_received
        fraction = 0
        if interval_expected > 0 and interval_lost > 0:
            fraction = min((interval_lost << 8) // interval_expected, 255)
        delay = 0
        if self._last_sr_at is not None:
            delay = int((now - self._last_sr_at) * 65536) & 0xFFFFFFFF
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=expected - self.received,
            highest_sequence=self.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter) & 0xFFFFFFFF,
            last_sr=self._last_sr,
            delay_since_last_sr=delay,
        )
