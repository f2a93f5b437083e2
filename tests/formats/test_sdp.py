"""SDP per mode: offers, the focus's answers to real softphones' offers, capabilities."""

from __future__ import annotations

import contextlib
import re

import pytest
import sdp_transform
from hypothesis import given
from hypothesis import strategies as st

from vidim.sdp import (
    _READ_LINE_RE,
    AUDIO_CODECS,
    Codec,
    MediaDescription,
    RtcpFeedback,
    SDPError,
    answer_media,
    build_answer,
    build_offer,
    capabilities_from_feature_tags,
    capabilities_from_sdp,
    media_summary,
    parse_media,
    write_media,
)
from vidim.sip import LocalProtocolError, parse_name_addr
from vidim.vocabulary import Capabilities, Mode


def sdp(text: str) -> bytes:
    """Test SDP is written with LF for readability; the wire uses CRLF."""
    return text.strip().replace("\n", "\r\n").encode() + b"\r\n"


# What pjsua2 (pjsua2-python, PJSIP 2.15, a wheel built without video) offers
# with its default codecs; with a video slot configured it adds a video m-line
# with port 0 because it has no video codec.
PJSUA2_OFFER = sdp("""
v=0
o=- 3908336718 3908336718 IN IP4 127.0.0.1
s=pjmedia
b=AS:117
t=0 0
a=X-nat:0
m=audio 4000 RTP/AVP 96 97 98 99 3 0 8 9 120 121 122
c=IN IP4 127.0.0.1
b=TIAS:96000
a=rtcp:4001 IN IP4 127.0.0.1
a=sendrecv
a=rtpmap:96 speex/16000
a=rtpmap:97 speex/8000
a=rtpmap:98 speex/32000
a=rtpmap:99 iLBC/8000
a=fmtp:99 mode=30
a=rtpmap:3 GSM/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:120 telephone-event/16000
a=fmtp:120 0-16
a=rtpmap:121 telephone-event/8000
a=fmtp:121 0-16
a=rtpmap:122 telephone-event/32000
a=fmtp:122 0-16
a=ssrc:1137321014 cname:3c5ff8c84ad7b91e
""")
PJSUA2_OFFER_VIDEO_SLOT = PJSUA2_OFFER + b"m=video 0 RTP/AVP 31\r\n"

# What baresip offers with opus, G.711 and avcodec (H.264 in both
# packetization modes) plus libvpx.
BARESIP_OFFER = sdp("""
v=0
o=- 1523414410 2846710546 IN IP4 192.168.1.20
s=-
c=IN IP4 192.168.1.20
t=0 0
m=audio 10476 RTP/AVP 96 0 8 101
b=AS:110
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=ssrc:2349239410 cname:f8c2c5d1-6e0f-4a4e-9c9a-0cdd0e1f4a61
a=mid:1
a=ptime:20
m=video 12010 RTP/AVP 97 98 99
b=AS:1000
a=rtpmap:97 H264/90000
a=fmtp:97 packetization-mode=0;profile-level-id=42e01f
a=rtpmap:98 H264/90000
a=fmtp:98 packetization-mode=1;profile-level-id=42e01f
a=rtpmap:99 VP8/90000
a=fmtp:99 max-fs=3600
a=rtcp-fb:* nack pli
a=sendrecv
a=label:2
a=mid:2
""")

PORTS = {"audio": 40000, "video": 40002}


def answer(offer: bytes, mode: Mode, *, audio_codecs: tuple[Codec, ...] = AUDIO_CODECS) -> bytes:
    return build_answer(
        offer, mode, address="10.9.0.1", ports=PORTS, session_id=77, audio_codecs=audio_codecs
    )


def payloads(body: bytes) -> list[tuple[str, ...]]:
    return [m.formats for m in parse_media(body)]


# --- offers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "from_focus", "expected"),
    [
        (Mode.VIDEO, False, [("audio", 4000, "sendrecv"), ("video", 4002, "sendrecv")]),
        (Mode.AUDIO, False, [("audio", 4000, "sendrecv")]),
        (Mode.WATCH, False, [("audio", 4000, "recvonly"), ("video", 4002, "recvonly")]),
        (Mode.WATCH, True, [("audio", 4000, "sendonly"), ("video", 4002, "sendonly")]),
        (Mode.CHAT, False, [("audio", 4000, "inactive")]),
        (Mode.VIDEO, True, [("audio", 4000, "sendrecv"), ("video", 4002, "sendrecv")]),
    ],
)
def test_offer_lines_and_directions(
    mode: Mode, from_focus: bool, expected: list[tuple[str, int, str]]
) -> None:
    body = build_offer(
        mode,
        address="192.0.2.5",
        audio_port=4000,
        video_port=4002,
        session_id=1,
        from_focus=from_focus,
    )
    assert media_summary(body) == expected


def test_offer_codecs_and_session_lines() -> None:
    body = build_offer(
        Mode.VIDEO, address="192.0.2.5", audio_port=4000, video_port=4002, session_id=42, version=3
    )
    text = body.decode()
    assert text.startswith("v=0\r\no=vidim 42 3 IN IP4 192.0.2.5\r\n")
    assert "c=IN IP4 192.0.2.5\r\n" in text
    assert "m=audio 4000 RTP/AVP 0 8 101\r\n" in text
    assert "a=fmtp:101 0-16\r\n" in text
    assert "m=video 4002 RTP/AVP 96 97\r\n" in text
    assert "a=rtpmap:96 VP8/90000\r\n" in text
    assert "a=rtpmap:97 H264/90000\r\n" in text
    assert "packetization-mode=1" in text
    audio, video = parse_media(body)
    assert [c.name for c in audio.codecs] == ["PCMU", "PCMA", "telephone-event"]
    assert [c.name for c in video.codecs] == ["VP8", "H264"]


def test_offer_ipv6() -> None:
    body = build_offer(
        Mode.AUDIO, address="2001:db8::5", audio_port=4000, video_port=None, session_id=1
    )
    assert b"c=IN IP6 2001:db8::5\r\n" in body
    assert parse_media(body)[0].address == "2001:db8::5"


def test_offer_video_mode_needs_a_video_port() -> None:
    with pytest.raises(LocalProtocolError, match="needs a video port"):
        build_offer(Mode.VIDEO, address="192.0.2.5", audio_port=4000, video_port=None, session_id=1)


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_offer_refuses_bad_ports(port: int) -> None:
    with pytest.raises(LocalProtocolError, match="out of range"):
        build_offer(Mode.AUDIO, address="192.0.2.5", audio_port=port, video_port=None, session_id=1)


def test_offer_refuses_bad_username_and_address() -> None:
    with pytest.raises(LocalProtocolError, match="username"):
        build_offer(Mode.AUDIO, address="h", audio_port=4000, video_port=None, session_id=1,
                    username="a b")  # fmt: skip
    with pytest.raises(LocalProtocolError, match="address"):
        build_offer(Mode.AUDIO, address="a\r\nb", audio_port=4000, video_port=None, session_id=1)


def test_offer_answered_by_focus_round_trip() -> None:
    """What vidim offers, the focus accepts: the two halves agree on the wire."""
    offer = build_offer(Mode.VIDEO, address="192.0.2.5", audio_port=4000, video_port=4002,
                        session_id=1)  # fmt: skip
    assert media_summary(answer(offer, Mode.VIDEO)) == [
        ("audio", 40000, "sendrecv"),
        ("video", 40002, "sendrecv"),
    ]
    watch_offer = build_offer(Mode.WATCH, address="192.0.2.5", audio_port=4000, video_port=4002,
                              session_id=1)  # fmt: skip
    assert media_summary(answer(watch_offer, Mode.WATCH)) == [
        ("audio", 40000, "sendonly"),
        ("video", 40002, "sendonly"),
    ]


# --- answers to baresip (audio + video) ----------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (Mode.VIDEO, [("audio", 40000, "sendrecv"), ("video", 40002, "sendrecv")]),
        (Mode.AUDIO, [("audio", 40000, "sendrecv"), ("video", 0, "sendrecv")]),
        (Mode.WATCH, [("audio", 40000, "sendonly"), ("video", 40002, "sendonly")]),
        (Mode.CHAT, [("audio", 0, "sendrecv"), ("video", 0, "sendrecv")]),
    ],
)
def test_answer_to_baresip_per_mode(mode: Mode, expected: list[tuple[str, int, str]]) -> None:
    body = answer(BARESIP_OFFER, mode)
    assert media_summary(body) == expected
    assert [m.kind for m in parse_media(body)] == ["audio", "video"]  # count and order kept


def test_answer_to_baresip_codecs() -> None:
    audio, video = parse_media(answer(BARESIP_OFFER, Mode.VIDEO))
    # The focus's preference (PCMU) wins over the offer's (opus): no transcoding.
    assert [(c.payload, c.name) for c in audio.codecs] == [(0, "PCMU"), (101, "telephone-event")]
    # VP8 keeps the offer's dynamic payload number.
    assert [(c.payload, c.name) for c in video.codecs] == [(99, "VP8")]
    assert audio.address == video.address == "10.9.0.1"
    assert (audio.mid, video.mid) == ("1", "2")


def test_rejected_lines_keep_the_offered_format_list() -> None:
    body = answer(BARESIP_OFFER, Mode.AUDIO)
    assert b"m=video 0 RTP/AVP 97 98 99\r\n" in body
    chat = answer(BARESIP_OFFER, Mode.CHAT)
    assert payloads(chat) == [("96", "0", "8", "101"), ("97", "98", "99")]
    assert b"a=rtpmap" not in chat


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("offer", [PJSUA2_OFFER, PJSUA2_OFFER_VIDEO_SLOT, BARESIP_OFFER])
def test_answer_media_is_what_its_text_reads_back(offer: bytes, mode: Mode) -> None:
    # The focus keeps answer_media's lines instead of parsing its answer back.
    try:
        media = answer_media(parse_media(offer), mode, address="10.9.0.1", ports=PORTS)
    except SDPError:
        return  # chat with an offer that has no usable audio: nothing was written
    body = write_media(media, address="10.9.0.1", session_id=77)
    assert parse_media(body) == media
    assert body == answer(offer, mode)
    # Written in sdp-transform's form: its writer gives the same text back.
    assert sdp_transform.write(sdp_transform.parse(body.decode())).encode() == body


@pytest.mark.parametrize("mode", [Mode.VIDEO, Mode.AUDIO, Mode.WATCH])
def test_the_audio_answer_says_its_ptime_and_reads_back(mode: Mode) -> None:
    media = answer_media(parse_media(BARESIP_OFFER), mode, address="10.9.0.1", ports=PORTS,
                         audio_ptime=20)  # fmt: skip
    assert next((m.kind, m.ptime) for m in media if not m.rejected) == ("audio", 20)
    assert all(m.ptime is None for m in media if m.kind == "video")
    body = write_media(media, address="10.9.0.1", session_id=77)
    assert b"a=ptime:20\r\na=sendrecv" in body or b"a=ptime:20\r\na=sendonly" in body
    assert parse_media(body) == media
    assert sdp_transform.write(sdp_transform.parse(body.decode())).encode() == body


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("from_focus", [False, True])
@pytest.mark.parametrize("address", ["192.0.2.5", "2001:db8::5"])
def test_offers_are_written_in_sdp_transforms_form(
    mode: Mode, from_focus: bool, address: str
) -> None:
    body = build_offer(mode, address=address, audio_port=4000, video_port=4002,
                       session_id=2**40 - 1, version=3, username="focus", from_focus=from_focus)  # fmt: skip
    assert sdp_transform.write(sdp_transform.parse(body.decode())).encode() == body


def test_h264_only_with_the_same_packetization_mode() -> None:
    only_h264 = BARESIP_OFFER.replace(
        b"m=video 12010 RTP/AVP 97 98 99", b"m=video 12010 RTP/AVP 97 98"
    )
    video = parse_media(answer(only_h264, Mode.VIDEO))[1]
    assert [(c.payload, c.name) for c in video.codecs] == [(98, "H264")]
    assert video.codecs[0].fmtp == "profile-level-id=42e01f;packetization-mode=1"
    mode0_only = BARESIP_OFFER.replace(
        b"m=video 12010 RTP/AVP 97 98 99", b"m=video 12010 RTP/AVP 97"
    )
    assert media_summary(answer(mode0_only, Mode.VIDEO))[1] == ("video", 0, "sendrecv")


# --- answers to pjsua2 (audio only) ----------------------------------------------------


@pytest.mark.parametrize("mode", [Mode.VIDEO, Mode.AUDIO, Mode.WATCH])
def test_answer_to_pjsua2_audio_only(mode: Mode) -> None:
    body = answer(PJSUA2_OFFER, mode)
    direction = "sendonly" if mode is Mode.WATCH else "sendrecv"
    assert media_summary(body) == [("audio", 40000, direction)]
    (audio,) = parse_media(body)
    # PCMU, and the telephone-event at PCMU's clock rate (121), not 120 or 122.
    assert [(c.payload, c.name, c.clock_rate) for c in audio.codecs] == [
        (0, "PCMU", 8000),
        (121, "telephone-event", 8000),
    ]


@pytest.mark.parametrize("mode", list(Mode))
def test_pjsua2_video_slot_with_port_0_stays_rejected(mode: Mode) -> None:
    body = answer(PJSUA2_OFFER_VIDEO_SLOT, mode)
    summary = media_summary(body)
    assert len(summary) == 2
    assert summary[1][:2] == ("video", 0)
    assert b"m=video 0 RTP/AVP 31\r\n" in body


def test_pjsua2_capabilities() -> None:
    assert capabilities_from_sdp(PJSUA2_OFFER_VIDEO_SLOT) == Capabilities(audio=True, video=False)
    assert capabilities_from_sdp(BARESIP_OFFER) == Capabilities(audio=True, video=True)


def test_pcma_only_phone_gets_pcma() -> None:
    offer = PJSUA2_OFFER.replace(b"96 97 98 99 3 0 8 9 120 121 122", b"8 121")
    (audio,) = parse_media(answer(offer, Mode.AUDIO))
    assert [c.name for c in audio.codecs] == ["PCMA", "telephone-event"]


def test_static_payload_types_without_rtpmap() -> None:
    offer = sdp("""
v=0
o=- 1 1 IN IP4 192.0.2.9
s=-
c=IN IP4 192.0.2.9
t=0 0
m=audio 5004 RTP/AVP 8 0
""")
    (audio,) = parse_media(answer(offer, Mode.AUDIO))
    assert [(c.payload, c.name) for c in audio.codecs] == [(0, "PCMU")]


# --- directions: a participant may lower, never raise ---------------------------------


def _with_direction(direction: str, *, session_level: bool = False) -> bytes:
    text = BARESIP_OFFER.decode().replace("a=sendrecv\r\n", "")
    if session_level:
        return text.replace("t=0 0\r\n", f"t=0 0\r\na={direction}\r\n").encode()
    return text.replace("a=label:", f"a={direction}\r\na=label:").encode()


@pytest.mark.parametrize(
    ("mode", "offered", "answered"),
    [
        (Mode.VIDEO, "sendrecv", "sendrecv"),
        (Mode.VIDEO, "sendonly", "recvonly"),  # the participant holds the focus
        (Mode.VIDEO, "recvonly", "sendonly"),  # the participant mutes itself
        (Mode.VIDEO, "inactive", "inactive"),
        (Mode.WATCH, "sendrecv", "sendonly"),  # cannot raise watch to sending
        (Mode.WATCH, "recvonly", "sendonly"),
        (Mode.WATCH, "sendonly", "inactive"),
        (Mode.AUDIO, "sendonly", "recvonly"),
    ],
)
def test_answer_direction(mode: Mode, offered: str, answered: str) -> None:
    summary = media_summary(answer(_with_direction(offered), mode))
    assert summary[0] == ("audio", 40000, answered)
    if mode.has_video:
        assert summary[1] == ("video", 40002, answered)


def test_session_level_direction_applies_to_every_line() -> None:
    offer = _with_direction("recvonly", session_level=True)
    assert [m.direction for m in parse_media(offer)] == ["recvonly", "recvonly"]
    assert [d for _, _, d in media_summary(answer(offer, Mode.VIDEO))] == ["sendonly", "sendonly"]


def test_audio_participant_cannot_get_video_by_offering_it() -> None:
    body = answer(BARESIP_OFFER, Mode.AUDIO)
    assert media_summary(body)[1][1] == 0
    assert capabilities_from_sdp(body) == Capabilities(audio=True, video=False)


# --- line structure ---------------------------------------------------------------------


def test_order_kept_when_video_comes_first() -> None:
    text = BARESIP_OFFER.decode()
    head, rest = text.split("m=audio", 1)
    audio, video = rest.split("m=video", 1)
    offer = (head + "m=video" + video + "m=audio" + audio).encode()
    assert media_summary(answer(offer, Mode.VIDEO)) == [
        ("video", 40002, "sendrecv"),
        ("audio", 40000, "sendrecv"),
    ]
    assert media_summary(answer(offer, Mode.AUDIO)) == [
        ("video", 0, "sendrecv"),
        ("audio", 40000, "sendrecv"),
    ]


def test_second_line_of_a_kind_and_other_kinds_are_rejected() -> None:
    offer = BARESIP_OFFER + sdp("""
m=audio 10480 RTP/AVP 0
m=application 9 TCP/BFCP *
m=text 11000 RTP/AVP 98
a=rtpmap:98 t140/1000
""")
    assert media_summary(answer(offer, Mode.VIDEO)) == [
        ("audio", 40000, "sendrecv"),
        ("video", 40002, "sendrecv"),
        ("audio", 0, "sendrecv"),
        ("application", 0, "sendrecv"),
        ("text", 0, "sendrecv"),
    ]
    assert b"m=application 0 TCP/BFCP *\r\n" in answer(offer, Mode.VIDEO)


def test_srtp_is_rejected() -> None:
    offer = BARESIP_OFFER.replace(b"RTP/AVP", b"RTP/SAVP")
    with pytest.raises(SDPError, match="no usable audio") as info:
        answer(offer, Mode.VIDEO)
    assert info.value.status_hint == 488


def test_avpf_is_accepted_and_echoed() -> None:
    offer = BARESIP_OFFER.replace(b"RTP/AVP", b"RTP/AVPF")
    assert [m.protocol for m in parse_media(answer(offer, Mode.VIDEO))] == ["RTP/AVPF"] * 2


def test_ports_callback_called_only_for_taken_lines() -> None:
    calls: list[tuple[int, str]] = []

    def allocate(index: int, kind: str) -> int:
        calls.append((index, kind))
        return 50000 + 2 * index

    body = build_answer(BARESIP_OFFER, Mode.AUDIO, address="10.9.0.1", ports=allocate, session_id=1)
    assert calls == [(0, "audio")]
    assert media_summary(body)[0][1] == 50000


def test_missing_port_for_a_taken_kind() -> None:
    with pytest.raises(LocalProtocolError, match="no video port"):
        build_answer(
            BARESIP_OFFER, Mode.VIDEO, address="10.9.0.1", ports={"audio": 1}, session_id=1
        )


def test_answer_session_version_and_ipv6() -> None:
    body = build_answer(BARESIP_OFFER, Mode.VIDEO, address="2001:db8::1", ports=PORTS,
                        session_id=5, version=9)  # fmt: skip
    assert body.startswith(b"v=0\r\no=vidim 5 9 IN IP6 2001:db8::1\r\n")


def test_custom_codec_preferences() -> None:
    opus = Codec(111, "opus", 48000, channels=2)
    (audio, _) = parse_media(answer(BARESIP_OFFER, Mode.VIDEO, audio_codecs=(opus, *AUDIO_CODECS)))
    assert next((c.payload, c.name, c.channels) for c in audio.codecs) == (96, "opus", 2)


# --- what cannot be answered ------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "match"),
    [
        (b"", "must start with v=0"),
        (b"hello world", "must start with v=0"),
        (b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n", "without an o= line"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\nGARBAGE\r\n", "malformed SDP line"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 h\r\nm=audio 4000/2 RTP/AVP 0\r\n", "malformed"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 h\r\nm=audio 99999 RTP/AVP 0\r\n", "out of range"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4 h\r\nm=audio 4000 RTP/AVP\r\n", "no formats"),
        (b"v=0\r\no=- 1 1 IN IP4 \xff\r\n", "not UTF-8"),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\n" + b"a=x\r\n" * 20000, "exceeds"),
    ],
)
def test_unparsable_offers(offer: bytes, match: str) -> None:
    with pytest.raises(SDPError, match=match) as info:
        answer(offer, Mode.AUDIO)
    assert info.value.status_hint == 488


@pytest.mark.parametrize(
    "offer",
    [
        # opus only: no common audio codec
        BARESIP_OFFER.replace(b"RTP/AVP 96 0 8 101", b"RTP/AVP 96 101"),
        # audio refused by the participant itself
        BARESIP_OFFER.replace(b"m=audio 10476", b"m=audio 0"),
        # video only
        BARESIP_OFFER.split(b"m=audio")[0] + b"m=video" + BARESIP_OFFER.split(b"m=video")[1],
        # no connection address at all
        BARESIP_OFFER.replace(b"c=IN IP4 192.168.1.20\r\n", b""),
        # no m-line at all
        BARESIP_OFFER.split(b"m=audio")[0],
    ],
)
def test_no_usable_audio(offer: bytes) -> None:
    with pytest.raises(SDPError, match="no usable audio"):
        answer(offer, Mode.WATCH)


def test_chat_answer_needs_no_audio() -> None:
    video_only = (
        BARESIP_OFFER.split(b"m=audio")[0] + b"m=video" + BARESIP_OFFER.split(b"m=video")[1]
    )
    assert media_summary(answer(video_only, Mode.CHAT)) == [("video", 0, "sendrecv")]
    assert media_summary(answer(BARESIP_OFFER.split(b"m=audio")[0], Mode.CHAT)) == []


def test_media_level_connection_and_rtcp() -> None:
    (audio,) = parse_media(PJSUA2_OFFER)
    assert (audio.address, audio.port, audio.rtcp_port) == ("127.0.0.1", 4000, 4001)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_sdp_error(data: bytes) -> None:
    with contextlib.suppress(SDPError):
        parse_media(data)


@given(
    st.lists(
        st.sampled_from(BARESIP_OFFER.split(b"\r\n") + PJSUA2_OFFER.split(b"\r\n")), max_size=40
    ),
    st.sampled_from(list(Mode)),
)
def test_shuffled_sdp_lines_answer_or_raise_sdp_error(lines: list[bytes], mode: Mode) -> None:
    """Random recombinations of real lines: an answer with as many m-lines, or SDPError."""
    offer = b"v=0\r\no=- 1 1 IN IP4 h\r\n" + b"\r\n".join(lines) + b"\r\n"
    try:
        body = answer(offer, mode)
    except SDPError:
        return
    assert len(media_summary(body)) == len(parse_media(offer))


# --- RTCP feedback (RFC 4585, 5104) and multiplexing (RFC 5761) ---------------------------

# A WebRTC-style video line: every feedback a browser offers, per payload type and for all.
FEEDBACK_OFFER = sdp("""
v=0
o=- 1 1 IN IP4 192.0.2.9
s=-
c=IN IP4 192.0.2.9
t=0 0
m=audio 5000 RTP/AVPF 111 0
a=rtpmap:111 opus/48000/2
a=rtpmap:0 PCMU/8000
a=rtcp-fb:111 transport-cc
a=rtcp-fb:* ccm fir
a=rtcp-mux
m=video 5002 RTP/AVPF 100 96
a=rtpmap:100 H264/90000
a=fmtp:100 packetization-mode=1;profile-level-id=42e01f
a=rtpmap:96 VP8/90000
a=rtcp:5003
a=rtcp-fb:* trr-int 100
a=rtcp-fb:100 nack pli
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 nack
a=rtcp-fb:96 CCM FIR
a=rtcp-fb:* nack pli
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 ccm tmmbr smaxpr=120
a=rtcp-mux
""")


def test_rtcp_feedback_and_mux_are_read() -> None:
    audio, video = parse_media(FEEDBACK_OFFER)
    assert audio.rtcp_fb == (RtcpFeedback("111", "transport-cc"), RtcpFeedback("*", "ccm fir"))
    assert [(fb.payload, fb.value) for fb in video.rtcp_fb] == [
        ("100", "nack pli"), ("96", "goog-remb"), ("96", "nack"), ("96", "ccm fir"),
        ("*", "nack pli"), ("96", "nack pli"), ("96", "ccm tmmbr"),
    ]  # fmt: skip
    assert (audio.rtcp_mux, video.rtcp_mux) == (True, True)
    assert not any(m.rtcp_mux or m.rtcp_fb for m in parse_media(PJSUA2_OFFER))


def test_rtcp_mux_is_read_as_the_whole_attribute_only() -> None:
    offer = PJSUA2_OFFER + b"a=rtcp-muxed\r\n"
    assert not parse_media(offer)[0].rtcp_mux
    assert parse_media(PJSUA2_OFFER + b"a=rtcp-mux\r\n")[0].rtcp_mux


def test_answer_echoes_only_keyframe_feedback_for_the_chosen_codec() -> None:
    # VP8 (96) is the focus's first choice: its nack and goog-remb are left out, and
    # "nack pli" offered twice (96 and *) is answered once, in the offer's order.
    audio, video = parse_media(answer(FEEDBACK_OFFER, Mode.VIDEO))
    assert [c.payload for c in video.codecs] == [96]
    assert video.rtcp_fb == (RtcpFeedback("96", "ccm fir"), RtcpFeedback("96", "nack pli"))
    assert audio.rtcp_fb == ()  # feedback on audio is never answered
    body = answer(FEEDBACK_OFFER, Mode.VIDEO).decode()
    assert "a=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack pli\r\na=sendrecv\r\na=rtcp-mux\r\n" in body


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("a=rtcp-fb:* nack pli\na=rtcp-fb:* ccm fir", ["nack pli", "ccm fir"]),
        ("a=rtcp-fb:99 nack pli", ["nack pli"]),
        ("a=rtcp-fb:97 nack pli\na=rtcp-fb:98 ccm fir", []),
        ("a=rtcp-fb:99 ccm fir\na=rtcp-fb:99 nack", ["ccm fir"]),
        ("a=rtcp-fb:* NACK PLI", ["nack pli"]),
        ("a=rtcp-fb:* ccm tmmbr\na=rtcp-fb:\na=rtcp-fb:x nack pli", []),
        ("a=rtcp-fb:* goog-remb\na=rtcp-fb:* nack\na=rtcp-fb:* trr-int 5", []),
    ],
)
def test_answered_feedback_is_for_the_chosen_payload_type(lines: str, expected: list[str]) -> None:
    # baresip's video line with other feedback: the focus picks VP8, payload type 99.
    offer = BARESIP_OFFER.replace(b"a=rtcp-fb:* nack pli\r\n", sdp(lines))
    video = parse_media(answer(offer, Mode.VIDEO))[1]
    assert video.rtcp_fb == tuple(RtcpFeedback("99", value) for value in expected)


@pytest.mark.parametrize("mode", [Mode.VIDEO, Mode.WATCH])
def test_feedback_kept_on_avpf_and_avp(mode: Mode) -> None:
    for offer in (BARESIP_OFFER, BARESIP_OFFER.replace(b"RTP/AVP", b"RTP/AVPF")):
        audio, video = parse_media(answer(offer, mode))
        assert video.protocol == audio.protocol == parse_media(offer)[0].protocol
        assert video.rtcp_fb == (RtcpFeedback("99", "nack pli"),)


def test_mux_answered_only_where_offered_and_taken() -> None:
    # Only the video line offers it.
    offer = BARESIP_OFFER.replace(b"a=label:2\r\n", b"a=label:2\r\na=rtcp-mux\r\n")
    audio, video = parse_media(answer(offer, Mode.VIDEO))
    assert (audio.rtcp_mux, video.rtcp_mux) == (False, True)
    assert [m.rtcp_mux for m in parse_media(answer(FEEDBACK_OFFER, Mode.VIDEO))] == [True, True]
    # A rejected line answers nothing but its m= line.
    audio, video = parse_media(answer(FEEDBACK_OFFER, Mode.AUDIO))
    assert (audio.rtcp_mux, video.rtcp_mux, video.rtcp_fb) == (True, False, ())
    assert answer(FEEDBACK_OFFER, Mode.AUDIO).endswith(b"m=video 0 RTP/AVPF 100 96\r\n")


def test_no_mux_when_a_payload_type_looks_like_rtcp() -> None:
    # Payload type 72 with the marker bit is RTCP's 200 (sender report), RFC 5761 section 4.
    offer = FEEDBACK_OFFER.replace(b"111", b"72")
    (audio, _) = parse_media(
        answer(offer, Mode.AUDIO, audio_codecs=(Codec(111, "opus", 48000, 2),))
    )
    assert [c.payload for c in audio.codecs] == [72]
    assert not audio.rtcp_mux


_FEEDBACK = st.builds(
    RtcpFeedback,
    st.one_of(st.just("*"), st.integers(0, 127).map(str)),
    st.sampled_from(
        ["nack", "nack pli", "nack sli", "ccm fir", "ccm tmmbr", "goog-remb", "transport-cc"]
    ),
)


@given(st.lists(_FEEDBACK, max_size=6), st.booleans(), st.sampled_from(["audio", "video"]))
def test_feedback_and_mux_round_trip(feedback: list[RtcpFeedback], mux: bool, kind: str) -> None:
    line = MediaDescription(kind=kind, port=4000, protocol="RTP/AVPF", formats=("0",),
                            codecs=(Codec(0, "PCMU", 8000),), direction="sendrecv",
                            address="192.0.2.1", mid="a", rtcp_fb=tuple(feedback), rtcp_mux=mux)  # fmt: skip
    body = write_media([line], address="192.0.2.1", session_id=1)
    assert parse_media(body) == (line,)
    # Written in sdp-transform's form and order.
    assert sdp_transform.write(sdp_transform.parse(body.decode())).encode() == body


# --- every line sdp-transform's grammar knows ----------------------------------------------

# Every a= attribute the grammar knows, well-formed and not, and lines it has no rule for.
_ATTRIBUTE_LINES = [
    "a=rtpmap:96 H264/90000", "a=rtpmap:97 opus/48000/2", "a=rtpmap:x", "a=rtpmap:",
    "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1", "a=fmtp:", "a=control:*",
    "a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp:9", "a=rtcp:x", "a=rtcp-fb:* trr-int 5",
    "a=rtcp-fb:96 nack pli", "a=rtcp-fb:96 ccm fir", "a=extmap:1 urn:x", "a=extmap:1/sendonly urn:x",
    "a=extmap-allow-mixed", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc", "a=setup:actpass",
    "a=connection:new", "a=msid:a b", "a=ptime:20", "a=maxptime:40.5", "a=sendrecv",
    "a=recvonly", "a=sendonly", "a=inactive", "a=ice-lite", "a=ice-ufrag:u", "a=ice-pwd:p",
    "a=fingerprint:sha-256 AA:BB", "a=candidate:1 1 UDP 2130706431 10.0.0.1 5000 typ host",
    "a=candidate:1 1 UDP 1 10.0.0.1 5000 typ srflx raddr 10.0.0.2 rport 6000 generation 0",
    "a=end-of-candidates", "a=remote-candidates:1 10.0.0.1 5000", "a=ice-options:trickle",
    "a=ssrc:1 cname:x", "a=ssrc-group:FID 1 2", "a=msid-semantic: WMS *", "a=group:BUNDLE 0 1",
    "a=rtcp-mux", "a=rtcp-rsize", "a=sctpmap:5000 webrtc-datachannel 1024",
    "a=x-google-flag:conference", "a=rid:1 send pt=96", "a=imageattr:96 send [x=640,y=480]",
    "a=simulcast:send 1;2 recv 3", "a=simulcast: 1;2", "a=framerate:30", "a=framerate:29.97",
    "a=source-filter: incl IN IP4 * 10.0.0.1", "a=bundle-only", "a=label:1", "a=sctp-port:5000",
    "a=max-message-size:1024", "a=ts-refclk:ntp=x", "a=mediaclk:direct=0", "a=keywds:k",
    "a=content:main", "a=floorctrl:c-only", "a=confid:1", "a=userid:2", "a=floorid:1 mstrm:2",
    "a=mid:audio", "a=mid:", "a=", "a=x-unknown:1", "a=sendrecvx", "a=RTPMAP:0 PCMU/8000",
    "a=rtcp-muxed", "a=ptime:", "a=ice-liter", "a=\u00e9t\u00e9", "a=msid:\u2028m=audio 1 RTP/AVP 0",
]  # fmt: skip
_OTHER_LINES = [
    "v=0", "v=x", "o=- 1 1 IN IP4 h", "o=- x 1 IN IP4 h", "o=", "s=-", "i=info", "u=http://x",
    "e=a@b", "p=+1", "z=0 0", "r=7d 1h 0 25h", "t=0 0", "t=x", "c=IN IP4 10.0.0.1",
    "c=IN IP6 ::1", "c=", "b=AS:256", "b=x", "k=clear:x", "x=unknown", "m=audio 5000 RTP/AVP 0 8",
    "m=video 0 RTP/AVP 96", "m=audio 5000/2 RTP/AVP 0", "m=audio x RTP/AVP 0", "m=", "m=audio",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "M=audio 1 RTP/AVP 0", "=x", "",
    "\u00e9=x", "a", "m=audio 1 RTP/AVP 0\x0bm=video 2 RTP/AVP 96",
]  # fmt: skip


@given(
    st.lists(st.sampled_from(_ATTRIBUTE_LINES + _OTHER_LINES), max_size=30),
    st.sampled_from(["\r\n", "\n", "\r"]),
    st.sampled_from(list(Mode)),
)
def test_any_known_line_parses_or_raises_sdp_error(lines: list[str], eol: str, mode: Mode) -> None:
    """Every line sdp-transform's grammar has a rule for (and some it has none for), in any
    order: typed m-lines and an answer with as many, or SDPError, never another exception."""
    offer = eol.join(["v=0", "o=- 1 1 IN IP4 h", *lines, ""]).encode()
    try:
        media = parse_media(offer)
    except SDPError:
        return
    assert all(isinstance(m.port, int) and isinstance(m.formats, tuple) for m in media)
    with contextlib.suppress(SDPError):
        assert len(media_summary(answer(offer, mode))) == len(media)


#: What vidim reads of sdp-transform's output, at session and media level.
_READ_KEYS = frozenset(
    {"origin", "connection", "direction", "media", "type", "port", "protocol", "payloads"}
    | {"rtp", "fmtp", "rtcp", "rtcpFb", "crypto", "rtcpMux", "mid"}
)


def test_only_the_lines_vidim_keeps_write_what_it_reads() -> None:
    """vidim.sdp parses only o=, c=, m= and eight attributes: no other line could matter.

    Every line is read on its own (an m= line opens a stream), so leaving out the
    others changes nothing vidim reads, if no rule for another field writes one of its
    keys and the attribute rules that do begin with names vidim keeps.  This fails
    when sdp-transform's grammar changes so.
    """
    for field, rules in sdp_transform.grammar.grammar.items():
        for rule in rules:
            # The key it sets where the line stands (a pushed or named rule nests its names).
            key = rule.get("push") or rule.get("name")
            written = {key} if key else set(rule["names"])
            if not written & _READ_KEYS:
                continue
            if field in "ocm":
                assert _READ_LINE_RE.match(f"{field}="), field
                continue
            assert field == "a", (field, rule)
            reg = rule["reg"]
            pattern = reg.pattern if isinstance(reg, re.Pattern) else reg
            assert not (reg.flags if isinstance(reg, re.Pattern) else 0) & re.IGNORECASE
            # "^rtpmap:(\d*) ..." begins with "rtpmap:"; "^(sendrecv|...)" with one of its words.
            literal = pattern.removeprefix("^").split("(")[0]
            starts = [literal] if literal else pattern.removeprefix("^(").split(")")[0].split("|")
            for start in starts:
                assert _READ_LINE_RE.match(f"a={start}"), (start, pattern)


# --- capabilities -------------------------------------------------------------------------


def test_capabilities_from_sdp_without_media() -> None:
    assert capabilities_from_sdp(BARESIP_OFFER.split(b"m=audio")[0]) == Capabilities(False, False)


def test_capabilities_from_garbage_sdp() -> None:
    with pytest.raises(SDPError, match="v=0"):
        capabilities_from_sdp(b"<html>")


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        ("<sip:bob@192.0.2.7:5060>;audio;video", Capabilities(audio=True, video=True)),
        ("<sip:bob@192.0.2.7:5060>;audio", Capabilities(audio=True, video=False)),
        ("<sip:bob@192.0.2.7>;expires=3600;video;audio", Capabilities(audio=True, video=True)),
        ('<sip:bob@192.0.2.7>;audio;video="FALSE"', Capabilities(audio=True, video=False)),
        ('<sip:bob@192.0.2.7>;audio="TRUE";video="!TRUE"', Capabilities(audio=True, video=False)),
        ('<sip:bob@192.0.2.7>;audio="!FALSE";video="TRUE"', Capabilities(audio=True, video=True)),
        ("<sip:bob@192.0.2.7>;+sip.audio;+sip.video", Capabilities(audio=True, video=True)),
        ("<sip:bob@192.0.2.7>;AUDIO", Capabilities(audio=True, video=False)),
        (
            '<sip:bob@192.0.2.7;transport=tcp>;+sip.instance="<urn:uuid:0c1e-2>";'
            '+g.3gpp.icsi-ref="urn%3Aurn-7%3A3gpp-service.ims.icsi.mmtel";audio;video',
            Capabilities(audio=True, video=True),
        ),
        ("<sip:bob@192.0.2.7>;expires=3600", None),
        ('<sip:bob@192.0.2.7>;+sip.instance="<urn:uuid:1>";isfocus', None),
        ('<sip:bob@192.0.2.7>;video="maybe"', None),
    ],
)
def test_capabilities_from_contact_feature_tags(
    contact: str, expected: Capabilities | None
) -> None:
    assert capabilities_from_feature_tags(parse_name_addr(contact).params) == expected


def test_capabilities_from_feature_tag_mapping() -> None:
    assert capabilities_from_feature_tags({"video": None, "audio": None}) == Capabilities(
        True, True
    )
    assert capabilities_from_feature_tags({"audio": '"FALSE"'}) == Capabilities(False, False)
    assert capabilities_from_feature_tags({}) is None
