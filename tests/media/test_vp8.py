"""The VP8 payload descriptor's counters (RFC 7741 section 4.2), read and rewritten in place."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from video_streams import vp8_payloads

from vidim.focus.vp8 import Vp8Counters, read_counters, with_counters

FRAME = b"\x10\x02\x00\x9d\x01\x2a" + bytes(40)


def test_a_7_bit_and_a_15_bit_picture_id_and_tl0picidx_are_read() -> None:
    [short] = vp8_payloads(FRAME, picture_id=100, wide=False)
    [wide] = vp8_payloads(FRAME, picture_id=100, wide=True)
    [both] = vp8_payloads(FRAME, picture_id=30000, extra=True)
    assert read_counters(short) == Vp8Counters(100, 7, None)
    assert read_counters(wide) == Vp8Counters(100, 15, None)
    assert read_counters(both) == Vp8Counters(30000, 15, 3)


def test_no_counters_no_rewrite() -> None:
    [plain] = vp8_payloads(FRAME)
    assert read_counters(plain) is None
    assert with_counters(plain, 5, 5) == plain
    for cut in (b"\x90", b"\x90\x80", b"\x90\x40"):  # X, then I or L with nothing after
        assert read_counters(cut) is None
        assert with_counters(cut, 1, 1) == cut


@given(
    picture_id=st.integers(0, 32767),
    wide=st.booleans(),
    extra=st.booleans(),
    new_id=st.integers(0, 1 << 20),
    new_tl0=st.integers(0, 1 << 12),
)
def test_rewritten_in_place_modulo_their_width(
    picture_id: int, wide: bool, extra: bool, new_id: int, new_tl0: int
) -> None:
    picture_id = picture_id if wide else picture_id % 128
    [payload] = vp8_payloads(FRAME, picture_id=picture_id, extra=extra, wide=wide)
    out = with_counters(payload, new_id, new_tl0)
    assert len(out) == len(payload)
    assert out[-len(FRAME) :] == FRAME  # the VP8 payload itself is untouched
    bits = 15 if wide else 7
    expected = Vp8Counters(new_id % (1 << bits), bits, new_tl0 % 256 if extra else None)
    assert read_counters(out) == expected
    assert with_counters(out, picture_id, 3 if extra else None) == payload
