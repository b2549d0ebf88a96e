"""Maintenance: prune, cap, disk budget, warn vs enforce, transcripts, O(1) checks."""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import time

import pytest

import sessionsd
from sessionsd import SessionStore
from sessionsd.maintenance import Maintenance

NOW = int(time.time() * 1000)
DAY = 86_400_000


def make_store(tmp_path, entries, **settings) -> SessionStore:
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(entries))
    sessionsd.migrate(path)
    return SessionStore(path, durability="none", maintenance=Maintenance(**settings))


def entry_files(store) -> int:
    return sum(1 for n in os.listdir(store.paths.entries) if n.startswith("session-"))


def test_cap_holds_after_every_write_and_evicts_the_oldest(tmp_path):
    store = make_store(tmp_path, {f"old{i}": {"updatedAt": NOW - i * 1000} for i in range(5)},
                       mode="enforce", max_entries=5)
    for i in range(8):
        store.put(f"new{i}", {"updatedAt": NOW + i})
        assert entry_files(store) == 5 and store.last_stats.count == 5
    assert sorted(store.keys()) == [f"new{i}" for i in range(3, 8)]


def test_the_session_being_written_is_never_evicted(tmp_path):
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(3)},
                       mode="enforce", max_entries=3)
    store.put("ancient", {"updatedAt": 1})  # the oldest of all, but it is the one being written
    assert "ancient" in store and "k0" not in store
    store.update_entry("ancient2", lambda e: {"updatedAt": 2})
    assert "ancient2" in store and len(store) == 3


def test_prune_by_age_runs_at_most_once_per_interval(tmp_path, count_scans):
    store = make_store(tmp_path, {"stale": {"updatedAt": NOW - 10 * DAY}, "fresh": {"updatedAt": NOW}},
                       mode="enforce", prune_after=86_400, sweep_interval=3600)
    store.put("a", {"updatedAt": NOW})
    assert sorted(store.keys()) == ["a", "fresh"] and len(count_scans) == 1
    store.put("stale2", {"updatedAt": NOW - 10 * DAY})   # protected: it is being written
    store.put("b", {"updatedAt": NOW})                   # within the interval: no sweep
    assert len(count_scans) == 1 and "stale2" in store


def test_disk_budget_oldest_first(tmp_path):
    entries = {f"k{i}": {"updatedAt": NOW + i, "blob": "x" * 1000} for i in range(10)}
    store = make_store(tmp_path, entries, mode="enforce", max_disk_bytes=5000)
    store.put("new", {"updatedAt": NOW + 100, "blob": "y" * 1000})
    total = sum(os.lstat(os.path.join(store.paths.entries, n)).st_size
                for n in os.listdir(store.paths.entries))
    assert total <= 5000 and store.last_stats.bytes == total
    kept = sorted(store.keys())
    assert "new" in kept and "k9" in kept and "k0" not in kept


def test_warn_mode_removes_nothing_and_warns_once_per_interval(tmp_path, caplog):
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i, "secret": "hunter2"} for i in range(5)},
                       mode="warn", max_entries=2, sweep_interval=3600)
    with caplog.at_level(logging.WARNING, logger="sessionsd"):
        store.put("x", {"updatedAt": NOW + 10})
        store.put("y", {"updatedAt": NOW + 11})
    assert len(store) == 7
    warnings = [r for r in caplog.records if "warn mode" in r.getMessage()]
    assert len(warnings) == 1 and "hunter2" not in caplog.text
    report = store.last_maintenance
    assert report.applied is False and report.evicted == ["k0", "k1", "k2", "k3"]


def test_callback_once_per_removed_session(tmp_path):
    removed = []
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(4)},
                       mode="enforce", max_entries=2, on_removed=lambda k, e: removed.append((k, e)))
    store.put("n", {"updatedAt": NOW + 9})
    assert removed == [(f"k{i}", {"updatedAt": NOW + i}) for i in range(3)]
    assert sorted(store.keys()) == ["k3", "n"]


def test_transcripts_archived_only_inside_the_store(tmp_path):
    base = tmp_path / "store"
    base.mkdir()
    outside = tmp_path / "outside.jsonl"
    outside.write_text("secret transcript")
    (base / "in.jsonl").write_text("t1")
    (base / "abs.jsonl").write_text("t2")
    os.symlink(outside, base / "link.jsonl")
    entries = {
        "a": {"updatedAt": 1, "sessionFile": "in.jsonl"},
        "b": {"updatedAt": 2, "sessionFile": str(base / "abs.jsonl")},
        "c": {"updatedAt": 3, "sessionFile": str(outside)},
        "d": {"updatedAt": 4, "sessionFile": "../outside.jsonl"},
        "e": {"updatedAt": 5, "sessionFile": "link.jsonl"},
        "keep": {"updatedAt": NOW},
    }
    store = make_store(base, entries, mode="enforce", max_entries=1)
    store.put("new", {"updatedAt": NOW + 1})
    assert sorted(store.keys()) == ["new"]
    names = sorted(os.listdir(base))
    assert any(n.startswith("in.jsonl.deleted.") for n in names)
    assert any(n.startswith("abs.jsonl.deleted.") for n in names)
    assert outside.read_text() == "secret transcript" and os.path.islink(base / "link.jsonl")
    assert len(store.last_maintenance.archived) == 2


def test_whole_store_update_applies_rules_in_one_commit(tmp_path):
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(3)},
                       mode="enforce", max_entries=3)
    state = tmp_path / "sessions.d" / "state.json"
    version = json.loads(state.read_text())["version"]
    store.mutate(lambda s: s.update({f"n{i}": {"updatedAt": NOW + 10 + i} for i in range(3)}))
    assert sorted(store.keys()) == ["n0", "n1", "n2"]
    assert json.loads(state.read_text())["version"] == version + 1


def test_first_saves_and_legacy_sweeps_apply_the_rules(tmp_path):
    path = tmp_path / "sessions.json"
    store = SessionStore(path, maintenance=Maintenance(mode="enforce", max_entries=2))
    store.save({f"k{i}": {"updatedAt": NOW + i} for i in range(5)})  # a fresh store's first save
    assert store.mode == "directory" and not path.exists() and list(store) == ["k3", "k4"]
    other = tmp_path / "b"
    other.mkdir()
    (other / "sessions.json").write_text(json.dumps({f"k{i}": {"updatedAt": NOW + i} for i in range(5)}))
    plain = SessionStore(other / "sessions.json")
    report = plain.maintain(Maintenance(mode="enforce", max_entries=3), dry_run=True)
    assert report.evicted == ["k0", "k1"] and len(plain.load()) == 5
    report = plain.maintain(Maintenance(mode="enforce", max_entries=3))
    assert sorted(plain.keys()) == ["k2", "k3", "k4"] and report.applied


def test_dry_run_changes_nothing(tmp_path):
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(5)},
                       mode="enforce", max_entries=100)
    report = store.maintain(Maintenance(mode="enforce", max_entries=2, prune_after=0), dry_run=True)
    assert len(report.removed) == 5 and len(store) == 5


def test_nothing_due_means_no_scan(tmp_path, count_scans):
    store = make_store(tmp_path, {"a": {"updatedAt": NOW}}, mode="enforce", max_entries=10_000,
                       max_disk_bytes=1 << 30)
    for i in range(200):
        store.put(f"k{i}", {"updatedAt": NOW + i})
    assert count_scans == []


def test_evictions_at_the_cap_are_amortised(tmp_path, count_scans):
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(50)},
                       mode="enforce", max_entries=50)
    for i in range(300):
        store.put(f"new{i}", {"updatedAt": NOW + 1000 + i})
        assert store.last_stats.count == 50
    assert len(count_scans) <= 8, len(count_scans)
    assert sorted(store.keys()) == sorted(f"new{i}" for i in range(250, 300))


CAP_WORKER = """
import os, sys, json, time
from sessionsd import SessionStore
from sessionsd._codec import scan_entries
from sessionsd.maintenance import Maintenance
path, name, go = sys.argv[1], sys.argv[2], sys.argv[3]
store = SessionStore(path, durability="none",
                     maintenance=Maintenance(mode="enforce", max_entries=50))
open(go + "." + name, "w").close()          # ready
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.001)                        # start together
worst = 0
written = {}
for i in range(150):
    key = f"{name}-{i}"
    # updatedAt is taken under the store lock (re-entrant), so ages follow
    # commit order across the processes and "the oldest" is well defined.
    if name in ("w0", "w1"):
        with store._backend._lock.hold():
            written[key] = time.time_ns()
            store.put(key, {"updatedAt": written[key]})
    else:
        written[key] = store.update_entry(key, lambda e: {"updatedAt": time.time_ns()})["updatedAt"]
    # What the write left behind, seen with every writer shut out: the
    # entry files on disk (not the stats).
    with store._backend._lock.hold():
        worst = max(worst, len(scan_entries(store.paths.entries)))
    time.sleep(0.0005)  # let the other writers in: flock is not fair
print(json.dumps({"worst": worst, "written": written}))
"""


@pytest.mark.slow
def test_cap_holds_under_concurrent_writers(tmp_path):
    """4 processes create sessions at the cap at the same time (put and
    update_entry): after every write returns the store holds at most 50 entry
    files, and the 50 kept in the end are the 50 newest written."""
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({f"seed{i}": {"updatedAt": i} for i in range(50)}))
    sessionsd.migrate(path)
    go = str(tmp_path / "go")
    procs = [subprocess.Popen([sys.executable, "-c", CAP_WORKER, str(path), f"w{j}", go],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for j in range(4)]
    deadline = time.monotonic() + 60
    while sum(os.path.exists(f"{go}.w{j}") for j in range(4)) < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    open(go, "w").close()
    written = {}
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        result = json.loads(out)
        assert result["worst"] <= 50
        written.update(result["written"])
    in_commit_order = [key.split("-")[0] for key in sorted(written, key=written.get)]
    switches = sum(a != b for a, b in itertools.pairwise(in_commit_order))
    assert switches > 20, "the writers did not overlap"
    sessions = SessionStore(path, cache=False).load()
    newest = sorted(written, key=written.get)[-50:]
    assert sorted(sessions) == sorted(newest)
    assert sum(1 for n in os.listdir(path.parent / "sessions.d" / "entries") if not n.startswith(".")) == 50


def test_a_sweep_with_its_own_settings_applies_their_disk_budget_in_legacy_mode(tmp_path):
    """maintain(settings) on a store opened without maintenance= measures
    entry sizes by the settings passed, not by the store's (none)."""
    import json

    from sessionsd import SessionStore
    from sessionsd.maintenance import Maintenance

    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({f"k{i}": {"updatedAt": i + 1, "pad": "x" * 1000} for i in range(10)}))
    store = SessionStore(path)
    preview = store.maintain(Maintenance(mode="enforce", max_disk_bytes=5000), dry_run=True)
    assert SessionStore(path, cache=False).load().keys() == {f"k{i}" for i in range(10)}
    store.maintain(Maintenance(mode="enforce", max_disk_bytes=5000))
    left = SessionStore(path, cache=False).load()
    assert 0 < len(left) < 10 and set(left) == {f"k{i}" for i in range(10 - len(left), 10)}  # newest kept
    assert preview is not None
