"""The conference table: by id, the requester's newest, by Call-ID."""

from __future__ import annotations

from vidim.allocator.conference import Conference
from vidim.allocator.table import ConferenceTable
from vidim.vocabulary import Mode


def record(conference_id: str, created_at: float, requester: str = "sip:alice@x") -> Conference:
    return Conference(
        id=conference_id,
        requester=requester,
        mode=Mode.VIDEO,
        requester_address="127.0.0.1|5062|UDP",
        participants=[],
        created_at=created_at,
    )


def test_newest_of_a_requester_whatever_the_order_they_came_in() -> None:
    table = ConferenceTable()
    newer, older, other = record("b", 5.0), record("a", 1.0), record("c", 9.0, "sip:bob@x")
    for conference in (newer, older, other):
        table.add(conference)
    assert table.newest_of("sip:alice@x") is newer
    assert table.newest_of("sip:bob@x") is other
    assert table.newest_of("sip:nobody@x") is None
    table.remove(newer)
    assert table.newest_of("sip:alice@x") is older
    assert len(table) == 2
    assert "b" not in table
    assert list(table) == [older, other]


def test_on_a_tie_the_later_asked_for_is_the_newest() -> None:
    table = ConferenceTable()
    first, second = record("a", 1.0), record("b", 1.0)
    table.add(first)
    table.add(second)
    assert table.newest_of("sip:alice@x") is second


def test_adding_twice_keeps_one_entry() -> None:
    table = ConferenceTable()
    conference = record("a", 1.0)
    table.add(conference)
    table.add(conference)  # restored again
    table.remove(conference)
    assert table.indexes_empty()


def test_call_ids_find_their_conference_until_it_goes() -> None:
    table = ConferenceTable()
    conference = record("a", 1.0)
    table.add(conference)
    table.add_call_id(conference, "invite@h")
    table.add_call_id(conference, "subscribe@h")
    assert table.by_call_id("invite@h") is conference
    assert table.by_call_id("other@h") is None
    assert table.get(None) is None
    assert table.remove(conference) == ["invite@h", "subscribe@h"]
    assert table.by_call_id("invite@h") is None
    assert table.indexes_empty()
