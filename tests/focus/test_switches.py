"""SwitchBank: the conferences' video switches kept in step with the plan, on a virtual clock.

The switch itself is tested in tests/media/test_video.py; here, what the bank
adds: the plan's members by focus port, audio levels routed to the right
conference, ``watch`` and held streams enforced on the wire, RTCP on port + 1.
"""

from __future__ import annotations

import itertools

from vidim.focus import ParticipantMedia, StreamInfo, forwarding_plan
from vidim.focus.keyframes import KeyframeFeedback
from vidim.focus.media import SwitchedVideo
from vidim.focus.switches import SwitchBank
from vidim.focus.video import PictureFastUpdateWanted, TalkerChanged, VideoSourceChanged
from vidim.rtp import FullIntraRequest, PictureLossIndication, RtpPacket, is_rtcp, parse_rtcp
from vidim.vocabulary import Mode

CONF = "sip:conf-1@focus"
OTHER = "sip:conf-2@focus"
FRAME = 1 / 30
BOTH = KeyframeFeedback(pli=True, fir=True)
LOUD, QUIET = 20, 127


def video(local: int, *, feedback: KeyframeFeedback = BOTH, pt: int = 96, **kw: bool) -> StreamInfo:
    return StreamInfo("video", local, "127.0.0.1", local + 1000, local + 1001,
                      payload_types=(("vp8/90000/1", pt),), feedback=feedback, **kw)  # fmt: skip


def audio(local: int) -> StreamInfo:
    return StreamInfo("audio", local, "127.0.0.1", local + 1000, local + 1001,
                      payload_types=(("pcmu/8000/1", 0),))  # fmt: skip


def switches(
    *people: tuple[str, Mode, tuple[StreamInfo, ...]], conference: str = CONF
) -> tuple[SwitchedVideo, ...]:
    plan = forwarding_plan(
        (ParticipantMedia(uri, mode, streams) for uri, mode, streams in people),
        conference=conference,
    )
    return plan.switches


def vp8(who: int, n: int, *, key: bool, pt: int = 96) -> bytes:
    """A one-packet VP8 frame (RFC 7741: S=1, partition 0; P bit 0 on a key frame) with a tag."""
    payload = bytes([0x10, 0x00 if key else 0x01, who, n & 0xFF])
    return bytes(
        RtpPacket(payload_type=pt, sequence_number=1000 + n, timestamp=n * 3000,
                  ssrc=0x1000 + who, payload=payload, marker=True)
    )  # fmt: skip


def shown(sent: list[tuple[int, bytes]], port: int) -> list[int]:
    """Whose frames (the tag) reached the viewer on ``port``, in order."""
    return [RtpPacket.parse(d).payload[2] for p, d in sent if p == port and not is_rtcp(d)]


def rtcp_to(sent: list[tuple[int, bytes]], port: int) -> list[object]:
    return [packet for p, d in sent if p == port + 1 for packet in parse_rtcp(d)]


def b_talks_for_three_seconds(bank: SwitchBank) -> None:
    """b (focus port 112) sends video with one keyframe, then none unasked, and talks."""
    for n in range(90):
        now = n * FRAME
        bank.receive_datagram(112, vp8(2, n, key=n == 0), now)
        bank.audio_level(CONF, "sip:b@x", LOUD, now)
        if (due := bank.get_timer()) is not None and due <= now:
            bank.handle_timer(now)


def test_the_viewer_is_switched_to_the_talker_at_its_keyframe_after_a_fir_and_pli() -> None:
    ids = itertools.count(5000)
    bank = SwitchBank(random32=lambda: next(ids))
    bank.apply(switches(("sip:a@x", Mode.VIDEO, (audio(100), video(102))),
                        ("sip:b@x", Mode.VIDEO, (audio(110), video(112))),
                        ("sip:w@x", Mode.WATCH, (audio(120), video(122, sends=False)))), 0.0)  # fmt: skip
    assert {102, 103, 112, 113, 122, 123} == {p for p in range(100, 130) if p in bank}
    sent: list[tuple[int, bytes]] = []
    events = []
    b_asked = False
    for n in range(150):  # five seconds; b's keyframes only when asked
        now = n * FRAME
        bank.receive_datagram(102, vp8(1, n, key=n % 30 == 0), now)
        bank.receive_datagram(112, vp8(2, n, key=n == 0 or b_asked), now)
        bank.receive_datagram(122, vp8(3, n, key=True), now)  # watch: dropped whatever it is
        if n >= 30:  # from the first second on, b talks
            bank.audio_level(CONF, "sip:b@x", LOUD, now)
            bank.audio_level(CONF, "sip:a@x", QUIET, now)
        if (due := bank.get_timer()) is not None and due <= now:
            bank.handle_timer(now)
        out = bank.datagrams_to_send()
        b_asked = any(isinstance(p, FullIntraRequest) for p in rtcp_to(out, 112))
        sent += out
        events += [item.event for item in bank.events()]
    w_saw = shown(sent, 122)
    assert all(3 not in shown(sent, port) for port in (102, 112, 122))
    assert (w_saw[0], w_saw[-1]) == (1, 2)  # a, then the talker b
    first_b = len(w_saw) - w_saw[::-1].index(1)  # after a's last frame, only b's
    assert set(w_saw[first_b:]) == {2}
    assert TalkerChanged(participant="sip:b@x", previous="sip:a@x") in events
    # b was asked for a keyframe (FIR and PLI on its RTCP port) before w was switched to it.
    asked = [
        p for p in rtcp_to(sent, 112) if isinstance(p, FullIntraRequest | PictureLossIndication)
    ]
    assert {type(p) for p in asked} == {FullIntraRequest, PictureLossIndication}
    switched = events.index(VideoSourceChanged(participant="sip:w@x", source="sip:b@x",
                                               previous="sip:a@x"))  # fmt: skip
    assert any(type(e).__name__ == "KeyframeRequested" for e in events[:switched])
    # The speaker sees the previous speaker.
    assert (shown(sent, 112)[-1], shown(sent, 102)[-1]) == (1, 2)


def test_levels_reach_only_their_own_conference() -> None:
    bank = SwitchBank()
    bank.apply(switches(("sip:a@x", Mode.VIDEO, (video(102),)),
                        ("sip:b@x", Mode.VIDEO, (video(112),)))
               + switches(("sip:a@x", Mode.VIDEO, (video(202),)),
                          ("sip:b@x", Mode.VIDEO, (video(212),)), conference=OTHER), 0.0)  # fmt: skip
    for n in range(60):
        bank.audio_level(OTHER, "sip:b@x", LOUD, n * FRAME)
        bank.audio_level(OTHER, "sip:a@x", QUIET, n * FRAME)
    changed = [item for item in bank.events() if isinstance(item.event, TalkerChanged)]
    assert [(i.conference, i.event.participant) for i in changed] == [(OTHER, "sip:b@x")]
    speakers = [s.speaker if (s := bank.switch(c)) else None for c in (CONF, OTHER)]
    assert speakers == ["sip:a@x", "sip:b@x"]
    bank.audio_level("sip:gone@focus", "sip:b@x", LOUD, 3.0)  # no such conference: ignored


def test_a_viewer_that_holds_gets_no_video_and_a_plan_without_the_conference_ends_it() -> None:
    bank = SwitchBank()
    bank.apply(switches(("sip:a@x", Mode.VIDEO, (video(102),)),
                        ("sip:b@x", Mode.VIDEO, (video(112, receives=False),))), 0.0)  # fmt: skip
    for n in range(10):
        bank.receive_datagram(102, vp8(1, n, key=True), n * FRAME)
    sent = bank.datagrams_to_send()
    assert shown(sent, 112) == []  # b put its video on hold: nothing sent to it
    switch = bank.switch(CONF)
    assert switch is not None
    assert bank.get_timer_of(103) == switch.get_timer() == 2.5  # the first report to a
    assert bank.get_timer_of(999) is None
    bank.apply((), 1.0)
    assert (bank.switch(CONF), 102 in bank) == (None, False)
    bank.receive_datagram(102, vp8(1, 11, key=True), 1.1)  # a stale port: dropped
    assert bank.datagrams_to_send() == []


def test_without_rtcp_feedback_the_keyframe_is_asked_for_by_sip_info() -> None:
    bank = SwitchBank()
    none = KeyframeFeedback()
    bank.apply(switches(("sip:a@x", Mode.VIDEO, (video(102, feedback=none),)),
                        ("sip:b@x", Mode.VIDEO, (video(112, feedback=none),)),
                        ("sip:w@x", Mode.WATCH, (video(122, sends=False),))), 0.0)  # fmt: skip
    b_talks_for_three_seconds(bank)
    wanted = [i.event for i in bank.events() if isinstance(i.event, PictureFastUpdateWanted)]
    assert [w.participant for w in wanted[:1]] == ["sip:b@x"]
    assert rtcp_to(bank.datagrams_to_send(), 112) == []  # no RTCP request: it negotiated none


def test_a_re_invite_to_watch_stops_the_participants_video_reaching_anyone() -> None:
    bank = SwitchBank()
    a, b = ("sip:a@x", Mode.VIDEO, (video(102),)), ("sip:b@x", Mode.VIDEO, (video(112),))
    bank.apply(switches(a, b), 0.0)
    bank.receive_datagram(102, vp8(1, 0, key=True), 0.0)
    assert shown(bank.datagrams_to_send(), 112) == [1]
    bank.apply(switches(("sip:a@x", Mode.WATCH, (video(102),)), b), 0.1)
    bank.receive_datagram(102, vp8(1, 1, key=True), 0.2)
    assert shown(bank.datagrams_to_send(), 112) == []


def test_a_muxing_source_gets_its_keyframe_request_on_its_rtp_port() -> None:
    """RFC 5761: with a=rtcp-mux answered, RTCP to a member leaves from its RTP port."""
    bank = SwitchBank()
    bank.apply(switches(("sip:a@x", Mode.VIDEO, (video(102),)),
                        ("sip:b@x", Mode.VIDEO, (video(112, rtcp_mux=True),)),
                        ("sip:w@x", Mode.WATCH, (video(122, sends=False),))), 0.0)  # fmt: skip
    b_talks_for_three_seconds(bank)
    sent = bank.datagrams_to_send()
    asked = [p for port, d in sent if port == 112 and is_rtcp(d) for p in parse_rtcp(d)]
    assert any(isinstance(p, PictureLossIndication) for p in asked)
    assert not [d for port, d in sent if port == 113]  # nothing on its port + 1


def test_a_viewers_sip_info_asks_the_source_it_watches() -> None:
    """KeyframeWanted (a phone's INFO picture_fast_update) is passed on as a PLI would be."""
    bank = SwitchBank()
    bank.apply(switches(("sip:a@x", Mode.VIDEO, (video(102),)),
                        ("sip:w@x", Mode.WATCH, (video(122, sends=False),))), 0.0)  # fmt: skip
    bank.receive_datagram(102, vp8(1, 0, key=True), 0.0)  # w now sees a
    bank.datagrams_to_send()
    bank.keyframe_wanted(CONF, "sip:w@x", 2.0)
    bank.keyframe_wanted(CONF, "sip:w@x", 2.5)  # within keyframe_retry: not again
    bank.keyframe_wanted("sip:gone@focus", "sip:w@x", 2.5)  # no such conference: ignored
    asked = [p for p in rtcp_to(bank.datagrams_to_send(), 102) if isinstance(p, FullIntraRequest)]
    assert len(asked) == 1
