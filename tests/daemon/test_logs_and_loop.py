"""The daemon's log lines (levels per event, plain and JSON formats) and its event-loop choice."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from vidim_daemon.cli import DEBUG_EVENTS, _event_logger, loop_factory, main
from vidim_daemon.config import ConfigError, load
from vidim_daemon.logs import JsonFormatter, PlainFormatter, setup_logging

from vidim.allocator.conference import ConferenceState
from vidim.allocator.events import (
    ConferenceReady,
    ConferenceStateChanged,
    InvitationSent,
    RequestAccepted,
)
from vidim.vocabulary import Mode


# -- the event loop ---------------------------------------------------------------------
def test_auto_takes_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("uvloop")
    fake.new_event_loop = asyncio.new_event_loop  # type: ignore[attr-defined]
    fake.__version__ = "9.9"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uvloop", fake)
    assert loop_factory("auto") == (asyncio.new_event_loop, "uvloop 9.9")
    assert loop_factory("uvloop") == (asyncio.new_event_loop, "uvloop 9.9")
    assert loop_factory("asyncio") == (None, "asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # not installed
    monkeypatch.setattr("vidim_daemon.cli.setup_logging", lambda *a, **k: None)  # leave pytest's
    assert loop_factory("auto") == (None, "asyncio")
    with pytest.raises(ImportError):
        loop_factory("uvloop")
    result = CliRunner().invoke(main, ["run", "--event-loop", "uvloop", "--listen", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert "uvloop is not installed" in result.output


def test_event_loop_setting_is_validated(tmp_path: Path) -> None:
    assert load().event_loop == "auto"
    path = tmp_path / "vidim.toml"
    path.write_text('event_loop = "asyncio"\n')
    assert load(path).event_loop == "asyncio"
    path.write_text('event_loop = "trio"\n')
    with pytest.raises(ConfigError, match="event_loop: must be one of auto, uvloop, asyncio"):
        load(path)


# -- levels of the events ------------------------------------------------------------------
def test_state_changes_at_info_other_events_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    on_event = _event_logger("allocator")
    changed = ConferenceStateChanged(
        conference_id="c1", old=ConferenceState.REQUESTED, new=ConferenceState.ALLOCATING,
        reason="start allocating",
    )  # fmt: skip
    sent = InvitationSent(conference_id="c1", invitee="sip:bob@example.com", mode=Mode.VIDEO)
    ready = ConferenceReady(conference_id="c1", conference_uri="sip:conf-c1@example.com")
    assert {InvitationSent, ConferenceReady} <= DEBUG_EVENTS
    with caplog.at_level(logging.INFO, logger="vidim.allocator"):
        for event in (changed, sent, ready):
            on_event(event)
    assert [r.getMessage() for r in caplog.records] == [str(changed)]
    assert caplog.records[0].conference_id == "c1"  # type: ignore[attr-defined]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="vidim.allocator"):
        on_event(sent)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


# -- formatting ---------------------------------------------------------------------------------
def _record(msg: str = "hello %s", level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    return logging.getLogger("vidim.test").makeRecord(
        "vidim.test", level, "(unknown file)", 0, msg, ("world",), None, extra=extra
    )


def test_plain_formatter_writes_what_the_standard_format_did() -> None:
    record = _record(call_id="c1", conference_id="k1")
    standard = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    assert PlainFormatter().format(record) == (
        f"{standard.format(record)} [call_id=c1 conference_id=k1]"
    )
    bare = _record()
    assert PlainFormatter().format(bare) == standard.format(bare)


def test_json_lines_are_one_object_each_with_the_extra_fields() -> None:
    line = json.loads(JsonFormatter().format(_record(call_id="c1", mode=Mode.AUDIO)))
    assert (line["level"], line["logger"], line["message"]) == ("info", "vidim.test", "hello world")
    assert (line["call_id"], line["mode"]) == ("c1", "audio")
    assert line["time"].endswith("Z")


# -- memory ---------------------------------------------------------------------------------
def _core_bench() -> types.ModuleType:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "bench" / "core_cpu.py"
    spec = importlib.util.spec_from_file_location("vidim_bench_core_cpu", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_conferences_make_no_reference_cycles() -> None:
    """Reference counting alone frees what a conference leaves: no work for the collector."""
    import gc

    bench = _core_bench().Bench()
    bench.run(50)
    gc.collect()
    gc.disable()
    try:
        bench.run(200)
        assert gc.collect() == 0, "setting conferences up made reference cycles"
        assert bench.allocator.conferences
        for step in (4000.0, 100.0, 100.0):  # idle timeout, then the transactions end
            bench.now += step
            bench.allocator.handle_timer(bench.now)
            bench.allocator.messages_to_send()
            bench.allocator.events()
        assert not bench.allocator.conferences
        assert gc.collect() == 0, "ending conferences made reference cycles"
    finally:
        gc.enable()


def test_the_info_events_read_as_their_fields_with_states_by_value() -> None:
    changed = ConferenceStateChanged(
        conference_id="c1", old=ConferenceState.REQUESTED, new=ConferenceState.ALLOCATING,
        reason="start allocating",
    )  # fmt: skip
    assert str(changed) == (
        "ConferenceStateChanged(conference_id='c1', old=requested, new=allocating, "
        "reason='start allocating')"
    )
    accepted = RequestAccepted(
        call_id="x@h", requester="sip:a@h", command="new", conference_id=None
    )
    assert str(accepted) == (
        "RequestAccepted(call_id='x@h', requester='sip:a@h', command='new', conference_id=None)"
    )
    assert repr(accepted) == str(accepted)  # the generic repr says the same


def test_setup_logging_writes_event_and_message_lines_with_their_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info")
        accepted = RequestAccepted(
            call_id="c1", requester="sip:a@h", command="new", conference_id="k1"
        )
        _event_logger("allocator")(accepted)
        _event_logger("allocator")(
            InvitationSent(conference_id="k1", invitee="sip:b@h", mode=Mode.VIDEO)
        )  # DEBUG: not written
        logging.getLogger("vidim.aio").info(
            "recv MESSAGE from 127.0.0.1:5999/UDP call-id c1",
            extra={"peer": "127.0.0.1:5999/UDP", "transport": "UDP", "call_id": "c1"},
        )
    finally:
        root.handlers[:], root.level = saved
    written = [line.split(" ", 2)[2] for line in stream.getvalue().splitlines()]
    assert written == [
        f"INFO vidim.allocator: {accepted} [conference_id=k1 call_id=c1]",
        "INFO vidim.aio: recv MESSAGE from 127.0.0.1:5999/UDP call-id c1 "
        "[peer=127.0.0.1:5999/UDP transport=UDP call_id=c1]",
    ]
