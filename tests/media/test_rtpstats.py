"""What the relay learns per participant: RTCP report blocks, its own counts, late packets."""

from __future__ import annotations

import pytest

from vidim.focus.media import Route
from vidim.rtp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtpPacket,
    SenderReport,
    build_rtcp,
)
from vidim.rtpstats import MediaStats

BOB_AUDIO = Route(100, "sip:bob@x", "audio", False, ("127.0.0.1", 4000))
BOB_AUDIO_RTCP = Route(101, "sip:bob@x", "audio", True, ("127.0.0.1", 4001))
CAROL_AUDIO = Route(110, "sip:carol@x", "audio", False, ("127.0.0.1", 5000))
CAROL_VIDEO_RTCP = Route(113, "sip:carol@x", "video", True, ("127.0.0.1", 5003))
CAROL_SSRC, BOB_SSRC = 0xCA201, 0xB0B


def rtp(seq: int, timestamp: int = 0, ssrc: int = BOB_SSRC) -> bytes:
    return bytes(RtpPacket(payload_type=0, sequence_number=seq, timestamp=timestamp, ssrc=ssrc))


def report(*blocks: ReportBlock, sender: bool = False) -> bytes:
    if sender:
        packet: SenderReport | ReceiverReport = SenderReport(
            ssrc=BOB_SSRC,
            ntp_timestamp=0,
            rtp_timestamp=0,
            packet_count=0,
            octet_count=0,
            reports=blocks,
        )
    else:
        packet = ReceiverReport(ssrc=BOB_SSRC, reports=blocks)
    return build_rtcp([packet, Bye(ssrcs=(BOB_SSRC,))])


def block(ssrc: int, fraction: int = 0, lost: int = 0, jitter: int = 0) -> ReportBlock:
    return ReportBlock(
        ssrc=ssrc, fraction_lost=fraction, packets_lost=lost, highest_sequence=0, jitter=jitter
    )


def carol_speaks(stats: MediaStats, rate: int, seconds: float = 1.2) -> None:
    """Carol's audio reaches the relay at 50 packets a second, timestamps at ``rate``."""
    for index in range(int(seconds * 50) + 1):
        data = rtp(index, timestamp=(1_000 + index * rate // 50) & 0xFFFF_FFFF, ssrc=CAROL_SSRC)
        stats.received(CAROL_AUDIO, data, 10.0 + index / 50)


def test_sequence_numbers_before_the_highest_are_counted_late_per_source() -> None:
    stats = MediaStats()
    for seq in (65534, 65535, 2, 1, 0, 3, 3):  # a wrap, a gap, two late, a duplicate
        stats.received(BOB_AUDIO, rtp(seq), 0.0)
    stats.received(BOB_AUDIO, rtp(7, ssrc=0x5EC0), 0.0)  # another source: its own sequence
    bob = stats.streams()[("sip:bob@x", "audio")]
    assert bob.out_of_order == 3
    assert bob.packets_in == 8
    assert bob.bytes_in == 8 * 12


def test_receiver_report_gives_loss_and_jitter_in_seconds_of_the_sources_clock() -> None:
    stats = MediaStats()
    carol_speaks(stats, rate=48_000)  # opus: a dynamic payload type, the clock is measured
    assert stats.clock_rate(CAROL_SSRC) == 48_000
    rtcp = report(block(CAROL_SSRC, fraction=64, lost=30, jitter=960))
    stats.received(BOB_AUDIO_RTCP, rtcp, 12.0)
    bob = stats.streams()[("sip:bob@x", "audio")]
    assert bob.fraction_lost == 0.25
    assert bob.lost_packets == 30
    assert bob.jitter_seconds == pytest.approx(0.020)
    assert (bob.packets_in, bob.bytes_in) == (1, len(rtcp))


@pytest.mark.parametrize("rate", [8_000, 16_000, 48_000])
def test_audio_clock_rate_snaps_to_the_usual_rates(rate: int) -> None:
    stats = MediaStats()
    carol_speaks(stats, rate)
    assert stats.clock_rate(CAROL_SSRC) == rate


def test_jitter_of_an_untimed_audio_source_is_unknown_but_loss_is_reported() -> None:
    stats = MediaStats()
    carol_speaks(stats, rate=8_000, seconds=0.5)  # not timed long enough yet
    stats.received(BOB_AUDIO_RTCP, report(block(CAROL_SSRC, fraction=26, jitter=80)), 11.0)
    bob = stats.streams()[("sip:bob@x", "audio")]
    assert bob.jitter_seconds is None
    assert bob.fraction_lost == pytest.approx(26 / 256)


def test_video_jitter_uses_90_khz_and_sender_reports_count_too() -> None:
    stats = MediaStats()
    blocks = (block(0x1, jitter=900, lost=5), block(0x2, jitter=4500, lost=7, fraction=3))
    stats.received(CAROL_VIDEO_RTCP, report(*blocks, sender=True), 0.0)
    carol = stats.streams()[("sip:carol@x", "video")]
    assert carol.jitter_seconds == pytest.approx(0.05)  # the worst source
    assert carol.lost_packets == 12  # summed over the sources
    assert carol.fraction_lost == pytest.approx(3 / 256)


def test_cumulative_loss_never_goes_down() -> None:
    """Duplicates can make a reported cumulative loss fall (RFC 3550 6.4.1); a counter may not."""
    stats = MediaStats()
    stats.received(BOB_AUDIO_RTCP, report(block(CAROL_SSRC, lost=10)), 0.0)
    stats.received(BOB_AUDIO_RTCP, report(block(CAROL_SSRC, lost=-2)), 5.0)
    stats.received(BOB_AUDIO_RTCP, report(block(CAROL_SSRC, lost=14)), 10.0)
    assert stats.streams()[("sip:bob@x", "audio")].lost_packets == 14


def test_malformed_rtcp_is_counted_not_raised() -> None:
    stats = MediaStats()
    stats.received(BOB_AUDIO_RTCP, b"\x80\xc9\x00\x09" + bytes(8), 0.0)  # length past the end
    bob = stats.streams()[("sip:bob@x", "audio")]
    assert (bob.malformed_rtcp, bob.lost_packets, bob.jitter_seconds) == (1, 0, None)


def test_sent_counts_to_the_receiver_and_departed_participants_are_forgotten() -> None:
    stats = MediaStats()
    stats.sent(BOB_AUDIO, 172)
    stats.sent(BOB_AUDIO, 172)
    carol_speaks(stats, rate=8_000)
    bob = stats.streams()[("sip:bob@x", "audio")]
    assert (bob.packets_out, bob.bytes_out, bob.packets_in) == (2, 344, 0)
    stats.plan_applied({("sip:bob@x", "audio")})
    assert list(stats.streams()) == [("sip:bob@x", "audio")]
    assert stats.clock_rate(CAROL_SSRC) is None
