"""The forwarding plan (pure data) and the port pool."""

from __future__ import annotations

import itertools

import pytest
from focus_peers import baresip_offer, pjsua2_offer
from hypothesis import given, settings
from hypothesis import strategies as st

from vidim.focus import (
    ForwardingPlan,
    ParticipantMedia,
    PortPool,
    PortsExhaustedError,
    StreamInfo,
    forwarding_plan,
    lowest_free,
    streams_from_sdp,
)
from vidim.focus.keyframes import NO_FEEDBACK, KeyframeFeedback
from vidim.focus.media import Destination, focus_rtcp_port
from vidim.rtp import Bye, build_rtcp
from vidim.sdp import build_answer, parse_media
from vidim.vocabulary import Mode


def stream(kind: str, local: int, remote: int, **kw: object) -> StreamInfo:
    rtcp = remote if kw.get("rtcp_mux") else remote + 1
    return StreamInfo(kind, local, "127.0.0.1", remote, rtcp, **kw)  # type: ignore[arg-type]


def member(uri: str, mode: Mode, base: int, remote: int) -> ParticipantMedia:
    streams = [stream("audio", base, remote)] if mode.has_audio else []
    if mode.has_video:
        streams.append(stream("video", base + 2, remote + 2))
    return ParticipantMedia(uri, mode, tuple(streams))


def test_plan_for_one_of_each_mode() -> None:
    plan = forwarding_plan(
        [
            member("sip:v@x", Mode.VIDEO, 100, 1000),
            member("sip:a@x", Mode.AUDIO, 110, 2000),
            member("sip:w@x", Mode.WATCH, 120, 3000),
        ]
    )
    routes = plan.as_dict()
    assert sorted(routes) == [100, 101, 102, 103, 110, 111, 120, 121, 122, 123]
    assert [(d.via_port, d.port) for d in routes[100].destinations] == [(110, 2000), (120, 3000)]
    assert [(d.via_port, d.port) for d in routes[101].destinations] == [(111, 2001), (121, 3001)]
    assert [(d.via_port, d.port) for d in routes[102].destinations] == [(122, 3002)]
    assert [(d.via_port, d.port) for d in routes[110].destinations] == [(100, 1000), (120, 3000)]
    assert all(not routes[p].destinations for p in (120, 121, 122, 123))
    assert routes[101].rtcp
    assert not routes[100].rtcp


def test_payload_types_are_mapped_between_participants() -> None:
    one = StreamInfo(
        "audio", 100, "h", 1, 2, payload_types=(("pcmu/8000/1", 0), ("telephone-event/8000/1", 101))
    )
    two = StreamInfo(
        "audio", 110, "h", 3, 4, payload_types=(("pcmu/8000/1", 0), ("telephone-event/8000/1", 121))
    )
    plan = forwarding_plan(
        [
            ParticipantMedia("sip:1@x", Mode.AUDIO, (one,)),
            ParticipantMedia("sip:2@x", Mode.AUDIO, (two,)),
        ]
    )
    routes = plan.as_dict()
    assert routes[100].destinations[0].payload_map == ((101, 121),)
    assert routes[110].destinations[0].payload_map == ((121, 101),)
    assert routes[101].destinations[0].payload_map == ()


def test_unreachable_or_holding_receivers_get_nothing() -> None:
    held = StreamInfo("audio", 110, "0.0.0.0", 3, 4)
    deaf = StreamInfo("audio", 120, "127.0.0.1", 5, 6, receives=False)
    plan = forwarding_plan(
        [
            ParticipantMedia("sip:1@x", Mode.AUDIO, (stream("audio", 100, 1),)),
            ParticipantMedia("sip:2@x", Mode.AUDIO, (held,)),
            ParticipantMedia("sip:3@x", Mode.AUDIO, (deaf,)),
        ]
    )
    assert plan.as_dict()[100].destinations == ()


def test_merge_refuses_overlapping_ports() -> None:
    plan = forwarding_plan([member("sip:v@x", Mode.VIDEO, 100, 1000)])
    other = forwarding_plan([member("sip:a@x", Mode.AUDIO, 200, 2000)])
    assert ForwardingPlan.merge([plan, other]).ports == plan.ports | other.ports
    with pytest.raises(ValueError, match="two plans"):
        ForwardingPlan.merge([plan, plan])


def test_streams_from_a_real_offer_and_answer() -> None:
    offer = pjsua2_offer(4000)
    answer = build_answer(
        offer, Mode.VIDEO, address="127.0.0.1", ports={"audio": 40000}, session_id=1
    )
    (audio,) = streams_from_sdp(parse_media(offer), parse_media(answer))
    assert (audio.kind, audio.local_port, audio.remote_port, audio.remote_rtcp_port) == (
        "audio",
        40000,
        4000,
        4001,
    )
    assert ("pcmu/8000/1", 0) in audio.payload_types
    watch = build_answer(
        baresip_offer(5000, 5002),
        Mode.WATCH,
        address="127.0.0.1",
        ports={"audio": 1, "video": 3},
        session_id=1,
    )
    streams = streams_from_sdp(parse_media(baresip_offer(5000, 5002)), parse_media(watch))
    assert [(s.kind, s.sends, s.receives, s.remote_rtcp_port) for s in streams] == [
        ("audio", False, True, 5001),
        ("video", False, True, 5003),
    ]


def test_streams_take_feedback_and_mux_from_the_answer() -> None:
    offer = baresip_offer(5000, 5002, rtcp_mux=True)
    answer = build_answer(
        offer, Mode.VIDEO, address="127.0.0.1", ports={"audio": 1000, "video": 1002}, session_id=1
    )
    audio, video = streams_from_sdp(parse_media(offer), parse_media(answer))
    assert (audio.feedback, video.feedback) == (NO_FEEDBACK, KeyframeFeedback(pli=True))
    assert (audio.rtcp_mux, video.rtcp_mux) == (True, True)
    # RTCP to the participant goes to its RTP port, from the focus's RTP port.
    assert [(s.remote_rtcp_port, s.local_rtcp_port) for s in (audio, video)] == [
        (5000, 1000),
        (5002, 1002),
    ]
    # Without mux: RTP + 1 both sides; feedback offered for the chosen codec only.
    plain = baresip_offer(5000, 5002).replace(b"a=rtcp-fb:* nack pli", b"a=rtcp-fb:97 ccm fir")
    answer = build_answer(
        plain, Mode.VIDEO, address="127.0.0.1", ports={"audio": 1000, "video": 1002}, session_id=1
    )
    audio, video = streams_from_sdp(parse_media(plain), parse_media(answer))
    assert (video.feedback, video.rtcp_mux) == (NO_FEEDBACK, False)  # 97 is H.264 mode 0, not VP8
    assert [(s.remote_rtcp_port, s.local_rtcp_port) for s in (audio, video)] == [
        (5001, 1001),
        (5003, 1003),
    ]


def test_the_one_rule_for_the_focus_rtcp_port() -> None:
    assert (focus_rtcp_port(1000, False), focus_rtcp_port(1000, True)) == (1001, 1000)
    assert stream("audio", 100, 1000, rtcp_mux=True).local_rtcp_port == 100
    assert stream("audio", 100, 1000).local_rtcp_port == 101


def test_plan_with_muxing_participants() -> None:
    """v muxes, a does not: RTCP between them crosses from one port layout to the other."""
    v = ParticipantMedia("sip:v@x", Mode.VIDEO, (stream("audio", 100, 1000, rtcp_mux=True),
                                                  stream("video", 102, 1002, rtcp_mux=True)))  # fmt: skip
    a = ParticipantMedia("sip:a@x", Mode.VIDEO, (stream("audio", 110, 2000),
                                                  stream("video", 112, 2002)))  # fmt: skip
    routes = forwarding_plan([v, a]).as_dict()
    # Every pair of ports is still routed (the port + 1 stays allocated).
    assert sorted(routes) == [100, 101, 102, 103, 110, 111, 112, 113]
    # From v: its RTP port carries RTP for a's RTP port and RTCP for a's port + 1.
    assert (routes[100].rtcp_mux, routes[100].remote) == (True, ("127.0.0.1", 1000))
    assert routes[100].destinations == (Destination(110, "127.0.0.1", 2000),)
    assert routes[100].rtcp_destinations == (Destination(111, "127.0.0.1", 2001),)
    assert routes[101].remote == ("127.0.0.1", 1000)
    # To v: RTCP from a's port + 1 leaves from v's RTP port, for v's RTP port.
    assert routes[111].destinations == (Destination(100, "127.0.0.1", 1000),)
    assert routes[110].destinations == (Destination(100, "127.0.0.1", 1000),)
    assert (routes[110].rtcp_mux, routes[110].rtcp_destinations) == (False, ())
    assert routes[113].destinations == (Destination(102, "127.0.0.1", 1002),)


def test_a_muxed_route_tells_rtcp_from_rtp() -> None:
    v = ParticipantMedia("sip:v@x", Mode.AUDIO, (stream("audio", 100, 1000, rtcp_mux=True),))
    a = ParticipantMedia("sip:a@x", Mode.AUDIO, (stream("audio", 110, 2000),))
    routes = forwarding_plan([v, a]).as_dict()
    rtp = bytes([0x80, 0x80 | 0]) + bytes(10)  # PCMU with the marker bit
    report = build_rtcp([Bye(ssrcs=(1,))])
    muxed, plain, plain_rtcp = routes[100], routes[110], routes[111]
    assert (muxed.carries_rtcp(rtp), muxed.carries_rtcp(report)) == (False, True)
    assert muxed.destinations_for(False) == (Destination(110, "127.0.0.1", 2000),)
    assert muxed.destinations_for(True) == (Destination(111, "127.0.0.1", 2001),)
    # Without mux a port is what the plan says it is, whatever arrives.
    assert (plain.carries_rtcp(report), plain_rtcp.carries_rtcp(rtp)) == (False, True)
    assert plain.destinations_for(True) == plain.destinations


# -- properties ---------------------------------------------------------------------


@st.composite
def participants(draw: st.DrawFn) -> list[ParticipantMedia]:
    count = draw(st.integers(min_value=0, max_value=7))
    people = []
    for index in range(count):
        mode = draw(st.sampled_from(list(Mode)))
        base = 1000 + 10 * index
        streams = []
        if mode.has_audio or draw(st.booleans()):  # a stray stream the mode does not allow
            streams.append(
                stream(
                    "audio",
                    base,
                    20000 + base,
                    sends=draw(st.booleans()),
                    receives=draw(st.booleans()),
                    rtcp_mux=draw(st.booleans()),
                )
            )
        if mode.has_video or draw(st.booleans()):
            streams.append(
                stream(
                    "video",
                    base + 2,
                    20002 + base,
                    sends=draw(st.booleans()),
                    receives=draw(st.booleans()),
                    rtcp_mux=draw(st.booleans()),
                )
            )
        people.append(ParticipantMedia(f"sip:p{index}@x", mode, tuple(streams)))
    return people


@settings(max_examples=300, deadline=None)
@given(participants())
def test_plan_invariants(people: list[ParticipantMedia]) -> None:
    plan = forwarding_plan(people)
    owner = {s.local_port: p for p in people for s in p.streams}
    owner.update({s.local_port + 1: p for p in people for s in p.streams})
    kind_of = {s.local_port + off: s.kind for p in people for s in p.streams for off in (0, 1)}
    stream_of = {s.local_port + off: s for p in people for s in p.streams for off in (0, 1)}
    assert len(plan.ports) == len(plan.routes) == 2 * sum(len(p.streams) for p in people)
    for route in plan.routes:
        sender = owner[route.port]
        assert route.participant == sender.uri
        if sender.mode is Mode.WATCH or sender.mode is Mode.CHAT:
            assert route.destinations == ()  # watch (and chat) media is never forwarded
        if route.kind == "video" and sender.mode is not Mode.VIDEO:
            assert route.destinations == ()
        # A muxed RTP port carries RTCP too; no other port has RTCP destinations of its own.
        assert route.rtcp_mux == (not route.rtcp and stream_of[route.port].rtcp_mux)
        if not route.rtcp_mux:
            assert route.rtcp_destinations == ()
        rtcp = route.rtcp_destinations if route.rtcp_mux else ()
        for destination, is_rtcp in [(d, route.rtcp) for d in route.destinations] + [
            (d, True) for d in rtcp
        ]:
            receiver = owner[destination.via_port]
            assert receiver is not sender  # nobody gets its own media back
            assert kind_of[destination.via_port] == route.kind
            target = stream_of[destination.via_port]
            if is_rtcp:  # RTCP from the receiver's RTCP port (its RTP port when it muxes)
                assert destination.via_port == target.local_rtcp_port
                assert destination.port == target.remote_rtcp_port
                assert destination.payload_map == ()
            else:
                assert destination.via_port == target.local_port
            if route.kind == "video":
                assert receiver.mode in (Mode.VIDEO, Mode.WATCH)  # audio never receives video
            assert receiver.mode is not Mode.CHAT


# -- the pool ----------------------------------------------------------------------------


def test_pool_hands_out_even_pairs_and_reuses_late() -> None:
    pool = PortPool(40001, 40008, choose=lowest_free)
    assert [pool.allocate() for _ in range(3)] == [40002, 40004, 40006]
    with pytest.raises(PortsExhaustedError):
        pool.allocate()
    pool.release(40002)
    pool.release(12345)  # not ours: ignored
    assert pool.allocate() == 40002
    assert pool.in_use == {40002, 40004, 40006}


def test_pool_hands_out_pairs_at_random_not_in_order() -> None:
    """Issue 18: from the ports of one call nobody can tell the next call's."""
    pool = PortPool(10000, 20000)
    ports = [pool.allocate() for _ in range(200)]
    assert all(p % 2 == 0 and 10000 <= p < 20000 for p in ports)
    assert len(set(ports)) == 200
    steps = {b - a for a, b in itertools.pairwise(ports)}
    assert len(steps) > 50  # sequential allocation has one step (2); random, ~200
    assert ports != sorted(ports)
    assert max(ports) - min(ports) > 5000  # spread over the range, not its start
    for port in ports:
        pool.release(port)
    assert len(pool) == pool.capacity == 5000


def test_pool_chooser_is_told_how_many_pairs_are_free() -> None:
    seen: list[int] = []

    def last(count: int) -> int:
        seen.append(count)
        return count - 1

    pool = PortPool(40000, 40007, choose=last)
    assert [pool.allocate(), pool.allocate()] == [40006, 40004]
    assert seen == [4, 3]


def test_pool_rejects_a_range_without_a_pair() -> None:
    with pytest.raises(ValueError, match="pair"):
        PortPool(40001, 40002)
