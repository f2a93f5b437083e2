"""The StateStore contract, run against every backend (memory, SQLite, a real Redis)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_backends import Backend

from vidim.core import RecordChange
from vidim.store import LeaseLost, StateStore

NS = "allocator"
LONG = 60.0  # a lease TTL no test outlives


def conf(n: int, requester: str = "sip:alice@example.com") -> RecordChange:
    record = {"id": f"c{n}", "state": "ACTIVE", "deadline": 12.5 + n, "roster": ["a", "b"]}
    return RecordChange(f"c{n}", record, (("requester", requester),))


def test_records_round_trip_by_id_and_index(backend: Backend) -> None:
    async def scenario(store: StateStore) -> None:
        await store.write(NS, [conf(1), conf(2, "sip:bob@example.com"), conf(3)])
        assert await store.get(NS, "c2") == conf(2, "sip:bob@example.com").record
        assert await store.get(NS, "nope") is None
        assert await store.load(NS) == {
            "c1": conf(1).record,
            "c2": conf(2, "sip:bob@example.com").record,
            "c3": conf(3).record,
        }
        assert await store.find(NS, "requester", "sip:alice@example.com") == ["c1", "c3"]
        assert await store.find(NS, "requester", "sip:carol@example.com") == []
        # Namespaces do not see each other.
        assert await store.load("focus") == {}
        assert await store.find("focus", "requester", "sip:alice@example.com") == []

    backend.run(scenario)


def test_a_rewrite_replaces_the_record_and_its_index_entries(backend: Backend) -> None:
    async def scenario(store: StateStore) -> None:
        await store.write(NS, [conf(1)])
        moved = RecordChange("c1", {"state": "ENDING"}, (("requester", "sip:bob@example.com"),))
        await store.write(NS, [moved])
        assert await store.get(NS, "c1") == {"state": "ENDING"}
        assert await store.find(NS, "requester", "sip:alice@example.com") == []
        assert await store.find(NS, "requester", "sip:bob@example.com") == ["c1"]

    backend.run(scenario)


def test_a_none_record_deletes_the_record_and_its_index_entries(backend: Backend) -> None:
    async def scenario(store: StateStore) -> None:
        await store.write(NS, [conf(1), conf(2)])
        await store.write(NS, [RecordChange("c1", None), RecordChange("never-was", None)])
        assert await store.get(NS, "c1") is None
        assert list(await store.load(NS)) == ["c2"]
        assert await store.find(NS, "requester", "sip:alice@example.com") == ["c2"]
        assert await store.unowned(NS) == ["c2"]

    backend.run(scenario)


def test_the_last_change_of_one_id_in_a_write_wins(backend: Backend) -> None:
    async def scenario(store: StateStore) -> None:
        await store.write(NS, [conf(1), RecordChange("c1", None), conf(2)])
        await store.write(NS, [RecordChange("c3", {"v": 1}), RecordChange("c3", {"v": 2})])
        assert await store.load(NS) == {"c2": conf(2).record, "c3": {"v": 2}}

    backend.run(scenario)


def test_a_write_that_is_fenced_off_writes_nothing(backend: Backend) -> None:
    """One transaction: the free record is not written when another is fenced off."""

    async def scenario(store: StateStore) -> None:
        await store.write(NS, [conf(2)])
        assert await store.acquire(NS, ["c2"], "daemon-b", LONG) == {"c2"}
        changed = RecordChange("c2", {"state": "stolen"})
        with pytest.raises(LeaseLost) as lost:
            await store.write(NS, [conf(1), changed], owner="daemon-a")
        assert lost.value.ids == {"c2"}
        assert await store.get(NS, "c1") is None
        assert await store.get(NS, "c2") == conf(2).record
        # The holder writes; so does a writer that does not ask for fencing.
        await store.write(NS, [conf(1), changed], owner="daemon-b")
        await store.write(NS, [RecordChange("c2", None)])
        assert list(await store.load(NS)) == ["c1"]

    backend.run(scenario)


@pytest.mark.parametrize("bad", [{"when": math.nan}, {"who": {1, 2}}, {"raw": b"\x00"}])
def test_a_record_that_is_not_json_is_refused_with_nothing_written(
    backend: Backend, bad: dict[str, Any]
) -> None:
    async def scenario(store: StateStore) -> None:
        with pytest.raises((TypeError, ValueError)):
            await store.write(NS, [conf(1), RecordChange("c2", bad)])
        assert await store.load(NS) == {}

    backend.run(scenario)


def test_competing_owners_acquire_only_what_is_free(backend: Backend) -> None:
    async def scenario(store: StateStore) -> None:
        assert await store.acquire(NS, ["c1", "c2"], "daemon-a", LONG) == {"c1", "c2"}
        assert await store.acquire(NS, ["c2", "c3"], "daemon-b", LONG) == {"c3"}
        assert await store.acquire(NS, ["c1", "c3"], "daemon-a", LONG) == {"c1"}
        assert await store.owner_of(NS, "c2") == "daemon-a"
        assert await store.owner_of(NS, "c3") == "daemon-b"
        assert await store.owner_of(NS, "c4") is None
        assert await store.owner_of("focus", "c1") is None  # leases are per namespace
        assert await store.renew(NS, ["c1", "c2", "c3"], "daemon-a", LONG) == {"c1", "c2"}
        assert await store.acquire(NS, [], "daemon-a", LONG) == set()

    backend.run(scenario)


def test_two_daemons_racing_for_the_same_leases_never_share_one(backend: Backend) -> None:
    """Each id ends with exactly one owner, though both clients ask for all at once."""
    ids = [f"c{n}" for n in range(40)]

    async def scenario(store: StateStore) -> None:
        async with backend.new_store() as other:
            got_a, got_b = await asyncio.gather(
                store.acquire(NS, ids, "daemon-a", LONG),
                other.acquire(NS, ids[::-1], "daemon-b", LONG),
            )
        assert got_a | got_b == set(ids)
        assert got_a & got_b == set()
        for id in ids:
            assert await store.owner_of(NS, id) == ("daemon-a" if id in got_a else "daemon-b")

    backend.run(scenario)


def test_an_expired_lease_is_free_and_its_old_owner_is_fenced_off(backend: Backend) -> None:
    async def scenario(store: StateStore) -> None:
        await store.write(NS, [conf(1)])
        assert await store.acquire(NS, ["c1"], "daemon-a", 1.0) == {"c1"}
        assert await store.acquire(NS, ["c1"], "daemon-b", LONG) == set()
        await backend.pass_time(1.2)
        assert await store.owner_of(NS, "c1") is None
        assert await store.unowned(NS) == ["c1"]
        assert await store.acquire(NS, ["c1"], "daemon-b", LONG) == {"c1"}
        # daemon-a wakes up: its renewal fails and its writes are refused.
        assert await store.renew(NS, ["c1"], "daemon-a", LONG) == set()
        with pytest.raises(LeaseLost):
            await store.write(NS, [RecordChange("c1", {"state": "ENDED"})], owner="daemon-a")
        assert await store.get(NS, "c1") == conf(1).record

    backend.run(scenario)


def test_a_renewed_lease_outlives_its_first_ttl(backend: Backend) -> None:
    async def scenario(store: StateStore) -> None:
        assert await store.acquire(NS, ["c1"], "daemon-a", 1.0) == {"c1"}
        assert await store.renew(NS, ["c1"], "daemon-a", LONG) == {"c1"}
        await backend.pass_time(1.3)
        assert await store.owner_of(NS, "c1") == "daemon-a"

    backend.run(scenario)


def test_release_frees_the_owners_leases_and_ignores_anyone_elses(backend: Backend) -> None:
    async def scenario(store: StateStore) -> None:
        await store.write(NS, [conf(1), conf(2), conf(3)])
        await store.acquire(NS, ["c1", "c2"], "daemon-a", LONG)
        await store.release(NS, ["c1", "c2"], "daemon-b")  # not daemon-b's: a no-op
        assert await store.owner_of(NS, "c1") == "daemon-a"
        assert await store.unowned(NS) == ["c3"]
        await store.release(NS, ["c1", "c9"], "daemon-a")
        assert await store.owner_of(NS, "c1") is None
        assert await store.unowned(NS) == ["c1", "c3"]
        assert await store.acquire(NS, ["c1"], "daemon-b", LONG) == {"c1"}
        await store.release(NS, [], "daemon-b")

    backend.run(scenario)


def test_ping_answers_on_an_open_store(backend: Backend) -> None:
    async def scenario(store: StateStore) -> None:
        await store.ping()
        await store.write(NS, [])

    backend.run(scenario)


# -- records of any JSON shape come back as they went in ---------------------------------
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
RECORDS = st.dictionaries(st.text(), JSON_VALUES, max_size=6)
INDEX = st.lists(st.tuples(st.sampled_from(["requester", "focus"]), st.text(min_size=1)))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(id=st.text(min_size=1, max_size=20), record=RECORDS, index=INDEX)
def test_any_json_record_round_trips(
    backend: Backend, id: str, record: dict[str, Any], index: list[tuple[str, str]]
) -> None:
    async def scenario(store: StateStore) -> None:
        await store.write(NS, [RecordChange(id, record, tuple(index))])
        assert await store.get(NS, id) == record
        assert (await store.load(NS))[id] == record
        for name, value in index:
            assert id in await store.find(NS, name, value)
        await store.write(NS, [RecordChange(id, None)])
        assert await store.get(NS, id) is None

    backend.run(scenario)


def test_events_are_counted_up_to_the_limit_within_the_window(backend: Backend) -> None:
    async def scenario(store: StateStore) -> None:
        counted = [
            await store.count_event("rate", "sip:alice@example.com", 3, 1.0) for _ in range(5)
        ]
        assert counted == [True, True, True, False, False]
        # Another key, another namespace: counted apart.
        assert await store.count_event("rate", "sip:bob@example.com", 3, 1.0)
        assert await store.count_event("other", "sip:alice@example.com", 3, 1.0)
        # Once the window has passed, the first ones no longer count.
        await backend.pass_time(1.2)
        assert await store.count_event("rate", "sip:alice@example.com", 3, 1.0)

    backend.run(scenario)


def test_two_clients_share_one_count(backend: Backend) -> None:
    async def scenario(store: StateStore) -> None:
        async with backend.new_store() as other:
            if backend.name == "memory":
                other = store  # one process's dicts: the same store object is the sharing
            first = await store.count_event("rate", "k", 2, 60.0)
            second = await other.count_event("rate", "k", 2, 60.0)
            third = await store.count_event("rate", "k", 2, 60.0)
            assert (first, second, third) == (True, True, False)

    backend.run(scenario)
