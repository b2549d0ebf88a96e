"""The SQLite reference backend (benchmarks only, not shipped).

One table, the key as primary key, ``updated_at`` and the summary columns
stored (``updated_at`` indexed), the entry JSON as text; WAL.  ``synchronous``
is NORMAL to compare with durability ``none`` and FULL with ``full``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from sessionsd import _json

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    updated_at INTEGER,
    last_channel TEXT,
    last_to TEXT,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_updated_at ON sessions(updated_at);
-- The most-recent listing (ORDER BY updated_at DESC, key) walks this index.
CREATE INDEX IF NOT EXISTS sessions_recent ON sessions(updated_at DESC, key);
"""


class SqliteSessions:
    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        # Autocommit: every put/delete is its own transaction, like a
        # sessionsd single-entry commit; concurrent writers wait (busy timeout).
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.executescript(SCHEMA)
        self.cursor = self.db.cursor()

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def _row(key: str, entry: dict) -> tuple:
        return (key, entry.get("updatedAt"), entry.get("lastChannel"), entry.get("lastTo"),
                _json.dumps(entry).decode())

    def fill(self, items: Iterable[tuple[str, dict]]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?)",
                            (self._row(k, e) for k, e in items))
        self.db.execute("COMMIT")

    def updated_at(self, key: str) -> Any:
        row = self.cursor.execute("SELECT updated_at FROM sessions WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def get(self, key: str) -> Any:
        row = self.cursor.execute("SELECT entry FROM sessions WHERE key = ?", (key,)).fetchone()
        return None if row is None else _json.loads(row[0])

    def put(self, key: str, entry: dict) -> None:
        self.cursor.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?)", self._row(key, entry))

    def patch(self, key: str, fields: dict) -> Any:
        self.cursor.execute("BEGIN IMMEDIATE")
        try:
            row = self.cursor.execute("SELECT entry FROM sessions WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.cursor.execute("COMMIT")
                return None
            merged = {**_json.loads(row[0]), **fields}
            self.cursor.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?)",
                                self._row(key, merged))
            self.cursor.execute("COMMIT")
            return merged
        except BaseException:
            self.cursor.execute("ROLLBACK")
            raise

    def delete(self, key: str) -> bool:
        return self.cursor.execute("DELETE FROM sessions WHERE key = ?", (key,)).rowcount > 0

    def load(self) -> dict:
        return {k: _json.loads(e) for k, e in self.cursor.execute("SELECT key, entry FROM sessions")}

    def summary(self) -> dict:
        return {k: {"lastChannel": c, "lastTo": t, "updatedAt": u} for k, u, c, t in
                self.cursor.execute("SELECT key, updated_at, last_channel, last_to FROM sessions")}

    def keys(self) -> list:
        return [k for (k,) in self.cursor.execute("SELECT key FROM sessions")]

    def count(self) -> int:
        return self.cursor.execute("SELECT count(*) FROM sessions").fetchone()[0]

    def recent(self, limit: int = 50, offset: int = 0) -> list:
        """sessionsd's recent(): updated_at descending, ties by key."""
        return [(k, {"lastChannel": c, "lastTo": t, "updatedAt": u}) for k, u, c, t in self.cursor.execute(
            "SELECT key, updated_at, last_channel, last_to FROM sessions "
            "ORDER BY updated_at DESC, key LIMIT ? OFFSET ?", (limit, offset))]
