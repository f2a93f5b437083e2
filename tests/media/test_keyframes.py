"""Keyframe detection on real VP8 and H.264 packet layouts, and the ways to ask for one."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st
from video_streams import annexb_nals, encode, h264_payloads, vp8_payloads

from vidim.focus.keyframes import (
    MEDIA_CONTROL_TYPE,
    KeyframeFeedback,
    picture_fast_update_body,
    starts_keyframe,
)

KEY_NALS = {5, 7, 8}


@cache
def frames(codec: str) -> list[tuple[bytes, bool]]:
    encoded = encode(codec, 25, gop=10)
    assert sum(key for _, key in encoded) >= 2, "the encoder made too few keyframes"
    return encoded


@pytest.mark.parametrize(
    ("picture_id", "extra"), [(None, False), (17, False), (300, False), (300, True), (5, True)]
)
def test_vp8_keyframe_is_the_first_packet_of_each_key_frame_only(
    picture_id: int | None, extra: bool
) -> None:
    expected, found = [], []
    for frame, keyframe in frames("libvpx"):
        payloads = vp8_payloads(frame, mtu=120, picture_id=picture_id, extra=extra)
        expected += [keyframe and index == 0 for index in range(len(payloads))]
        found += [starts_keyframe("VP8", payload) for payload in payloads]
    assert found == expected
    assert any(found)


def nal_types(payload: bytes) -> set[int]:
    """The types of the NAL units a payload starts (a STAP-A's units; an FU-A's first fragment)."""
    kind = payload[0] & 0x1F
    if kind == 24:
        pos, kinds = 1, set()
        while pos < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            kinds.add(payload[pos + 2] & 0x1F)
            pos += 2 + size
        return kinds
    if kind == 28:
        return {payload[1] & 0x1F} if payload[1] & 0x80 else set()
    return {kind}


@pytest.mark.parametrize(
    ("aggregate", "mtu"), [(True, 1200), (True, 60), (False, 1200), (False, 40)]
)
def test_h264_keyframes_are_found_from_their_parameter_sets_on(aggregate: bool, mtu: int) -> None:
    """Every IDR access unit is found, at the packet with its SPS (where a decoder can start);
    no packet of another access unit is taken for a keyframe."""
    layouts = set()
    for frame, keyframe in frames("libx264"):
        payloads = h264_payloads(annexb_nals(frame), mtu=mtu, aggregate=aggregate)
        layouts |= {p[0] & 0x1F for p in payloads}
        found = [starts_keyframe("H264", payload) for payload in payloads]
        assert any(found) == keyframe
        if keyframe:
            first_sps = next(i for i, p in enumerate(payloads) if 7 in nal_types(p))
            assert found.index(True) == first_sps
        for payload, key in zip(payloads, found, strict=True):
            assert key == bool(KEY_NALS & nal_types(payload))
    # the layouts meant to be tested were made: STAP-A when aggregating, FU-A on a small MTU
    assert (24 in layouts) == aggregate
    assert (28 in layouts) == (mtu < 100)


def test_h264_later_fragments_and_non_idr_slices_are_not_keyframes() -> None:
    assert starts_keyframe("H264", bytes([0x7C, 0x85]) + b"idr start")  # FU-A, S, type 5
    assert not starts_keyframe("H264", bytes([0x7C, 0x05]) + b"idr middle")
    assert not starts_keyframe("H264", bytes([0x7C, 0x81]) + b"non-idr start")
    assert not starts_keyframe("H264", bytes([0x41]) + b"non-idr slice")
    assert not starts_keyframe("H264", bytes([0x78, 0x00, 0x02, 0x06, 0x05, 0x00, 0x02, 0x41, 0]))
    assert starts_keyframe("H264", bytes([0x78, 0x00, 0x02, 0x06, 0x05, 0x00, 0x02, 0x67, 0]))


def test_vp8_continuation_and_later_partitions_are_not_keyframes() -> None:
    assert starts_keyframe("VP8", bytes([0x10, 0x10]))
    assert not starts_keyframe("VP8", bytes([0x00, 0x10]))  # S not set
    assert not starts_keyframe("VP8", bytes([0x11, 0x10]))  # partition 1
    assert not starts_keyframe("VP8", bytes([0x10, 0x11]))  # P set: an inter frame


@given(
    codec=st.sampled_from(["VP8", "H264", "vp8", "h264", "H265"]), payload=st.binary(max_size=12)
)
def test_any_payload_is_judged_without_raising(codec: str, payload: bytes) -> None:
    assert starts_keyframe(codec, payload) in (True, False)


def test_other_codecs_are_never_keyframes() -> None:
    assert not starts_keyframe("H263", bytes([0x10, 0x10]))


def test_feedback_by_rtcp_or_by_sip_info() -> None:
    assert not KeyframeFeedback().by_rtcp
    assert KeyframeFeedback(pli=True).by_rtcp
    assert KeyframeFeedback(fir=True).by_rtcp


def test_picture_fast_update_body_is_rfc_5168_xml() -> None:
    root = ET.fromstring(picture_fast_update_body())
    assert root.tag == "media_control"
    assert [e.tag for e in root.iter()] == [
        "media_control",
        "vc_primitive",
        "to_encoder",
        "picture_fast_update",
    ]
    assert MEDIA_CONTROL_TYPE == "application/media_control+xml"
