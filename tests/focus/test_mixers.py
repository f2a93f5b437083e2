"""MixerBank: the conferences' mixers kept in step with the plan, on a virtual clock."""

from __future__ import annotations

import itertools

from audio_packets import is_loud, tone_packet

from vidim.focus import ParticipantMedia, StreamInfo, forwarding_plan
from vidim.focus.media import AudioMix
from vidim.focus.mixer import AudioLevelMeasured
from vidim.focus.mixers import MixerBank
from vidim.rtp import Bye, RtpPacket, build_rtcp, is_rtcp, parse_rtcp
from vidim.vocabulary import Mode

CONF = "sip:conf-1@focus"
TICK = 0.02


def audio(local: int, *, codec: str = "pcmu/8000/1", pt: int = 0, **kw: bool) -> StreamInfo:
    rtcp = local + 1000 if kw.get("rtcp_mux") else local + 1001
    return StreamInfo("audio", local, "127.0.0.1", local + 1000, rtcp,
                      payload_types=((codec, pt), ("telephone-event/8000/1", 101)), **kw)  # fmt: skip


def mixes(*people: tuple[str, Mode, StreamInfo]) -> tuple[AudioMix, ...]:
    plan = forwarding_plan(
        (ParticipantMedia(uri, mode, (stream,)) for uri, mode, stream in people), conference=CONF
    )
    return plan.mixes


def counter() -> itertools.count[int]:
    return itertools.count(1000)


def run(
    bank: MixerBank, speakers: dict[int, int], ticks: int, start: float = 0.0
) -> list[tuple[int, bytes]]:
    """``ticks`` ticks, each speaker (focus port -> ssrc) sending one tone packet per tick."""
    sent: list[tuple[int, bytes]] = []
    for n in range(ticks):
        now = start + n * TICK
        for port, ssrc in speakers.items():
            bank.receive_datagram(port, tone_packet(n, ssrc=ssrc), now)
        bank.handle_timer(now + TICK)
        sent += bank.datagrams_to_send()
    return sent


def heard(sent: list[tuple[int, bytes]], port: int) -> list[bytes]:
    return [data for p, data in sent if p == port and not is_rtcp(data)]


def test_each_listener_gets_the_others_never_itself_and_watch_feeds_nobody() -> None:
    ids = counter()
    bank = MixerBank(random32=lambda: next(ids))
    bank.apply(mixes(("sip:a@x", Mode.AUDIO, audio(100)),
                     ("sip:b@x", Mode.AUDIO, audio(110)),
                     ("sip:w@x", Mode.WATCH, audio(120, sends=False))), 0.0)  # fmt: skip
    assert bank.get_timer() == TICK
    sent = run(bank, {100: 0xA, 120: 0xDEAD}, 50)  # a speaks; the watcher's tone is dropped
    assert not any(is_loud(d) for d in heard(sent, 100))  # a never hears itself (nor w)
    assert sum(is_loud(d) for d in heard(sent, 110)) > 40  # b hears a
    assert sum(is_loud(d) for d in heard(sent, 120)) > 40  # w hears a
    # One stream per listener, its own SSRC, consecutive sequence numbers.
    for port in (100, 110, 120):
        packets = [RtpPacket.parse(d) for d in heard(sent, port)]
        assert len({p.ssrc for p in packets}) == 1
        seqs = [p.sequence_number for p in packets]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
    mixer = bank.mixer(CONF)
    assert mixer is not None
    assert mixer.reception("sip:w@x") is None


def test_rtcp_leaves_from_port_plus_one_and_a_member_gone_gets_a_bye() -> None:
    bank = MixerBank()
    people = (("sip:a@x", Mode.AUDIO, audio(100)), ("sip:b@x", Mode.AUDIO, audio(110)))
    bank.apply(mixes(*people), 0.0)
    sent = run(bank, {100: 0xA}, 200)  # 4 s: the first reports at 2.5 s
    reports = [(p, d) for p, d in sent if is_rtcp(d)]
    assert {p for p, _ in reports} == {101, 111}
    bank.apply(mixes(people[0]), 4.0)
    [(port, bye)] = bank.datagrams_to_send()
    assert port == 111
    assert any(isinstance(p, Bye) for p in parse_rtcp(bye))
    bank.apply((), 4.0)
    assert bank.mixer(CONF) is None
    assert bank.get_timer() is None


def test_a_muxing_member_gets_and_sends_rtcp_on_its_rtp_port() -> None:
    """RFC 5761: a's answer had a=rtcp-mux, b's did not."""
    bank = MixerBank()
    a = ("sip:a@x", Mode.AUDIO, audio(100, rtcp_mux=True))
    b = ("sip:b@x", Mode.AUDIO, audio(110))
    (mix,) = mixes(a, b)
    assert [(m.rtcp_mux, m.rtcp_port) for m in mix.members] == [(True, 100), (False, 111)]
    bank.apply([mix], 0.0)
    sent = run(bank, {100: 0xA, 110: 0xB}, 200)  # 4 s: reports from 2.5 s
    assert {p for p, d in sent if is_rtcp(d)} == {100, 111}
    assert {p for p, d in sent if not is_rtcp(d)} == {100, 110}
    mixer = bank.mixer(CONF)
    assert mixer is not None
    assert mixer.reception("sip:a@x") is not None
    # a's RTCP arrives on its RTP port: read as RTCP (its BYE ends its input), not as audio.
    bank.receive_datagram(100, build_rtcp([Bye(ssrcs=(0xA,))]), 4.0)
    assert mixer.reception("sip:a@x") is None
    assert mixer.reception("sip:b@x") is not None
    # A re-INVITE without mux moves a's RTCP back to the port + 1; the member's BYE leaves there.
    bank.apply(mixes(("sip:a@x", Mode.AUDIO, audio(100)), b), 4.0)
    bank.apply(mixes(b), 4.0)
    [(port, bye)] = bank.datagrams_to_send()
    assert port == 101
    assert any(isinstance(p, Bye) for p in parse_rtcp(bye))


def test_a_listener_on_hold_gets_nothing_and_levels_name_the_conference() -> None:
    bank = MixerBank()
    bank.apply(mixes(("sip:a@x", Mode.AUDIO, audio(100)),
                     ("sip:b@x", Mode.AUDIO, audio(110, receives=False))), 0.0)  # fmt: skip
    sent = run(bank, {100: 0xA}, 20)
    assert heard(sent, 110) == []
    levels = [e for e in bank.events() if isinstance(e.event, AudioLevelMeasured)]
    assert levels
    assert {(e.conference, e.event.participant) for e in levels} == {(CONF, "sip:a@x")}


def test_transcoding_a_pcma_listener_gets_pcma() -> None:
    bank = MixerBank()
    bank.apply(mixes(("sip:a@x", Mode.AUDIO, audio(100)),
                     ("sip:b@x", Mode.AUDIO, audio(110, codec="pcma/8000/1", pt=8))), 0.0)  # fmt: skip
    sent = run(bank, {100: 0xA}, 10)
    assert {RtpPacket.parse(d).payload_type for d in heard(sent, 110)} == {8}
    assert {RtpPacket.parse(d).payload_type for d in heard(sent, 100)} == {0}


def test_a_codec_change_by_reinvite_restarts_that_stream() -> None:
    ids = counter()
    bank = MixerBank(random32=lambda: next(ids))
    a = ("sip:a@x", Mode.AUDIO, audio(100))
    bank.apply(mixes(a, ("sip:b@x", Mode.AUDIO, audio(110))), 0.0)
    first = {RtpPacket.parse(d).ssrc for d in heard(run(bank, {}, 3), 110)}
    bank.apply(mixes(a, ("sip:b@x", Mode.AUDIO, audio(110, codec="pcma/8000/1", pt=8))), 0.1)
    after = bank.datagrams_to_send()
    assert any(p == 111 and any(isinstance(x, Bye) for x in parse_rtcp(d)) for p, d in after)
    second = heard(run(bank, {}, 3, start=0.1), 110)
    assert {RtpPacket.parse(d).payload_type for d in second} == {8}
    assert {RtpPacket.parse(d).ssrc for d in second}.isdisjoint(first)


def test_each_conference_mixes_at_the_rate_its_members_need() -> None:
    """The daemon's bank: a G.711 conference at 8 kHz, at 16 kHz while a G.722 phone is
    in (b re-INVITEs to G.722, then back); c hears a throughout, on one stream."""
    ids = counter()
    bank = MixerBank(random32=lambda: next(ids))
    a, b = ("sip:a@x", Mode.AUDIO, audio(100)), ("sip:b@x", Mode.AUDIO, audio(110))
    c = ("sip:c@x", Mode.AUDIO, audio(120))
    wideband = ("sip:b@x", Mode.AUDIO, audio(110, codec="g722/8000/1", pt=9))
    plans = {0: (a, b, c), 10: (a, wideband, c), 20: (a, b, c)}
    rates, sent = [], []
    for n in range(30):
        now = n * TICK
        if n in plans:
            bank.apply(mixes(*plans[n]), now)
            mixer = bank.mixer(CONF)
            assert mixer is not None
            rates.append(mixer.rate)
        bank.receive_datagram(100, tone_packet(n, ssrc=0xA), now)
        bank.handle_timer(now + TICK)
        sent += bank.datagrams_to_send()
    assert rates == [8000, 16000, 8000]
    to_b = [RtpPacket.parse(d) for d in heard(sent, 110)]
    assert [pt for pt, _ in itertools.groupby(p.payload_type for p in to_b)] == [0, 9, 0]
    to_c = heard(sent, 120)
    assert all(is_loud(d) for d in to_c)
    seqs = [RtpPacket.parse(d).sequence_number for d in to_c]
    assert len({RtpPacket.parse(d).ssrc for d in to_c}) == 1  # not restarted for the rate
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
    assert len(seqs) >= 29


def test_datagrams_on_unknown_ports_are_ignored() -> None:
    bank = MixerBank()
    bank.receive_datagram(5000, tone_packet(0, ssrc=1), 0.0)
    assert bank.datagrams_to_send() == []
    assert list(bank.events()) == []


def test_the_plan_mixes_exactly_the_codecs_the_mixer_has() -> None:
    from vidim.focus.codecs import CODECS, FRAME_MS
    from vidim.focus.media import MIXED_CODECS
    from vidim.focus.negotiation import MIXER_AUDIO_CODECS, MIXER_PTIME

    assert MIXED_CODECS == CODECS
    assert {codec.name.lower() for codec in MIXER_AUDIO_CODECS} == CODECS
    assert MIXER_PTIME == FRAME_MS  # what the answers say is what the mixer sends
