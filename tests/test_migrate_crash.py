"""Migration and rollback killed at every step (SIGKILL via the fault points
in sessionsd._faults, armed by tests/crashpoints.py), in real child processes.

After each crash exactly one store is authoritative and holds every session
(old or new state, never a mix); the next run finishes the job; nothing the
crash interrupted comes back later (a session deleted after the crash stays
deleted)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

import sessionsd
from sessionsd import SessionStore

pytestmark = pytest.mark.slow

OLD = {"a": {"n": "old"}, "b": {"n": "old"}, "c": {"n": "old"}}
NEW = {"a": {"n": "new"}, "b": {"n": "new"}, "d": {"n": "new"}}  # what workers.crash "update" saves


WORKERS = os.path.join(os.path.dirname(__file__), "workers.py")


def start(function: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKERS, function, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def crash(path, point: str, operation: str) -> None:
    proc = start("crash", str(path), point, operation)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err


def names(directory, prefix: str) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith(prefix))


def assert_finished(directory, expected: dict, legacy_bytes: bytes) -> None:
    """Directory mode holding *expected*; the legacy file gone, kept once as a
    backup; no staging directory left."""
    store = SessionStore(directory / "sessions.json")
    assert store.mode == "directory" and store.load() == expected
    assert not (directory / "sessions.json").exists()
    backups = names(directory, "sessions.json.bak.")
    assert [(directory / b).read_bytes() for b in backups] == [legacy_bytes]
    assert names(directory, "sessions.d.staging-") == []


@pytest.mark.parametrize("point,expect", [
    ("migrate:staging-write", OLD),
    ("migrate:before-promote", OLD),
    ("migrate:after-promote", NEW),
])
def test_killed_save_time_migration(tmp_path, point, expect):
    """The first changing save of a legacy store (change a and b, delete c,
    add d) is killed while it migrates: afterwards the store holds the old
    or the new state as a whole, and the next migrate() finishes without
    bringing c back."""
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(OLD))
    legacy_bytes = path.read_bytes()
    crash(path, point, "update")
    store = SessionStore(path)
    assert store.load() == expect
    result = sessionsd.migrate(path)
    assert result.outcome == "migrated"
    assert_finished(tmp_path, expect, legacy_bytes)


def test_sessions_deleted_after_an_interrupted_migration_stay_deleted(tmp_path):
    path = tmp_path / "sessions.json"
    data = {f"k{i}": {"i": i, "updatedAt": 100} for i in range(20)}
    path.write_text(json.dumps(data))
    legacy_bytes = path.read_bytes()
    crash(path, "migrate:after-promote", "migrate")
    store = SessionStore(path)
    assert store.mode == "directory" and path.exists()  # both there; the directory wins
    found = sessionsd.detect(path)
    assert (found.status, found.directory_active) == ("ready_to_migrate", True)
    assert found.warnings == ["Legacy sessions.json was already migrated by an interrupted migration; "
                              "migrating again only finishes its backup."]
    store.delete("k3")                                  # the host runs on, deletes a session
    store.patch("k4", {"i": -4})                        # and changes another one
    result = sessionsd.migrate(path)                    # the next startup
    assert (result.outcome, result.migrated_entries) == ("migrated", 20)
    expected = {k: v for k, v in data.items() if k != "k3"}
    expected["k4"] = {"i": -4, "updatedAt": 100}
    assert_finished(tmp_path, expected, legacy_bytes)
    assert sessionsd.migrate(path).outcome == "already_directory"


@pytest.mark.parametrize("point", ["multi:after-temp", "multi:after-record", "migrate:after-merge"])
def test_killed_merge_is_finished_by_the_next_run(tmp_path, point):
    """The directory is active and an old process wrote a legacy file with
    a newer session and a new one; the merge is killed."""
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"a": {"updatedAt": 1, "v": "dir"}, "b": {"updatedAt": 1, "v": "dir"}}))
    sessionsd.migrate(path)
    [first_backup] = names(tmp_path, "sessions.json.bak.")
    path.write_text(json.dumps({"a": {"updatedAt": 2, "v": "legacy"}, "b": {"updatedAt": 0, "v": "legacy"},
                                "c": {"v": "legacy"}}))
    legacy_bytes = path.read_bytes()
    merged = {"a": {"updatedAt": 2, "v": "legacy"}, "b": {"updatedAt": 1, "v": "dir"}, "c": {"v": "legacy"}}
    crash(path, point, "migrate")
    assert SessionStore(path).load() in (merged, {"a": {"updatedAt": 1, "v": "dir"},
                                                  "b": {"updatedAt": 1, "v": "dir"}})
    assert sessionsd.migrate(path).outcome == "migrated"
    store = SessionStore(path)
    assert store.mode == "directory" and store.load() == merged and not path.exists()
    backups = [b for b in names(tmp_path, "sessions.json.bak.") if b != first_backup]
    assert [(tmp_path / b).read_bytes() for b in backups] == [legacy_bytes]


@pytest.mark.parametrize("point", ["rollback:after-legacy-backup", "rollback:after-legacy-write",
                                   "rollback:after-directory-backup"])
def test_killed_rollback(tmp_path, point):
    """Rollback killed at each step, with a stray legacy file in the way: one
    store stays authoritative with every session, the next rollback (or none
    needed) ends in legacy mode with all of them, and the stray file is kept."""
    path = tmp_path / "sessions.json"
    data = {f"k{i}": {"i": i} for i in range(10)}
    path.write_text(json.dumps(data))
    sessionsd.migrate(path)
    store = SessionStore(path)
    store.put("late", {"i": 99})
    data["late"] = {"i": 99}
    path.write_text('{"stray": {"from": "an old process"}}')
    crash(path, point, "rollback")
    assert SessionStore(path).load() == data  # whichever store is authoritative
    finished = point == "rollback:after-directory-backup"
    assert sessionsd.rollback(path) is (not finished)
    assert SessionStore(path).mode == "legacy"
    assert json.loads(path.read_text()) == data
    kept = [json.loads((tmp_path / b).read_text()) for b in names(tmp_path, "sessions.json.bak.")]
    assert {"stray": {"from": "an old process"}} in kept
    assert len(names(tmp_path, "sessions.d.bak.")) == 1
    assert sessionsd.migrate(path).outcome == "migrated"  # and forward again
    assert SessionStore(path).load() == data


def test_round_trip_with_writes_from_other_processes(tmp_path):
    """legacy → migrate → writes from other processes → rollback → the
    legacy file holds exactly the directory's sessions → migrate again →
    the same data."""
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({f"k{i}": {"i": i} for i in range(200)}))
    assert sessionsd.migrate(path).outcome == "migrated"
    writers = [start("put_many", str(path), f"w{j}-", 30) for j in range(2)]
    for proc in writers:
        assert finish(proc) == {"done": 30}
    expected = SessionStore(path).load()
    assert len(expected) == 260
    assert sessionsd.rollback(path) is True
    assert json.loads(path.read_text()) == expected
    assert sessionsd.migrate(path).outcome == "migrated"
    assert SessionStore(path).load() == expected
