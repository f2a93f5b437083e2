"""Property tests: any bytes either parse or raise SIPParseError, and the
stream framer gives the same results whether fed whole or byte by byte."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sip_factory import MESSAGE_WITH_MODE, request_bytes, response_bytes

from vidim.sip import Request, Response, SIPParseError, StreamFramer, parse_message

CORPUS = sorted((Path(__file__).parent.parent / "corpus").glob("rfc*/*"))
SEEDS = [p.read_bytes() for p in CORPUS] + [MESSAGE_WITH_MODE, request_bytes(), response_bytes()]
ALPHABET = b'\r\n :;,<>"\\@=%[]/0123456789abcSIPsip\x00\x7f\xff\xc3\xa9'


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    """A corpus message with a few random edits: most paths of the parser."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "dup"]))
        byte = draw(st.sampled_from(ALPHABET))
        if action == "replace":
            data[pos] = byte
        elif action == "insert":
            data.insert(pos, byte)
        elif action == "delete":
            del data[pos]
        elif action == "truncate":
            del data[pos:]
        else:
            end = draw(st.integers(pos, len(data)))
            data[pos:pos] = data[pos:end]
    return bytes(data)


any_bytes = st.one_of(st.binary(max_size=600), mutated_messages())


def outcome(message: Request | Response) -> bytes:
    return message.to_bytes()


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(any_bytes)
def test_parse_message_parses_or_raises_parse_error(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SIPParseError as exc:
        # Either outcome is legal here, so pytest.raises does not fit.
        assert 400 <= exc.status_hint <= 599  # noqa: PT017
        assert exc.reason  # noqa: PT017
        return
    # Whatever parses serializes to something that parses to the same message.
    wire = message.to_bytes()
    again = parse_message(wire)
    assert again.to_bytes() == wire


def framer_results(chunks: list[bytes], limit: int) -> list[tuple[str, object]]:
    framer = StreamFramer(max_message_size=limit)
    results: list[tuple[str, object]] = []
    for chunk in chunks:
        framer.receive_data(chunk)
        while True:
            try:
                message = framer.next_message()
            except SIPParseError as exc:
                results.append(("fatal" if framer.broken else "error", exc.status_hint))
                if framer.broken:
                    return results
                continue
            if message is None:
                break
            results.append(("message", outcome(message)))
    return results


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_bytes, min_size=1, max_size=3), st.sampled_from([300, 65535]))
def test_framer_whole_or_byte_by_byte_agree(pieces: list[bytes], limit: int) -> None:
    stream = b"".join(pieces)
    whole = framer_results([stream], limit)
    bytewise = framer_results([stream[i : i + 1] for i in range(len(stream))], limit)
    assert whole == bytewise


@settings(max_examples=200)
@given(st.lists(st.sampled_from(SEEDS[-3:]), min_size=1, max_size=4), st.data())
def test_framer_recovers_every_valid_message_however_split(
    messages: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    results = framer_results([c for c in chunks if c], 65535)
    assert [kind for kind, _ in results] == ["message"] * len(messages)
    assert [r for _, r in results] == [parse_message(m).to_bytes() for m in messages]
