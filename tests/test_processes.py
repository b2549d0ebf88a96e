"""Real processes: no lost updates, snapshot consistency, lock exclusion,
concurrent migration, and crash safety (SIGKILL at chosen points)."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import time

import pytest
import worker_processes
from worker_processes import finish

import sessionsd
from sessionsd import SessionStore, StoreLockTimeout

WORKERS = os.path.join(os.path.dirname(__file__), "workers.py")
pytestmark = pytest.mark.slow


def start(function: str, *args) -> subprocess.Popen:
    return worker_processes.start(WORKERS, function, *args)


def make_directory_store(tmp_path, entries) -> str:
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(entries))
    assert sessionsd.migrate(path).outcome == "migrated"
    return str(path)


def test_no_lost_updates_across_processes(tmp_path):
    path = make_directory_store(tmp_path, {"counter": {"n": 0}})
    procs = [start("increment", path, "counter", 200, f"own-{i}") for i in range(4)]
    for proc in procs:
        assert finish(proc) == {"done": 200}
    store = SessionStore(path)
    assert store.get("counter") == {"n": 800}
    for i in range(4):
        assert store.get(f"own-{i}") == {"last": 199}


def test_no_lost_updates_across_threads(tmp_path):
    import threading

    path = make_directory_store(tmp_path, {"counter": {"n": 0}})

    def work():
        store = SessionStore(path, durability="none")
        for _ in range(100):
            store.update_entry("counter", lambda e: {"n": e["n"] + 1})

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert SessionStore(path).get("counter") == {"n": 800}


def test_loads_never_see_a_torn_commit(tmp_path):
    path = make_directory_store(tmp_path, {"a": {"n": 0}, "b": {"n": 0}})
    readers = [start("invariant_reader", path, 6.0) for _ in range(2)]
    time.sleep(0.3)
    writer = start("invariant_writer", path, 300)
    assert finish(writer) == {"rounds": 300}
    for reader in readers:
        result = finish(reader)
        assert result["broken"] == 0, result
        assert result["distinct"] > 1, result  # the readers really overlapped the writer
    final = SessionStore(path).load()
    assert final["a"]["n"] == 300 and final["b"]["n"] == -300 and "c" not in final


@pytest.mark.parametrize("holder_heavy", [True, False])
def test_thin_and_filelock_exclude_each_other(tmp_path, holder_heavy):
    path = make_directory_store(tmp_path, {"a": {"n": 0}})
    holder = start("hold_lock", path, holder_heavy, 1.5)
    assert holder.stdout.readline().strip() == "locked"
    store = SessionStore(path, lock_timeout=10)
    began = time.monotonic()
    if holder_heavy:
        store.put("a", {"n": 1})  # thin lock waits for filelock's holder
    else:
        store.mutate(lambda s: s.__setitem__("a", {"n": 1}))  # filelock waits for a thin holder
    waited = time.monotonic() - began
    finish(holder)
    assert waited > 0.8, waited
    assert store.get("a") == {"n": 1}


def test_lock_timeout(tmp_path):
    path = make_directory_store(tmp_path, {"a": {"n": 0}})
    holder = start("hold_lock", path, False, 2.0)
    assert holder.stdout.readline().strip() == "locked"
    store = SessionStore(path, lock_timeout=0.3)
    with pytest.raises(StoreLockTimeout) as info:
        store.put("a", {"n": 1})
    assert isinstance(info.value, TimeoutError) and info.value.path.endswith("sessions.json.lock")
    with pytest.raises(TimeoutError):
        store.mutate(lambda s: None)
    finish(holder)
    assert store.get("a") == {"n": 0}


def test_concurrent_migrations_and_writers(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({f"k{i}": {"i": i} for i in range(300)}))
    writers = [start("put_many", str(path), f"w{j}-", 40) for j in range(2)]
    migrators = [start("migrate", str(path)) for _ in range(4)]
    outcomes = sorted(finish(proc)["outcome"] for proc in migrators)
    for proc in writers:
        finish(proc)
    # A writer's first changing save may itself have migrated the store.
    assert outcomes.count("migrated") <= 1
    assert set(outcomes) <= {"migrated", "already_directory"}
    loaded = SessionStore(path).load()
    assert all(loaded[f"k{i}"] == {"i": i} for i in range(300))
    assert all(loaded[f"w{j}-{i}"] == {"i": i} for j in range(2) for i in range(40))


def test_four_processes_migrate_exactly_once(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({f"k{i}": {"i": i} for i in range(500)}))
    procs = [start("migrate", str(path)) for _ in range(4)]
    outcomes = sorted(finish(proc)["outcome"] for proc in procs)
    assert outcomes == ["already_directory"] * 3 + ["migrated"]
    assert len(SessionStore(path).load()) == 500


# -- crash safety -----------------------------------------------------------------------

OLD = {"a": {"n": "old"}, "b": {"n": "old"}, "c": {"n": "old"}}
NEW_BY_OPERATION = {
    "put": {**OLD, "a": {"n": "new"}},
    "delete": {"a": {"n": "old"}, "c": {"n": "old"}},
    "update": {"a": {"n": "new"}, "b": {"n": "new"}, "d": {"n": "new"}},
}
POINTS = [
    ("one:seq-odd", "put", "old"), ("one:after-temp", "put", "old"), ("one:after-rename", "put", "new"),
    ("one:seq-odd", "delete", "old"), ("one:after-rename", "delete", "new"),
    ("multi:seq-odd", "update", "old"), ("multi:after-temp", "update", "old"),
    ("multi:after-record", "update", "new"), ("multi:mid-renames", "update", "new"),
    ("multi:after-apply", "update", "new"), ("multi:after-record-removed", "update", "new"),
]


def assert_clean(root) -> None:
    for directory in (root, root / "entries"):
        leftovers = [n for n in os.listdir(directory) if n.endswith(".tmp")]
        assert not leftovers, leftovers
    assert not (root / "commit.json").exists()
    assert struct.unpack("<Q", (root / "seq").read_bytes()[:8])[0] % 2 == 0


@pytest.mark.parametrize("point,operation,expect", POINTS)
def test_killed_writer_leaves_old_or_new_state(tmp_path, point, operation, expect):
    path = make_directory_store(tmp_path, OLD)
    proc = start("crash", path, point, operation)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    store = SessionStore(path)
    state = store.load()  # a reader finding the dead writer recovers
    new = NEW_BY_OPERATION[operation]
    assert state in (OLD, new)
    if expect is not None:
        assert state == (new if expect == "new" else OLD)
    assert_clean(tmp_path / "sessions.d")
    store.put("after", {"ok": True})  # and writing goes on normally
    assert store.load() == {**state, "after": {"ok": True}}


@pytest.mark.parametrize("point", ["migrate:staging-write", "migrate:before-promote",
                                   "migrate:after-promote"])
def test_killed_migration_is_finished_by_the_next_run(tmp_path, point):
    path = tmp_path / "sessions.json"
    data = {f"k{i}": {"i": i} for i in range(50)}
    path.write_text(json.dumps(data))
    proc = start("crash", str(path), point, "migrate")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # Exactly one store is authoritative and it holds every session.
    assert SessionStore(path).load() == data
    result = sessionsd.migrate(path)
    assert result.outcome in ("migrated", "already_directory")
    store = SessionStore(path)
    assert store.mode == "directory" and store.load() == data
    assert not path.exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith("sessions.d.staging-")]


def test_killed_rollback_loses_nothing(tmp_path):
    data = {f"k{i}": {"i": i} for i in range(20)}
    path = make_directory_store(tmp_path, data)
    proc = start("crash", path, "rollback:after-legacy-write", "rollback")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    store = SessionStore(path)
    assert store.mode == "directory" and store.load() == data  # the directory still wins
    assert sessionsd.rollback(path) is True
    assert store.mode == "legacy" and store.load() == data
