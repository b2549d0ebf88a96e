"""Store benchmarks: legacy vs directory vs SQLite vs the raw floors.

The same generated sessions (``sessionsd.datagen``, SPEC §9) go into every
backend of :mod:`backends`, and each operation is measured side by side in
one run: ``updated_at``, ``get``, ``load`` (cold and cached), ``summary``,
``put`` at three durabilities, ``patch``, delete + re-create, migration, and
1/2/4 concurrent writer processes.

Knobs (``bash bench/run.sh`` sets them):

* ``SESSIONSD_BENCH_SIZES`` -- store sizes, default ``1000,10000``; from
  100,000 on, entries are small (``datagen`` ``small=True``) so the run fits
  a small machine.
* ``SESSIONSD_BENCH_QUICK=1`` -- fewer rounds.
* ``SESSIONSD_BENCH_ONLY=directory`` -- only the directory store (the pure
  twin's pass, run in its own process with ``SESSIONSD_NO_EXTENSIONS=1``, so
  the twin runs end to end: codec, scans, the updatedAt fast path, copies).

Benchmark names are stable: ``test_<operation>[<size>-<backend>]``, with
``-twin`` after the directory backends when the pure twin runs.  Every
benchmark checks its answer through ``record(..., correct)``, which fails
the benchmark on a wrong result.  Timings are pedantic (fixed rounds, one
call per round) and never asserted.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from backends import SQLITE_SYNC, Directory, Floor, Legacy, open_backend, summarize
from sqlite_reference import SqliteSessions

import sessionsd
from sessionsd import SessionStore, _json, datagen, index
from sessionsd._documents import encode_document
from sessionsd._layout import StorePaths

SIZES = [int(s) for s in os.environ.get("SESSIONSD_BENCH_SIZES", "1000,10000").split(",") if s.strip()]
QUICK = os.environ.get("SESSIONSD_BENCH_QUICK") == "1"
ONLY = os.environ.get("SESSIONSD_BENCH_ONLY", "")
TWIN = sessionsd.BACKEND != "compiled"
SMALL_FROM = 100_000  # from this size on, entries are stubs (datagen small=True)
SEED = 11
WRITERS = (1, 2, 4)
LEGACY_WRITERS_MAX_SIZE = 1_000  # beyond this one legacy put takes seconds

HOT_ROUNDS = 300 if QUICK else 1000
HOT_WARMUP = 10 if QUICK else 20
FSYNC_ROUNDS = 50 if QUICK else 200
SLOW_BUDGET = 0.5 if QUICK else 2.0  # seconds per slow benchmark, roughly
SLOW_MIN_ROUNDS = 3
SLOW_MAX_ROUNDS = 50 if QUICK else 200
HERE = os.path.dirname(os.path.abspath(__file__))


def size_id(size: int) -> str:
    return f"{size // 1000}k" if size % 1000 == 0 else str(size)


def label(backend: str) -> str:
    """The backend's name in benchmark ids: directory variants say when the
    pure twin runs, so compiled and twin results never share a name."""
    return f"{backend}-twin" if TWIN and backend.startswith("directory") else backend


def skip_unless_selected(backend: str) -> None:
    if ONLY and not backend.startswith(ONLY):
        pytest.skip(f"SESSIONSD_BENCH_ONLY={ONLY}")


def slow(benchmark, fn):
    """Measure an operation of 100 µs to seconds (whole-store work, every
    legacy write): one untimed call doubles as warm-up and calibration, then
    as many rounds as fit the time budget, at least ``SLOW_MIN_ROUNDS``."""
    started = time.perf_counter()
    fn()
    once = max(time.perf_counter() - started, 1e-6)
    rounds = max(SLOW_MIN_ROUNDS, min(SLOW_MAX_ROUNDS, int(SLOW_BUDGET / once)))
    return benchmark.pedantic(fn, rounds=rounds, iterations=1)


@dataclass
class World:
    """One generated store, in every backend's format."""

    size: int
    small: bool
    root: Path
    data: dict[str, dict]
    probe: str              # the entry every read benchmark reads
    slots: list[str]        # one key per write benchmark, never the probe
    blob: bytes             # the legacy sessions.json bytes
    legacy: str
    directory: str
    sqlite: dict[str, str] = field(default_factory=dict)  # durability -> database file
    counter: Any = field(default_factory=itertools.count)

    def entry_bytes(self, key: str) -> int:
        return len(_json.dumps(self.data[key]))

    def path(self, kind: str, durability: str = "none") -> str:
        """What ``open_backend(kind, ...)`` opens.  The sqlite databases are
        filled on first use (untimed), so a run of a few benchmarks does
        not build them for nothing."""
        if kind == "legacy":
            return self.legacy
        if kind == "sqlite-fresh":
            kind = "sqlite"
        if kind != "sqlite":
            return self.directory
        if durability not in self.sqlite:
            sync = SQLITE_SYNC[durability]
            path = str(self.root / f"sessions-{sync.lower()}.sqlite")
            db = SqliteSessions(path, sync)
            db.fill(self.data.items())
            db.close()
            os.sync()  # its write-back must not land in the benchmark
            self.sqlite[durability] = path
        return self.sqlite[durability]


def _typical_keys(data: dict[str, dict], keys: list[str]) -> list[str]:
    """Keys ordered by how close their entry is to the median entry size.

    Drawn from the first 1,000 keys, which ``datagen`` makes identical at
    every size (a prefix of the same random stream): the 1k and 10k stores
    read and write the very same entries, so only the store size differs."""
    head = keys[:1_000]
    sizes = {key: len(_json.dumps(data[key])) for key in head}
    median = sorted(sizes.values())[len(sizes) // 2]
    return sorted(head, key=lambda key: (abs(sizes[key] - median), key))


@pytest.fixture(scope="module", params=SIZES, ids=size_id)
def world(request, tmp_path_factory):
    size = request.param
    small = size >= SMALL_FROM
    root = tmp_path_factory.mktemp(f"world-{size_id(size)}")
    data = datagen.generate_store(size, seed=SEED, small=small)
    typical = _typical_keys(data, list(data))
    blob = _json.dumps(data)
    legacy_dir, directory_dir = root / "legacy", root / "directory"
    legacy_dir.mkdir(mode=0o700)
    directory_dir.mkdir(mode=0o700)
    (legacy_dir / "sessions.json").write_bytes(blob)
    (directory_dir / "sessions.json").write_bytes(blob)
    result = sessionsd.migrate(directory_dir / "sessions.json", max_bytes=None)
    assert result.outcome == "migrated" and result.migrated_entries == size
    world = World(size=size, small=small, root=root, data=data, probe=typical[0],
                  slots=typical[1:6], blob=blob, legacy=str(legacy_dir / "sessions.json"),
                  directory=str(directory_dir / "sessions.json"))
    yield world
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def backend_of(world):
    """Open a backend on *world* (closed after the test)."""
    opened = []

    def _open(kind: str, durability: str = "none"):
        backend = open_backend(kind, world.path(kind, durability), durability)
        opened.append(backend)
        return backend

    yield _open
    for backend in opened:
        backend.close()


def hot(benchmark, fn, rounds: int = HOT_ROUNDS):
    """Measure a micro- to millisecond operation: fixed rounds of one call."""
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=HOT_WARMUP)


def note(record, world, backend, correct, **extra):
    record(label(backend), world.size, correct, entries="small" if world.small else "realistic", store_bytes=len(world.blob),
           quick=QUICK, **extra)


def group(benchmark, op: str, world, detail: str = "") -> None:
    benchmark.group = f"{op} {size_id(world.size)}" + (f" ({detail})" if detail else "")


# -- reads ------------------------------------------------------------------------------
# Reads come first: the write benchmarks change the stores, and the whole-store
# reads check their result against the generated data in full.

@pytest.mark.parametrize("backend", ["directory", "sqlite", "legacy", "floor"], ids=label)
def test_updated_at(benchmark, record, world, backend_of, backend):
    skip_unless_selected(backend)
    group(benchmark, "updated_at", world)
    key, expected = world.probe, world.data[world.probe]["updatedAt"]
    store = backend_of(backend)
    if backend == "floor":
        head = hot(benchmark, lambda: store.read_head(key))
        found = re.search(rb'"updatedAt":\s*(-?\d+)', head)
        correct = found is not None and int(found[1]) == expected
    elif backend == "legacy":
        correct = slow(benchmark, lambda: store.updated_at(key)) == expected
    else:
        correct = hot(benchmark, lambda: store.updated_at(key)) == expected
    note(record, world, backend, correct, entry_bytes=world.entry_bytes(key))


@pytest.mark.parametrize("backend", ["directory", "sqlite", "legacy", "floor"], ids=label)
def test_get(benchmark, record, world, backend_of, backend):
    skip_unless_selected(backend)
    group(benchmark, "get", world)
    key = world.probe
    store = backend_of(backend)
    if backend == "floor":
        raw = hot(benchmark, lambda: store.read(key))
        correct = raw == encode_document(key, world.data[key])
    elif backend == "legacy":
        correct = slow(benchmark, lambda: store.get(key)) == world.data[key]
    else:
        correct = hot(benchmark, lambda: store.get(key)) == world.data[key]
    note(record, world, backend, correct, entry_bytes=world.entry_bytes(key))


LOADS = ["directory", "directory-cached", "sqlite", "legacy", "legacy-cached", "legacy-parse", "floor"]


@pytest.mark.parametrize("backend", LOADS, ids=label)
def test_load(benchmark, record, world, backend_of, backend):
    """``load()``: cold (a fresh process: no sessionsd cache) and cached
    (the process keeps its store open: a validated cache, then a deep copy
    the caller owns).  ``legacy-parse`` reads and parses the monolith with
    nothing else (its floor), ``floor`` reads and parses every entry file."""
    skip_unless_selected(backend)
    group(benchmark, "load", world)
    kind, _, variant = backend.partition("-")
    store = backend_of(kind)
    fn = {"": store.load, "cached": getattr(store, "load_cached", None),
          "parse": getattr(store, "load_raw", None)}[variant]
    if variant == "cached":
        fn()  # fill the cache, so that slow()'s calibration call sees the cached cost
    result = slow(benchmark, fn)
    note(record, world, backend, result == world.data)


@pytest.mark.parametrize("backend", ["directory", "directory-cached", "sqlite", "sqlite-fresh", "legacy",
                                     "legacy-cached"], ids=label)
def test_summary(benchmark, record, world, backend_of, backend):
    skip_unless_selected(backend)
    group(benchmark, "summary", world)
    kind, _, variant = backend.partition("-")
    if variant == "fresh":
        kind = backend
    store = backend_of(kind)
    _ready(world, kind)
    fn = store.summary_cached if variant == "cached" else store.summary
    if variant == "cached":
        fn()  # fill the cache first, as in test_load
    result = slow(benchmark, fn)
    note(record, world, backend, result == summarize(world.data))


# -- listings: the listing index (sessionsd.index) vs SQLite ------------------------------
# Like with like: ``directory`` answers from a fresh SessionStore
# (cache=False): the index is read from disk on every call, as by a process
# that just started -- its counterpart is ``sqlite-fresh``, a new connection
# per call.  ``directory-cached`` answers from the store object the backend
# keeps open (its cached index checked against the store's token on every
# call) -- its counterpart is ``sqlite``, an open connection.  The index is
# built (untimed) before the first round.

def _ready(world, backend: str) -> None:
    if backend.startswith("directory"):
        SessionStore(world.directory).summary()


def _listing_backend(backend_of, world, backend: str):
    """(store, variant) of a listing benchmark's backend name."""
    kind, _, variant = backend.partition("-")
    if variant == "fresh":
        kind, variant = backend, ""
    _ready(world, kind)
    return backend_of(kind), variant


def _recent_of(data: dict, limit: int = 50) -> list:
    order = sorted(data, key=lambda key: (-index.age(data[key].get("updatedAt")), key))
    return [(key, summarize({key: data[key]})[key]) for key in order[:limit]]


LISTINGS = ["directory", "directory-cached", "sqlite", "sqlite-fresh", "legacy"]


@pytest.mark.parametrize("backend", LISTINGS, ids=label)
def test_keys(benchmark, record, world, backend_of, backend):
    skip_unless_selected(backend)
    group(benchmark, "keys", world)
    store, variant = _listing_backend(backend_of, world, backend)
    fn = store.keys_cached if variant == "cached" else store.keys
    result = slow(benchmark, fn)
    note(record, world, backend, len(result) == world.size and set(result) == set(world.data))


@pytest.mark.parametrize("backend", LISTINGS, ids=label)
def test_len(benchmark, record, world, backend_of, backend):
    skip_unless_selected(backend)
    group(benchmark, "len", world)
    store, variant = _listing_backend(backend_of, world, backend)
    fn = store.count_cached if variant == "cached" else store.count
    # Microseconds: fixed rounds (slow()'s budget would give thousands).
    count = slow(benchmark, fn) if backend == "legacy" else hot(benchmark, fn, rounds=HOT_ROUNDS // 2)
    note(record, world, backend, count == world.size)


@pytest.mark.parametrize("backend", LISTINGS, ids=label)
def test_recent(benchmark, record, world, backend_of, backend):
    """The 50 most recently updated sessions (sqlite: ``ORDER BY updated_at
    DESC, key LIMIT 50`` walking an index of those columns -- the same plan
    and cost as the issue's ``ORDER BY updated_at DESC LIMIT 50`` on the
    indexed column, with the tie order sessionsd's answer has, so the
    answers can be compared)."""
    skip_unless_selected(backend)
    group(benchmark, "recent", world, "most recent 50")
    store, variant = _listing_backend(backend_of, world, backend)
    fn = store.recent_cached if variant == "cached" else store.recent
    result = slow(benchmark, lambda: fn(50)) if backend == "legacy" else hot(
        benchmark, lambda: fn(50), rounds=HOT_ROUNDS // 2)
    note(record, world, backend, result == _recent_of(world.data))


# -- single-entry writes ------------------------------------------------------------------

def _reread(world, backend: str, durability: str, key: str):
    """The entry of *key* as a fresh reader sees it on disk."""
    if backend == "sqlite":
        db = SqliteSessions(world.sqlite[durability])
        try:
            return db.get(key)
        finally:
            db.close()
    if backend == "legacy":
        with open(world.legacy, "rb") as fh:
            return _json.loads(fh.read()).get(key)
    return SessionStore(world.directory, cache=False).get(key)


def _put(benchmark, record, world, backend_of, backend, durability, slot):
    key = world.slots[slot]
    entry = {**world.data[key], "updatedAt": 1_900_000_000_000 + slot}
    no_index = backend == "directory-noindex"
    if no_index:
        # The same store without a listing index: a put then skips the journal.
        index.remove(StorePaths.from_store_path(world.directory).root)
        backend = "directory"
    elif backend.startswith("directory"):
        _ready(world, "directory")
    store = backend_of(backend, durability)
    if no_index:
        assert not os.path.exists(store.store._backend._dir.journal_path)
        backend = "directory-noindex"
    if backend == "legacy":
        slow(benchmark, lambda: store.put(key, entry))
    elif durability == "none":
        hot(benchmark, lambda: store.put(key, entry))
    else:
        hot(benchmark, lambda: store.put(key, entry), rounds=FSYNC_ROUNDS)
    correct = _reread(world, backend, durability, key) == entry
    if backend.startswith("directory"):
        # The index kept by the puts (or rebuilt after the index-less ones) is right.
        correct = correct and SessionStore(world.directory, cache=False).summary()[key] == summarize({key: entry})[key]
    note(record, world, backend, correct, durability=durability, entry_bytes=world.entry_bytes(key),
         **({"sqlite_synchronous": "NORMAL" if durability == "none" else "FULL"} if backend == "sqlite" else {}))


WRITE_BACKENDS = ["directory", "directory-solo", "sqlite", "legacy", "floor"]


@pytest.mark.parametrize("backend", ["directory", "directory-noindex"] + WRITE_BACKENDS[1:], ids=label)
def test_put(benchmark, record, world, backend_of, backend):
    """Replace one entry, durability ``none`` (rename-atomic; sqlite
    ``synchronous=NORMAL``)."""
    skip_unless_selected(backend)
    group(benchmark, "put", world, "durability none, sqlite NORMAL")
    _put(benchmark, record, world, backend_of, backend, "none", 0)


@pytest.mark.parametrize("backend", ["directory", "directory-noindex", "directory-solo", "legacy", "floor"],
                         ids=label)
def test_put_file(benchmark, record, world, backend_of, backend):
    """Durability ``file`` (the library's default): fsync before the rename."""
    skip_unless_selected(backend)
    group(benchmark, "put_file", world, "durability file")
    _put(benchmark, record, world, backend_of, backend, "file", 1)


@pytest.mark.parametrize("backend", WRITE_BACKENDS, ids=label)
def test_put_full(benchmark, record, world, backend_of, backend):
    """Durability ``full`` (fsync the file and the directory; sqlite
    ``synchronous=FULL``)."""
    skip_unless_selected(backend)
    group(benchmark, "put_full", world, "durability full, sqlite FULL")
    _put(benchmark, record, world, backend_of, backend, "full", 2)


@pytest.mark.parametrize("backend", ["directory", "directory-solo", "sqlite", "legacy"], ids=label)
def test_patch(benchmark, record, world, backend_of, backend):
    """Read-modify-write of one field under the lock (sqlite: BEGIN IMMEDIATE)."""
    skip_unless_selected(backend)
    group(benchmark, "patch", world)
    key = world.slots[3]
    store = backend_of(backend)
    counter = itertools.count(1)
    last = []

    def patch():
        value = next(counter)
        last.append(value)
        return store.patch(key, {"inputTokens": value})

    returned = slow(benchmark, patch) if backend == "legacy" else hot(benchmark, patch)
    expected = {**world.data[key], "inputTokens": last[-1]}
    correct = returned == expected and _reread(world, backend, "none", key) == expected
    note(record, world, backend, correct, durability="none", entry_bytes=world.entry_bytes(key))


@pytest.mark.parametrize("backend", WRITE_BACKENDS, ids=label)
def test_delete_recreate(benchmark, record, world, backend_of, backend):
    """Delete an entry, then create it again (two commits)."""
    skip_unless_selected(backend)
    group(benchmark, "delete_recreate", world)
    key = world.slots[4]
    entry = world.data[key]
    store = backend_of(backend)
    failures = []

    def cycle():
        if not store.delete(key):
            failures.append("delete found nothing")
        store.put(key, entry)

    if backend == "legacy":
        slow(benchmark, cycle)
    else:
        hot(benchmark, cycle)
    correct = not failures and _reread(world, backend, "none", key) == entry
    note(record, world, backend, correct, durability="none", entry_bytes=world.entry_bytes(key))


# -- index repair ---------------------------------------------------------------------------------

def _foreign_write(path: str, key: str, entry: dict) -> None:
    """What the reference writer does: the entry file replaced by rename,
    then state.json's version + 1 (tests/reference_host.py write_entry)."""
    paths = StorePaths.from_store_path(path)
    for target, doc in ((os.path.join(paths.entries, sessionsd.encode_key(key)), {"sessionKey": key, "entry": entry}),
                        (paths.state, None)):
        if doc is None:
            with open(paths.state, "rb") as fh:
                state = json.loads(fh.read())
            doc = {**state, "version": state["version"] + 1, "updatedAt": int(time.time() * 1000)}
        temp = f"{target}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        with open(temp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, indent=2, ensure_ascii=False))
        os.chmod(temp, 0o600)
        os.replace(temp, target)


@pytest.mark.parametrize("backend", ["directory-repair", "directory-rebuild"], ids=label)
def test_index_repair(benchmark, record, world, backend):
    """The first listing after a foreign writer rewrote 1% of the sessions
    (``repair``: lstat every file, re-read the changed ones, store the
    index) vs after the index was deleted (``rebuild``: read every file).
    A file written less than ``index.RACY_NS`` before a repair saw it is
    re-read by the next repair once more (its stat could still change within
    the same timestamp tick), so rounds after the first re-read 2%."""
    skip_unless_selected("directory")
    group(benchmark, "index_repair", world, "1% rewritten by a foreign writer")
    keys = list(world.data)
    changed = max(1, world.size // 100)
    cursor = itertools.count()
    root = StorePaths.from_store_path(world.directory).root
    _ready(world, "directory")

    truth = SessionStore(world.directory, cache=False, index=False).load()  # earlier puts changed some

    def setup():
        if backend == "directory-rebuild":
            index.remove(root)
        else:
            # As if the foreign writes came a while after the last listing:
            # files younger than the racy window are re-read by any repair.
            time.sleep(index.RACY_NS / 1e9)
            for _ in range(changed):
                key = keys[next(cursor) % len(keys)]
                _foreign_write(world.directory, key, truth[key])
        return (), {}

    results = []
    rounds = 3 if QUICK or world.size >= 10_000 and not world.small else 5
    benchmark.pedantic(lambda: results.append(SessionStore(world.directory, cache=False).summary()),
                       setup=setup, rounds=rounds, iterations=1)
    correct = all(result == summarize(truth) for result in results)
    note(record, world, backend, correct, changed_per_round=changed if backend == "directory-repair" else world.size)


# -- migration ----------------------------------------------------------------------------------

def _floor_migrate(target: Path) -> int:
    """The floor of a migration: parse the monolith, write every entry file
    into one new directory, make it durable the way migration does on Linux
    (one ``sync()``) -- no staging, no checks, no state file, no backup."""
    with open(target / "sessions.json", "rb") as fh:
        data = _json.loads(fh.read())
    floor = Floor(str(target / "sessions.json"))
    os.makedirs(floor.entries, mode=0o700)
    for key, entry in data.items():
        fd = os.open(floor.file(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, encode_document(key, entry))
        finally:
            os.close(fd)
    os.sync()
    return len(data)


@pytest.mark.parametrize("backend", ["directory", "floor"], ids=label)
def test_migration(benchmark, record, world, backend):
    """``sessionsd.migrate`` of the legacy file (staging, durable flush,
    promotion, backup) vs its floor."""
    skip_unless_selected(backend)
    group(benchmark, "migration", world)
    rounds = 2 if QUICK or world.size > 1_000 else 3
    targets: list[Path] = []

    def fresh():
        for old in targets:  # one copy at a time: a 10k store is ~470 MB
            shutil.rmtree(old, ignore_errors=True)
        target = world.root / f"migrate-{next(world.counter)}"
        target.mkdir(mode=0o700)
        (target / "sessions.json").write_bytes(world.blob)
        targets.append(target)
        # Flush the copy now: the sync() inside the timed migration must not
        # pay for writing back this untimed setup.
        os.sync()
        return (target,), {}

    outcomes = []

    def migrate(target):
        outcomes.append(sessionsd.migrate(target / "sessions.json", max_bytes=None))

    def floor(target):
        outcomes.append(_floor_migrate(target))

    benchmark.pedantic(migrate if backend == "directory" else floor, setup=fresh, rounds=rounds,
                       iterations=1)
    last = str(targets[-1] / "sessions.json")
    if backend == "directory":
        correct = all(o.outcome == "migrated" and o.migrated_entries == world.size for o in outcomes)
        correct = correct and SessionStore(last, cache=False).load() == world.data
    else:
        correct = all(o == world.size for o in outcomes) and Floor(last).load() == world.data
    note(record, world, backend, correct, durability="sync before promotion" if backend == "directory"
         else "one sync()")
    for target in targets:
        shutil.rmtree(target, ignore_errors=True)


# -- concurrent writers ---------------------------------------------------------------------

def _writer_ids(value):
    return f"{value}w" if isinstance(value, int) else label(value)


@pytest.mark.parametrize("writers", WRITERS, ids=_writer_ids)
@pytest.mark.parametrize("backend", ["directory", "sqlite", "legacy"], ids=label)
def test_concurrent_writers(benchmark, record, world, backend, writers):
    """N processes put disjoint keys at once (durability ``none``; sqlite
    NORMAL).  A round is timed from the go signal to the last writer's
    ``done``: interpreter start-up and imports are outside the measurement.
    The aggregate rate is all puts of a round over the round's median time."""
    skip_unless_selected(backend)
    if backend == "legacy" and world.size > LEGACY_WRITERS_MAX_SIZE:
        pytest.skip(f"legacy writers only up to {LEGACY_WRITERS_MAX_SIZE} sessions (a put takes seconds)")
    group(benchmark, "concurrent_writers", world, backend)
    if backend == "legacy":
        per_writer, rounds = (3, 1) if QUICK else (5, 2)
    else:
        per_writer, rounds = (100, 3) if QUICK else (300, 5)
    entry = world.data[world.probe]
    entry_file = world.root / "writer-entry.json"
    entry_file.write_bytes(_json.dumps(entry))
    path = world.path(backend)
    prefix = f"bench:cw:{backend}:{writers}w:"
    round_ids = itertools.count()
    spawned: list[subprocess.Popen] = []
    per_writer_seconds: list[float] = []

    def spawn():
        tag = next(round_ids)
        procs = [subprocess.Popen(
            [sys.executable, os.path.join(HERE, "writer.py"), backend, path,
             f"{prefix}r{tag}:j{j}:", str(per_writer), str(entry_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for j in range(writers)]
        spawned.extend(procs)
        for proc in procs:
            line = proc.stdout.readline()
            assert line.strip() == "ready", f"writer did not start: {line!r}"
        return (procs,), {}

    def run(procs):
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            line = proc.stdout.readline().split()
            assert line and line[0] == "done", f"writer failed: {line!r}"
            per_writer_seconds.append(float(line[1]))

    started = time.perf_counter()
    try:
        benchmark.pedantic(run, setup=spawn, rounds=rounds, iterations=1)
    finally:
        codes = []
        for proc in spawned:
            proc.stdin.close()
            codes.append(proc.wait())
            proc.stdout.close()
    expected_keys = [f"{prefix}r{r}:j{j}:{i}" for r in range(rounds) for j in range(writers)
                     for i in range(per_writer)]
    correct = all(code == 0 for code in codes) and _written(world, backend, path, expected_keys, entry)
    _remove(world, backend, path, prefix, expected_keys)
    total = writers * per_writer
    median = benchmark.stats.stats.median
    note(record, world, backend, correct, durability="none", writers=writers, puts_per_writer=per_writer,
         puts_per_round=total, ops_per_s=round(total / median, 1),
         per_writer_ops_per_s=round(per_writer / (sum(per_writer_seconds) / len(per_writer_seconds)), 1),
         entry_bytes=world.entry_bytes(world.probe), wall=round(time.perf_counter() - started, 2))


def _written(world, backend: str, path: str, keys: list[str], entry: dict) -> bool:
    """Every key every writer put is there, with the writer's value."""
    def expected(key):
        return {**entry, "updatedAt": 1_900_000_000_000 + int(key.rsplit(":", 1)[1])}

    if backend == "legacy":
        with open(path, "rb") as fh:
            stored = _json.loads(fh.read())
        return all(stored.get(key) == expected(key) for key in keys) and len(stored) == world.size + len(keys)
    reader = SqliteSessions(path) if backend == "sqlite" else SessionStore(path, cache=False)
    try:
        return all(reader.get(key) == expected(key) for key in keys)
    finally:
        reader.close()


def _remove(world, backend: str, path: str, prefix: str, keys: list[str]) -> None:
    """Take the writers' sessions out again: later benchmarks see the
    original store size."""
    if backend == "legacy":
        Legacy(path)._rewrite(lambda entries: [entries.pop(key, None) for key in keys])
    elif backend == "sqlite":
        db = SqliteSessions(path)
        db.db.execute("DELETE FROM sessions WHERE key LIKE ?", (prefix + "%",))
        db.close()
    else:
        store = Directory(path).store
        for key in keys:
            store.delete(key)
