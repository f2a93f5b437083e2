"""Logging set-up: plain lines or one JSON object per line (``--log-json``).

What the standard :mod:`logging` machinery does not do itself: write a
record's ``extra={...}`` fields (``call_id``, ``conference_id``, ``peer``...)
after its message, as ``[key=value ...]`` or as JSON members.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["JsonFormatter", "PlainFormatter", "setup_logging"]

#: LogRecord attributes that are not "extra" fields.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The record's ``extra={...}`` fields, in the order they were given."""
    return [
        (key, value)
        for key, value in vars(record).items()
        if key not in _STANDARD and not key.startswith("_")
    ]


class PlainFormatter(logging.Formatter):
    """``2026-11-26 14:23:08,018 INFO vidim.aio: message [key=value ...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{key}={value}" for key, value in _extras(record))
        return f"{line} [{fields}]" if fields else line


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


def setup_logging(level: str = "info", *, json_lines: bool = False) -> None:
    """Every record to stderr, at ``level`` and above, as plain lines or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
