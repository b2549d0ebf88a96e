"""Store benchmarks on a generated realistic store (SPEC §9 size mix).

Size: ``SESSIONSD_BENCH_SESSIONS`` (default 10,000).  Everything is measured
in one run, same data, side by side:

* ``updated_at``: directory store vs a SQLite point read of an indexed
  ``updated_at`` column (WAL) vs the legacy path (parse ``sessions.json``);
* ``put`` / ``patch``: directory store vs the raw floor (temp file +
  ``os.replace`` of the same bytes, no lock) vs the legacy rewrite;
* ``load()`` cold vs parsing the equivalent legacy ``sessions.json``.

Each benchmark checks its answer (``record(..., correct)``).
"""

from __future__ import annotations

import os
import sqlite3

import pytest

import sessionsd
from sessionsd import SessionStore, _json
from sessionsd._codec import encode_key
from sessionsd._documents import encode_document
from sessionsd._fsutil import write_atomic
from sessionsd._lock import StoreLock

N = int(os.environ.get("SESSIONSD_BENCH_SESSIONS", "10000"))


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The same generated sessions as a directory store, a legacy file and SQLite."""
    from sessionsd import datagen

    root = tmp_path_factory.mktemp(f"store{N}")
    data = datagen.generate_store(N, seed=7)
    keys = list(data)

    legacy_dir = root / "legacy"
    legacy_dir.mkdir(mode=0o700)
    legacy_path = legacy_dir / "sessions.json"
    legacy_path.write_bytes(_json.dumps(data))

    directory_dir = root / "directory"
    directory_dir.mkdir(mode=0o700)
    directory_path = directory_dir / "sessions.json"
    directory_path.write_bytes(legacy_path.read_bytes())
    result = sessionsd.migrate(directory_path, max_bytes=None)
    assert result.outcome == "migrated" and result.migrated_entries == N

    db_path = root / "sessions.sqlite"
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE sessions (key TEXT PRIMARY KEY, updated_at INTEGER, "
               "last_channel TEXT, last_to TEXT, entry TEXT NOT NULL)")
    db.execute("CREATE INDEX sessions_updated_at ON sessions(updated_at)")
    db.executemany("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", [
        (k, e["updatedAt"], e.get("lastChannel"), e.get("lastTo"), _json.dumps(e).decode())
        for k, e in data.items()
    ])
    db.commit()
    db.close()
    return {
        "data": data,
        "keys": keys,
        "probe": keys[N // 2],
        "legacy_path": str(legacy_path),
        "directory_path": str(directory_path),
        "db_path": str(db_path),
        "legacy_bytes": legacy_path.stat().st_size,
    }


def info(record, backend, correct, **extra):
    record(backend, N, correct, durability=extra.pop("durability", "none"), **extra)


# -- updated_at -------------------------------------------------------------------

@pytest.mark.benchmark(group=f"updated_at ({N} sessions)")
def test_updated_at_directory(benchmark, record, world):
    store = SessionStore(world["directory_path"])
    key = world["probe"]
    value = benchmark(store.updated_at, key)
    info(record, "directory", value == world["data"][key]["updatedAt"])


@pytest.mark.benchmark(group=f"updated_at ({N} sessions)")
def test_updated_at_sqlite(benchmark, record, world):
    db = sqlite3.connect(world["db_path"])
    db.execute("PRAGMA journal_mode=WAL")
    key = world["probe"]
    cursor = db.cursor()
    query = "SELECT updated_at FROM sessions WHERE key = ?"

    def read():
        row = cursor.execute(query, (key,)).fetchone()
        return None if row is None else row[0]

    value = benchmark(read)
    info(record, "sqlite", value == world["data"][key]["updatedAt"])


@pytest.mark.benchmark(group=f"updated_at ({N} sessions)")
def test_updated_at_legacy(benchmark, record, world):
    # The legacy path: every call parses the monolith (cache=False).
    store = SessionStore(world["legacy_path"], cache=False)
    key = world["probe"]
    value = benchmark.pedantic(store.updated_at, args=(key,), rounds=5, iterations=1)
    info(record, "legacy", value == world["data"][key]["updatedAt"])


# -- put / patch --------------------------------------------------------------------

def _entry_for_write(world, i):
    key = world["keys"][(N // 3 + i) % N]
    entry = dict(world["data"][key])
    entry["updatedAt"] = 1_800_000_000_000 + i
    return key, entry


@pytest.mark.benchmark(group=f"put ({N} sessions, durability none)")
def test_put_directory(benchmark, record, world):
    store = SessionStore(world["directory_path"], durability="none")
    key, entry = _entry_for_write(world, 1)
    benchmark(store.put, key, entry)
    info(record, "directory", store.get(key) == entry)


def _floor_writer(world, key, entry, fsync):
    """Raw floor: temp file + os.replace of the bytes put() writes, into the
    same entries directory over the same file -- no lock, no checks."""
    data = encode_document(key, entry)
    target = SessionStore(world["directory_path"])._dir.entry_path(encode_key(key))
    counter = iter(range(10**9))

    def write():
        temp = f"{target}.{next(counter)}.floor.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
        os.close(fd)
        os.replace(temp, target)

    return write, target, data


@pytest.mark.benchmark(group=f"put ({N} sessions, durability none)")
def test_put_floor(benchmark, record, world):
    key, entry = _entry_for_write(world, 1)
    write, target, data = _floor_writer(world, key, entry, fsync=False)
    benchmark(write)
    with open(target, "rb") as fh:
        info(record, "floor", fh.read() == data)


@pytest.mark.benchmark(group=f"put ({N} sessions, durability none)")
def test_patch_directory(benchmark, record, world):
    store = SessionStore(world["directory_path"], durability="none")
    key = world["keys"][N // 4]
    counter = iter(range(10**9))
    benchmark(lambda: store.patch(key, {"inputTokens": next(counter)}))
    info(record, "directory-patch", store.get(key)["inputTokens"] >= 0)


@pytest.mark.benchmark(group=f"put ({N} sessions, durability none)")
def test_put_legacy_rewrite(benchmark, record, world):
    """The legacy write path: lock, parse the monolith, change one entry,
    rewrite the whole file atomically."""
    path = world["legacy_path"]
    lock = StoreLock.for_path(os.path.join(os.path.dirname(path), "sessions.json.lock"))
    key, entry = _entry_for_write(world, 2)

    def rewrite():
        with lock.hold(heavy=True):
            with open(path, "rb") as fh:
                store = _json.loads(fh.read())
            store[key] = entry
            write_atomic(path, _json.dumps(store), "none")

    benchmark.pedantic(rewrite, rounds=3, iterations=1)
    with open(path, "rb") as fh:
        info(record, "legacy", _json.loads(fh.read())[key] == entry)


@pytest.mark.benchmark(group=f"put ({N} sessions, durability file)")
def test_put_directory_fsync(benchmark, record, world):
    store = SessionStore(world["directory_path"], durability="file")
    key, entry = _entry_for_write(world, 3)
    benchmark.pedantic(store.put, args=(key, entry), rounds=50, iterations=1)
    info(record, "directory", store.get(key) == entry, durability="file")


@pytest.mark.benchmark(group=f"put ({N} sessions, durability file)")
def test_put_floor_fsync(benchmark, record, world):
    key, entry = _entry_for_write(world, 3)
    write, target, data = _floor_writer(world, key, entry, fsync=True)
    benchmark.pedantic(write, rounds=50, iterations=1)
    with open(target, "rb") as fh:
        info(record, "floor", fh.read() == data, durability="file")


# -- load ---------------------------------------------------------------------------

@pytest.mark.benchmark(group=f"load ({N} sessions)")
def test_load_cold_directory(benchmark, record, world):
    def cold():
        return SessionStore(world["directory_path"], cache=False).load()

    result = benchmark.pedantic(cold, rounds=3, iterations=1)
    info(record, "directory-cold", len(result) == N and result[world["probe"]] == world["data"][world["probe"]])


@pytest.mark.benchmark(group=f"load ({N} sessions)")
def test_load_legacy_parse(benchmark, record, world):
    def parse():
        with open(world["legacy_path"], "rb") as fh:
            return _json.loads(fh.read())

    result = benchmark.pedantic(parse, rounds=3, iterations=1)
    info(record, "legacy-parse", len(result) == N)


@pytest.mark.benchmark(group=f"load ({N} sessions)")
def test_load_cached_directory(benchmark, record, world):
    store = SessionStore(world["directory_path"])
    store.load()
    result = benchmark.pedantic(store.load, rounds=3, iterations=1)
    info(record, "directory-cached", len(result) == N)
