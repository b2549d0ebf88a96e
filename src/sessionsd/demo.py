"""``python -m sessionsd demo``: the README's main job, on generated data.

Builds a realistic legacy ``sessions.json`` (SPEC §9 size mix), measures the
legacy hot paths, migrates a copy with a progress bar, measures the same
operations on the directory store, checks that every session survived, and
prints a before/after table with the measured ratios.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

from . import _json, datagen
from ._fsutil import write_atomic
from ._lock import StoreLock
from .migration import migrate
from .store import SessionStore


def _median(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


def run_demo(sessions: int = 3000, directory: "str | None" = None, seed: int = 0) -> int:
    from .cli import Progress, version_line

    print(version_line())
    scratch = None
    if directory is None:
        scratch = directory = tempfile.mkdtemp(prefix="sessionsd-demo-")
    try:
        return _demo(sessions, directory, seed, Progress)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _demo(count: int, root: str, seed: int, progress_class) -> int:
    legacy_dir = os.path.join(root, "legacy", "sessions")
    store_dir = os.path.join(root, "agents", "main", "sessions")
    for path in (legacy_dir, store_dir):
        os.makedirs(path, mode=0o700, exist_ok=True)
    legacy_path = os.path.join(legacy_dir, "sessions.json")
    store_path = os.path.join(store_dir, "sessions.json")

    start = time.perf_counter()
    data = datagen.generate_store(count, seed=seed)
    blob = _json.dumps(data)
    for path in (legacy_path, store_path):
        with open(path, "wb") as fh:
            fh.write(blob)
    print(f"generated {count} sessions ({len(blob) / 1e6:.1f} MB as one sessions.json) "
          f"in {time.perf_counter() - start:.1f} s under {root}")

    keys = list(data)
    probe = keys[len(keys) // 2]
    expected = data[probe]["updatedAt"]

    # -- legacy: what every operation costs with the monolith --------------------
    legacy = SessionStore(legacy_path, cache=False)  # the legacy path parses each time
    lock = StoreLock.for_path(legacy.paths.lock)
    legacy_read = _median(lambda: legacy.updated_at(probe), 3)
    assert legacy.updated_at(probe) == expected

    def legacy_update() -> None:
        with lock.hold(heavy=True):
            with open(legacy_path, "rb") as fh:
                store = _json.loads(fh.read())
            store[probe]["inputTokens"] = store[probe].get("inputTokens", 0) + 1
            write_atomic(legacy_path, _json.dumps(store), "none")

    legacy_write = _median(legacy_update, 3)

    def legacy_load() -> None:
        with open(legacy_path, "rb") as fh:
            _json.loads(fh.read())

    legacy_full = _median(legacy_load, 3)

    # -- migrate -------------------------------------------------------------------
    start = time.perf_counter()
    result = migrate(store_path, max_bytes=None, progress=progress_class("migrating"))
    took = time.perf_counter() - start
    print(f"{result.outcome}: {result.migrated_entries} sessions in {took:.1f} s; "
          f"legacy file kept as {os.path.basename(result.backup_path or '-')}")

    # -- directory: the same operations --------------------------------------------
    store = SessionStore(store_path, durability="none")
    assert store.mode == "directory"
    directory_read = _median(lambda: store.updated_at(probe), 500)
    counter = iter(range(10**9))
    directory_write = _median(lambda: store.patch(probe, {"inputTokens": next(counter)}), 200)
    directory_cold = _median(lambda: SessionStore(store_path, cache=False).load(), 3)
    store.load()
    directory_cached = _median(store.load, 3)

    loaded = SessionStore(store_path).load()
    loaded[probe].pop("inputTokens", None)
    original = dict(data[probe])
    original.pop("inputTokens", None)
    intact = len(loaded) == count and all(
        loaded[k] == data[k] for k in keys if k != probe) and loaded[probe] == original
    print(f"verified: {'all' if intact else 'NOT all'} {count} sessions read back identical")
    print()
    rows = [
        ("read one session's updatedAt", legacy_read, directory_read),
        ("update one session", legacy_write, directory_write),
        ("load all sessions (cold)", legacy_full, directory_cold),
        ("load all sessions (cached)", legacy_full, directory_cached),
    ]
    print(f"{'operation':<32}{'legacy':>12}{'directory':>12}{'speed-up':>12}")
    for title, before, after in rows:
        print(f"{title:<32}{_fmt(before):>12}{_fmt(after):>12}{before / after:>11.0f}×"
              if before / after >= 10 else
              f"{title:<32}{_fmt(before):>12}{_fmt(after):>12}{before / after:>11.2f}×")
    print()
    print("legacy = the monolithic sessions.json parsed (and, to update, rewritten whole) "
          "under the store lock; directory = sessionsd after migration. Medians, this run.")
    sys.stdout.flush()
    return 0 if intact and result.outcome == "migrated" else 1
