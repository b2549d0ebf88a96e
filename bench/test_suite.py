"""The benchmark suite: legacy vs directory vs SQLite vs the raw floors.

Same generated data for every backend, measured side by side in one run.
Sizes come from ``SESSIONSD_BENCH_SIZES`` (default ``1000,10000``); sizes
of 100k and more use small entries (``datagen`` small mode) so the run fits a
small machine.  ``SESSIONSD_BENCH_QUICK=1`` takes fewer rounds.
``SESSIONSD_BENCH_ONLY=directory`` runs only the directory-store benchmarks
(the pure-twin pass of ``bench/run.sh``).  Run everything with
``bash bench/run.sh``; every benchmark checks its answer.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import sessionsd
from sessionsd import SessionStore, _json, datagen
from sessionsd._codec import encode_key
from sessionsd._documents import encode_document
from sessionsd._fsutil import write_atomic
from sessionsd._lock import StoreLock

from sqlite_reference import SqliteSessions

SIZES = [int(s) for s in os.environ.get("SESSIONSD_BENCH_SIZES", "1000,10000").split(",") if s]
QUICK = os.environ.get("SESSIONSD_BENCH_QUICK") == "1"
ONLY = os.environ.get("SESSIONSD_BENCH_ONLY", "")
SMALL_FROM = 100_000
HOT_ROUNDS = 150 if QUICK else 1000
SLOW_ROUNDS = 2 if QUICK else 3


def measure(benchmark, fn, *, slow=False, rounds=None, setup=None):
    """Medians over fixed rounds (pedantic: no calibration surprises)."""
    rounds = rounds or (SLOW_ROUNDS if slow else HOT_ROUNDS)
    if setup is not None:
        return benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1)
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0 if slow else 10)


def skip_unless(backend):
    if ONLY and backend != ONLY:
        pytest.skip(f"SESSIONSD_BENCH_ONLY={ONLY}")


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"{s // 1000}k")
def world(request, tmp_path_factory):
    size = request.param
    small = size >= SMALL_FROM
    root = tmp_path_factory.mktemp(f"world{size}")
    data = datagen.generate_store(size, seed=11, small=small)
    keys = list(data)
    blob = _json.dumps(data)
    legacy_dir = root / "legacy"
    legacy_dir.mkdir(mode=0o700)
    (legacy_dir / "sessions.json").write_bytes(blob)
    directory_dir = root / "directory"
    directory_dir.mkdir(mode=0o700)
    (directory_dir / "sessions.json").write_bytes(blob)
    assert sessionsd.migrate(directory_dir / "sessions.json", max_bytes=None).outcome == "migrated"
    sqlite_normal = SqliteSessions(str(root / "normal.sqlite"), "NORMAL")
    sqlite_normal.fill(data.items())
    sqlite_full = SqliteSessions(str(root / "full.sqlite"), "FULL")
    sqlite_full.fill(data.items())
    world = {
        "size": size, "small": small, "root": root, "data": data, "keys": keys,
        "probe": keys[size // 2], "blob": blob,
        "legacy": str(legacy_dir / "sessions.json"),
        "directory": str(directory_dir / "sessions.json"),
        "sqlite": sqlite_normal, "sqlite_full": sqlite_full,
        "counter": itertools.count(),
    }
    yield world
    sqlite_normal.close()
    sqlite_full.close()
    shutil.rmtree(root, ignore_errors=True)


def note(record, world, backend, correct, **extra):
    record(backend, world["size"], correct, entries="small" if world["small"] else "realistic", **extra)


def write_key(world, slot):
    """A key written by the write benchmarks: never the probe the reads check."""
    return world["keys"][(world["size"] // 3 + slot) % world["size"]]


def legacy_rewrite(world, mutate):
    path = world["legacy"]
    with StoreLock.for_path(os.path.join(os.path.dirname(path), "sessions.json.lock")).hold(heavy=True):
        with open(path, "rb") as fh:
            store = _json.loads(fh.read())
        mutate(store)
        write_atomic(path, _json.dumps(store), "none")
    return store


def legacy_parse(world):
    with open(world["legacy"], "rb") as fh:
        return _json.loads(fh.read())


# -- reads ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["directory", "sqlite", "legacy", "floor"])
def test_updated_at(benchmark, record, world, backend):
    skip_unless(backend)
    benchmark.group = f"updated_at {world['size']}"
    key = world["probe"]
    expected = world["data"][key]["updatedAt"]
    if backend == "directory":
        store = SessionStore(world["directory"])
        value = measure(benchmark, lambda: store.updated_at(key))
    elif backend == "sqlite":
        value = measure(benchmark, lambda: world["sqlite"].updated_at(key))
    elif backend == "legacy":
        value = measure(benchmark, lambda: legacy_parse(world)[key]["updatedAt"], slow=True)
    else:
        path = SessionStore(world["directory"])._dir.entry_path(encode_key(key))

        def read():  # the raw floor: open/read/close of the entry file, no parse
            fd = os.open(path, os.O_RDONLY)
            try:
                return os.read(fd, 4096)
            finally:
                os.close(fd)

        value = measure(benchmark, read)
        value = expected if str(expected).encode() in value else None
    note(record, world, backend, value == expected)


@pytest.mark.parametrize("backend", ["directory", "sqlite", "legacy"])
def test_get(benchmark, record, world, backend):
    skip_unless(backend)
    benchmark.group = f"get {world['size']}"
    key = world["probe"]
    if backend == "directory":
        store = SessionStore(world["directory"])
        value = measure(benchmark, lambda: store.get(key))
    elif backend == "sqlite":
        value = measure(benchmark, lambda: world["sqlite"].get(key))
    else:
        value = measure(benchmark, lambda: legacy_parse(world)[key], slow=True)
    note(record, world, backend, value == world["data"][key])


# -- writes ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["directory", "sqlite", "legacy", "floor"])
def test_put(benchmark, record, world, backend):
    skip_unless(backend)
    benchmark.group = f"put {world['size']} (durability none / sqlite NORMAL)"
    key = write_key(world, 1)
    entry = dict(world["data"][key], updatedAt=1_900_000_000_000)
    if backend == "directory":
        store = SessionStore(world["directory"], durability="none")
        measure(benchmark, lambda: store.put(key, entry))
        correct = store.get(key) == entry
    elif backend == "sqlite":
        measure(benchmark, lambda: world["sqlite"].put(key, entry))
        correct = world["sqlite"].get(key) == entry
    elif backend == "legacy":
        measure(benchmark, lambda: legacy_rewrite(world, lambda s: s.__setitem__(key, entry)), slow=True)
        correct = legacy_parse(world)[key] == entry
    else:
        data = encode_document(key, entry)
        target = SessionStore(world["directory"])._dir.entry_path(encode_key(key))

        def write():  # the raw floor: temp file + os.replace of the same bytes, no lock
            temp = f"{target}.{next(world['counter'])}.floor.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            os.close(fd)
            os.replace(temp, target)

        measure(benchmark, write)
        with open(target, "rb") as fh:
            correct = fh.read() == data
    note(record, world, backend, correct, durability="none")


@pytest.mark.parametrize("backend", ["directory", "sqlite", "floor"])
def test_put_durable(benchmark, record, world, backend):
    skip_unless(backend)
    benchmark.group = f"put {world['size']} (durability full / sqlite FULL)"
    key = write_key(world, 2)
    entry = dict(world["data"][key], updatedAt=1_900_000_000_001)
    rounds = 30 if QUICK else 100
    if backend == "directory":
        store = SessionStore(world["directory"], durability="full")
        measure(benchmark, lambda: store.put(key, entry), rounds=rounds)
        correct = store.get(key) == entry
    elif backend == "sqlite":
        measure(benchmark, lambda: world["sqlite_full"].put(key, entry), rounds=rounds)
        correct = world["sqlite_full"].get(key) == entry
    else:
        data = encode_document(key, entry)
        target = SessionStore(world["directory"])._dir.entry_path(encode_key(key))
        directory = os.path.dirname(target)

        def write():
            temp = f"{target}.{next(world['counter'])}.floor.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.replace(temp, target)
            dfd = os.open(directory, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)

        measure(benchmark, write, rounds=rounds)
        with open(target, "rb") as fh:
            correct = fh.read() == data
    note(record, world, backend, correct, durability="full")


@pytest.mark.parametrize("backend", ["directory", "sqlite", "legacy"])
def test_patch(benchmark, record, world, backend):
    skip_unless(backend)
    benchmark.group = f"patch {world['size']}"
    key = write_key(world, 3)
    counter = world["counter"]
    if backend == "directory":
        store = SessionStore(world["directory"], durability="none")
        measure(benchmark, lambda: store.patch(key, {"inputTokens": next(counter)}))
        result = store.get(key)
    elif backend == "sqlite":
        measure(benchmark, lambda: world["sqlite"].patch(key, {"inputTokens": next(counter)}))
        result = world["sqlite"].get(key)
    else:
        measure(benchmark, lambda: legacy_rewrite(
            world, lambda s: s[key].update(inputTokens=next(counter))), slow=True)
        result = legacy_parse(world)[key]
    expected = {k: v for k, v in world["data"][key].items() if k not in ("inputTokens", "updatedAt")}
    correct = {k: v for k, v in result.items() if k not in ("inputTokens", "updatedAt")} == expected
    note(record, world, backend, correct)


@pytest.mark.parametrize("backend", ["directory", "sqlite"])
def test_delete_and_recreate(benchmark, record, world, backend):
    skip_unless(backend)
    benchmark.group = f"delete+re-create {world['size']}"
    key = write_key(world, 4)
    entry = world["data"][key]
    if backend == "directory":
        store = SessionStore(world["directory"], durability="none")

        def cycle():
            assert store.delete(key)
            store.put(key, entry)

        measure(benchmark, cycle)
        correct = store.get(key) == entry
    else:
        db = world["sqlite"]

        def cycle():
            assert db.delete(key)
            db.put(key, entry)

        measure(benchmark, cycle)
        correct = db.get(key) == entry
    note(record, world, backend, correct)


# -- whole store ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["directory", "directory-cached", "sqlite", "legacy"])
def test_load(benchmark, record, world, backend):
    skip_unless(backend.split("-")[0])
    benchmark.group = f"load {world['size']}"
    probe = world["probe"]
    if backend == "directory":
        result = measure(benchmark, lambda: SessionStore(world["directory"], cache=False).load(), slow=True)
    elif backend == "directory-cached":
        store = SessionStore(world["directory"])
        store.load()
        result = measure(benchmark, store.load, slow=True)
    elif backend == "sqlite":
        result = measure(benchmark, world["sqlite"].load, slow=True)
    else:
        result = measure(benchmark, lambda: legacy_parse(world), slow=True)
    note(record, world, backend, len(result) == world["size"] and result[probe] == world["data"][probe])


@pytest.mark.parametrize("backend", ["directory", "sqlite", "legacy"])
def test_summary(benchmark, record, world, backend):
    skip_unless(backend)
    benchmark.group = f"summary {world['size']}"
    probe = world["probe"]
    if backend == "directory":
        store = SessionStore(world["directory"])
        store.load()
        result = measure(benchmark, store.summary, slow=True)
    elif backend == "sqlite":
        result = measure(benchmark, world["sqlite"].summary, slow=True)
    else:
        def legacy_summary():
            return {k: {"lastChannel": e.get("lastChannel"), "lastTo": e.get("lastTo"),
                        "updatedAt": e.get("updatedAt")} for k, e in legacy_parse(world).items()}
        result = measure(benchmark, legacy_summary, slow=True)
    entry = world["data"][probe]
    note(record, world, backend, len(result) == world["size"] and result[probe] == {
        "lastChannel": entry.get("lastChannel"), "lastTo": entry.get("lastTo"),
        "updatedAt": entry.get("updatedAt")})


@pytest.mark.parametrize("backend", ["directory", "floor"])
def test_migration(benchmark, record, world, backend):
    skip_unless(backend)
    benchmark.group = f"migration {world['size']}"
    rounds = 1 if world["size"] >= 10_000 or QUICK else 2

    def fresh():
        target = world["root"] / f"migrate-{next(world['counter'])}"
        target.mkdir(mode=0o700)
        (target / "sessions.json").write_bytes(world["blob"])
        return (target,), {}

    outcomes = []

    def migrate(target):
        outcomes.append(sessionsd.migrate(target / "sessions.json", max_bytes=None))

    def floor(target):
        # Parse the legacy file and write every entry file into one directory.
        with open(target / "sessions.json", "rb") as fh:
            data = _json.loads(fh.read())
        entries = target / "entries"
        entries.mkdir()
        prefix = str(entries) + os.sep
        for key, entry in data.items():
            fd = os.open(prefix + encode_key(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, encode_document(key, entry))
            os.close(fd)
        outcomes.append(len(os.listdir(entries)))

    measure(benchmark, migrate if backend == "directory" else floor, rounds=rounds, setup=fresh)
    if backend == "directory":
        correct = all(o.outcome == "migrated" and o.migrated_entries == world["size"] for o in outcomes)
    else:
        correct = all(o == world["size"] for o in outcomes)
    note(record, world, backend, correct, fsync="os.sync before promotion" if backend == "directory" else "none")
    for path in world["root"].glob("migrate-*"):
        shutil.rmtree(path, ignore_errors=True)


WRITER = """
import sys
from sessionsd import SessionStore
store = SessionStore(sys.argv[1], durability="none")
prefix, count = sys.argv[2], int(sys.argv[3])
for i in range(count):
    store.put(f"{prefix}-{i}", {"updatedAt": 1900000000000 + i, "lastChannel": "bench"})
"""


@pytest.mark.parametrize("writers", [1, 2, 4])
def test_concurrent_writers(benchmark, record, world, writers):
    skip_unless("directory")
    benchmark.group = f"concurrent writers {world['size']}"
    per_writer = 100 if QUICK else 300
    round_ids = itertools.count()
    path = world["directory"]

    def run():
        tag = next(round_ids)
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, f"w{writers}-{tag}-{j}", str(per_writer)])
                 for j in range(writers)]
        for proc in procs:
            assert proc.wait() == 0

    started = time.perf_counter()
    measure(benchmark, run, rounds=2 if QUICK else 3)
    store = SessionStore(path)
    loaded = store.keys()
    prefix = f"w{writers}-0-"
    correct = sum(1 for k in loaded if k.startswith(prefix)) == writers * per_writer
    seconds = benchmark.stats.stats.median
    record("directory", world["size"], correct, writers=writers, puts=writers * per_writer,
           ops_per_s=round(writers * per_writer / seconds), entries="small" if world["small"] else "realistic",
           wall=round(time.perf_counter() - started, 2))
    # Remove what this benchmark added, so later benchmarks see the original size.
    store.update(lambda sessions: [sessions.pop(k) for k in list(sessions) if k.startswith(f"w{writers}-")])
