"""SDES (RFC 4568): the a=crypto attribute, and SRTP offers answered by the focus."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vidim.focus import streams_from_sdp
from vidim.focus.media import PortPool, lowest_free
from vidim.focus.negotiation import negotiate
from vidim.sdes import (
    MASTER_KEY_LENGTH,
    SUITES,
    CryptoAttribute,
    CryptoError,
    choose_crypto,
    parse_crypto,
)
from vidim.sdp import MediaDescription, SDPError, answer_media, parse_media, write_media
from vidim.vocabulary import Mode

# RFC 4568 section 4's example (the key with a lifetime and an MKI) and
# section 9.1's second attribute (one key, no MKI).
RFC4568_SECTION_4 = (
    "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
)
RFC4568_SECTION_9 = "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20"
KEY = bytes(range(30))


def sdp(text: str) -> bytes:
    return text.strip().replace("\n", "\r\n").encode() + b"\r\n"


def offer(protocol: str = "RTP/SAVP", *crypto: str) -> bytes:
    lines = "\n".join(f"a=crypto:{value}" for value in crypto)
    return sdp(f"""
v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 4000 {protocol} 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=sendrecv
{lines}
""")


def test_rfc4568_section_4_example_is_read() -> None:
    attribute = parse_crypto(RFC4568_SECTION_4)
    assert (attribute.tag, attribute.suite) == (1, "AES_CM_128_HMAC_SHA1_80")
    assert attribute.key == base64.b64decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    assert len(attribute.key) == MASTER_KEY_LENGTH
    assert (attribute.lifetime, attribute.mki) == ("2^20", "1:32")
    # An MKI needs per-packet key indexes the focus does not write: not usable.
    assert not attribute.usable
    assert attribute.value() == RFC4568_SECTION_4


def test_rfc4568_section_9_attribute_round_trips_and_is_usable() -> None:
    attribute = parse_crypto(RFC4568_SECTION_9)
    assert (attribute.tag, attribute.suite, attribute.lifetime) == (
        2,
        "AES_CM_128_HMAC_SHA1_32",
        "2^20",
    )
    assert attribute.usable
    assert parse_crypto(attribute.value()) == attribute
    assert attribute.value() == RFC4568_SECTION_9


@given(
    tag=st.integers(0, 999_999_999),
    suite=st.sampled_from(SUITES),
    key=st.binary(min_size=MASTER_KEY_LENGTH, max_size=MASTER_KEY_LENGTH),
    lifetime=st.none() | st.sampled_from(["2^31", "2^48", "1048576"]),
)
def test_every_attribute_round_trips(
    tag: int, suite: str, key: bytes, lifetime: str | None
) -> None:
    attribute = CryptoAttribute(tag, suite, key, lifetime)
    assert parse_crypto(attribute.value()) == attribute
    assert attribute.usable


@pytest.mark.parametrize(
    ("value", "usable"),
    [
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY).decode(), True),
        ("1 AES_256_CM_HMAC_SHA1_80 inline:" + base64.b64encode(KEY).decode(), False),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY[:20]).decode(), False),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY).decode() + " KDR=1", False),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:"
            + base64.b64encode(KEY).decode()
            + ";inline:"
            + base64.b64encode(KEY).decode(),
            False,
        ),
    ],
)
def test_what_the_focus_can_use(value: str, usable: bool) -> None:
    assert parse_crypto(value).usable is usable


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1 AES_CM_128_HMAC_SHA1_80",
        "x AES_CM_128_HMAC_SHA1_80 inline:AAAA",
        "1 AES_CM_128_HMAC_SHA1_80 key:AAAA",
        "1 AES_CM_128_HMAC_SHA1_80 inline:***",
        "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA|2^20|1:4|extra",
        "1 AES-CM inline:AAAA",
    ],
)
def test_malformed_attributes_are_refused(value: str) -> None:
    with pytest.raises(CryptoError):
        parse_crypto(value)


def test_the_key_never_shows_in_a_repr() -> None:
    attribute = parse_crypto(RFC4568_SECTION_9)
    assert "NzB4" not in repr(attribute)
    assert attribute.key.hex() not in repr(attribute)


def test_the_first_usable_attribute_is_chosen() -> None:
    offered = [parse_crypto(RFC4568_SECTION_4), parse_crypto(RFC4568_SECTION_9)]
    chosen = choose_crypto(offered)
    assert chosen is not None
    assert chosen.tag == 2
    assert choose_crypto(offered[:1]) is None


# --- the focus's answer ------------------------------------------------------------


def keys(kind: str, offered: CryptoAttribute) -> bytes:
    return KEY


def answer(body: bytes, mode: Mode = Mode.AUDIO) -> tuple[MediaDescription, ...]:
    return answer_media(parse_media(body), mode, address="10.9.0.1", ports={"audio": 40000},
                        keys=keys)  # fmt: skip


def test_an_srtp_offer_is_answered_with_the_focus_own_key() -> None:
    their_key = base64.b64encode(bytes(30 * [7])).decode()
    body = offer("RTP/SAVP", f"5 AES_CM_128_HMAC_SHA1_32 inline:{their_key}|2^31")
    (line,) = answer(body)
    assert (line.port, line.protocol) == (40000, "RTP/SAVP")
    (crypto,) = line.crypto
    assert (crypto.tag, crypto.suite, crypto.key) == (5, "AES_CM_128_HMAC_SHA1_32", KEY)
    # Written and read back, as the participant sees it.
    text = write_media((line,), address="10.9.0.1", session_id=1)
    assert b"m=audio 40000 RTP/SAVP 0 101\r\n" in text
    assert (
        f"a=crypto:5 AES_CM_128_HMAC_SHA1_32 inline:{base64.b64encode(KEY).decode()}\r\n".encode()
        in text
    )
    assert parse_media(text)[0].crypto == line.crypto


def test_savpf_is_answered_as_savpf() -> None:
    (line,) = answer(offer("RTP/SAVPF", RFC4568_SECTION_9))
    assert line.protocol == "RTP/SAVPF"
    assert line.crypto[0].tag == 2


def test_srtp_without_a_usable_key_is_refused_with_488() -> None:
    for body in (offer("RTP/SAVP"), offer("RTP/SAVP", RFC4568_SECTION_4)):
        with pytest.raises(SDPError, match="no usable audio") as info:
            answer(body)
        assert info.value.status_hint == 488


def test_a_malformed_crypto_line_is_the_peer_s_error() -> None:
    with pytest.raises(SDPError, match="a=crypto"):
        parse_media(offer("RTP/SAVP", "1 AES_CM_128_HMAC_SHA1_80 key:zz"))


def test_plain_rtp_stays_plain_even_with_crypto_lines() -> None:
    # pjsua's srtp_use=optional offers RTP/AVP with a=crypto: the focus answers plain.
    (line,) = answer(offer("RTP/AVP", RFC4568_SECTION_9))
    assert (line.protocol, line.crypto) == ("RTP/AVP", ())


def test_an_srtp_line_is_taken_beside_a_plain_one_of_another_kind() -> None:
    body = offer("RTP/SAVP", RFC4568_SECTION_9).replace(
        b"t=0 0\r\n", b"t=0 0\r\nm=video 0 RTP/AVP 96\r\n"
    )
    lines = answer(body)
    assert [(m.kind, m.port, m.protocol) for m in lines] == [
        ("video", 0, "RTP/AVP"),
        ("audio", 40000, "RTP/SAVP"),
    ]


def test_negotiation_gives_the_stream_both_keys_and_keeps_them_while_the_phone_does() -> None:
    body = offer("RTP/SAVP", RFC4568_SECTION_9)
    pool = PortPool(40000, 40100, choose=lowest_free)
    first = negotiate(body, Mode.AUDIO, address="10.9.0.1", pool=pool, current={},
                      session_id=1, version=1)  # fmt: skip
    (stream,) = first.streams
    assert stream.srtp is not None
    assert stream.srtp.suite == "AES_CM_128_HMAC_SHA1_32"
    assert stream.srtp.remote_key == parse_crypto(RFC4568_SECTION_9).key
    (answered,) = parse_media(first.answer)[0].crypto
    assert stream.srtp.local_key == answered.key != stream.srtp.remote_key
    assert len(answered.key) == MASTER_KEY_LENGTH
    assert "keys=<hidden>" in repr(stream.srtp)
    # A refresh with the same key keeps the focus's key; a new key from the phone gets a new one.
    again = negotiate(body, Mode.AUDIO, address="10.9.0.1", pool=pool, current=first.ports,
                      session_id=1, version=2, streams=first.streams)  # fmt: skip
    assert again.streams == first.streams
    rekeyed = body.replace(b"NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj", base64.b64encode(KEY))
    third = negotiate(rekeyed, Mode.AUDIO, address="10.9.0.1", pool=pool, current=first.ports,
                      session_id=1, version=3, streams=first.streams)  # fmt: skip
    (rekeyed_stream,) = third.streams
    assert rekeyed_stream.srtp is not None
    assert rekeyed_stream.srtp.remote_key == KEY
    assert rekeyed_stream.srtp.local_key not in (stream.srtp.local_key, KEY)
    # Without the call's streams (a new call), every answer has a key of its own.
    other = negotiate(body, Mode.AUDIO, address="10.9.0.1", pool=pool, current={},
                      session_id=2, version=1)  # fmt: skip
    assert other.streams[0].srtp is not None
    assert other.streams[0].srtp.local_key != stream.srtp.local_key


def test_a_plain_stream_has_no_keys() -> None:
    body = offer("RTP/AVP")
    (stream,) = streams_from_sdp(parse_media(body), answer(body))
    assert stream.srtp is None
