"""The N-1 mixer on a virtual clock: who hears whom, in which codec, through loss and change."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from media_phones import Phone, max_amplitude, run, share_with_tone, tone_amplitude

from vidim.focus.codecs import MIX_RATE, AudioEncoder, Pcm, codec_for
from vidim.focus.mixer import (
    AudioLevelMeasured,
    AudioMixer,
    MixerConfig,
    PacketRefused,
    SourceChanged,
)
from vidim.rtp import (
    Bye,
    ReceiverReport,
    RtpPacket,
    SenderReport,
    SourceDescription,
    parse_rtcp,
    seq_diff,
)
from vidim.vocabulary import Mode

TONES = {"alice": 440.0, "bob": 1000.0, "carol": 1700.0}


def conference(*phones: Phone, config: MixerConfig | None = None) -> AudioMixer:
    mixer = AudioMixer(config, random32=iter(range(7, 10_000, 97)).__next__)
    for phone in phones:
        mixer.add(phone.key, mode=phone.mode, codec=phone.codec, now=0.0, ssrc=phone.ssrc)
    return mixer


def assert_hears_others_not_itself(phones: list[Phone]) -> None:
    speakers = [p for p in phones if p.mode.sends_media and p.frequency is not None]
    for listener in phones:
        heard = listener.decoded()
        for speaker in speakers:
            assert speaker.frequency is not None
            if speaker is listener:
                assert max_amplitude(heard, speaker.frequency) < 300, listener.key
            else:
                share = share_with_tone(heard, speaker.frequency)
                assert share >= 0.9, (listener.key, speaker.key, share)


@pytest.mark.parametrize(
    ("codec", "rate"),
    [("pcmu", 16000), ("pcmu", 8000), ("pcma", 8000), ("g722", 16000), ("opus", 16000)],
)
def test_three_speakers_each_hear_the_other_two_and_not_themselves(codec: str, rate: int) -> None:
    pt = {"pcmu": 0, "pcma": 8, "g722": 9, "opus": 111}[codec]
    phones = [Phone(key, f, codec_name=codec, payload_type=pt) for key, f in TONES.items()]
    mixer = conference(*phones, config=MixerConfig(rate=rate))
    run(mixer, phones, 4.0)
    assert_hears_others_not_itself(phones)


def test_pcma_opus_and_pcmu_in_one_conference() -> None:
    phones = [
        Phone("alice", 440.0, codec_name="pcma", payload_type=8),
        Phone("bob", 1000.0, codec_name="opus", payload_type=96),
        Phone("carol", 1700.0, codec_name="pcmu", payload_type=0),
    ]
    mixer = conference(*phones)
    run(mixer, phones, 4.0)
    assert_hears_others_not_itself(phones)
    assert {p.payload_type for p in phones[1].received} == {96}
    assert {p.payload_type for p in phones[0].received} == {8}


def test_a_watch_participants_tone_reaches_nobody_but_it_hears_everyone() -> None:
    phones = [
        Phone("alice", 440.0),
        Phone("bob", 1000.0),
        Phone("walt", 2500.0, mode=Mode.WATCH),
        Phone("chad", 3100.0, mode=Mode.CHAT),
    ]
    mixer = conference(*phones)
    run(mixer, phones, 3.0)
    for phone in phones[:2]:
        assert max_amplitude(phone.decoded(), 2500.0) < 300
    walt = phones[2].decoded()
    assert share_with_tone(walt, 440.0) >= 0.9
    assert share_with_tone(walt, 1000.0) >= 0.9
    assert phones[3].received == []
    assert phones[3].rtcp == []
    assert mixer.reception("walt") is None


def test_each_receiver_gets_one_continuous_stream_of_its_own() -> None:
    phones = [Phone(key, f) for key, f in TONES.items()]
    mixer = conference(*phones, config=MixerConfig(record_delays=True))
    run(mixer, phones, 2.0)
    # On a perfect network a packet waits only for the next tick: 13 ms here.
    assert max(mixer.delays) == pytest.approx(0.013)
    ssrcs = set()
    for phone in phones:
        packets = phone.received
        assert len({p.ssrc for p in packets}) == 1
        ssrcs.add(packets[0].ssrc)
        assert packets[0].marker
        assert not any(p.marker for p in packets[1:])
        for before, after in itertools.pairwise(packets):
            assert seq_diff(after.sequence_number, before.sequence_number) == 1
            assert (after.timestamp - before.timestamp) & 0xFFFFFFFF == 160
        assert len(packets) == 100  # one every 20 ms
    assert len(ssrcs) == 3


def test_the_tick_is_every_20_ms_and_stops_with_the_last_participant() -> None:
    mixer = AudioMixer()
    assert mixer.get_timer() is None
    codec = codec_for("pcmu", 0)
    mixer.add("a", mode=Mode.AUDIO, codec=codec, now=10.0)
    assert mixer.get_timer() == pytest.approx(10.02)
    mixer.handle_timer(10.02)
    assert mixer.get_timer() == pytest.approx(10.04)
    mixer.handle_timer(10.085)  # three ticks due: one per call, the timer says the next
    assert mixer.get_timer() == pytest.approx(10.06)
    mixer.handle_timer(10.085)
    mixer.handle_timer(10.085)
    assert mixer.get_timer() == pytest.approx(10.10)
    mixer.handle_timer(10.085)  # nothing due: nothing done
    assert len([p for p in mixer.packets_to_send() if not p.rtcp]) == 4
    mixer.handle_timer(11.0)  # far behind: the missed ticks are skipped, not burst out
    assert mixer.ticks_late > 0
    assert len(mixer.packets_to_send()) <= 12
    mixer.remove("a")
    assert mixer.get_timer() is None


def lossy(rate: float, seed: int = 1):  # type: ignore[no-untyped-def]
    chance = random.Random(seed)

    def network(phone: Phone, packet: RtpPacket, now: float) -> list[tuple[RtpPacket, float]]:
        if phone.key == "alice" and chance.random() < rate:
            return []
        return [(packet, now)]

    return network


def test_loss_is_concealed_and_reported() -> None:
    phones = [Phone(key, f) for key, f in TONES.items()]
    mixer = conference(*phones)
    run(mixer, phones, 6.0, network=lossy(0.05))
    for listener in phones[1:]:
        assert share_with_tone(listener.decoded(), 440.0) >= 0.9
    stats, buffer = mixer.reception("alice")  # type: ignore[misc]
    assert 0 < buffer.lost == stats.expected - stats.received
    reports = [parse_rtcp(data) for data in phones[0].rtcp]
    sr = [packet for compound in reports for packet in compound if isinstance(packet, SenderReport)]
    assert sr
    assert sr[-1].reports[0].ssrc == phones[0].ssrc
    assert 0 < sr[-1].reports[0].packets_lost <= buffer.lost  # counted at the report
    assert sr[-1].reports[0].fraction_lost > 0


def reordering(phone: Phone, packet: RtpPacket, now: float) -> list[tuple[RtpPacket, float]]:
    """Alice's odd packets arrive 25 ms late: after the next one."""
    if phone.key == "alice" and packet.sequence_number % 2:
        return [(packet, now + 0.025)]
    return [(packet, now)]


def test_reordered_packets_are_put_back_in_order() -> None:
    phones = [Phone(key, f) for key, f in TONES.items()]
    mixer = conference(*phones)
    run(mixer, phones, 4.0, network=reordering)
    _, buffer = mixer.reception("alice")  # type: ignore[misc]
    assert buffer.lost == 0
    for listener in phones[1:]:
        assert share_with_tone(listener.decoded(), 440.0) >= 0.9


def jittery(seed: int = 3):  # type: ignore[no-untyped-def]
    chance = random.Random(seed)

    def network(phone: Phone, packet: RtpPacket, now: float) -> list[tuple[RtpPacket, float]]:
        return [(packet, now + chance.uniform(0, 0.03))]

    return network


def test_jitter_is_absorbed_and_measured() -> None:
    phones = [Phone(key, f) for key, f in TONES.items()]
    mixer = conference(*phones, config=MixerConfig(record_delays=True))
    run(mixer, phones, 6.0, network=jittery())
    assert_hears_others_not_itself(phones)
    stats, _ = mixer.reception("bob")  # type: ignore[misc]
    assert stats.jitter > 10  # 8 kHz units: 30 ms uniform jitter is ~10 ms mean difference
    delays = sorted(mixer.delays)
    assert delays[len(delays) * 99 // 100] < 0.08


@pytest.mark.parametrize(("stall", "skips"), [(0.045, False), (0.085, False), (0.3, True)])
def test_a_host_stall_costs_no_lasting_delay(stall: float, skips: bool) -> None:
    """The host runs nothing for ``stall`` seconds, every second.  Only the packet read
    before a stall waits through it; once the packets read and the ticks caught up, each
    packet again waits only for the next tick (13 ms), none lost, none kept as delay
    (a stall past ``max_lag``: the skipped ticks' frames are dropped)."""
    phones = [Phone(key, f) for key, f in TONES.items()]
    mixer = conference(*phones, config=MixerConfig(record_delays=True))
    stalls = [(second + 0.5, second + 0.5 + stall) for second in range(4)]
    run(mixer, phones, 4.0, stalls=stalls)
    waited = [delay for delay in mixer.delays if delay > 0.013 + 1e-9]
    assert len(waited) <= len(phones) * len(stalls)
    assert max(waited, default=0.0) <= stall + 0.013 + 1e-9
    assert (mixer.ticks_late > 0) is skips
    for key in TONES:
        _, buffer = mixer.reception(key)  # type: ignore[misc]
        assert (buffer.lost, buffer.target) == (0, 0)
        # the skipped ticks' frames, and the one of the late tick that ran after them
        assert mixer.ticks_late <= buffer.dropped <= mixer.ticks_late + skips * len(stalls)
    assert_hears_others_not_itself(phones)


def longest_silence(samples: Pcm) -> int:
    """The longest run of samples near zero (two tones of 6000 never are for two in a row)."""
    quiet = np.concatenate([[False], np.abs(samples) < 50, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    return int(np.max(edges[1::2] - edges[::2], initial=0))


def test_the_mix_rate_follows_the_members_and_a_change_is_heard_as_no_more_than_a_click() -> None:
    """8 kHz for G.711 phones, 16 kHz while an Opus phone is in, 8 kHz again when it
    leaves; the G.711 listeners' streams go on without a gap in sequence or time, and
    what they hear loses at most 5 ms to each change (the new resamplers' delay)."""
    phones = [Phone(key, f) for key, f in TONES.items()]
    mixer = conference(*phones)
    assert mixer.rate == 8000
    end = run(mixer, phones, 1.5)
    dave = Phone("dave", 2500.0, codec_name="opus", payload_type=111)
    mixer.add("dave", mode=dave.mode, codec=dave.codec, now=end)
    assert mixer.rate == 16000
    end = run(mixer, [*phones, dave], 1.5, start=end + 0.013)
    assert share_with_tone(dave.decoded(), 440.0) >= 0.9  # the Opus phone hears them
    mixer.remove("dave")
    mixer.packets_to_send()  # dave's BYE
    assert mixer.rate == 8000
    run(mixer, phones, 1.5, start=end + 0.013)
    for listener in phones:
        packets = listener.received
        assert len(packets) == 226  # 4.5 s and the 13 ms between runs
        for before, after in itertools.pairwise(packets):
            assert seq_diff(after.sequence_number, before.sequence_number) == 1
            assert (after.timestamp - before.timestamp) & 0xFFFFFFFF == 160
        heard = listener.decoded()
        assert longest_silence(heard[MIX_RATE:]) < MIX_RATE * 0.005
        for speaker in phones:
            if speaker is not listener:
                assert share_with_tone(heard, speaker.frequency or 0) == 1.0


def test_a_fixed_rate_or_a_member_without_audio_does_not_move_the_rate() -> None:
    opus = codec_for("opus", 111)
    fixed = conference(Phone("alice", 440.0), config=MixerConfig(rate=8000))
    fixed.add("dave", mode=Mode.AUDIO, codec=opus, now=0.0)
    assert fixed.rate == 8000
    auto = conference(Phone("alice", 440.0))
    auto.add("chad", mode=Mode.CHAT, codec=opus, now=0.0)  # no media: no say in the rate
    assert auto.rate == 8000
    auto.update("chad", mode=Mode.WATCH, codec=opus, now=0.0)  # listens: needs 16 kHz
    assert auto.rate == 16000


def test_an_ssrc_change_is_followed() -> None:
    alice = Phone("alice", 440.0)
    phones = [alice, Phone("bob", 1000.0), Phone("carol", 1700.0)]
    mixer = conference(*phones)
    end = run(mixer, phones, 2.0)
    events = list(mixer.events())
    assert not any(isinstance(e, SourceChanged) for e in events)
    old_ssrc = alice.ssrc
    alice.ssrc, alice.sequence, alice.timestamp = 0xABCDEF, 40000, 123456789  # a re-INVITE
    alice.encoder = AudioEncoder(alice.codec)
    start = len(phones[1].received)
    run(mixer, phones, 2.0, start=end + 0.013)
    changed = [e for e in mixer.events() if isinstance(e, SourceChanged)]
    assert changed == [SourceChanged(participant="alice", old_ssrc=old_ssrc, new_ssrc=0xABCDEF)]
    tail = Phone("bob-tail", None)
    tail.received = phones[1].received[start:]
    assert share_with_tone(tail.decoded(), 440.0) >= 0.9


def test_dtx_silence_is_not_loss() -> None:
    phones = [Phone(key, f) for key, f in TONES.items()]
    mixer = conference(*phones)

    def dtx(phone: Phone, packet: RtpPacket, now: float) -> list[tuple[RtpPacket, float]]:
        if phone.key == "alice" and 1.0 <= now < 2.0:
            phone.sequence -= 1  # DTX: nothing sent, the sequence does not move
            return []
        return [(packet, now)]

    run(mixer, phones, 4.0, network=dtx)
    _, buffer = mixer.reception("alice")  # type: ignore[misc]
    assert buffer.lost == 0


def test_audio_levels_are_reported_for_speakers_with_sound() -> None:
    phones = [Phone("alice", 440.0), Phone("bob", None), Phone("carol", 1700.0)]
    mixer = conference(*phones)
    run(mixer, phones, 1.0)
    levels = [e for e in mixer.events() if isinstance(e, AudioLevelMeasured)]
    by_speaker = {e.participant for e in levels}
    assert by_speaker == {"alice", "carol"}
    loud = [e.level for e in levels if e.participant == "alice"][-1]
    assert 10 <= loud <= 20  # a 6000-amplitude sine: about -18 dBov


def test_rtcp_sender_reports_and_bye() -> None:
    phones = [Phone(key, f) for key, f in TONES.items()]
    mixer = conference(*phones)
    run(mixer, phones, 6.0)
    compound = parse_rtcp(phones[1].rtcp[0])
    sr, sdes = compound[0], compound[1]
    assert isinstance(sr, SenderReport)
    assert isinstance(sdes, SourceDescription)
    assert sr.ssrc == phones[1].received[0].ssrc
    assert sr.packet_count > 100
    assert sr.reports[0].ssrc == phones[1].ssrc
    assert sr.reports[0].packets_lost == 0
    mixer.remove("bob")
    bye = parse_rtcp(mixer.packets_to_send()[0].data)
    assert isinstance(bye[0], ReceiverReport)
    assert isinstance(bye[-1], Bye)
    assert bye[-1].ssrcs == (sr.ssrc,)


def test_a_malformed_datagram_is_refused_with_a_reason() -> None:
    mixer = conference(Phone("alice", 440.0))
    mixer.receive_datagram("alice", b"\x40\x00\x00", 0.01)
    mixer.receive_datagram("alice", b"\x80\xc8\x00\x09", 0.01)
    events = list(mixer.events())
    assert [type(e) for e in events] == [PacketRefused, PacketRefused]
    assert "truncated" in events[0].reason  # type: ignore[attr-defined]
    assert "exceeds" in events[1].reason  # type: ignore[attr-defined]


def test_a_mode_change_to_watch_takes_the_voice_out_of_the_mix() -> None:
    phones = [Phone(key, f) for key, f in TONES.items()]
    mixer = conference(*phones)
    end = run(mixer, phones, 1.0)
    mixer.update("alice", mode=Mode.WATCH, codec=phones[0].codec, now=end)
    phones[0].mode = Mode.WATCH
    start = len(phones[1].received)
    run(mixer, phones, 2.0, start=end + 0.013)
    tail = Phone("tail", None)
    tail.received = phones[1].received[start + 5 :]
    assert max_amplitude(tail.decoded(), 440.0) < 300


# -- packets of other lengths than the mixer's 20 ms -----------------------------------


def levels_per_tick(listener: Phone, frequency: float, skip_seconds: float = 0.2) -> list[float]:
    """The tone's amplitude in each 20 ms of what the listener heard (after ``skip_seconds``)."""
    heard = listener.decoded()
    start = int(skip_seconds * MIX_RATE)
    frame = MIX_RATE // 50
    return [
        tone_amplitude(heard[i : i + frame], frequency)
        for i in range(start, len(heard) - frame + 1, frame)
    ]


@pytest.mark.parametrize(
    ("codec", "ptime"),
    [
        ("pcmu", 10),
        ("pcma", 10),
        ("opus", 10),
        ("pcmu", 30),
        ("pcmu", 60),
        ("opus", 40),
        ("opus", 60),
    ],
)
def test_packets_of_any_length_are_heard_at_full_level_in_every_tick(
    codec: str, ptime: int
) -> None:
    """A speaker's 1000 Hz tone (20 whole periods a tick) reaches the listener at the
    level a 20 ms phone's does, in every tick: no tick padded with silence."""
    pt = {"pcmu": 0, "pcma": 8, "opus": 111}[codec]
    reference = [Phone("alice", 1000.0, codec_name=codec, payload_type=pt), Phone("bob", None)]
    run(conference(*reference), reference, 2.0)
    full = min(levels_per_tick(reference[1], 1000.0))
    assert full > 5000  # a 6000-amplitude tone, through the codecs
    alice = Phone("alice", 1000.0, codec_name=codec, payload_type=pt, ptime=ptime)
    phones = [alice, Phone("bob", None)]
    mixer = conference(*phones, config=MixerConfig(record_delays=True))
    run(mixer, phones, 2.0)
    levels = levels_per_tick(phones[1], 1000.0)
    assert min(levels) >= 0.95 * full, (min(levels), full)
    _, buffer = mixer.reception("alice")  # type: ignore[misc]
    assert buffer.step == alice.codec.clock_rate * ptime // 1000
    assert (buffer.lost, buffer.dropped) == (0, 0)
    # A packet waits for the first tick that plays it: at most its own length more.
    assert max(mixer.delays) <= 0.013 + ptime / 1000 + 1e-9


def test_speakers_on_10_and_20_ms_packets_in_one_conference() -> None:
    phones = [
        Phone("alice", 440.0, codec_name="pcmu", payload_type=0, ptime=10),
        Phone("bob", 1000.0, codec_name="opus", payload_type=111, ptime=10),
        Phone("carol", 1700.0, codec_name="pcma", payload_type=8),
        Phone("dave", 2500.0, codec_name="opus", payload_type=111),
    ]
    mixer = conference(*phones)
    run(mixer, phones, 3.0)
    assert_hears_others_not_itself(phones)
    for listener in phones[2:]:  # the 10 ms speakers at full level (all four play 6000)
        for speaker in phones[:2]:
            assert speaker.frequency is not None
            assert min(levels_per_tick(listener, speaker.frequency, 1.0)) > 4000


def test_a_lost_10_ms_packet_is_concealed() -> None:
    """One packet of alice's lost: the tick it falls in repeats the last frame (full
    gain), so every tick still carries her tone, and one loss is counted."""
    phones = [Phone("alice", 1000.0, ptime=10), Phone("bob", None)]
    mixer = conference(*phones)

    def lose_one(phone: Phone, packet: RtpPacket, now: float) -> list[tuple[RtpPacket, float]]:
        return [] if phone.key == "alice" and packet.sequence_number == 1100 else [(packet, now)]

    run(mixer, phones, 2.0, network=lose_one)
    stats, buffer = mixer.reception("alice")  # type: ignore[misc]
    assert buffer.lost == 1 == stats.expected - stats.received
    assert min(levels_per_tick(phones[1], 1000.0)) > 2500


def test_random_loss_of_10_ms_packets_is_concealed() -> None:
    phones = [Phone(key, f, ptime=10) for key, f in TONES.items()]
    mixer = conference(*phones)
    run(mixer, phones, 6.0, network=lossy(0.05))
    for listener in phones[1:]:
        assert share_with_tone(listener.decoded(), 440.0) >= 0.9
    stats, buffer = mixer.reception("alice")  # type: ignore[misc]
    assert 0 < buffer.lost == stats.expected - stats.received


def test_reordered_10_ms_packets_are_put_back_in_order() -> None:
    """Alice's odd packets arrive 25 ms late: after the two next ones, and past a tick."""
    phones = [Phone("alice", 1000.0, ptime=10), Phone("bob", None)]
    mixer = conference(*phones)

    def reorder(phone: Phone, packet: RtpPacket, now: float) -> list[tuple[RtpPacket, float]]:
        late = phone.key == "alice" and packet.sequence_number % 2
        return [(packet, now + 0.025 if late else now)]

    run(mixer, phones, 4.0, network=reorder)
    _, buffer = mixer.reception("alice")  # type: ignore[misc]
    assert buffer.lost == 0
    assert buffer.target >= 1  # a reserve for the lateness seen
    assert min(levels_per_tick(phones[1], 1000.0, 1.0)) > 5000
