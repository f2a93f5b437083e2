"""The daemon's cheap logging (batched writes, levels per event) and its event-loop choice."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from vidim_daemon.cli import DEBUG_EVENTS, _event_logger, loop_factory, main
from vidim_daemon.config import ConfigError, load
from vidim_daemon.logs import (
    BatchHandler,
    JsonFormatter,
    LeanLogRecord,
    Line,
    PlainFormatter,
    batch_for,
    log_line,
    setup_logging,
)

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


# -- formatting and batching ------------------------------------------------------------------
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
    assert PlainFormatter().format(_record()) == standard.format(_record())


@pytest.mark.parametrize(
    ("pathname", "args"),
    [
        ("(unknown file)", ("world",)),  # the daemon's records: the lean path
        ("(unknown file)", ()),
        ("/srv/app/mod.py", ("world",)),  # a caller was looked up: LogRecord's own path
        ("(unknown file)", ({"who": "world"},)),  # a sole mapping argument
    ],
)
def test_lean_records_have_logrecords_attributes(pathname: str, args: tuple[object, ...]) -> None:
    standard = logging.LogRecord("vidim.test", logging.INFO, pathname, 7, "hi %s", args, None)
    lean = LeanLogRecord("vidim.test", logging.INFO, pathname, 7, "hi %s", args, None)
    assert isinstance(lean, logging.LogRecord)
    clock = {"created", "msecs", "relativeCreated"}
    assert list(vars(lean)) == list(vars(standard))  # same fields, same order: extras come after
    assert {k: v for k, v in vars(lean).items() if k not in clock} == {
        k: v for k, v in vars(standard).items() if k not in clock
    }
    assert lean.getMessage() == standard.getMessage()
    assert abs(lean.created - standard.created) < 5.0
    assert lean.msecs == int((lean.created - int(lean.created)) * 1000)


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """The process's logging set-up as it was, whatever setup_logging does inside."""
    before_factory, root = logging.getLogRecordFactory(), logging.getLogger()
    before = (root.handlers[:], root.level)
    switches = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")
    saved = {name: getattr(logging, name) for name in switches}
    try:
        yield
    finally:
        logging.setLogRecordFactory(before_factory)
        root.handlers[:] = before[0]
        root.setLevel(before[1])
        for name, value in saved.items():
            setattr(logging, name, value)


def test_setup_logging_installs_the_lean_record_factory() -> None:
    with _logging_restored():
        setup_logging("info")
        record = logging.getLogger("vidim.test").makeRecord(
            "vidim.test", logging.INFO, "(unknown file)", 0, "x", (), None, extra={"call_id": "c"}
        )
        assert type(record) is LeanLogRecord
        assert PlainFormatter().format(record).endswith("INFO vidim.test: x [call_id=c]")


def test_json_formatter_carries_the_extra_fields() -> None:
    line = JsonFormatter().format(_record(call_id="c1"))
    assert '"message": "hello world"' in line
    assert '"call_id": "c1"' in line


class _Stream(io.StringIO):
    """Counts writes; sets ``written`` on each one."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.written: asyncio.Event | None = None

    def write(self, text: str) -> int:
        self.writes += 1
        if self.written is not None:
            self.written.set()
        return super().write(text)


def _plain_batch(**options: Any) -> tuple[_Stream, BatchHandler]:
    """A BatchHandler with the plain formatter, writing to a counting stream."""
    stream = _Stream()
    handler = BatchHandler(stream, **options)
    handler.setFormatter(PlainFormatter())
    return stream, handler


def test_records_in_the_loop_are_written_together_later() -> None:
    stream, handler = _plain_batch(interval=0.01)

    async def main() -> None:
        stream.written = asyncio.Event()
        handler.handle(_record("first %s"))
        handler.handle(_record("second %s"))
        assert stream.getvalue() == ""  # nothing on the path of the input that logged
        await asyncio.wait_for(stream.written.wait(), 5.0)
        assert stream.writes == 1
        lines = stream.getvalue().splitlines()
        assert [line.split(": ", 1)[1] for line in lines] == ["first world", "second world"]
        # A warning is written at once, with what waited before it.
        handler.handle(_record("third %s"))
        handler.handle(_record("careful %s", logging.WARNING))
        assert stream.getvalue().splitlines()[-1].endswith("careful world")
        assert len(stream.getvalue().splitlines()) == 4

    asyncio.run(main())


def test_a_full_batch_is_written_at_the_loops_next_turn_not_inside_the_callback() -> None:
    stream, handler = _plain_batch(interval=60.0, max_batch=3)

    async def main() -> None:
        stream.written = asyncio.Event()
        for n in range(3):
            handler.handle(_record(f"line {n} %s"))
        assert stream.getvalue() == ""  # full, but this callback is not the place to write
        await asyncio.wait_for(stream.written.wait(), 5.0)  # the next turn, not in 60 s
        assert len(stream.getvalue().splitlines()) == 3
        for n in range(12):  # a loop that never comes round: written at 4x the batch
            handler.handle(_record(f"more {n} %s"))
        assert len(stream.getvalue().splitlines()) == 15
        assert stream.writes == 2

    asyncio.run(main())


def test_a_long_batch_is_written_a_chunk_per_turn_with_the_loops_io_between() -> None:
    stream, handler = _plain_batch(interval=0.0, chunk=2)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # How many lines the log holds at each turn of the loop: other work (a
        # datagram read) gets turns between two chunks.
        seen: list[int] = []

        def each_turn() -> None:
            seen.append(len(stream.getvalue().splitlines()))
            if len(seen) < 10:
                loop.call_soon(each_turn)

        for n in range(5):
            handler.handle(_record(f"line {n} %s"))
        loop.call_soon(each_turn)
        for _ in range(12):
            await asyncio.sleep(0)
        lines = [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()]
        assert lines == [f"line {n} world" for n in range(5)]  # all of them, in order
        assert stream.writes == 3  # 2 + 2 + 1
        assert {2, 4} <= set(seen)  # turns that saw part of the batch written
        assert seen[-1] == 5

    asyncio.run(main())


def test_flush_writes_every_waiting_record_at_once() -> None:
    stream, handler = _plain_batch(interval=60.0, chunk=2)

    async def main() -> None:
        for n in range(5):
            handler.handle(_record(f"line {n} %s"))
        handler.flush()  # logging.shutdown(), a WARNING: no chunks
        assert stream.writes == 1
        assert len(stream.getvalue().splitlines()) == 5

    asyncio.run(main())


def test_records_outside_a_loop_are_written_at_once_and_flush_empties_the_batch() -> None:
    stream, handler = _plain_batch()
    handler.handle(_record())
    assert stream.getvalue().endswith("hello world\n")

    async def main() -> None:
        handler.handle(_record("pending %s"))

    asyncio.run(main())  # the loop closed before the batch's turn came
    handler.flush()  # as logging.shutdown() does at exit
    assert stream.getvalue().endswith("pending world\n")


# -- the garbage collector ----------------------------------------------------------------
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
    """What the daemon's collector settings rely on (cli._tune_garbage_collector).

    Objects that outlive a collection are frozen, so a reference cycle among
    them would never be reclaimed: setting conferences up and ending them
    must leave no cyclic garbage.
    """
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


def test_survivors_of_a_collection_are_frozen_and_long_pauses_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import gc

    from vidim_daemon.cli import _GcPauses

    pauses = _GcPauses()
    pauses.threshold = 0.0  # log every pause
    kept = [[n] for n in range(100)]  # young objects that survive
    try:
        before = gc.get_freeze_count()
        with caplog.at_level(logging.INFO, logger="vidim.daemon"):
            pauses.callback("start", {"generation": 0})
            pauses.callback("stop", {"generation": 0, "collected": 0})
        assert gc.get_freeze_count() >= before + len(kept)
        (record,) = caplog.records
        assert record.getMessage().startswith("garbage collection of generation 0: ")
        assert record.gc_generation == 0  # type: ignore[attr-defined]
    finally:
        gc.unfreeze()


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


# -- event lines straight to the batch ------------------------------------------------------
@pytest.fixture
def daemon_logging() -> Iterator[BatchHandler]:
    """setup_logging's set-up, writing to a StringIO; the process's logging restored after."""
    with _logging_restored():
        setup_logging("info")
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, BatchHandler)
        handler.stream = io.StringIO()
        yield handler
        handler.flush()


@given(
    created=st.floats(min_value=1e9, max_value=4e9),
    level=st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, 25]),
    message=st.text(max_size=40),
    extras=st.lists(
        st.tuples(st.sampled_from(["call_id", "conference_id", "peer"]), st.text(max_size=12)),
        max_size=3,
        unique_by=lambda kv: kv[0],
    ),
)
def test_a_line_reads_as_the_record_it_stands_for(
    created: float, level: int, message: str, extras: list[tuple[str, str]]
) -> None:
    line = Line(created, level, "vidim.allocator", message, tuple(extras))
    record = line.record()
    assert record.getMessage() == message
    assert PlainFormatter().format_line(line) == PlainFormatter().format(record)
    # and that record is the one Logger.log makes (the lean factory's fields).
    made = logging.getLogger("vidim.allocator").makeRecord(
        "vidim.allocator", level, "(unknown file)", 0, "%s", (message,), None,
        extra=dict(extras),
    )  # fmt: skip
    made.created, made.msecs = record.created, record.msecs
    assert PlainFormatter().format(made) == PlainFormatter().format(record)


@contextlib.contextmanager
def _only(handler: BatchHandler) -> Iterator[None]:
    """The root's handlers as setup_logging left them (pytest adds its own per test phase)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        yield
    finally:
        root.handlers[:] = saved


def test_event_lines_skip_the_record_and_write_the_same_text(
    daemon_logging: BatchHandler,
) -> None:
    with _only(daemon_logging):
        _in_a_loop(lambda: _event_lines_and_records(daemon_logging))


def _in_a_loop(body: Callable[[], None]) -> None:
    """``body`` inside a running event loop: what it logs waits in the batch until a flush."""

    async def main() -> None:
        body()

    asyncio.run(main())


def _event_lines_and_records(daemon_logging: BatchHandler) -> None:
    on_event = _event_logger("allocator")
    accepted = RequestAccepted(call_id="c1", requester="sip:a@h", command="new", conference_id="k1")
    assert batch_for(logging.getLogger("vidim.allocator"), logging.INFO) is daemon_logging
    on_event(accepted)
    assert [type(item) for item in daemon_logging._batch] == [Line]
    # The standard way (a filter on the logger: batch_for says no), for comparison.
    allocator = logging.getLogger("vidim.allocator")
    allow = logging.Filter()
    allocator.addFilter(allow)
    try:
        assert batch_for(allocator, logging.INFO) is None
        on_event(accepted)
    finally:
        allocator.removeFilter(allow)
    assert [type(item) for item in daemon_logging._batch] == [Line, LeanLogRecord]
    daemon_logging.flush()
    fast, standard = (
        line.split(" ", 2)[2] for line in daemon_logging.stream.getvalue().splitlines()
    )  # after the date and time
    assert fast == standard
    assert fast == f"INFO vidim.allocator: {accepted} [conference_id=k1 call_id=c1]"


def test_message_lines_skip_the_record_and_write_the_same_text(
    daemon_logging: BatchHandler,
) -> None:
    """vidim.aio's request lines through log_line (SipServer(log_line=...)), and by record."""
    aio = logging.getLogger("vidim.aio")
    extras = (("peer", "127.0.0.1:5999/UDP"), ("transport", "UDP"), ("call_id", "c1"))
    text = "recv MESSAGE from 127.0.0.1:5999/UDP call-id c1"

    def lines() -> None:
        log_line(aio, logging.INFO, text, extras)
        aio.log(logging.INFO, "%s %s %s %s call-id %s", "recv", "MESSAGE", "from",
                "127.0.0.1:5999/UDP", "c1", extra=dict(extras))  # fmt: skip
        allow = logging.Filter()  # batch_for says no: log_line makes the record
        aio.addFilter(allow)
        try:
            log_line(aio, logging.INFO, text, extras)
        finally:
            aio.removeFilter(allow)

    with _only(daemon_logging):
        _in_a_loop(lines)
        kinds = [type(item) for item in daemon_logging._batch]
        assert kinds == [Line, LeanLogRecord, LeanLogRecord]
        daemon_logging.flush()
    written = [line.split(" ", 2)[2] for line in daemon_logging.stream.getvalue().splitlines()]
    expected = f"INFO vidim.aio: {text} [peer=127.0.0.1:5999/UDP transport=UDP call_id=c1]"
    assert written == [expected] * 3


def test_the_batch_takes_lines_only_when_nothing_else_would_see_the_record(
    daemon_logging: BatchHandler,
) -> None:
    with _only(daemon_logging):
        _only_when_nothing_else_would_see_it(daemon_logging)


def _only_when_nothing_else_would_see_it(daemon_logging: BatchHandler) -> None:
    vidim, allocator = logging.getLogger("vidim"), logging.getLogger("vidim.allocator")
    root = logging.getLogger()
    assert batch_for(allocator, logging.INFO) is daemon_logging
    assert batch_for(allocator, logging.DEBUG) is None  # not enabled
    other = logging.NullHandler()

    def changes() -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
        yield (lambda: vidim.addHandler(other), lambda: vidim.removeHandler(other))
        yield (lambda: root.addHandler(other), lambda: root.removeHandler(other))
        only = logging.Filter("nothing")
        yield (lambda: allocator.addFilter(only), lambda: allocator.removeFilter(only))
        yield (lambda: daemon_logging.addFilter(only), lambda: daemon_logging.removeFilter(only))
        yield (
            lambda: setattr(allocator, "propagate", False),
            lambda: setattr(allocator, "propagate", True),
        )
        yield (
            lambda: daemon_logging.setFormatter(JsonFormatter()),
            lambda: daemon_logging.setFormatter(PlainFormatter()),
        )
        yield (
            lambda: daemon_logging.setLevel(logging.WARNING),
            lambda: daemon_logging.setLevel(logging.NOTSET),
        )
        yield (
            lambda: logging.setLogRecordFactory(logging.LogRecord),
            lambda: logging.setLogRecordFactory(LeanLogRecord),
        )

    for change, undo in changes():
        change()
        try:
            assert batch_for(allocator, logging.INFO) is None, change
        finally:
            undo()
        assert batch_for(allocator, logging.INFO) is daemon_logging


def test_a_line_batched_before_a_json_formatter_is_written_as_json(
    daemon_logging: BatchHandler,
) -> None:
    def body() -> None:
        line = Line(1.8e9, logging.INFO, "vidim.allocator", "hello", (("k", "v"),))
        daemon_logging.add_line(line)
        assert daemon_logging.stream.getvalue() == ""  # waits in the batch
        daemon_logging.setFormatter(JsonFormatter())
        daemon_logging.flush()

    _in_a_loop(body)
    written = daemon_logging.stream.getvalue()
    assert '"message": "hello"' in written
    assert '"k": "v"' in written
    assert '"logger": "vidim.allocator"' in written
