"""The jitter buffer alone: ordering, loss, late packets, restarts, adaptation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vidim.focus.jitter import JitterBuffer, Push
from vidim.rtp import RtpPacket, seq_diff


def packet(seq: int) -> RtpPacket:
    return RtpPacket(payload_type=0, sequence_number=seq & 0xFFFF, timestamp=seq * 160, ssrc=1)


def played(buffer: JitterBuffer, ticks: int) -> list[int | None]:
    out: list[int | None] = []
    for _ in range(ticks):
        items = buffer.pop()
        assert len(items) <= 1  # 20 ms packets: one a tick
        out.append(items[0].packet.sequence_number if items else None)
    return out


def test_reordered_packets_play_in_order() -> None:
    buffer = JitterBuffer()
    for seq in (10, 12, 11, 13):
        assert buffer.push(packet(seq), 0.0) is Push.QUEUED
    assert played(buffer, 5) == [10, 11, 12, 13, None]
    assert buffer.lost == 0


def test_a_missing_packet_is_waited_for_then_declared_lost() -> None:
    buffer = JitterBuffer()
    buffer.push(packet(1), 0.0)
    assert played(buffer, 1) == [1]
    buffer.push(packet(3), 0.0)
    assert played(buffer, 1) == [None]  # 2 may still come: wait one tick (at least)
    assert played(buffer, 1) == [3]
    assert buffer.lost == 1
    assert buffer.push(packet(2), 0.1) is Push.LATE
    assert buffer.late == 1
    assert buffer.target == 1  # from 0: reordering seen, one frame kept in reserve


def test_underflow_does_not_skip_the_next_packet() -> None:
    buffer = JitterBuffer()
    buffer.push(packet(1), 0.0)
    assert played(buffer, 3) == [1, None, None]
    buffer.push(packet(2), 0.1)
    assert played(buffer, 1) == [2]
    assert buffer.lost == 0


def test_duplicates_and_restarts() -> None:
    buffer = JitterBuffer()
    buffer.push(packet(1), 0.0)
    assert buffer.push(packet(1), 0.0) is Push.DUPLICATE
    played(buffer, 1)
    assert buffer.push(packet(40000), 0.1) is Push.RESTARTED
    assert played(buffer, 1) == [40000]


def test_sequence_wrap() -> None:
    buffer = JitterBuffer()
    for seq in (65534, 65535, 0, 1):
        buffer.push(packet(seq), 0.0)
    assert played(buffer, 4) == [65534, 65535, 0, 1]


def test_a_buffer_running_full_drops_a_frame_to_shrink_the_delay() -> None:
    buffer = JitterBuffer()
    seq = 0
    for _ in range(8):  # a burst: eight frames queued ahead
        buffer.push(packet(seq), 0.0)
        seq += 1
    for _ in range(60):  # then one per tick
        buffer.push(packet(seq), 0.0)
        seq += 1
        buffer.pop()
    assert buffer.dropped == 8 - buffer.target  # all the frames that were only delay
    assert len(buffer) == buffer.target


def test_a_full_buffer_drops_the_oldest() -> None:
    buffer = JitterBuffer(capacity=4)
    for seq in range(6):
        buffer.push(packet(seq), 0.0)
    assert len(buffer) == 4
    assert buffer.dropped == 2
    assert played(buffer, 1) == [2]


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 200)), max_size=300))
def test_whatever_arrives_nothing_plays_twice_or_backwards(steps: list[tuple[bool, int]]) -> None:
    """Pushes (of sequence numbers near a start) and pops in any order: every packet played
    is after the previous one, none twice, unless the buffer restarted."""
    buffer = JitterBuffer()
    last: int | None = None
    for is_push, seq in steps:
        if is_push:
            if buffer.push(packet(60000 + seq), 0.0) is Push.RESTARTED:
                last = None
        else:
            for item in buffer.pop():
                now = item.packet.sequence_number
                assert last is None or seq_diff(now, last) > 0
                last = now


def marked(seq: int) -> RtpPacket:
    """The first packet of a talk spurt (RFC 3551: the marker bit after silence)."""
    return RtpPacket(payload_type=0, sequence_number=seq, timestamp=seq * 160, ssrc=1, marker=True)


def test_a_late_tick_owes_its_frame_and_sheds_it_once_packets_come_on_time() -> None:
    """A tick run late finds its packet not read yet: the delay it adds is gone a tick
    after the packets come in again, and the target does not move."""
    buffer = JitterBuffer()
    buffer.push(packet(1), 0.0)
    assert played(buffer, 1) == [1]
    assert buffer.pop(behind=True) == []  # caught up before packet 2 was read
    buffer.push(packet(2), 0.05)
    buffer.push(packet(3), 0.05)  # on time again: 2 and 3 are here at the next tick
    assert played(buffer, 1) == [3]  # 2 is shed: one frame dropped, none kept as delay
    assert (buffer.dropped, buffer.lost, buffer.target, len(buffer)) == (1, 0, 0, 0)
    for seq in range(4, 10):  # then one per tick, each played at the tick it arrived for
        buffer.push(packet(seq), 0.0)
        assert played(buffer, 1) == [seq]


def test_the_same_wait_on_an_on_time_tick_is_network_jitter_and_kept() -> None:
    buffer = JitterBuffer()
    buffer.push(packet(1), 0.0)
    assert played(buffer, 1) == [1]
    assert played(buffer, 1) == [None]  # the tick was on time: packet 2 is late
    buffer.push(packet(2), 0.05)
    assert buffer.target == 1  # one frame late: one frame of reserve from now on
    buffer.push(packet(3), 0.05)
    assert played(buffer, 1) == [2]
    for seq in range(4, 4 + 60):  # a clean network for over a second: the reserve stays
        buffer.push(packet(seq), 0.0)
        assert played(buffer, 1) == [seq - 1]
    assert (buffer.dropped, buffer.lost, buffer.target) == (0, 0, 1)


def test_real_jitter_grows_the_target_to_the_lateness_seen() -> None:
    buffer = JitterBuffer()
    buffer.push(packet(1), 0.0)
    played(buffer, 1)
    assert played(buffer, 3) == [None, None, None]  # three on-time ticks without packet 2
    buffer.push(packet(2), 0.08)
    assert buffer.target == 3


def test_silence_is_not_lateness() -> None:
    """A talk spurt after DTX (marker bit), or a wait longer than any jitter we absorb,
    raises nothing: the sender was silent, not late."""
    buffer = JitterBuffer()
    buffer.push(packet(1), 0.0)
    played(buffer, 1)
    assert played(buffer, 2) == [None, None]
    buffer.push(marked(2), 0.06)
    assert played(buffer, 1) == [2]
    assert played(buffer, buffer.max_target + 1) == [None] * (buffer.max_target + 1)
    buffer.push(packet(3), 0.3)
    assert buffer.target == 0


def test_owed_frames_expire_with_the_shrink_window() -> None:
    """A late tick during DTX owes a frame no surplus ever pays: after the window it is
    forgotten, and a later burst is kept to the target, not cut below it."""
    buffer = JitterBuffer()
    buffer.push(packet(1), 0.0)
    played(buffer, 1)
    buffer.pop(behind=True)
    for seq in range(2, 40):  # one per tick: no surplus to shed
        buffer.push(packet(seq), 0.0)
        assert played(buffer, 1) == [seq]
    assert buffer.dropped == 0
    buffer.push(packet(40), 0.0)
    buffer.push(packet(41), 0.0)
    assert played(buffer, 1) == [40]  # not shed: the debt is gone


def test_skipped_ticks_drop_the_frames_queued_and_those_still_unread() -> None:
    buffer = JitterBuffer()
    buffer.push(packet(1), 0.0)
    played(buffer, 1)
    buffer.push(packet(2), 0.0)
    buffer.skip(4)  # the mixer skipped four ticks: 2 is dropped, 3, 4 and 5 are owed
    for seq in range(3, 7):  # they are read before the next tick, with 6 on time
        buffer.push(packet(seq), 0.3)
    assert played(buffer, 1) == [6]
    assert (buffer.dropped, buffer.lost, len(buffer)) == (4, 0, 0)


def short(seq: int, ptime: int = 10, *, marker: bool = False) -> RtpPacket:
    """A packet of ``ptime`` ms at an 8 kHz clock."""
    return RtpPacket(
        payload_type=0, sequence_number=seq, timestamp=seq * 8 * ptime, ssrc=1, marker=marker
    )


def played_per_tick(buffer: JitterBuffer, ticks: int) -> list[list[int]]:
    return [[item.packet.sequence_number for item in buffer.pop()] for _ in range(ticks)]


def test_a_tick_takes_as_many_packets_as_make_a_frame() -> None:
    buffer = JitterBuffer()
    buffer.push(short(1), 0.0)
    assert buffer.step == 160  # one packet alone: taken for a frame until more come
    for seq in range(2, 8):
        buffer.push(short(seq), 0.0)
    assert buffer.step == 80
    assert buffer.queued == 7 * 80
    assert played_per_tick(buffer, 3) == [[1, 2], [3, 4], [5, 6]]
    assert [item.packet.sequence_number for item in buffer.pop(need=80)] == [7]
    assert buffer.pop(need=0) == []  # the mixer still holds the tick's audio
    assert (buffer.lost, buffer.target) == (0, 0)


def test_a_packet_longer_than_a_frame_is_taken_when_the_last_one_runs_out() -> None:
    buffer = JitterBuffer()
    for seq in range(1, 4):
        buffer.push(short(seq, 30), 0.0)
    assert buffer.step == 240
    # The mixer asks for what it lacks: a frame, then none (10 ms left), then 10 ms.
    assert [item.packet.sequence_number for item in buffer.pop(need=160)] == [1]
    assert [item.packet.sequence_number for item in buffer.pop(need=80)] == [2]
    assert buffer.pop(need=0) == []
    assert [item.packet.sequence_number for item in buffer.pop(need=160)] == [3]


def test_a_lost_short_packet_is_waited_for_a_tick_then_declared_lost() -> None:
    buffer = JitterBuffer()
    for seq in (1, 2, 3, 5):
        buffer.push(short(seq), 0.0)
    assert played_per_tick(buffer, 1) == [[1, 2]]
    assert played_per_tick(buffer, 1) == [[3]]  # 4 may still come: the tick conceals
    assert played_per_tick(buffer, 1) == [[5]]
    assert buffer.lost == 1


def test_a_talk_spurt_after_dtx_does_not_teach_the_packet_length() -> None:
    buffer = JitterBuffer()
    buffer.push(short(1), 0.0)
    buffer.push(short(2), 0.0)
    buffer.push(
        RtpPacket(payload_type=0, sequence_number=3, timestamp=8000, ssrc=1, marker=True), 1
    )
    assert buffer.step == 80


def test_owed_time_is_shed_in_short_packets() -> None:
    buffer = JitterBuffer()
    buffer.push(short(1), 0.0)
    buffer.push(short(2), 0.0)
    assert played_per_tick(buffer, 1) == [[1, 2]]
    assert buffer.pop(behind=True) == []  # a late tick: a frame (two packets) owed
    for seq in range(3, 9):
        buffer.push(short(seq), 0.05)
    assert played_per_tick(buffer, 1) == [[5, 6]]  # 3 and 4 shed
    assert (buffer.dropped, buffer.lost, buffer.target) == (2, 0, 0)
