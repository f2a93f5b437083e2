"""The follow-the-talker switch on a virtual clock, with synthetic VP8 and H.264 cameras."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from media_phones import Phone, run
from video_streams import BOTH, CLOCK, FPS, H264, VP8, Camera, Room, Screen, tag_of

from vidim.focus.keyframes import KeyframeFeedback, starts_keyframe
from vidim.focus.mixer import AudioLevelMeasured, AudioMixer, PacketRefused
from vidim.focus.video import (
    KeyframeRequested,
    PictureFastUpdateWanted,
    TalkerChanged,
    VideoConfig,
    VideoSourceChanged,
    VideoSwitch,
)
from vidim.focus.vp8 import read_counters
from vidim.rtp import (
    FirEntry,
    FullIntraRequest,
    PictureLossIndication,
    ReceiverReport,
    RtpPacket,
    SourceDescription,
    ntp_timestamp,
    parse_rtcp,
    seq_diff,
)
from vidim.sdp import Codec
from vidim.vocabulary import Mode

LOUD, SILENT = 20, 127


def assert_one_continuous_stream(screen: Screen) -> None:
    """One SSRC; each packet one sequence number after the last; timestamps never go back,
    and jump at a switch by no more than the time that passed plus a frame; VP8 picture IDs
    go on by one from frame to frame, across switches too (RFC 7741)."""
    packets = screen.packets
    assert packets, f"{screen.key} got no video"
    assert len({p.ssrc for _, p in packets}) == 1
    for (before_at, before), (at, packet) in itertools.pairwise(packets):
        assert seq_diff(packet.sequence_number, before.sequence_number) == 1
        counters = read_counters(packet.payload), read_counters(before.payload)
        if packet.payload_type == VP8.payload and None not in counters:
            step = (counters[0].picture_id - counters[1].picture_id) % 32768  # type: ignore[union-attr,operator]
            assert step == (1 if packet.payload[0] & 0x10 else 0), "picture ID not continued"
        jump = (packet.timestamp - before.timestamp) & 0xFFFFFFFF
        assert jump < 1 << 31, "the timestamp went back"
        if screen.origin(packet) != screen.origin(before):
            assert 0 < jump <= round((at - before_at) * CLOCK) + CLOCK // FPS


def assert_each_source_starts_with_a_keyframe(screen: Screen, codec: Codec = VP8) -> None:
    for packets in screen.runs():
        assert starts_keyframe(codec.name, packets[0][1].payload), screen.sources()


def loud(*keys: str) -> dict[str, int]:
    return dict.fromkeys(keys, LOUD)


def test_two_video_participants_see_each_other_from_a_keyframe_on() -> None:
    alice, bob = Camera("alice"), Camera("bob")
    room = Room.of(alice, bob)
    room.run(1.0)
    assert room.screens["alice"].sources() == ["bob"]
    assert room.screens["bob"].sources() == ["alice"]
    for screen in room.screens.values():
        assert_one_continuous_stream(screen)
        assert_each_source_starts_with_a_keyframe(screen)
        assert len(screen.packets) >= 2 * (FPS - 1)


def test_an_unanswered_keyframe_request_is_repeated_less_and_less_often() -> None:
    """1, 2, 4, 8, 8... seconds apart: a phone that ignores requests is not asked every second."""
    alice, bob, carol = Camera("alice"), Camera("bob"), Camera("carol", answers=False)
    room = Room.of(alice, bob, carol)
    room.run(2.0)
    before = len(carol.requests)
    room.run(30.0, lambda now: loud("carol"))
    times = sorted({at for at, _, _ in carol.requests[before:]})
    gaps = [round(b - a) for a, b in itertools.pairwise(times)]
    assert gaps[:5] == [1, 2, 4, 8, 8]


def test_a_switch_asks_the_new_speaker_once_and_waits_for_its_keyframe() -> None:
    alice, bob, carol = Camera("alice"), Camera("bob"), Camera("carol", answers=False)
    room = Room.of(alice, bob, carol)
    room.run(2.0)
    assert room.switch.speaker == "alice"
    requests_before = len(carol.requests)
    room.run(5.0, lambda now: loud("carol"))
    switched_at = next(e for e in room.events if isinstance(e, TalkerChanged))
    assert switched_at.participant == "carol"
    assert switched_at.previous == "alice"
    # carol was asked once (FIR and PLI in one datagram), and again only after keyframe_retry
    asked = carol.requests[requests_before:]
    times = sorted({at for at, _, _ in asked})
    assert times[0] == pytest.approx(2.0 + 1.5, abs=0.11)
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(times))
    assert {kind for at, kind, _ in asked if at == times[0]} == {"fir", "pli"}
    firs = [seq for _, kind, seq in asked if kind == "fir"]
    assert len(set(firs)) == 1, "a repeated FIR keeps its sequence number (RFC 5104 4.3.1.2)"
    # carol never sent a keyframe: bob still sees alice, carol sees alice too
    assert room.screens["bob"].sources() == ["alice"]
    assert room.switch.source_of("bob") == "alice"
    # now carol's camera answers: everyone but carol switches at its keyframe
    carol.answers = True
    room.run(7.0, lambda now: loud("carol"))
    assert room.screens["bob"].sources() == ["alice", "carol"]
    assert room.screens["alice"].sources() == ["bob", "carol"]
    assert room.screens["carol"].sources() == ["alice"]  # the speaker sees the previous one
    for screen in room.screens.values():
        assert_one_continuous_stream(screen)
        assert_each_source_starts_with_a_keyframe(screen)


def test_one_request_per_switch_with_an_answering_camera() -> None:
    cameras = [Camera(k) for k in ("alice", "bob", "carol")]
    room = Room.of(*cameras)
    room.run(1.0)
    counts = {c.key: len(c.requests) for c in cameras}
    room.run(4.0, lambda now: loud("carol"))
    assert len(cameras[2].requests) - counts["carol"] == 2  # one FIR + one PLI, one datagram
    requested = [e for e in room.events if isinstance(e, KeyframeRequested)]
    assert [e.repeated for e in requested if e.participant == "carol"] == [False]
    assert room.screens["bob"].sources() == ["alice", "carol"]


def test_no_rtcp_feedback_means_a_sip_info_request() -> None:
    alice = Camera("alice", feedback=KeyframeFeedback())
    bob = Camera("bob", feedback=KeyframeFeedback(pli=True), wants_keyframe=False)
    room = Room.of(alice, bob)
    room.run(1.0)
    infos = [e for e in room.events if isinstance(e, PictureFastUpdateWanted)]
    assert [e.participant for e in infos] == ["alice"]
    assert [kind for _, kind, _ in alice.requests] == ["info"]
    # bob's SSRC is known from its first packet (not a keyframe): asked then, by PLI alone
    assert [kind for _, kind, _ in bob.requests] == ["pli"]
    assert room.screens["alice"].sources() == ["bob"]


@pytest.mark.parametrize("mode", [Mode.AUDIO, Mode.CHAT])
def test_audio_and_chat_participants_get_no_video_and_send_none(mode: Mode) -> None:
    alice, bob, dave = Camera("alice"), Camera("bob"), Camera("dave", mode=mode)
    room = Room.of(alice, bob, dave)
    room.run(3.0, lambda now: loud("dave"))
    assert room.screens["dave"].packets == []
    for key in ("alice", "bob"):
        assert "dave" not in room.screens[key].sources()
    assert room.switch.speaker == "alice"
    assert dave.requests == []


def test_a_watcher_gets_the_speaker_and_contributes_nothing() -> None:
    alice, bob, walt = Camera("alice"), Camera("bob"), Camera("walt", mode=Mode.WATCH)
    room = Room.of(alice, bob, walt)
    room.run(4.0, lambda now: {"walt": 0, "bob": LOUD})
    assert room.switch.speaker == "bob"
    assert room.screens["walt"].sources() == ["alice", "bob"]
    assert "walt" not in room.screens["alice"].sources() + room.screens["bob"].sources()
    assert walt.requests == []
    assert_one_continuous_stream(room.screens["walt"])


def test_a_lone_video_participant_sees_nothing_until_a_second_one_joins() -> None:
    alice = Camera("alice")
    room = Room.of(alice)
    room.run(1.0)
    assert room.screens["alice"].packets == []
    room.join(Camera("bob"))
    room.run(2.0)
    assert room.screens["alice"].sources() == ["bob"]


def test_when_the_shown_source_leaves_its_receivers_switch_to_the_next_in_line() -> None:
    cameras = [Camera(k) for k in ("alice", "bob", "carol")]
    room = Room.of(*cameras)
    room.run(1.0)
    room.switch.remove("alice", room.now)
    del room.cameras["alice"]
    room.run(2.0)
    assert room.screens["carol"].sources() == ["alice", "bob"]
    assert room.screens["bob"].sources() == ["alice", "carol"]
    gone = [e for e in room.events if isinstance(e, VideoSourceChanged) and e.source is None]
    assert {e.participant for e in gone} == {"bob", "carol"}
    assert_one_continuous_stream(room.screens["carol"])


def test_a_receivers_pli_reaches_the_source_it_watches() -> None:
    alice, bob = Camera("alice"), Camera("bob")
    room = Room.of(alice, bob)
    room.run(1.0)
    before = len(alice.requests)
    pli = bytes.fromhex("81ce0002") + (7).to_bytes(4, "big") + (123).to_bytes(4, "big")
    room.switch.receive_datagram("bob", pli, room.now)
    room.deliver()
    assert [kind for _, kind, _ in alice.requests[before:]] == ["fir", "pli"]
    room.run(1.5)
    assert room.screens["bob"].sources() == ["alice"]
    # a receiver asking on and on gets one keyframe request a second passed on, no more
    before = len(alice.requests)
    while room.now < 4.5:
        room.run(room.now + 0.1)
        room.switch.receive_datagram("bob", pli, room.now)
        room.deliver()
    times = [at for at, kind, _ in alice.requests[before:] if kind == "pli"]
    assert len(times) == 3
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(times))


def test_payload_type_rewritten_for_each_receiver() -> None:
    alice = Camera("alice", codec=Codec(100, "VP8", CLOCK))
    bob = Camera("bob")
    room = Room.of(alice, bob)
    room.run(0.5)
    assert {p.payload_type for _, p in room.screens["bob"].packets} == {96}
    assert {p.payload_type for _, p in room.screens["alice"].packets} == {100}


def test_a_malformed_datagram_is_refused_with_a_reason() -> None:
    room = Room.of(Camera("alice"), Camera("bob"))
    room.switch.receive_datagram("alice", b"\x40\x00\x00", 0.0)
    refused = [e for e in room.switch.events() if isinstance(e, PacketRefused)]
    assert [e.participant for e in refused] == ["alice"]
    assert "truncated" in refused[0].reason


def test_a_restarted_camera_is_taken_up_again_at_its_keyframe() -> None:
    alice, bob = Camera("alice"), Camera("bob")
    room = Room.of(alice, bob)
    room.run(1.0)
    alice.ssrc, alice.sequence = 0xABCDEF, 7
    room.run(2.0)
    screen = room.screens["bob"]
    assert_one_continuous_stream(screen)
    after = [p for at, p in screen.packets if at > 1.0]
    assert after
    assert starts_keyframe("VP8", after[0].payload)


def test_a_second_video_codec_is_not_mixed_up() -> None:
    room = Room.of(Camera("alice", codec=H264), Camera("bob", codec=H264))
    room.run(1.0)
    for screen in room.screens.values():
        assert_each_source_starts_with_a_keyframe(screen, H264)
        assert_one_continuous_stream(screen)


def test_the_mixers_levels_drive_the_switch() -> None:
    """The hysteresis is honoured on the levels as the mixer reports them (every 100 ms)."""
    room = Room.of(Camera("alice"), Camera("bob"))
    room.run(1.0)
    room.run(2.4, lambda now: loud("bob"))
    assert room.switch.speaker == "alice"
    room.run(2.6, lambda now: loud("bob"))
    assert room.switch.speaker == "bob"


SEGMENT = st.tuples(st.sampled_from(["alice", "bob", "carol", "walt", None]), st.integers(1, 40))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    segments=st.lists(SEGMENT, min_size=1, max_size=6),
    codec=st.sampled_from([VP8, H264]),
    carol_answers=st.booleans(),
)
def test_every_receiver_sees_one_continuous_stream_across_any_switches(
    segments: list[tuple[str | None, int]], codec: Codec, carol_answers: bool
) -> None:
    """Talkers change at random (tenths of a second each); whatever happens, each receiver
    gets one stream, every source from a keyframe on, and never a watcher's video."""
    cameras = [
        Camera("alice", codec=codec),
        Camera("bob", codec=codec, feedback=KeyframeFeedback()),
        Camera("carol", codec=codec, answers=carol_answers),
        Camera("walt", codec=codec, mode=Mode.WATCH),
    ]
    switch = VideoSwitch(VideoConfig(), random32=iter(range(3, 1_000_000, 7919)).__next__)
    room = Room.of(*cameras, switch=switch)
    for talker, tenths in segments:
        room.run(room.now + tenths / 10, lambda now, t=talker: loud(t) if t else {})
    room.run(room.now + 0.5)
    switches = sum(isinstance(e, VideoSourceChanged) for e in room.events)
    event(f"switches: {min(switches, 10)}")
    for screen in room.screens.values():
        if screen.packets:
            assert_one_continuous_stream(screen)
            assert_each_source_starts_with_a_keyframe(screen, codec)
        assert "walt" not in screen.sources()
        assert screen.key not in screen.sources()
    speaker = room.switch.speaker
    assert speaker != "walt"
    for key in ("alice", "bob", "walt"):
        shown = room.switch.source_of(key)
        assert shown is None or shown != key
    for _, packet in room.screens["walt"].packets:
        assert tag_of(packet.payload)[0] != "walt"


def test_a_rtp_packet_from_before_the_switch_is_not_forwarded_after_it() -> None:
    alice, bob, carol = Camera("alice"), Camera("bob"), Camera("carol")
    room = Room.of(alice, bob, carol)
    room.run(1.0)
    late = RtpPacket(
        payload_type=96,
        sequence_number=(carol.sequence - 40) & 0xFFFF,
        timestamp=0,
        ssrc=carol.ssrc,
        payload=b"\x00\x11#carol/0|",
    )
    room.run(4.0, lambda now: loud("carol"))
    count = len(room.screens["bob"].packets)
    room.switch.receive_datagram("carol", bytes(late), room.now)
    room.deliver()
    assert len(room.screens["bob"].packets) == count


def test_a_keyframe_request_is_one_compound_rtcp_packet_from_the_stream_we_send() -> None:
    alice, bob = Camera("alice", wants_keyframe=False), Camera("bob")
    switch = VideoSwitch(random32=iter(range(11, 1_000_000, 7919)).__next__)
    room = Room.of(alice, bob, switch=switch)
    room.switch.receive_datagram("alice", alice.frame(0.0)[0], 0.0)
    (request,) = [m for m in room.switch.packets_to_send() if m.rtcp]
    assert request.participant == "alice"
    report, sdes, fir, pli = parse_rtcp(request.data)
    assert isinstance(report, ReceiverReport)
    assert isinstance(sdes, SourceDescription)
    assert isinstance(fir, FullIntraRequest)
    assert isinstance(pli, PictureLossIndication)
    assert fir.entries == (FirEntry(ssrc=alice.ssrc, sequence=1),)
    assert pli.media_ssrc == alice.ssrc
    assert report.ssrc == fir.sender_ssrc == pli.sender_ssrc == sdes.chunks[0].ssrc
    room.switch.receive_datagram("bob", bob.frame(0.0)[0], 0.0)
    (to_alice,) = [m for m in room.switch.packets_to_send() if not m.rtcp]
    assert RtpPacket.parse(to_alice.data).ssrc == report.ssrc


def test_a_receiver_is_shown_only_sources_in_its_codec() -> None:
    """The focus does not transcode: an H.264 receiver skips a VP8 speaker for the next in line."""
    alice, bob, carol = Camera("alice"), Camera("bob", codec=H264), Camera("carol", codec=H264)
    room = Room.of(alice, bob, carol)
    room.run(1.0)
    assert room.screens["bob"].sources() == ["carol"]
    assert room.screens["carol"].sources() == ["bob"]
    assert room.screens["alice"].sources() == []  # nobody else sends VP8
    assert_each_source_starts_with_a_keyframe(room.screens["bob"], H264)


def test_a_long_stream_goes_on_past_half_the_sequence_space() -> None:
    """The switch point is only a bound for late packets, not for a stream that runs for hours."""
    switch = VideoSwitch(random32=iter(range(11, 1_000_000, 7919)).__next__)
    for key in ("alice", "bob"):
        switch.add(key, mode=Mode.VIDEO, codec=VP8, feedback=KeyframeFeedback(), now=0.0)
    sent = 0
    for index in range(40_000):
        payload = b"\x10\x10" if index == 0 else b"\x00\x11"
        packet = RtpPacket(
            payload_type=96,
            sequence_number=(60_000 + index) & 0xFFFF,
            timestamp=index * 3000,
            ssrc=5,
            payload=payload,
        )
        switch.receive_datagram("alice", bytes(packet), index / 60)
        sent += sum(not m.rtcp for m in switch.packets_to_send())
    assert sent == 40_000


def test_a_reinvite_to_another_codec_stops_what_the_receiver_cannot_decode() -> None:
    alice, bob, carol = Camera("alice"), Camera("bob"), Camera("carol", codec=H264)
    room = Room.of(alice, bob, carol)
    room.run(1.0)
    assert room.switch.source_of("bob") == "alice"
    bob.codec = H264
    room.switch.update("bob", mode=Mode.VIDEO, codec=H264, feedback=bob.feedback, now=room.now)
    assert room.switch.source_of("bob") is None
    room.run(2.0)
    assert room.switch.source_of("bob") == "carol"
    after = [p for at, p in room.screens["bob"].packets if at > 1.0]
    assert {room.screens["bob"].origin(p) for p in after} == {"carol"}
    assert {p.payload_type for p in after} == {97}


def test_the_mixers_level_events_choose_the_speaker() -> None:
    """The glue the relay will run: the mixer's AudioLevelMeasured events into audio_level."""
    phones = [Phone(key, None, mode=Mode.VIDEO) for key in ("alice", "bob", "carol")]
    mixer = AudioMixer(random32=iter(range(7, 10_000, 97)).__next__)
    switch = VideoSwitch(random32=iter(range(3, 10_000, 89)).__next__)
    for phone in phones:
        mixer.add(phone.key, mode=phone.mode, codec=phone.codec, now=0.0, ssrc=phone.ssrc)
        switch.add(phone.key, mode=Mode.VIDEO, codec=VP8, feedback=KeyframeFeedback(), now=0.0)
    first_sound: list[float] = []
    changed_at: list[float] = []
    for step in range(40):  # 4 s in slices of 100 ms; carol talks from 1 s on
        if step == 10:
            phones[2].frequency = 1000.0
        run(mixer, phones, 0.1, start=step / 10)
        for measured in mixer.events():
            if isinstance(measured, AudioLevelMeasured):
                if measured.level < 127 and not first_sound:
                    first_sound.append(measured.at)
                switch.audio_level(measured.participant, measured.level, measured.at)
        end = (step + 1) / 10
        timer = switch.get_timer()
        if timer is not None and timer <= end + 1e-9:
            switch.handle_timer(timer)
        changed_at += [end for e in switch.events() if isinstance(e, TalkerChanged)]
    assert switch.speaker == "carol"
    assert first_sound[0] > 1.0
    assert changed_at == [pytest.approx(first_sound[0] + 1.5, abs=0.11)]


def test_a_source_lowered_to_watch_is_dropped_at_once() -> None:
    room = Room.of(Camera("alice"), Camera("bob"), Camera("carol"))
    room.run(1.0)
    room.switch.update("alice", mode=Mode.WATCH, codec=VP8, feedback=BOTH, now=room.now)
    assert room.switch.source_of("bob") is None
    room.run(2.0)
    assert room.switch.source_of("bob") == "carol"
    assert room.switch.source_of("alice") == "bob"
    assert room.screens["bob"].sources() == ["alice", "carol"]


def test_each_receiver_gets_sender_reports_on_its_stream() -> None:
    alice, bob = Camera("alice"), Camera("bob")
    switch = VideoSwitch(ntp_offset=1000.0, random32=iter(range(11, 1_000_000, 7919)).__next__)
    room = Room.of(alice, bob, switch=switch)
    room.run(13.0)
    screen = room.screens["bob"]
    first = screen.packets[0][0]
    times = [at for at, _ in bob.reports]
    assert times == pytest.approx([first + 2.5, first + 7.5, first + 12.5], abs=1 / FPS)
    for at, report in bob.reports:
        got = [p for t, p in screen.packets if t <= at]
        assert report.ssrc == got[0].ssrc
        assert report.packet_count == len(got)
        assert report.octet_count == sum(len(p.payload) for p in got)
        assert report.ntp_timestamp == ntp_timestamp(at + 1000.0)
        ahead = (report.rtp_timestamp - got[-1].timestamp) & 0xFFFFFFFF
        assert ahead <= CLOCK // FPS  # the last packet's time plus what passed since
