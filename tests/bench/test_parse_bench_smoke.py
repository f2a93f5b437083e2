"""Smoke test of bench/parse.py: every message parses and gets a positive rate.

Runs in the project's .venv, where sippy is not installed: the sippy columns are
measured only when sippy is importable.  No timing is asserted.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from bench_scripts import load_script

from vidim.sip import Request, Response, parse_message


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("parse")


def test_messages_parse_to_the_right_start_line(bench: ModuleType) -> None:
    expected = {
        "MESSAGE": "MESSAGE",
        "INVITE+SDP": "INVITE",
        "200 OK+SDP": 200,
        "NOTIFY+XML": "NOTIFY",
    }
    assert {name: want for name, (_, want) in bench.MESSAGES.items()} == expected
    for name, (data, want) in bench.MESSAGES.items():
        message = parse_message(data)
        if isinstance(want, int):
            assert isinstance(message, Response), name
            assert message.status == want
        else:
            assert isinstance(message, Request), name
            assert message.method == want
            assert message.cseq.method == want
        # Content-Length is exact: the body is everything after the blank line.
        assert message.body == data.split(b"\r\n\r\n", 1)[1]
        assert message.content_length == len(message.body)
        assert parse_message(message.to_bytes()).to_bytes() == message.to_bytes()


def test_messages_carry_what_the_benchmark_describes(bench: ModuleType) -> None:
    message = parse_message(bench.MESSAGE)
    assert message.headers.get("X-Vidim-Mode") == "video"
    assert message.headers.get("X-Vidim-Invite") == "<sip:carol@example.com>;mode=audio"
    assert message.headers.get("P-Asserted-Identity") is not None
    assert message.route
    assert message.record_route
    for data in (bench.INVITE, bench.OK):
        sdp = parse_message(data)
        assert sdp.content_type is not None
        assert sdp.content_type.mime == "application/sdp"
        assert b"m=audio " in sdp.body
        assert b"m=video " in sdp.body
        assert len(sdp.via) >= 3
    notify = parse_message(bench.NOTIFY)
    assert notify.content_type is not None
    assert notify.content_type.mime == "application/conference-info+xml"
    assert notify.body.count(b"<user ") >= 3


def test_quick_run_gives_a_positive_rate_for_every_message(bench: ModuleType) -> None:
    rows = bench.run_benchmark(quick=True)
    assert [row.name for row in rows] == [*bench.MESSAGES, bench.MIX]
    for row in rows:
        for column in ("vidim read", "vidim read+write"):
            assert row.rates[column] > 0, (row.name, column)
        if bench.sippy_available():
            for column in ("read", "read+write"):
                ratio = row.ratio(column)
                assert ratio is not None
                assert ratio > 0
    table = bench.format_table(rows)
    assert all(name in table for name in bench.MESSAGES)


def test_quick_command_line(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| message |" in out
    assert "mix" in out
