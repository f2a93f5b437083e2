"""What only the SQLite file does: survive its process, WAL, the schema version."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vidim.core import RecordChange
from vidim.store import SqliteStore, StoreUnavailable
from vidim.store.sqlite_store import SCHEMA_VERSION

NS = "allocator"


def test_a_reopened_file_has_the_records_index_and_leases(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.sqlite3"  # parents are created

    async def main() -> None:
        async with SqliteStore(path) as store:
            await store.write(NS, [RecordChange("c1", {"n": 1}, (("requester", "sip:a@x"),))])
            await store.acquire(NS, ["c1"], "daemon-a", 60)
        async with SqliteStore(path) as again:
            assert await again.load(NS) == {"c1": {"n": 1}}
            assert await again.find(NS, "requester", "sip:a@x") == ["c1"]
            assert await again.owner_of(NS, "c1") == "daemon-a"

    asyncio.run(main())


def test_a_write_survives_its_process_killed_with_sigkill(tmp_path: Path) -> None:
    """The commit is in the WAL once ``write`` returns: kill -9 right after loses nothing."""
    path = tmp_path / "state.sqlite3"
    writer = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from vidim.core import RecordChange
        from vidim.store import SqliteStore

        async def main():
            store = SqliteStore({str(path)!r})
            await store.open()
            for n in range(50):
                await store.write("allocator", [RecordChange(f"c{{n}}", {{"n": n}})])
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", writer], timeout=60, check=False)
    assert done.returncode == -signal.SIGKILL
    assert (tmp_path / "state.sqlite3-wal").exists()  # never checkpointed by a clean close

    async def main() -> None:
        async with SqliteStore(path) as store:
            records = await store.load(NS)
        assert records == {f"c{n}": {"n": n} for n in range(50)}

    asyncio.run(main())


def test_the_file_is_in_wal_mode_with_synchronous_normal(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"

    async def main() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            db = store._db
            assert db is not None
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        finally:
            await store.close()

    asyncio.run(main())


def test_a_newer_schema_is_refused_and_the_file_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    asyncio.run(_open_and_close(path))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.close()
    with pytest.raises(StoreUnavailable, match=r"schema version 2 was written by a newer vidim"):
        asyncio.run(_open_and_close(path))
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    db.close()


def test_a_file_that_is_not_a_database_is_unavailable_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"this is no SQLite file, but long enough to look at: " * 40)
    with pytest.raises(StoreUnavailable, match=rf"sqlite {path}: file is not a database"):
        asyncio.run(_open_and_close(path))


def test_a_directory_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreUnavailable, match=r"sqlite .*file/state\.sqlite3"):
        asyncio.run(_open_and_close(tmp_path / "file" / "state.sqlite3"))


def test_a_closed_store_is_unavailable_and_opens_again(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "state.sqlite3")
        with pytest.raises(StoreUnavailable, match="not open"):
            await store.get(NS, "c1")
        await store.open()
        await store.write(NS, [RecordChange("c1", {"n": 1})])
        await store.close()
        await store.open()
        assert await store.get(NS, "c1") == {"n": 1}
        await store.close()

    asyncio.run(main())


async def _open_and_close(path: Path) -> None:
    async with SqliteStore(path):
        pass


def test_a_write_that_fails_halfway_is_rolled_back_whole(tmp_path: Path) -> None:
    """One transaction: SQLite refusing the second record leaves the first unwritten."""
    path = tmp_path / "state.sqlite3"
    asyncio.run(_open_and_close(path))
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER refuse_c2 BEFORE INSERT ON records WHEN NEW.id = 'c2'"
            " BEGIN SELECT RAISE(ABORT, 'c2 refused'); END"
        )
    db.close()

    async def main() -> None:
        async with SqliteStore(path) as store:
            await store.write(NS, [RecordChange("c0", {"n": 0})])
            changes = [
                RecordChange("c0", None),
                RecordChange("c1", {"n": 1}, (("requester", "sip:a@x"),)),
                RecordChange("c2", {"n": 2}),
            ]
            with pytest.raises(StoreUnavailable, match="c2 refused"):
                await store.write(NS, changes)
            assert await store.load(NS) == {"c0": {"n": 0}}
            assert await store.find(NS, "requester", "sip:a@x") == []
            await store.write(NS, changes[:2])  # the store is usable afterwards
            assert await store.load(NS) == {"c1": {"n": 1}}

    asyncio.run(main())
