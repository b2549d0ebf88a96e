"""``python -m sessionsd demo``: the README's main job, on generated data.

Builds a realistic legacy ``sessions.json`` (SPEC §9 size mix), measures the
legacy hot paths, migrates a copy with a progress bar, measures the same
operations on the directory store, checks that every session survived, and
prints a before/after table with the measured ratios.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, TextIO

from . import _json, datagen
from ._fsutil import write_atomic
from ._lock import StoreLock
from ._types import ProgressCallback
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


def run_demo(sessions: int = 3000, directory: str | None = None, seed: int = 0,
             as_json: bool = False) -> int:
    """Run the demo; returns the exit status (0: every session survived the
    migration).  *as_json*: the human-readable lines go to stderr and one
    JSON object with every measurement to stdout."""
    from .cli import Progress, version_line

    say = _Say(sys.stderr if as_json else sys.stdout)
    if directory is not None and os.path.isdir(directory) and os.listdir(directory):
        print(f"sessionsd demo: {directory} is not empty; give a new or empty directory",
              file=sys.stderr)
        return 2
    say(version_line())
    scratch = None
    if directory is None:
        scratch = directory = tempfile.mkdtemp(prefix="sessionsd-demo-")
    try:
        report = _demo(sessions, directory, seed, Progress, say)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if as_json:
        print(json.dumps(report))
    ok = report["verified"] and report["migration"]["outcome"] == "migrated"
    return 0 if ok else 1


class _Say:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)


def _demo(count: int, root: str, seed: int, progress_class: Callable[[str], ProgressCallback],
          say: _Say) -> dict[str, Any]:
    from . import _codec
    from .cli import version_line

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
    say(f"generated {count} sessions ({len(blob) / 1e6:.1f} MB as one sessions.json) "
        f"in {time.perf_counter() - start:.1f} s under {root}")

    keys = list(data)
    probe = keys[len(keys) // 2]
    expected = data[probe]["updatedAt"]

    # -- legacy: what every operation costs with the monolith --------------------
    # A process's cached view of sessions.json is stale whenever any session
    # changed (every change rewrites the whole file), so single reads parse it.
    legacy = SessionStore(legacy_path, cache=False)
    lock = StoreLock.for_path(legacy.paths.lock)
    legacy_read = _median(lambda: legacy.updated_at(probe), 3)
    assert legacy.updated_at(probe) == expected

    def legacy_update() -> None:
        # What a legacy save is: parse, change one entry, rewrite it all.
        # (SessionStore.put would migrate the store on its first change.)
        with lock.hold(heavy=True):
            with open(legacy_path, "rb") as fh:
                store = _json.loads(fh.read())
            store[probe]["inputTokens"] = store[probe].get("inputTokens", 0) + 1
            write_atomic(legacy_path, _json.dumps(store), "none")

    legacy_write = _median(legacy_update, 3)
    legacy_cold = _median(lambda: SessionStore(legacy_path, cache=False).load(), 3)
    cached_legacy = SessionStore(legacy_path)
    cached_legacy.load()
    legacy_cached = _median(cached_legacy.load, 3)

    # -- migrate -------------------------------------------------------------------
    # Migration makes its files durable before the switch (syncfs() on Linux,
    # which flushes every dirty page of the file system); flush the demo's own
    # setup writes first so they are not charged to the migration.
    if hasattr(os, "sync"):
        os.sync()
    start = time.perf_counter()
    result = migrate(store_path, max_bytes=None, progress=progress_class("migrating"))
    took = time.perf_counter() - start
    say(f"{result.outcome}: {result.migrated_entries} sessions in {took:.1f} s; "
        f"legacy file kept as {os.path.basename(result.backup_path or '-')}")

    # -- directory: the same operations --------------------------------------------
    store = SessionStore(store_path, durability="none")  # as the legacy rewrite: no fsync
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
    say(f"verified: {'all' if intact else 'NOT all'} {count} sessions read back identical")
    say()
    rows = [
        ("read one session's updatedAt", legacy_read, directory_read),
        ("update one session", legacy_write, directory_write),
        ("load all sessions (cold)", legacy_cold, directory_cold),
        ("load all sessions (cached)", legacy_cached, directory_cached),
    ]
    say(f"{'operation':<32}{'legacy':>12}{'directory':>12}{'speed-up':>12}")
    for title, before, after in rows:
        ratio = before / after
        shown = f"{ratio:>11.0f}×" if ratio >= 10 else f"{ratio:>11.2f}×"
        say(f"{title:<32}{_fmt(before):>12}{_fmt(after):>12}{shown}")
    say()
    say("legacy = the monolithic sessions.json: parsed for a read, parsed and rewritten whole\n"
        "under the store lock for an update. directory = sessionsd after migration. No fsync\n"
        "on either side; loads deep-copy every session; a cached load reuses the last parse,\n"
        "checked against the file's stat (legacy) or the commit counter (directory).\n"
        "Medians of this run.")
    return {
        "version": version_line(),
        "backend": _codec.BACKEND,
        "json": _json.IMPLEMENTATION,
        "sessions": count,
        "legacy_bytes": len(blob),
        "migration": {"outcome": result.outcome, "entries": result.migrated_entries,
                      "seconds": took, "backup_path": result.backup_path},
        "verified": intact,
        "rows": [{"operation": title, "legacy_seconds": before, "directory_seconds": after,
                  "speedup": before / after} for title, before, after in rows],
    }
