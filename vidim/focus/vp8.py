"""The VP8 payload descriptor's running counters, read and rewritten (RFC 7741 section 4.2).

A VP8 RTP payload starts with a descriptor that may carry two counters of
its sender's: the PictureID (7 or 15 bits, one per frame) and TL0PICIDX
(8 bits, one per base-layer frame).  A receiver that checks them (WebRTC
does: a jump reads as lost frames) must see them go on across a switch of
source like the sequence numbers do, so the video switch rewrites them with
an offset per receiver (:mod:`.video`).  Both are rewritten in place: the
payload keeps its length, a 7-bit PictureID stays 7 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Vp8Counters", "read_counters", "with_counters"]


@dataclass(frozen=True, slots=True)
class Vp8Counters:
    """The counters a descriptor carries; None for one it does not."""

    picture_id: int | None
    #: 7 or 15: how many bits ``picture_id`` has in this packet.
    picture_id_bits: int
    tl0_pic_idx: int | None


def _layout(payload: bytes) -> tuple[int | None, int, int | None] | None:
    """Offsets of the PictureID and TL0PICIDX fields, and the PictureID's width in bits."""
    if len(payload) < 1 or not payload[0] & 0x80:  # X: no extension, no counters
        return None
    if len(payload) < 2:
        return None
    extension = payload[1]
    pos = 2
    picture_at, bits = None, 7
    if extension & 0x80:  # I
        if len(payload) <= pos:
            return None
        picture_at = pos
        bits = 15 if payload[pos] & 0x80 else 7
        pos += 2 if bits == 15 else 1
    tl0_at = None
    if extension & 0x40:  # L
        tl0_at = pos
        pos += 1
    if len(payload) < pos:
        return None
    return picture_at, bits, tl0_at


def read_counters(payload: bytes) -> Vp8Counters | None:
    """The counters of a VP8 payload's descriptor; None when it has neither (or is cut)."""
    layout = _layout(payload)
    if layout is None:
        return None
    picture_at, bits, tl0_at = layout
    picture_id = None
    if picture_at is not None:
        if bits == 15:
            picture_id = int.from_bytes(payload[picture_at : picture_at + 2], "big") & 0x7FFF
        else:
            picture_id = payload[picture_at] & 0x7F
    tl0 = payload[tl0_at] if tl0_at is not None else None
    if picture_id is None and tl0 is None:
        return None
    return Vp8Counters(picture_id, bits, tl0)


def with_counters(payload: bytes, picture_id: int | None, tl0_pic_idx: int | None) -> bytes:
    """The payload with its counters replaced (taken modulo their width); a counter the
    descriptor does not carry, or a None, is left as it is."""
    layout = _layout(payload)
    if layout is None:
        return payload
    picture_at, bits, tl0_at = layout
    out = bytearray(payload)
    if picture_at is not None and picture_id is not None:
        if bits == 15:
            out[picture_at : picture_at + 2] = (0x8000 | (picture_id & 0x7FFF)).to_bytes(2, "big")
        else:
            out[picture_at] = picture_id & 0x7F
    if tl0_at is not None and tl0_pic_idx is not None:
        out[tl0_at] = tl0_pic_idx & 0xFF
    return bytes(out)
