"""vidim.rtp: every packet built parses back equal; any bytes parse or raise RtpParseError."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vidim.rtp import (
    Bye,
    FirEntry,
    FullIntraRequest,
    PictureLossIndication,
    ReceiverReport,
    ReportBlock,
    RtcpUnknown,
    RtpPacket,
    RtpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_rtcp,
    is_rtcp,
    ntp_timestamp,
    parse_rtcp,
    seq_add,
    seq_diff,
)

u8, u16, u32 = (st.integers(0, 2**n - 1) for n in (8, 16, 32))
words = st.integers(0, 8).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))

rtp_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=u16,
    timestamp=u32,
    ssrc=u32,
    marker=st.booleans(),
    csrc=st.lists(u32, max_size=15).map(tuple),
    extension_profile=st.none() | u16,
    extension=words,
    payload=st.binary(max_size=64),
    padding=st.sampled_from([0, 1, 4, 255]),
).filter(lambda p: p.extension_profile is not None or not p.extension)

blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=u8,
    packets_lost=st.integers(-(2**23), 2**23 - 1),
    highest_sequence=u32,
    jitter=u32,
    last_sr=u32,
    delay_since_last_sr=u32,
)
block_lists = st.lists(blocks, max_size=3).map(tuple)
rtcp_packets = st.one_of(
    st.builds(
        SenderReport,
        ssrc=u32,
        ntp_timestamp=st.integers(0, 2**64 - 1),
        rtp_timestamp=u32,
        packet_count=u32,
        octet_count=u32,
        reports=block_lists,
    ),
    st.builds(ReceiverReport, ssrc=u32, reports=block_lists),
    st.builds(
        SourceDescription,
        chunks=st.lists(
            st.builds(
                SdesChunk,
                ssrc=u32,
                items=st.lists(
                    st.tuples(st.integers(1, 8), st.binary(max_size=20)), max_size=3
                ).map(tuple),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(Bye, ssrcs=st.lists(u32, max_size=4).map(tuple), reason=st.binary(max_size=30)),
    st.builds(PictureLossIndication, sender_ssrc=u32, media_ssrc=u32),
    st.builds(
        FullIntraRequest,
        sender_ssrc=u32,
        entries=st.lists(st.builds(FirEntry, ssrc=u32, sequence=u8), max_size=3).map(tuple),
    ),
    st.builds(
        RtcpUnknown,
        packet_type=st.sampled_from([204, 205, 207]),
        count=st.integers(0, 31),
        body=words,
    ),
)


@given(rtp_packets)
def test_rtp_round_trip(packet: RtpPacket) -> None:
    assert RtpPacket.parse(bytes(packet)) == packet


@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_rtcp_compound_round_trip(packets: list[object]) -> None:
    data = build_rtcp(packets)  # type: ignore[arg-type]
    assert parse_rtcp(data) == tuple(packets)
    assert is_rtcp(data)


@given(st.binary(max_size=80))
def test_any_bytes_parse_or_raise_the_one_error(data: bytes) -> None:
    for parse in (RtpPacket.parse, parse_rtcp):
        with contextlib.suppress(RtpParseError):
            parse(data)


@given(rtp_packets, st.data())
def test_every_truncation_of_an_rtp_header_is_refused(
    packet: RtpPacket, data: st.DataObject
) -> None:
    raw = bytes(packet)
    header = len(raw) - len(packet.payload) - packet.padding
    cut = data.draw(st.integers(0, header - 1))
    if packet.padding:
        return  # the last byte of a cut padded packet is a payload byte, read as a count
    with pytest.raises(RtpParseError):
        RtpPacket.parse(raw[:cut])


def header(first: int, second: int = 0, rest: bytes = bytes(10)) -> bytes:
    return bytes([first, second]) + rest


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x00", "truncated"),
        (header(0x40), "version 1"),
        (header(0x00), "version 0"),
        (header(0x83), "CSRC"),
        (header(0x90), "extension header"),
        (header(0x90, rest=bytes(10) + b"\xbe\xde\x00\x02" + bytes(4)), "extension length"),
        (header(0xA0, rest=bytes(11) + b"\x00"), "padding length 0"),
        (header(0xA0), "no room"),
        (header(0xA0, rest=bytes(11) + b"\x05"), "padding length 5"),
    ],
)
def test_malformed_rtp_headers_are_named(data: bytes, reason: str) -> None:
    with pytest.raises(RtpParseError, match=reason):
        RtpPacket.parse(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x80\xc8", "truncated"),
        (b"\x40\xc8\x00\x00", "version 1"),
        (b"\x80\xc8\x00\x05" + bytes(8), "exceeds"),
        (b"\x80\xc8\x00\x01" + bytes(4), "SR is truncated"),
        (b"\x81\xc9\x00\x01" + bytes(4), "RR has truncated report blocks"),
        (b"\x81\xca\x00\x01" + bytes(4), "no END"),
        (b"\x82\xcb\x00\x01" + bytes(4), "BYE has truncated"),
        (b"\x81\xce\x00\x01" + bytes(4), "feedback is truncated"),
        (
            b"\xa0\xc9\x00\x01" + bytes(4) + b"\x80\xc9\x00\x01" + bytes(4),
            "only allowed on the last",
        ),
    ],
)
def test_malformed_rtcp_is_named(data: bytes, reason: str) -> None:
    with pytest.raises(RtpParseError, match=reason):
        parse_rtcp(data)


def test_padding_is_stripped_on_parse() -> None:
    packet = RtpPacket(
        payload_type=0, sequence_number=1, timestamp=2, ssrc=3, payload=b"abc", padding=5
    )
    raw = bytes(packet)
    assert len(raw) == 12 + 3 + 5
    assert raw[-1] == 5
    assert RtpPacket.parse(raw).payload == b"abc"
    rr = bytes(ReceiverReport(ssrc=9))
    padded = bytes([rr[0] | 0x20]) + rr[1:3] + bytes([rr[3] + 1]) + rr[4:] + b"\x00\x00\x00\x04"
    assert parse_rtcp(padded) == (ReceiverReport(ssrc=9),)


def test_rtp_and_rtcp_are_told_apart_on_one_port() -> None:
    assert not is_rtcp(
        bytes(RtpPacket(payload_type=111, sequence_number=0, timestamp=0, ssrc=1, marker=True))
    )
    assert not is_rtcp(bytes(RtpPacket(payload_type=0, sequence_number=0, timestamp=0, ssrc=1)))
    assert is_rtcp(bytes(PictureLossIndication(sender_ssrc=1, media_ssrc=2)))


def test_sequence_arithmetic_wraps() -> None:
    assert seq_add(65535, 1) == 0
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(100, 100) == 0


def test_ntp_timestamp_of_the_unix_epoch_and_a_half_second() -> None:
    assert ntp_timestamp(0.5) == (2_208_988_800 << 32) + (1 << 31)
    assert struct.pack("!Q", ntp_timestamp(0.0))[:4] == struct.pack("!I", 2_208_988_800)


@given(st.lists(rtcp_packets, min_size=1, max_size=3), st.data())
def test_a_damaged_compound_packet_parses_or_raises_the_one_error(
    packets: list[object], data: st.DataObject
) -> None:
    raw = bytearray(build_rtcp(packets))  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(u8)
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(RtpParseError):
        parse_rtcp(bytes(raw[:cut]))
