"""The backends the store benchmarks compare, behind one small interface.

Every backend answers ``updated_at``, ``get``, ``put``, ``patch``,
``delete``, ``load`` and ``summary`` for the same generated sessions:

* ``directory``: sessionsd's directory mode (``SessionStore`` on a migrated
  store) in its default, mixed-deployment mode: every write also holds the
  reference's lock file and bumps ``state.json``'s version; the codec is
  whatever ``sessionsd.BACKEND`` says (the compiled extension, or the pure
  twin under ``SESSIONSD_NO_EXTENSIONS=1``).
* ``directory-solo``: the same store declared sessionsd-only
  (``sessionsd_only=True``): no reference lock file, no version bump.
* ``legacy``: the monolithic ``sessions.json`` as the library's legacy mode
  keeps it.  Reads go through ``SessionStore`` in legacy mode; writes are the
  library's ``LegacyStore`` read + rewrite under the same store lock, without
  the migrate-on-first-change rule (which would leave legacy mode) and
  without the library's deep copy and before/after comparison -- the cheapest
  honest monolithic rewrite, so "legacy is N times slower" never overstates.
* ``sqlite``: :mod:`sqlite_reference` (benchmarks only, never shipped).
* ``floor``: the raw file operations with no lock, checks or bookkeeping --
  the cost below which no file-per-session store can go.

Helpers for the benchmarks only; nothing here is shipped.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from sqlite_reference import SqliteSessions

from sessionsd import SessionStore, _json
from sessionsd._codec import encode_key
from sessionsd._documents import encode_document
from sessionsd._layout import StorePaths
from sessionsd._legacy import LegacyStore
from sessionsd._lock import StoreLock

#: sqlite's ``synchronous`` paired with each sessionsd durability.
SQLITE_SYNC = {"none": "NORMAL", "full": "FULL"}


def summarize(entries: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """What ``SessionStore.summary()`` returns, computed from plain entries."""
    return {key: {"lastChannel": entry.get("lastChannel"), "lastTo": entry.get("lastTo"),
                  "updatedAt": entry.get("updatedAt")} for key, entry in entries.items()}


class Directory:
    def __init__(self, path: str, durability: str = "none", sessionsd_only: bool = False) -> None:
        self.path = path
        self.store = SessionStore(path, durability=durability, sessionsd_only=sessionsd_only)

    def updated_at(self, key):
        return self.store.updated_at(key)

    def get(self, key):
        return self.store.get(key)

    def put(self, key, entry):
        self.store.put(key, entry)

    def patch(self, key, fields):
        return self.store.patch(key, fields)

    def delete(self, key):
        return self.store.delete(key)

    def load(self):
        # Cold: what a process that just started pays (no sessionsd cache;
        # the OS page cache is warm -- dropping it would disturb the machine).
        return SessionStore(self.path, cache=False).load()

    def load_cached(self):
        return self.store.load()

    def summary(self):
        return SessionStore(self.path, cache=False).summary()

    def summary_cached(self):
        return self.store.summary()

    # Listings of a fresh store object (no sessionsd cache): the listing
    # index is read from disk each time, as a process that just started does
    # (compare with SqliteFresh: a new connection per call).
    def keys(self):
        return SessionStore(self.path, cache=False).keys()

    def count(self):
        return len(SessionStore(self.path, cache=False))

    def recent(self, limit=50, offset=0):
        return SessionStore(self.path, cache=False).recent(limit, offset)

    # Listings of the store object this backend keeps open (its cached
    # index is checked against the store's token on every call, as an open
    # SQLite connection checks its page cache): compare with SqliteSessions.
    def keys_cached(self):
        return self.store.keys()

    def count_cached(self):
        return len(self.store)

    def recent_cached(self, limit=50, offset=0):
        return self.store.recent(limit, offset)

    def close(self):
        self.store.close()


class Legacy:
    def __init__(self, path: str, durability: str = "none") -> None:
        self.path = path
        self.reader = SessionStore(path, cache=False)  # legacy mode: parse on every read
        self.cached_reader = SessionStore(path)         # legacy mode: cache validated by stat
        paths = StorePaths.from_store_path(path)
        self.file = LegacyStore(paths, durability, self.reader.normalize_key)
        self.lock = StoreLock.for_path(paths.lock)

    def _rewrite(self, mutate):
        # Crash consistency as in legacy mode: the whole file is replaced by
        # one rename, so a reader sees the old store or the new one.
        with self.lock.hold():
            entries = self.file.read().entries
            result = mutate(entries)
            self.file.write(entries)
        return result

    def updated_at(self, key):
        return self.reader.updated_at(key)

    def get(self, key):
        return self.reader.get(key)

    def put(self, key, entry):
        self._rewrite(lambda entries: entries.__setitem__(key, entry))

    def patch(self, key, fields):
        def merge(entries):
            if key not in entries:
                return None
            entries[key] = {**entries[key], **fields}
            return entries[key]
        return self._rewrite(merge)

    def delete(self, key):
        return self._rewrite(lambda entries: entries.pop(key, None) is not None)

    def load(self):
        return self.reader.load()

    def load_cached(self):
        return self.cached_reader.load()

    def summary(self):
        return self.reader.summary()

    def summary_cached(self):
        return self.cached_reader.summary()

    def keys(self):
        return self.reader.keys()

    def count(self):
        return len(self.reader)

    def recent(self, limit=50, offset=0):
        return self.reader.recent(limit, offset)

    def load_raw(self):
        """The monolith's floor: read and parse the file, nothing else."""
        with open(self.path, "rb") as fh:
            return _json.loads(fh.read())

    def close(self):
        self.reader.close()
        self.cached_reader.close()


class Floor:
    """Raw file operations on the directory store's own entries directory
    (same file system, same directory size), with the bytes ``put`` writes."""

    def __init__(self, path: str, durability: str = "none") -> None:
        self.entries = StorePaths.from_store_path(path).entries
        self.prefix = self.entries + os.sep
        self.durability = durability
        self.counter = itertools.count()

    def file(self, key: str) -> str:
        return self.prefix + encode_key(key)

    def read_head(self, key: str) -> bytes:
        """The floor of ``updated_at``: open, read the first 4 KiB, close."""
        fd = os.open(self.file(key), os.O_RDONLY)
        try:
            return os.read(fd, 4096)
        finally:
            os.close(fd)

    def read(self, key: str) -> bytes:
        """The floor of ``get``: open, read the whole file, close (no parse)."""
        fd = os.open(self.file(key), os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write(self, key: str, data: bytes) -> None:
        """The floor of ``put``: a temp file and ``os.replace`` (plus the
        fsyncs the durability asks for); no lock, no seq, no checks."""
        target = self.file(key)
        temp = f"{self.prefix}.floor-{os.getpid()}-{next(self.counter)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            if self.durability != "none":
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
        if self.durability == "full":
            dfd = os.open(self.entries, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def put(self, key: str, entry: dict) -> None:
        self.write(key, encode_document(key, entry))

    def delete(self, key: str) -> bool:
        os.unlink(self.file(key))
        return True

    def load(self) -> dict[str, dict]:
        """The floor of ``load``: list the directory, read and parse every
        file; no name checks, no seqlock, no copy."""
        entries = {}
        with os.scandir(self.entries) as listing:
            names = [item.name for item in listing if not item.name.startswith(".")]
        for name in names:
            with open(self.prefix + name, "rb") as fh:
                document = _json.loads(fh.read())
            entries[document["sessionKey"]] = document["entry"]
        return entries

    def close(self):
        pass


class SqliteFresh:
    """SQLite as a process that just started uses it: a new connection per
    call (the listings' counterpart of a fresh ``SessionStore``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _run(self, method: str, *args):
        db = SqliteSessions(self.path)
        try:
            return getattr(db, method)(*args)
        finally:
            db.close()

    def summary(self):
        return self._run("summary")

    def keys(self):
        return self._run("keys")

    def count(self):
        return self._run("count")

    def recent(self, limit=50, offset=0):
        return self._run("recent", limit, offset)

    def close(self):
        pass


def open_backend(kind: str, path: str, durability: str = "none"):
    """A backend by name: ``directory``, ``legacy``, ``sqlite``, ``floor``."""
    if kind == "directory":
        return Directory(path, durability)
    if kind == "directory-solo":
        return Directory(path, durability, sessionsd_only=True)
    if kind == "legacy":
        return Legacy(path, durability)
    if kind == "sqlite":
        return SqliteSessions(path, SQLITE_SYNC[durability])
    if kind == "sqlite-fresh":
        return SqliteFresh(path)
    if kind == "floor":
        return Floor(path, durability)
    raise ValueError(f"unknown backend {kind!r}")
