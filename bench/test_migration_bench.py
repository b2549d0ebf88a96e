"""Migration of a legacy sessions.json, time *and* memory: ``sessionsd.migrate``
(streaming) against its floor (parse the whole file, write the entry files,
one ``sync()``), each round in a fresh process (bench/migration_worker.py)
so its peak resident size is its own.

Each round copies the generated legacy file (untimed, flushed), starts the
worker, waits until it has imported everything, and times from its ``go`` to
its ``done``.  ``extra_info`` holds, per backend and store size, the median
over the rounds of the worker's peak RSS (``peak_rss_bytes``), the RSS
after imports (``baseline_rss_bytes``), the legacy file's size
(``legacy_bytes``) and ``peak_rss_per_legacy_byte``.

Sizes: ``SESSIONSD_BENCH_SIZES`` (default ``1000,10000``) realistic sessions
(``sessionsd.datagen``; from 100,000 on, small entries).  A 10k realistic
legacy file is about 440 MB; a round needs about twice that on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import sessionsd
from sessionsd import SessionStore, _json, datagen

SIZES = [int(s) for s in os.environ.get("SESSIONSD_BENCH_SIZES", "1000,10000").split(",") if s.strip()]
QUICK = os.environ.get("SESSIONSD_BENCH_QUICK") == "1"
ONLY = os.environ.get("SESSIONSD_BENCH_ONLY", "")
TWIN = sessionsd.BACKEND != "compiled"
SMALL_FROM = 100_000
SEED = 11
WORKER = str(Path(__file__).resolve().parent / "migration_worker.py")


def size_id(size: int) -> str:
    return f"{size // 1000}k" if size % 1000 == 0 else str(size)


def label(backend: str) -> str:
    return f"{backend}-twin" if TWIN and backend == "directory" else backend


class Legacy:
    """One generated legacy file (written entry by entry, never held whole)
    and a sample of its sessions to check a migration against."""

    def __init__(self, root: Path, size: int) -> None:
        self.size = size
        self.small = size >= SMALL_FROM
        self.path = root / "sessions.json"
        self.sample: dict[str, dict] = {}
        every = max(1, size // 50)
        with open(self.path, "wb") as fh:
            fh.write(b"{")
            for index, (key, entry) in enumerate(datagen.iter_store(size, seed=SEED, small=self.small)):
                fh.write((b",\n" if index else b"\n") + json.dumps(key, ensure_ascii=False).encode() + b": "
                         + _json.dumps(entry))
                if index % every == 0:
                    self.sample[key] = entry
            fh.write(b"\n}\n")
        self.bytes = os.path.getsize(self.path)


@pytest.fixture(scope="module", params=SIZES, ids=size_id)
def legacy(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"migration-{size_id(request.param)}")
    yield Legacy(root, request.param)
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("backend", ["directory", "floor"], ids=label)
def test_migration_process(benchmark, record, legacy, backend, tmp_path):
    if ONLY and not backend.startswith(ONLY):
        pytest.skip(f"SESSIONSD_BENCH_ONLY={ONLY}")
    benchmark.group = f"migration_process {size_id(legacy.size)}"
    rounds = 2 if QUICK or legacy.size > 1_000 else 3
    targets: list[Path] = []
    rounds_seen: list[dict] = []
    workers: list[subprocess.Popen] = []

    def fresh():
        for old in targets:  # one copy at a time: a 10k store is ~440 MB
            shutil.rmtree(old, ignore_errors=True)
        target = tmp_path / f"round-{len(targets)}"
        target.mkdir(mode=0o700)
        shutil.copyfile(legacy.path, target / "sessions.json")
        targets.append(target)
        os.sync()  # the sync inside the timed migration must not pay for this copy
        worker = subprocess.Popen([sys.executable, WORKER, backend, str(target / "sessions.json")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        workers.append(worker)
        ready = worker.stdout.readline().split()
        assert ready[:1] == ["ready"], ready
        rounds_seen.append({"baseline": int(ready[1])})
        return (worker,), {}

    def migrate(worker):
        worker.stdin.write("go\n")
        worker.stdin.flush()
        done = worker.stdout.readline().split()
        assert done[:1] == ["done"], done
        rounds_seen[-1].update(seconds=float(done[1]), peak=int(done[2]), count=int(done[3]))

    try:
        benchmark.pedantic(migrate, setup=fresh, rounds=rounds, iterations=1)
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait(timeout=120)
            worker.stdout.close()
    store = SessionStore(targets[-1] / "sessions.json", cache=False)
    correct = all(r["count"] == legacy.size for r in rounds_seen) and all(
        store.get(key) == entry for key, entry in legacy.sample.items())
    if backend == "directory":
        correct = correct and store.mode == "directory" and len(os.listdir(store.paths.entries)) == legacy.size
    peak = statistics.median(r["peak"] for r in rounds_seen)
    record(label(backend), legacy.size, correct, entries="small" if legacy.small else "realistic",
           store_bytes=legacy.bytes, legacy_bytes=legacy.bytes, quick=QUICK,
           durability="sync before promotion" if backend == "directory" else "one sync()",
           peak_rss_bytes=int(peak),
           baseline_rss_bytes=int(statistics.median(r["baseline"] for r in rounds_seen)),
           peak_rss_per_legacy_byte=round(peak / legacy.bytes, 4),
           worker_seconds=statistics.median(r["seconds"] for r in rounds_seen),
           rounds_detail=rounds_seen)
    for target in targets:
        shutil.rmtree(target, ignore_errors=True)
