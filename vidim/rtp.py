"""RTP (RFC 3550) and RTCP packets as frozen dataclasses: ``parse`` from bytes, ``bytes()`` back.

One module for the wire format of media, shared by the focus's mixer and the
relay.  Every parser refuses a malformed header with :class:`RtpParseError`
(one error type, a :class:`ValueError`, whose message says what is wrong);
every packet built with ``bytes(packet)`` parses back to an equal packet.

RTCP: sender and receiver reports, SDES, BYE (RFC 3550 section 6), PLI
(RFC 4585 section 6.3.1) and FIR (RFC 5104 section 4.3.1); other packet
types are kept as :class:`RtcpUnknown` so a compound packet still round-trips.
:func:`is_rtcp` tells RTCP from RTP on one port (RFC 5761 section 4).

Sequence numbers wrap at 2**16: compare them with :func:`seq_diff`, never ``<``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "NTP_UNIX_OFFSET",
    "Bye",
    "FirEntry",
    "FullIntraRequest",
    "PictureLossIndication",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpUnknown",
    "RtpPacket",
    "RtpParseError",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "build_rtcp",
    "is_rtcp",
    "ntp_timestamp",
    "parse_rtcp",
    "seq_add",
    "seq_diff",
]

#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800

RTP_VERSION = 2
_RTP_HEADER = struct.Struct("!BBHII")
_RTCP_HEADER = struct.Struct("!BBH")
_REPORT_BLOCK = struct.Struct("!IiIIII")

#: RTCP packet types (RFC 3550 section 12.1, RFC 4585 section 6.1).
RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_BYE, RTCP_RTPFB, RTCP_PSFB = 200, 201, 202, 203, 205, 206
#: Payload-specific feedback formats (RFC 4585 section 6.3, RFC 5104 section 4.3).
PSFB_PLI, PSFB_FIR = 1, 4


class RtpParseError(ValueError):
    """Bytes that are not a well-formed RTP or RTCP packet; the message says why."""


def seq_add(seq: int, delta: int) -> int:
    """``seq + delta`` modulo 2**16."""
    return (seq + delta) & 0xFFFF


def seq_diff(a: int, b: int) -> int:
    """How far sequence number ``a`` is after ``b``, in -32768..32767 (negative: before)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ntp_timestamp(unix_time: float) -> int:
    """The 64-bit NTP timestamp (32.32 fixed point) of a Unix time in seconds."""
    return int((unix_time + NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on a multiplexed port is RTCP (RFC 5761 section 4).

    RTCP packet types 192-223 sit where RTP has marker + payload type; RTP
    payload types 64-95 (which would collide) are never used on such a port.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


def _strip_padding(data: bytes, start: int, what: str) -> bytes:
    """The bytes of a padded packet without its padding (the last byte counts it)."""
    if len(data) <= start:
        raise RtpParseError(f"{what} has padding but no room for it")
    count = data[-1]
    if count == 0 or start + count > len(data):
        raise RtpParseError(f"{what} padding length {count} is invalid")
    return data[: len(data) - count]


@dataclass(frozen=True, kw_only=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 section 5.1)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    """The 16-bit profile of a header extension, None without one."""
    extension: bytes = b""
    """The extension's data (a multiple of 4 bytes), without its 4-byte header."""
    payload: bytes = b""
    padding: int = 0
    """Padding bytes to add when built (0: none); parse keeps the count it read."""

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet; raises :class:`RtpParseError` on any malformed header."""
        if len(data) < _RTP_HEADER.size:
            raise RtpParseError(f"RTP packet is truncated ({len(data)} bytes, header is 12)")
        first, second, seq, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpParseError(f"RTP version {first >> 6} is not 2")
        padding = 0
        if first & 0x20:
            body_start = _RTP_HEADER.size + 4 * (first & 0x0F)
            stripped = _strip_padding(data, body_start, "RTP packet")
            padding = len(data) - len(stripped)
            data = stripped
        pos = _RTP_HEADER.size
        csrc_count = first & 0x0F
        if len(data) < pos + 4 * csrc_count:
            raise RtpParseError(f"RTP packet has truncated CSRC list ({csrc_count} announced)")
        csrc = struct.unpack_from(f"!{csrc_count}I", data, pos)
        pos += 4 * csrc_count
        profile: int | None = None
        extension = b""
        if first & 0x10:
            if len(data) < pos + 4:
                raise RtpParseError("RTP packet has truncated extension header")
            profile, words = struct.unpack_from("!HH", data, pos)
            pos += 4
            if len(data) < pos + 4 * words:
                raise RtpParseError(f"RTP extension length {words} words exceeds the packet")
            extension = data[pos : pos + 4 * words]
            pos += 4 * words
        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=ssrc,
            marker=bool(second & 0x80),
            csrc=csrc,
            extension_profile=profile,
            extension=extension,
            payload=data[pos:],
            padding=padding,
        )

    def __bytes__(self) -> bytes:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} is not 0-127")
        if len(self.csrc) > 15:
            raise ValueError("at most 15 CSRCs")
        if len(self.extension) % 4 or (self.extension and self.extension_profile is None):
            raise ValueError("an extension is a multiple of 4 bytes, with a profile")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"padding {self.padding} is not 0-255")
        first = RTP_VERSION << 6 | len(self.csrc)
        first |= 0x20 if self.padding else 0
        first |= 0x10 if self.extension_profile is not None else 0
        parts = [
            _RTP_HEADER.pack(
                first,
                self.payload_type | (0x80 if self.marker else 0),
                self.sequence_number,
                self.timestamp,
                self.ssrc,
            ),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension_profile is not None:
            parts.append(struct.pack("!HH", self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


# -- RTCP ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportBlock:
    """Reception statistics about one source (RFC 3550 section 6.4.1)."""

    ssrc: int
    fraction_lost: int
    """Lost since the last report, as a fraction of 256."""
    packets_lost: int
    """Cumulative, a signed 24-bit number (duplicates can make it negative)."""
    highest_sequence: int
    """Extended highest sequence number received (cycles << 16 | seq)."""
    jitter: int
    """Interarrival jitter in timestamp units (RFC 3550 appendix A.8)."""
    last_sr: int = 0
    """Middle 32 bits of the NTP timestamp of the last SR received from it."""
    delay_since_last_sr: int = 0
    """In units of 1/65536 s."""

    @classmethod
    def parse(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(
            ssrc=ssrc,
            fraction_lost=(lost_word >> 24) & 0xFF,
            packets_lost=lost,
            highest_sequence=highest,
            jitter=jitter,
            last_sr=lsr,
            delay_since_last_sr=dlsr,
        )

    def __bytes__(self) -> bytes:
        lost = max(-(1 << 23), min(self.packets_lost, (1 << 23) - 1)) & 0xFFFFFF
        return struct.pack(
            "!IIIIII",
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )


def _parse_blocks(body: bytes, pos: int, count: int, what: str) -> tuple[ReportBlock, ...]:
    if len(body) < pos + count * _REPORT_BLOCK.size:
        raise RtpParseError(f"RTCP {what} has truncated report blocks ({count} announced)")
    return tuple(ReportBlock.parse(body, pos + i * _REPORT_BLOCK.size) for i in range(count))


def _rtcp_header(packet_type: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise ValueError("an RTCP packet body is a multiple of 4 bytes")
    if not 0 <= count <= 31:
        raise ValueError(f"RTCP count {count} is not 0-31")
    return _RTCP_HEADER.pack(RTP_VERSION << 6 | count, packet_type, len(body) // 4) + body


@dataclass(frozen=True, kw_only=True, slots=True)
class SenderReport:
    """SR: what a sender sent, and its reception reports (RFC 3550 section 6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    @classmethod
    def parse(cls, count: int, body: bytes) -> SenderReport:
        if len(body) < 24:
            raise RtpParseError("RTCP SR is truncated (sender info is 24 bytes)")
        ssrc, ntp, rtp_ts, packets, octets = struct.unpack_from("!IQIII", body)
        reports = _parse_blocks(body, 24, count, "SR")
        return cls(
            ssrc=ssrc,
            ntp_timestamp=ntp,
            rtp_timestamp=rtp_ts,
            packet_count=packets,
            octet_count=octets,
            reports=reports,
        )

    def __bytes__(self) -> bytes:
        body = struct.pack(
            "!IQIII",
            self.ssrc,
            self.ntp_timestamp,
            self.rtp_timestamp,
            self.packet_count,
            self.octet_count,
        )
        body += b"".join(bytes(block) for block in self.reports)
        return _rtcp_header(RTCP_SR, len(self.reports), body)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReceiverReport:
    """RR: reception reports from a participant that sends nothing (RFC 3550 section 6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    @classmethod
    def parse(cls, count: int, body: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise RtpParseError("RTCP RR is truncated (no SSRC)")
        (ssrc,) = struct.unpack_from("!I", body)
        return cls(ssrc=ssrc, reports=_parse_blocks(body, 4, count, "RR"))

    def __bytes__(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(bytes(b) for b in self.reports)
        return _rtcp_header(RTCP_RR, len(self.reports), body)


#: SDES item type of the canonical name (RFC 3550 section 6.5.1).
SDES_CNAME = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class SdesChunk:
    """One source's SDES items: ``(type, value)`` pairs, e.g. ``(SDES_CNAME, b"focus@host")``."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    def __bytes__(self) -> bytes:
        out = bytearray(struct.pack("!I", self.ssrc))
        for kind, value in self.items:
            if not 1 <= kind <= 255 or len(value) > 255:
                raise ValueError("an SDES item has a type 1-255 and at most 255 bytes")
            out += bytes([kind, len(value)]) + value
        out += bytes(4 - len(out) % 4)  # the END item, then padding to a 32-bit boundary
        return bytes(out)


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceDescription:
    """SDES: items (CNAME, ...) per source (RFC 3550 section 6.5)."""

    chunks: tuple[SdesChunk, ...] = ()

    @classmethod
    def parse(cls, count: int, body: bytes) -> SourceDescription:
        chunks = []
        pos = 0
        for _ in range(count):
            if len(body) < pos + 4:
                raise RtpParseError("RTCP SDES has a truncated chunk")
            (ssrc,) = struct.unpack_from("!I", body, pos)
            pos += 4
            items = []
            while True:
                if pos >= len(body):
                    raise RtpParseError("RTCP SDES chunk has no END item")
                kind = body[pos]
                if kind == 0:
                    pos = (pos // 4 + 1) * 4  # END, then padding to the next 32-bit boundary
                    break
                if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                    raise RtpParseError("RTCP SDES item is truncated")
                length = body[pos + 1]
                items.append((kind, body[pos + 2 : pos + 2 + length]))
                pos += 2 + length
            chunks.append(SdesChunk(ssrc=ssrc, items=tuple(items)))
        return cls(chunks=tuple(chunks))

    def __bytes__(self) -> bytes:
        body = b"".join(bytes(chunk) for chunk in self.chunks)
        return _rtcp_header(RTCP_SDES, len(self.chunks), body)


@dataclass(frozen=True, kw_only=True, slots=True)
class Bye:
    """BYE: these sources leave (RFC 3550 section 6.6)."""

    ssrcs: tuple[int, ...]
    reason: bytes = b""

    @classmethod
    def parse(cls, count: int, body: bytes) -> Bye:
        if len(body) < 4 * count:
            raise RtpParseError(f"RTCP BYE has truncated SSRC list ({count} announced)")
        ssrcs = struct.unpack_from(f"!{count}I", body)
        reason = b""
        if len(body) > 4 * count:
            length = body[4 * count]
            if 4 * count + 1 + length > len(body):
                raise RtpParseError("RTCP BYE reason is truncated")
            reason = body[4 * count + 1 : 4 * count + 1 + length]
        return cls(ssrcs=ssrcs, reason=reason)

    def __bytes__(self) -> bytes:
        body = struct.pack(f"!{len(self.ssrcs)}I", *self.ssrcs)
        if self.reason:
            if len(self.reason) > 255:
                raise ValueError("a BYE reason is at most 255 bytes")
            body += bytes([len(self.reason)]) + self.reason
            body += bytes(-len(body) % 4)
        return _rtcp_header(RTCP_BYE, len(self.ssrcs), body)


@dataclass(frozen=True, kw_only=True, slots=True)
class PictureLossIndication:
    """PLI: the receiver lost a picture, send a keyframe (RFC 4585 section 6.3.1)."""

    sender_ssrc: int
    media_ssrc: int

    def __bytes__(self) -> bytes:
        body = struct.pack("!II", self.sender_ssrc, self.media_ssrc)
        return _rtcp_header(RTCP_PSFB, PSFB_PLI, body)


@dataclass(frozen=True, kw_only=True, slots=True)
class FirEntry:
    """One FIR request: the source asked, and the command sequence number (RFC 5104)."""

    ssrc: int
    sequence: int


@dataclass(frozen=True, kw_only=True, slots=True)
class FullIntraRequest:
    """FIR: send a decoder refresh point now (RFC 5104 section 4.3.1)."""

    sender_ssrc: int
    entries: tuple[FirEntry, ...]
    media_ssrc: int = 0
    """Always 0 for FIR (the sources are in the entries)."""

    def __bytes__(self) -> bytes:
        body = struct.pack("!II", self.sender_ssrc, self.media_ssrc)
        body += b"".join(struct.pack("!IB3x", e.ssrc, e.sequence & 0xFF) for e in self.entries)
        return _rtcp_header(RTCP_PSFB, PSFB_FIR, body)


@dataclass(frozen=True, kw_only=True, slots=True)
class RtcpUnknown:
    """An RTCP packet of a type this module does not read (APP, NACK, ...), kept whole."""

    packet_type: int
    count: int
    body: bytes = field(default=b"")

    def __bytes__(self) -> bytes:
        return _rtcp_header(self.packet_type, self.count, self.body)


RtcpPacket = (
    SenderReport
    | ReceiverReport
    | SourceDescription
    | Bye
    | PictureLossIndication
    | FullIntraRequest
    | RtcpUnknown
)


def _parse_feedback(count: int, body: bytes) -> RtcpPacket:
    if len(body) < 8:
        raise RtpParseError("RTCP feedback is truncated (two SSRCs are 8 bytes)")
    sender, media = struct.unpack_from("!II", body)
    if count == PSFB_PLI:
        if len(body) != 8:
            raise RtpParseError("RTCP PLI has a body after its SSRCs")
        return PictureLossIndication(sender_ssrc=sender, media_ssrc=media)
    if count == PSFB_FIR:
        if len(body) % 8:
            raise RtpParseError("RTCP FIR entries are 8 bytes each")
        entries = tuple(
            FirEntry(ssrc=ssrc, sequence=seq) for ssrc, seq in struct.iter_unpack("!IB3x", body[8:])
        )
        return FullIntraRequest(sender_ssrc=sender, media_ssrc=media, entries=entries)
    return RtcpUnknown(packet_type=RTCP_PSFB, count=count, body=body)


def parse_rtcp(data: bytes) -> tuple[RtcpPacket, ...]:
    """Split and parse a compound RTCP packet (RFC 3550 section 6.1).

    Raises :class:`RtpParseError` on any malformed header: wrong version, a
    length past the datagram, padding anywhere but on the last packet.
    """
    if not data:
        raise RtpParseError("RTCP packet is empty")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if len(data) < pos + _RTCP_HEADER.size:
            raise RtpParseError(f"RTCP packet is truncated ({len(data) - pos} bytes, header is 4)")
        first, packet_type, words = _RTCP_HEADER.unpack_from(data, pos)
        if first >> 6 != RTP_VERSION:
            raise RtpParseError(f"RTCP version {first >> 6} is not 2")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise RtpParseError(f"RTCP length {words} words exceeds the packet")
        body = data[pos + 4 : end]
        if first & 0x20:
            if end != len(data):
                raise RtpParseError("RTCP padding is only allowed on the last packet")
            body = _strip_padding(body, 0, "RTCP packet")
        count = first & 0x1F
        if packet_type == RTCP_SR:
            packets.append(SenderReport.parse(count, body))
        elif packet_type == RTCP_RR:
            packets.append(ReceiverReport.parse(count, body))
        elif packet_type == RTCP_SDES:
            packets.append(SourceDescription.parse(count, body))
        elif packet_type == RTCP_BYE:
            packets.append(Bye.parse(count, body))
        elif packet_type == RTCP_PSFB:
            packets.append(_parse_feedback(count, body))
        else:
            packets.append(RtcpUnknown(packet_type=packet_type, count=count, body=body))
        pos = end
    return tuple(packets)


def build_rtcp(packets: tuple[RtcpPacket, ...] | list[RtcpPacket]) -> bytes:
    """One compound RTCP packet from its parts, in order."""
    return b"".join(bytes(packet) for packet in packets)
