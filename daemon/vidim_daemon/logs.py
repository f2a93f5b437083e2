"""Logging set-up: plain lines or one JSON object per line (``--log-json``).

Made cheap, since the daemon logs a few lines per conference set up (issue 5:
they were ~30 us each, ~12% of the daemon's CPU):

* records are not asked where they were logged from, nor which thread and
  process made them (``logging._srcfile`` and the ``log*`` switches: the
  logging HOWTO's "Optimization" section); no format here prints those;
* :class:`BatchHandler` keeps records made inside the event loop and formats
  and writes them together, in one ``write`` per batch, after the loop has
  sent what it had to send: a log line is never on a request's path;
* the plain formatter formats the date once per second, not per record;
* :class:`LeanLogRecord` (the record factory :func:`setup_logging` installs)
  fills the same attributes as :class:`logging.LogRecord` without the path
  arithmetic and the thread and process look-ups nothing here prints: about
  half of a record's cost, when the daemon logs four INFO records per setup;
* the daemon's event lines (three of the four) skip the record altogether when
  nothing but this module's batch would see it (:func:`batch_for`): a
  :class:`Line` goes to the batch and is written as the same text.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

__all__ = [
    "FLUSH_INTERVAL",
    "BatchHandler",
    "JsonFormatter",
    "LeanLogRecord",
    "Line",
    "PlainFormatter",
    "batch_for",
    "log_line",
    "setup_logging",
]

#: LogRecord attributes that are not "extra" fields.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
#: How long a record may wait in a :class:`BatchHandler` (seconds).
FLUSH_INTERVAL = 0.05
#: A batch this long is written at once.
_MAX_BATCH = 256
#: Records formatted per turn of the loop (about a millisecond): a batch longer
#: than this is written over several turns, with the loop's I/O in between, so that
#: no request waits behind a whole batch being formatted (the p99 of bench/setups.py).
_CHUNK = 64


#: How many attributes LogRecord.__init__ sets: ``extra`` fields come after them.
_INIT_FIELDS = len(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


#: What LogRecord makes of the path it is given when callers are not looked up
#: (``logging._srcfile`` is None): the file name and module are the same text.
_UNKNOWN_FILE = "(unknown file)"
_LEVEL_NAMES: dict[int, str] = logging._levelToName  # the table getLevelName reads
_START_TIME: float = logging._startTime  # type: ignore[attr-defined]


def _msecs(created: float) -> float:
    """The milliseconds LogRecord keeps beside ``created``."""
    return int((created - int(created)) * 1000) + 0.0


class LeanLogRecord(logging.LogRecord):
    """A :class:`logging.LogRecord` with the same attributes, made with less work.

    Records whose caller was not looked up (the daemon turns that off) skip
    ``os.path`` on the placeholder file name; thread and process fields are
    read only when :mod:`logging`'s switches ask for them, as LogRecord does.
    Anything unusual (a real path, a sole mapping argument) goes to LogRecord's
    own ``__init__``, so the attributes are always what it would have set.
    """

    def __init__(
        self,
        name: str,
        level: int,
        pathname: str,
        lineno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        sinfo: str | None = None,
        **kwargs: Any,
    ) -> None:
        if (
            pathname != _UNKNOWN_FILE
            or (args and len(args) == 1 and isinstance(args[0], Mapping))
            or logging.logThreads
            or logging.logMultiprocessing
            or logging.logProcesses
        ):
            super().__init__(name, level, pathname, lineno, msg, args, exc_info, func, sinfo)
            return
        # Same attributes, same order as LogRecord.__init__ (the formatters' extra
        # fields are the ones set after these).
        ct = time.time()
        self.name = name
        self.msg = msg
        self.args = args
        self.levelname = _LEVEL_NAMES.get(level) or logging.getLevelName(level)
        self.levelno = level
        self.pathname = pathname
        self.filename = _UNKNOWN_FILE
        self.module = _UNKNOWN_FILE
        self.exc_info = exc_info
        self.exc_text = None
        self.stack_info = sinfo
        self.lineno = lineno
        self.funcName = func  # type: ignore[assignment]  # None, as LogRecord sets it
        self.created = ct
        self.msecs = _msecs(ct)
        self.relativeCreated = (ct - _START_TIME) * 1000
        self.thread = None
        self.threadName = None
        self.processName = None
        self.process = None


def _extras(record: logging.LogRecord) -> list[tuple[str, Any]]:
    # Skipping the standard attributes without looking at them halves the cost.
    return [
        (key, value)
        for key, value in itertools.islice(vars(record).items(), _INIT_FIELDS, None)
        if key not in _STANDARD and not key.startswith("_")
    ]


class Line:
    """A log line made without a LogRecord: what :meth:`PlainFormatter.format_line` writes.

    ``message`` is the object whose ``str()`` is the message (as ``"%s"`` with
    it for argument, formatted when the batch is written, as a record's would
    be); ``extras`` are the ``extra={...}`` fields, in order.
    """

    __slots__ = ("created", "extras", "levelno", "message", "name")

    def __init__(
        self,
        created: float,
        levelno: int,
        name: str,
        message: object,
        extras: tuple[tuple[str, object], ...],
    ) -> None:
        self.created = created
        self.levelno = levelno
        self.name = name
        self.message = message
        self.extras = extras

    def record(self) -> logging.LogRecord:
        """The LogRecord :meth:`logging.Logger.log` would have made (for other formatters)."""
        record = LeanLogRecord(
            self.name, self.levelno, _UNKNOWN_FILE, 0, "%s", (self.message,), None
        )
        record.created = self.created
        record.msecs = _msecs(self.created)
        record.relativeCreated = (self.created - _START_TIME) * 1000
        for key, value in self.extras:
            setattr(record, key, value)
        return record


def batch_for(logger: logging.Logger, level: int) -> BatchHandler | None:
    """The batch a record of ``logger`` at ``level`` would reach, unchanged and alone, or None.

    So it is when :func:`setup_logging`'s set-up is untouched: the record
    factory is :class:`LeanLogRecord`, no logger on the way has a filter or a
    handler of its own, and the root has one handler, a :class:`BatchHandler`
    with a :class:`PlainFormatter`, no filter and a level at most ``level``.
    Anything else (``caplog`` in a test, a handler added by an application)
    and the record goes the standard way.
    """
    if logging.getLogRecordFactory() is not LeanLogRecord or not logger.isEnabledFor(level):
        return None
    node: logging.Logger = logger
    while node.parent is not None:
        if node.filters or node.handlers or node.disabled or not node.propagate:
            return None
        node = node.parent
    if node.filters or len(node.handlers) != 1:
        return None
    handler = node.handlers[0]
    if (
        type(handler) is not BatchHandler
        or handler.filters
        or level < handler.level
        or type(handler.formatter) is not PlainFormatter
    ):
        return None
    return handler


def log_line(
    logger: logging.Logger, level: int, message: object, extras: tuple[tuple[str, object], ...]
) -> None:
    """A line (``str(message)`` and its extra fields) to the batch as a :class:`Line`.

    The daemon's event lines and, as ``SipServer(log_line=...)``, its request
    lines come here, the level checked by the caller: the same text as the
    record they stand for, without making the record, when :func:`batch_for`
    finds the set-up untouched; else the record, as before.
    """
    batch = batch_for(logger, level)
    if batch is not None:
        batch.add_line(Line(time.time(), level, logger.name, message, extras))
    else:
        logger.log(level, "%s", message, extra=dict(extras))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the ``extra={...}`` fields (call_id, conference_id...)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record):
            out[key] = (
                value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
            )
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def _with_extras(line: str, extras: Iterable[tuple[str, object]]) -> str:
    """``line [key=value ...]``, or the line alone without extra fields."""
    fields = " ".join([f"{key}={value}" for key, value in extras])  # a list: quicker to join
    return f"{line} [{fields}]" if fields else line


class PlainFormatter(logging.Formatter):
    """``2026-11-26 14:23:08,018 INFO vidim.aio: message [key=value ...]``.

    The same text as ``%(asctime)s %(levelname)s %(name)s: %(message)s`` plus the
    extra fields, with the local date and time formatted once per second.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._date = ""

    def _date_of(self, second: int) -> str:
        if second != self._second:
            self._date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        return self._date

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{self._date_of(int(record.created))},{int(record.msecs):03d} "
            f"{record.levelname} {record.name}: "
            f"{record.getMessage()}"
        )
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return _with_extras(line, _extras(record))

    def format_line(self, item: Line) -> str:
        """What :meth:`format` writes for the record the line stands for.

        Four lines per conference setup come through here: the date of the
        current second is reused without a call, and the milliseconds are
        :func:`_msecs` written out.
        """
        created = item.created
        second = int(created)
        date = self._date if second == self._second else self._date_of(second)
        level = _LEVEL_NAMES.get(item.levelno) or logging.getLevelName(item.levelno)
        line = f"{date},{int((created - second) * 1000):03d} {level} {item.name}: {item.message}"
        return _with_extras(line, item.extras) if item.extras else line


class BatchHandler(logging.Handler):
    """Writes records to ``stream`` in batches: one ``write`` per event-loop turn or so.

    A record made inside a running event loop waits (unformatted) until a
    callback scheduled ``interval`` seconds later, or the loop's next turn
    once the batch has ``max_batch`` records (never inside the callback
    handling a request), or a record at WARNING or above; then the batch is
    formatted and written, ``chunk`` records per turn of the loop (the loop
    reads its sockets between two chunks).  A WARNING, and records made outside
    a loop (at start-up, at exit, from another thread), write everything that
    waits at once, so the order is kept.  :meth:`flush` (also called by
    ``logging.shutdown`` at exit) writes what waits.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float = FLUSH_INTERVAL,
        max_batch: int = _MAX_BATCH,
        chunk: int = _CHUNK,
    ) -> None:
        super().__init__()
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.interval = interval
        self.max_batch = max_batch
        self.chunk = max(1, chunk)
        self._batch: list[logging.LogRecord | Line] = []
        #: The loop on which a flush is scheduled, if any.
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Whether a flush is scheduled for the loop's next turn (a full batch).
        self._soon = False

    def emit(self, record: logging.LogRecord) -> None:
        self._add(record, record.levelno)

    def add_line(self, line: Line) -> None:
        """A line from :func:`batch_for`'s caller: batched and written as a record would be."""
        self.acquire()
        try:
            self._add(line, line.levelno)
        finally:
            self.release()

    def _add(self, item: logging.LogRecord | Line, levelno: int) -> None:
        batch = self._batch
        batch.append(item)
        if levelno >= logging.WARNING or len(batch) >= 4 * self.max_batch:
            self._write()  # the loop does not come round: memory stays bounded
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write()
            return
        if loop is not self._loop:  # else a flush is already scheduled on it
            self._loop = loop
            loop.call_later(self.interval, self._flush_some)
        elif len(batch) >= self.max_batch and not self._soon:
            self._soon = True
            loop.call_soon(self._flush_some)

    def flush(self) -> None:
        """Write every record that waits."""
        self.acquire()
        try:
            self._loop = None
            self._soon = False
            self._write()
        finally:
            self.release()

    def _flush_some(self) -> None:
        """The loop's callback: one chunk now, the rest on the loop's next turns."""
        self.acquire()
        try:
            loop = self._loop  # the loop running this callback, unless flush() came first
            self._loop = None
            self._soon = False
            self._write(self.chunk)
            if self._batch and loop is not None:
                self._loop = loop  # a flush is scheduled: emit() schedules none
                self._soon = True
                loop.call_soon(self._flush_some)
        finally:
            self.release()

    def _write(self, limit: int | None = None) -> None:
        """Format and write the oldest ``limit`` records (all of them: None)."""
        batch = self._batch
        if not batch:
            return
        if limit is not None and len(batch) > limit:
            self._batch = batch[limit:]
            batch = batch[:limit]
        else:
            self._batch = []
        lines = []
        formatter = self.formatter
        plain = formatter if type(formatter) is PlainFormatter else None
        for item in batch:
            try:
                if isinstance(item, Line):
                    # A formatter set since the line was batched gets the record.
                    line = plain.format_line(item) if plain else self.format(item.record())
                else:
                    line = self.format(item)
            except Exception:
                self.handleError(_as_record(item))
                continue
            lines.append(line)
        if not lines:
            return
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(_as_record(batch[-1]))


def _as_record(item: logging.LogRecord | Line) -> logging.LogRecord:
    return item.record() if isinstance(item, Line) else item


def _lean_records() -> None:
    """Records without the caller's file/line and thread/process names: none is printed."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def setup_logging(level: str = "info", *, json_lines: bool = False) -> None:
    _lean_records()
    logging.setLogRecordFactory(LeanLogRecord)
    handler = BatchHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
