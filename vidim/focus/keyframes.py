"""Keyframes: telling one from an RTP payload, and the ways to ask a sender for one.

A receiver can only start decoding a video stream at a keyframe, so the
video switch (:mod:`.video`) changes a receiver's source at the first
packet of the new source's keyframe, and asks for that keyframe when it
decides to switch.  This module holds the codec and signalling knowledge
that takes:

* :func:`starts_keyframe`: whether an RTP payload begins a keyframe, for
  VP8 (RFC 7741 section 4: payload descriptor, then the key frame bit of the
  VP8 payload header) and H.264 (RFC 6184: an IDR slice, SPS or PPS, alone,
  in a STAP-A aggregate, or at the start of an FU-A fragment);
* :class:`KeyframeFeedback`: whether the sender negotiated RTCP PLI
  (RFC 4585 ``a=rtcp-fb:* nack pli``) or FIR (RFC 5104 ``a=rtcp-fb:* ccm fir``)
  for its video (read from the SDP by :mod:`vidim.sdp`, kept in
  :attr:`vidim.focus.media.StreamInfo.feedback`);
* :func:`picture_fast_update_body`: the SIP INFO body of RFC 5168 for a
  sender that negotiated neither.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MEDIA_CONTROL_TYPE",
    "NO_FEEDBACK",
    "KeyframeFeedback",
    "is_picture_fast_update",
    "picture_fast_update_body",
    "starts_keyframe",
]

#: The Content-Type of a SIP INFO asking for a keyframe (RFC 5168 section 4).
MEDIA_CONTROL_TYPE = "application/media_control+xml"

#: H.264 NAL unit types (RFC 6184 section 5.2, H.264 table 7-1).
_NAL_IDR, _NAL_SPS, _NAL_PPS, _NAL_STAP_A, _NAL_FU_A = 5, 7, 8, 24, 28
_NAL_KEY = frozenset({_NAL_IDR, _NAL_SPS, _NAL_PPS})


def _vp8_starts_keyframe(payload: bytes) -> bool:
    """RFC 7741 section 4.2 (descriptor) and 4.3 (payload header)."""
    if not payload:
        return False
    first = payload[0]
    start_of_partition, partition_index = first & 0x10, first & 0x07
    if not start_of_partition or partition_index != 0:
        return False  # not the first packet of a frame
    pos = 1
    if first & 0x80:  # X: an extension byte follows
        if len(payload) <= pos:
            return False
        extension = payload[pos]
        pos += 1
        if extension & 0x80:  # I: a picture ID, 7 bits or (M set) 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if extension & 0x40:  # L: TL0PICIDX
            pos += 1
        if extension & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if len(payload) <= pos:
        return False
    # The VP8 payload header's P bit: 0 for a key frame (RFC 6386 section 9.1).
    return not payload[pos] & 0x01


def _h264_starts_keyframe(payload: bytes) -> bool:
    """RFC 6184 sections 5.6 (single NAL), 5.7.1 (STAP-A), 5.8 (FU-A)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in _NAL_KEY:
        return True
    if nal_type == _NAL_STAP_A:
        pos = 1
        while pos + 3 <= len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if size == 0:
                return False
            if payload[pos + 2] & 0x1F in _NAL_KEY:
                return True
            pos += 2 + size
        return False
    if nal_type == _NAL_FU_A and len(payload) >= 2:
        fu_header = payload[1]
        return bool(fu_header & 0x80) and fu_header & 0x1F in _NAL_KEY
    return False


_DETECTORS = {"vp8": _vp8_starts_keyframe, "h264": _h264_starts_keyframe}


def starts_keyframe(codec_name: str, payload: bytes) -> bool:
    """Whether a receiver may start decoding ``codec_name`` (VP8 or H264) at this RTP payload.

    VP8: the first packet of a key frame.  H.264: a packet carrying an SPS, a
    PPS or the first fragment of an IDR slice; senders put the parameter sets
    just before the IDR picture, so the first such packet of an access unit
    (where the switch changes source) is its SPS.  Another codec name, or a
    truncated payload, is never a keyframe.
    """
    detector = _DETECTORS.get(codec_name.lower())
    return detector is not None and detector(payload)


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyframeFeedback:
    """Which RTCP keyframe requests a video sender negotiated."""

    pli: bool = False
    """``a=rtcp-fb:<pt or *> nack pli`` (RFC 4585 section 4.2)."""
    fir: bool = False
    """``a=rtcp-fb:<pt or *> ccm fir`` (RFC 5104 section 7.1)."""

    @property
    def by_rtcp(self) -> bool:
        """False: ask with SIP INFO ``picture_fast_update`` instead (RFC 5168)."""
        return self.pli or self.fir


#: A sender that negotiated no RTCP keyframe request (SIP INFO is the way to ask it).
NO_FEEDBACK = KeyframeFeedback()


def picture_fast_update_body() -> bytes:
    """The SIP INFO body asking the encoder for a keyframe (RFC 5168 section 4)."""
    return (
        b'<?xml version="1.0" encoding="utf-8" ?>\r\n'
        b"<media_control>\r\n"
        b"  <vc_primitive>\r\n"
        b"    <to_encoder>\r\n"
        b"      <picture_fast_update/>\r\n"
        b"    </to_encoder>\r\n"
        b"  </vc_primitive>\r\n"
        b"</media_control>\r\n"
    )


def is_picture_fast_update(content_type: str | None, body: bytes) -> bool:
    """Whether a SIP INFO body asks for a keyframe (RFC 5168: ``picture_fast_update`` in
    an ``application/media_control+xml`` body; read loosely, as phones write it)."""
    return content_type == MEDIA_CONTROL_TYPE and b"picture_fast_update" in body
