"""``vidim.allocator`` is the one import a user of the allocator needs."""

from __future__ import annotations

import dataclasses

import vidim.allocator
from vidim.allocator import events


def test_every_name_in_all_is_there() -> None:
    assert sorted(vidim.allocator.__all__) == sorted(set(vidim.allocator.__all__))
    for name in vidim.allocator.__all__:
        assert getattr(vidim.allocator, name) is not None, name


def test_the_allocator_its_config_and_every_event_are_exported() -> None:
    exported = set(vidim.allocator.__all__)
    needed = {"Allocator", "AllocatorConfig", "RequestPolicy", "FocusProfile", "Conference",
              "Participant", "ConferenceState", "Deadline"}  # fmt: skip
    assert needed <= exported
    assert set(events.__all__) <= exported


def test_events_are_frozen_keyword_only_dataclasses() -> None:
    for name in events.__all__:
        cls = getattr(events, name)
        params = cls.__dataclass_params__
        assert params.frozen, name
        assert all(f.kw_only for f in dataclasses.fields(cls)), name
        assert "__slots__" in vars(cls), name
