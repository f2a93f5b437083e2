"""``open_store(url)``: the forms an operator writes, and a clear refusal of the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidim.store import MemoryStore, RedisStore, SqliteStore, StateStore, open_store


@pytest.mark.parametrize(
    ("url", "kind", "where"),
    [
        ("memory:", MemoryStore, None),
        ("sqlite:state/vidim.sqlite3", SqliteStore, Path("state/vidim.sqlite3")),
        ("sqlite:/var/lib/vidim/state.db", SqliteStore, Path("/var/lib/vidim/state.db")),
        ("sqlite:///var/lib/vidim/state.db", SqliteStore, Path("/var/lib/vidim/state.db")),
        ("redis://127.0.0.1:6390/0", RedisStore, "redis://127.0.0.1:6390/0"),
        ("rediss://redis.example.com:6380/2", RedisStore, "rediss://redis.example.com:6380/2"),
    ],
)
def test_each_accepted_form_names_its_backend(
    url: str, kind: type[StateStore], where: object
) -> None:
    store = open_store(url)
    assert type(store) is kind
    if isinstance(store, SqliteStore):
        assert store.path == where
    if isinstance(store, RedisStore):
        assert (store.url, store.prefix) == (where, "vidim:")


def test_the_redis_prefix_is_passed_on() -> None:
    store = open_store("redis://127.0.0.1:6390/0", prefix="blue:")
    assert isinstance(store, RedisStore)
    assert store.prefix == "blue:"


@pytest.mark.parametrize(
    "url",
    ["", "state.db", "sqlite:", "sqlite://host/x.db", "sqlite:///", "memory:x", "redis:",
     "redis://", "postgres://db/vidim", "http://127.0.0.1:6379"],
)  # fmt: skip
def test_anything_else_is_refused_naming_the_accepted_forms(url: str) -> None:
    with pytest.raises(ValueError, match=r"accepted: memory:, sqlite:PATH .* redis://HOST") as bad:
        open_store(url)
    assert repr(url) in str(bad.value)


def test_every_exported_name_exists() -> None:
    import vidim.store

    assert [name for name in vidim.store.__all__ if not hasattr(vidim.store, name)] == []
