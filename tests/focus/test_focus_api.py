"""vidim.focus as an application sees it: one import, events as frozen dataclasses, no I/O."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

import vidim.focus
from vidim.focus import FocusEvent, events

#: Every event class (``__subclasses__`` would also list the classes that
#: ``slots=True`` replaced).
EVENTS = [getattr(events, name) for name in events.__all__ if name != "FocusEvent"]


def test_every_exported_name_exists() -> None:
    assert sorted(vidim.focus.__all__) == sorted(set(vidim.focus.__all__))
    for name in vidim.focus.__all__:
        assert getattr(vidim.focus, name) is not None
    assert set(events.__all__) <= set(vidim.focus.__all__)
    assert all(issubclass(event, FocusEvent) for event in EVENTS)


@pytest.mark.parametrize("event", EVENTS, ids=lambda c: c.__name__)
def test_events_are_frozen_keyword_only_dataclasses(event: type[FocusEvent]) -> None:
    params = event.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen
    assert "__slots__" in event.__dict__
    assert all(f.kw_only for f in dataclasses.fields(event))


def test_the_focus_imports_no_asyncio_and_no_allocator() -> None:
    code = (
        "import sys, vidim.focus; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'asyncio' "
        "or m.startswith(('vidim.allocator', 'vidim.aio'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
