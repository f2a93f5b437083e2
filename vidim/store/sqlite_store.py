"""The embedded default: one SQLite file (stdlib ``sqlite3``) in WAL mode.

Each call is one short synchronous transaction inside the async method: a write of
five records takes well under a millisecond (docs/store.md), less than handing it to
a thread would cost.  ``synchronous=NORMAL`` with WAL: a committed write survives the
process being killed (kill -9); a power cut may lose the last commits, never the
file's consistency.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vidim.core import RecordChange

from .base import LeaseLost, StateStore, StoreUnavailable, decode_record, encode_record

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

#: The layout this code reads and writes; an older file is upgraded, a newer one refused.
SCHEMA_VERSION = 1

#: How a read begins: deferred, it takes no write lock.
_READ = "BEGIN"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    namespace TEXT NOT NULL, id TEXT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_index (
    namespace TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, id TEXT NOT NULL,
    PRIMARY KEY (namespace, name, value, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS record_index_by_id ON record_index (namespace, id);
CREATE TABLE IF NOT EXISTS events (
    namespace TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_key ON events (namespace, key, at);
CREATE TABLE IF NOT EXISTS leases (
    namespace TEXT NOT NULL, id TEXT NOT NULL, owner TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
"""


class SqliteStore(StateStore):
    """Records, index entries and leases in the SQLite file ``path``.

    The parent directories are created.  ``clock`` (seconds, ``time.time`` by default)
    decides when leases expire; a lease only means something between processes sharing
    the file, e.g. a daemon and the one restarted after it.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._db: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # -- connection ---------------------------------------------------------------------
    async def open(self) -> None:
        if self._db is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=1.0)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)  # idempotent: IF NOT EXISTS
            self._db = db
            with self._transaction() as tx:
                self._check_schema(tx.db)
        except BaseException as exc:
            self._db = None
            db.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
            raise

    def _check_schema(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        version = row[0]
        if version is None:
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"sqlite {self.path}: schema version {version} was written by a newer vidim "
                f"(this one reads version {SCHEMA_VERSION}); upgrade vidim or use another file"
            )

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    async def ping(self) -> None:
        with self._transaction(_READ) as tx:
            tx.db.execute("SELECT 1").fetchone()

    @contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[_Transaction]:
        """One transaction (a writer's by default: ``BEGIN IMMEDIATE`` takes the write
        lock first); rolled back on any error, re-raised as StoreUnavailable when SQLite
        raised it."""
        if self._db is None:
            raise StoreUnavailable(f"sqlite {self.path}: the store is not open")
        db = self._db
        try:
            db.execute(begin)
            try:
                yield _Transaction(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    # -- records ------------------------------------------------------------------------
    async def write(
        self, namespace: str, changes: Sequence[RecordChange], *, owner: str | None = None
    ) -> None:
        encoded = [
            (c.id, None if c.record is None else encode_record(c.record), c.index) for c in changes
        ]
        with self._transaction() as tx:
            if owner is not None:
                now = self._clock()
                fenced = {
                    id for id, _, _ in encoded if tx.holder(namespace, id, now) not in (None, owner)
                }
                if fenced:
                    raise LeaseLost(fenced)
            for id, text, index in encoded:
                key = (namespace, id)
                tx.db.execute("DELETE FROM record_index WHERE namespace = ? AND id = ?", key)
                if text is None:
                    tx.db.execute("DELETE FROM records WHERE namespace = ? AND id = ?", key)
                    continue
                tx.db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (*key, text))
                tx.db.executemany(
                    "INSERT OR IGNORE INTO record_index VALUES (?, ?, ?, ?)",
                    [(namespace, name, value, id) for name, value in index],
                )

    async def load(self, namespace: str) -> dict[str, dict[str, Any]]:
        with self._transaction(_READ) as tx:
            rows = tx.db.execute(
                "SELECT id, record FROM records WHERE namespace = ?", (namespace,)
            ).fetchall()
        return {id: decode_record(text) for id, text in rows}

    async def get(self, namespace: str, id: str) -> dict[str, Any] | None:
        with self._transaction(_READ) as tx:
            row = tx.db.execute(
                "SELECT record FROM records WHERE namespace = ? AND id = ?", (namespace, id)
            ).fetchone()
        return None if row is None else decode_record(row[0])

    async def find(self, namespace: str, index_name: str, value: str) -> list[str]:
        with self._transaction(_READ) as tx:
            rows = tx.db.execute(
                "SELECT id FROM record_index WHERE namespace = ? AND name = ? AND value = ?"
                " ORDER BY id",
                (namespace, index_name, value),
            ).fetchall()
        return [id for (id,) in rows]

    # -- leases -------------------------------------------------------------------------
    async def acquire(
        self, namespace: str, ids: Collection[str], owner: str, ttl: float
    ) -> set[str]:
        return self._take(namespace, ids, owner, ttl, free_too=True)

    async def renew(self, namespace: str, ids: Collection[str], owner: str, ttl: float) -> set[str]:
        return self._take(namespace, ids, owner, ttl, free_too=False)

    def _take(
        self, namespace: str, ids: Collection[str], owner: str, ttl: float, *, free_too: bool
    ) -> set[str]:
        """Set ``owner``'s lease on the ids it holds (and, with ``free_too``, the free ones)."""
        now = self._clock()
        with self._transaction() as tx:
            allowed = (None, owner) if free_too else (owner,)
            held = {id for id in ids if tx.holder(namespace, id, now) in allowed}
            tx.db.executemany(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)",
                [(namespace, id, owner, now + ttl) for id in held],
            )
        return held

    async def release(self, namespace: str, ids: Collection[str], owner: str) -> None:
        with self._transaction() as tx:
            tx.db.executemany(
                "DELETE FROM leases WHERE namespace = ? AND id = ? AND owner = ?",
                [(namespace, id, owner) for id in ids],
            )

    async def count_event(self, namespace: str, key: str, limit: int, window: float) -> bool:
        now = self._clock()
        with self._transaction() as tx:
            tx.db.execute(
                "DELETE FROM events WHERE namespace = ? AND key = ? AND at <= ?",
                (namespace, key, now - window),
            )
            (count,) = tx.db.execute(
                "SELECT count(*) FROM events WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
            if count >= limit:
                return False
            tx.db.execute("INSERT INTO events VALUES (?, ?, ?)", (namespace, key, now))
        return True

    async def owner_of(self, namespace: str, id: str) -> str | None:
        with self._transaction(_READ) as tx:
            return tx.holder(namespace, id, self._clock())

    async def unowned(self, namespace: str) -> list[str]:
        with self._transaction(_READ) as tx:
            rows = tx.db.execute(
                "SELECT id FROM records AS r WHERE namespace = ? AND NOT EXISTS"
                " (SELECT 1 FROM leases AS l"
                "  WHERE l.namespace = r.namespace AND l.id = r.id AND l.expires > ?)"
                " ORDER BY id",
                (namespace, self._clock()),
            ).fetchall()
        return [id for (id,) in rows]


class _Transaction:
    """The open connection inside ``SqliteStore._transaction``, with the reads it shares."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def holder(self, namespace: str, id: str, now: float) -> str | None:
        row = self.db.execute(
            "SELECT owner FROM leases WHERE namespace = ? AND id = ? AND expires > ?",
            (namespace, id, now),
        ).fetchone()
        return None if row is None else str(row[0])
