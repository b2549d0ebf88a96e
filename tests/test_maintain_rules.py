"""Maintenance, second part: eviction order against a model, other writers,
warn-mode reports, dry runs, the store's own files, callbacks that fail,
and the same rules on whole-store and legacy saves."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time

import pytest
from spec_rules import is_lock_artifact

import sessionsd
from sessionsd import SessionStore
from sessionsd._documents import encode_document
from sessionsd.cli import main
from sessionsd.maintenance import Maintenance

NOW = int(time.time() * 1000)
DAY = 86_400_000


def make_store(tmp_path, entries, **settings) -> SessionStore:
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(entries))
    sessionsd.migrate(path)
    return SessionStore(path, durability="none", maintenance=Maintenance(**settings))


def on_disk(path) -> dict:
    """What a fresh reader sees."""
    return SessionStore(path, cache=False).load()


def tree_digest(root) -> dict[str, str]:
    """Every file under *root* (relative path -> sha256 of its bytes), but
    the lock's own files (process state, not store data)."""
    digest = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if is_lock_artifact(name):
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                digest[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return digest


# -- oldest first, always -------------------------------------------------------------

def test_eviction_order_matches_a_full_plan_after_every_write(tmp_path, count_scans):
    """Random puts (new, backdated, re-dated), patches and deletes at the cap:
    after every write the store holds exactly what evicting the oldest
    (never the session just written) gives -- even though the evictions use
    the cached candidate list, not a scan per write."""
    cap = 20
    rng = random.Random(5)
    model = {f"s{i}": NOW + rng.randrange(0, 10_000) for i in range(cap)}
    store = make_store(tmp_path, {k: {"updatedAt": v} for k, v in model.items()},
                       mode="enforce", max_entries=cap)
    fresh = 0
    for step in range(400):
        roll = rng.random()
        if roll < 0.1 and model:
            key = rng.choice(sorted(model))
            store.delete(key)
            del model[key]
            continue
        if roll < 0.35 and model:
            key = rng.choice(sorted(model))           # an existing session, re-dated
        else:
            key, fresh = f"n{fresh}", fresh + 1       # a new session
        age = NOW + rng.randrange(-5_000, 20_000)     # often older than what is stored
        if roll < 0.45 and key in model:
            store.patch(key, {"updatedAt": age})
        else:
            store.put(key, {"updatedAt": age, "step": step})
        model[key] = age
        while len(model) > cap:
            victim = min((v, k) for k, v in model.items() if k != key)[1]
            del model[victim]
        stored = on_disk(store.paths.store)
        assert {k: e["updatedAt"] for k, e in stored.items()} == model, f"step {step}"
    assert len(count_scans) <= 20, len(count_scans)  # amortised: far fewer scans than writes


def test_backdated_session_is_the_next_one_evicted(tmp_path):
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(5)},
                       mode="enforce", max_entries=5)
    store.put("n0", {"updatedAt": NOW + 100})       # evicts k0 (and builds the candidate list)
    store.put("old", {"updatedAt": 5})              # protected while it is written; evicts k1
    assert "old" in on_disk(store.paths.store)
    store.put("n1", {"updatedAt": NOW + 101})       # now "old" is the oldest
    assert sorted(on_disk(store.paths.store)) == ["k2", "k3", "k4", "n0", "n1"]


def test_backdated_session_from_another_writer_is_evicted_once_the_interval_passed(tmp_path):
    """Another writer's sessions are not in this object's candidate list; the
    list is rebuilt once it is sweep_interval old (0 here: at once)."""
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(5)},
                       mode="enforce", max_entries=5, sweep_interval=0)
    store.put("n0", {"updatedAt": NOW + 100})
    other = SessionStore(store.paths.store, durability="none")  # no maintenance: a plain writer
    other.put("old", {"updatedAt": 5})
    store.put("n1", {"updatedAt": NOW + 101})
    assert sorted(on_disk(store.paths.store)) == ["k2", "k3", "k4", "n0", "n1"]


def test_two_writers_at_the_cap_do_not_scan_per_write(tmp_path, count_scans):
    """Interleaved writers (each sees the other's commits) stay amortised:
    at most a scan per sweep_interval each, not one per eviction."""
    store_a = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(100)},
                         mode="enforce", max_entries=100)
    store_b = SessionStore(store_a.paths.store, durability="none",
                           maintenance=Maintenance(mode="enforce", max_entries=100))
    for i in range(100):
        store_a.put(f"a{i}", {"updatedAt": NOW + 1000 + 2 * i})
        store_b.put(f"b{i}", {"updatedAt": NOW + 1001 + 2 * i})
    assert len(count_scans) <= 4, len(count_scans)
    stored = on_disk(store_a.paths.store)
    assert sorted(stored) == sorted([f"a{i}" for i in range(50, 100)] + [f"b{i}" for i in range(50, 100)])


def test_disk_budget_never_evicts_the_session_being_written(tmp_path):
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i, "blob": "x" * 500} for i in range(6)},
                       mode="enforce", max_disk_bytes=4000)
    store.put("big-and-old", {"updatedAt": 1, "blob": "y" * 2000})
    stored = on_disk(store.paths.store)
    assert "big-and-old" in stored and "k5" in stored and "k0" not in stored
    sizes = sum(os.lstat(os.path.join(store.paths.entries, n)).st_size
                for n in os.listdir(store.paths.entries))
    assert sizes <= 4000


# -- warn mode -------------------------------------------------------------------------

def test_warn_reports_stay_complete_and_remove_nothing(tmp_path, caplog):
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(10)},
                       mode="warn", max_entries=8, sweep_interval=0)
    with caplog.at_level(logging.WARNING, logger="sessionsd"):
        store.put("x", {"updatedAt": NOW + 100})
        first = store.last_maintenance.evicted
        store.put("y", {"updatedAt": NOW + 101})
        second = store.last_maintenance.evicted
    assert first == ["k0", "k1", "k2"]
    assert second == ["k0", "k1", "k2", "k3"]  # the same oldest again: nothing was removed
    assert len(on_disk(store.paths.store)) == 12
    assert sum("warn mode" in r.getMessage() for r in caplog.records) == 2


def test_warn_at_most_once_per_interval_across_store_objects(tmp_path, caplog, count_scans):
    """A host that opens a store object per call must not pay a scan (nor log a
    warning) on every write: the last report's time is shared on disk."""
    path = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(10)},
                      mode="warn", max_entries=5).paths.store
    with caplog.at_level(logging.WARNING, logger="sessionsd"):
        for i in range(20):
            SessionStore(path, durability="none",
                         maintenance=Maintenance(mode="warn", max_entries=5, sweep_interval=3600)
                         ).put(f"n{i}", {"updatedAt": NOW + 100 + i})
    assert sum("warn mode" in r.getMessage() for r in caplog.records) == 1
    assert len(count_scans) == 1
    assert len(on_disk(path)) == 30


def test_warn_and_enforce_differ_only_in_removing(tmp_path):
    plans = {}
    for mode in ("warn", "enforce"):
        base = tmp_path / mode
        base.mkdir()
        store = make_store(base, {"stale": {"updatedAt": NOW - 30 * DAY},
                                  **{f"k{i}": {"updatedAt": NOW + i} for i in range(6)}},
                           mode=mode, prune_after=7 * 86_400, max_entries=4)
        store.put("new", {"updatedAt": NOW + 10})
        report = store.last_maintenance
        plans[mode] = (report.pruned, report.evicted, report.applied, sorted(on_disk(store.paths.store)))
    assert plans["warn"][:2] == plans["enforce"][:2] == (["stale"], ["k0", "k1", "k2"])
    assert plans["warn"][2:] == (False, ["k0", "k1", "k2", "k3", "k4", "k5", "new", "stale"])
    assert plans["enforce"][2:] == (True, ["k3", "k4", "k5", "new"])


# -- dry runs change nothing -------------------------------------------------------------

def test_dry_run_leaves_every_file_byte_identical(tmp_path, capsys):
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW - i * DAY} for i in range(6)},
                       mode="enforce", max_entries=100)
    before = tree_digest(tmp_path)
    report = store.maintain(Maintenance(mode="enforce", prune_after=2.5 * 86_400, max_entries=2),
                            dry_run=True)
    assert report.pruned == ["k5", "k4", "k3"] and report.evicted == ["k2"] and not report.applied
    assert main(["maintain", str(store.paths.store), "--prune-after", "2.5d", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove (stale): k5" in out and "would remove (stale): k3" in out
    assert tree_digest(tmp_path) == before


# -- transcripts: inside the store directory only, never the store's own files -------------

@pytest.mark.parametrize("session_file", [
    "sessions.json.lock",
    "sessions.d",
    "sessions.d/state.json",
    "sessions.d/seq",
    "sessions.d/stats",
    "./sessions.d/state.json",
    "sub/../sessions.d/state.json",
    "sessions.d/entries/KEEP",
    "sessions.json.bak.1",
    ".",
    "",
])
def test_the_store_own_files_are_never_archived(tmp_path, session_file):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sessions.json.bak.1").write_text("backup")
    if session_file.endswith("KEEP"):
        session_file = "sessions.d/entries/" + sessionsd.encode_key("keep")
    store = make_store(tmp_path, {"victim": {"updatedAt": 1, "sessionFile": session_file},
                                  "keep": {"updatedAt": NOW}}, mode="enforce", max_entries=2)
    before = sorted(p for p in tree_digest(tmp_path) if "/entries/" not in p and not is_lock_artifact(os.path.basename(p)))
    store.put("new", {"updatedAt": NOW + 1})
    fresh = SessionStore(store.paths.store, cache=False)
    assert fresh.mode == "directory" and sorted(fresh.load()) == ["keep", "new"]
    assert not any(".deleted." in name for name in tree_digest(tmp_path))
    assert sorted(p for p in tree_digest(tmp_path) if "/entries/" not in p and not is_lock_artifact(os.path.basename(p))) == before
    assert store.last_maintenance.archived == []


def test_transcripts_behind_a_symlinked_directory_stay_put(tmp_path):
    base = tmp_path / "store"
    base.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "t.jsonl").write_text("not ours")
    os.symlink(elsewhere, base / "linked")
    (base / "mine.jsonl").write_text("ours")
    store = make_store(base, {"a": {"updatedAt": 1, "sessionFile": "linked/t.jsonl"},
                              "b": {"updatedAt": 2, "sessionFile": str(base / "linked" / "t.jsonl")},
                              "c": {"updatedAt": 3, "sessionFile": "mine.jsonl"},
                              "keep": {"updatedAt": NOW}}, mode="enforce", max_entries=1)
    store.put("new", {"updatedAt": NOW + 1})
    assert os.listdir(elsewhere) == ["t.jsonl"] and (elsewhere / "t.jsonl").read_text() == "not ours"
    assert [n for n in os.listdir(base) if n.startswith("mine.jsonl.deleted.")]
    assert len(store.last_maintenance.archived) == 1


@pytest.mark.parametrize("spelling", ["bare", "dot", "subdir", "absolute", "through-a-symlink"])
def test_transcripts_inside_the_store_directory_are_archived_however_spelled(tmp_path, spelling):
    base = tmp_path / "store"
    (base / "sub").mkdir(parents=True)
    os.symlink(base, tmp_path / "alias")
    target = base / ("sub" if spelling == "subdir" else "") / "t.jsonl"
    target.write_text("transcript")
    session_file = {"bare": "t.jsonl", "dot": "./t.jsonl", "subdir": "sub/t.jsonl",
                    "absolute": str(base / "t.jsonl"),
                    "through-a-symlink": str(tmp_path / "alias" / "t.jsonl")}[spelling]
    store = make_store(base, {"old": {"updatedAt": 1, "sessionFile": session_file},
                              "keep": {"updatedAt": NOW}}, mode="enforce", max_entries=1)
    store.put("new", {"updatedAt": NOW + 1})
    assert not target.exists()
    archived = store.last_maintenance.archived
    assert len(archived) == 1 and os.path.basename(archived[0]).startswith("t.jsonl.deleted.")
    assert os.path.realpath(os.path.dirname(archived[0])) == os.path.realpath(target.parent)
    with open(archived[0]) as fh:
        assert fh.read() == "transcript"


# -- callbacks -------------------------------------------------------------------------

def test_a_failing_callback_does_not_fail_the_write_nor_skip_the_others(tmp_path, caplog):
    seen = []

    def callback(key, entry):
        seen.append(key)
        if key == "k0":
            raise RuntimeError("host bug")

    (tmp_path / "t1.jsonl").write_text("transcript")
    store = make_store(tmp_path, {"k0": {"updatedAt": NOW}, "k1": {"updatedAt": NOW + 1,
                                                                   "sessionFile": "t1.jsonl"},
                                  "k2": {"updatedAt": NOW + 2}},
                       mode="enforce", max_entries=2, on_removed=callback)
    with caplog.at_level(logging.ERROR, logger="sessionsd"):
        store.put("n", {"updatedAt": NOW + 9})  # evicts k0 and k1 in one commit
    assert seen == ["k0", "k1"]
    assert sorted(on_disk(store.paths.store)) == ["k2", "n"]
    assert any("on_removed callback failed" in r.getMessage() for r in caplog.records)
    assert [n for n in os.listdir(tmp_path) if n.startswith("t1.jsonl.deleted.")]


def test_whole_store_update_calls_back_and_archives_once_per_removed_session(tmp_path):
    removed = []
    (tmp_path / "k0.jsonl").write_text("t")
    store = make_store(tmp_path, {"k0": {"updatedAt": NOW, "sessionFile": "k0.jsonl"},
                                  "k1": {"updatedAt": NOW + 1}},
                       mode="enforce", max_entries=2, on_removed=lambda k, e: removed.append(k))
    store.mutate(lambda s: s.update({"n0": {"updatedAt": NOW + 5}, "n1": {"updatedAt": NOW + 6}}))
    assert sorted(removed) == ["k0", "k1"]
    assert sorted(on_disk(store.paths.store)) == ["n0", "n1"]
    assert [n for n in os.listdir(tmp_path) if n.startswith("k0.jsonl.deleted.")]
    store.mutate(lambda s: None)  # nothing due, nothing changed: no second callback
    assert sorted(removed) == ["k0", "k1"]


# -- legacy mode: the same rules on whole-file saves ----------------------------------------

@pytest.mark.parametrize("rule", ["prune", "cap", "budget"])
def test_a_migrating_save_applies_each_rule(tmp_path, rule):
    entries = {f"k{i}": {"updatedAt": NOW + i, "pad": "p" * 20} for i in range(5)}
    entries["stale"] = {"updatedAt": NOW - 3 * DAY, "pad": "p" * 20}
    size = {k: len(encode_document(k, e)) for k, e in entries.items()}
    settings, expected = {
        "prune": ({"prune_after": 86_400}, ["k0", "k1", "k2", "k3", "k4"]),
        "cap": ({"max_entries": 2}, ["k3", "k4"]),
        "budget": ({"max_disk_bytes": size["k2"] + size["k3"] + size["k4"]}, ["k2", "k3", "k4"]),
    }[rule]
    removed = []
    path = tmp_path / "sessions.json"
    store = SessionStore(path, durability="none", maintenance=Maintenance(
        mode="enforce", on_removed=lambda k, e: removed.append(k), **settings))
    path.write_text("{}")  # an existing (empty) legacy file: the first changing save migrates it
    store.save(entries)
    assert store.mode == "directory" and list(store) == expected
    assert sorted(removed) == sorted(set(entries) - set(expected))


def test_legacy_put_never_evicts_the_session_being_written(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({f"k{i}": {"updatedAt": NOW + i} for i in range(3)}))
    store = SessionStore(path, durability="none", maintenance=Maintenance(mode="enforce", max_entries=3))
    store.put("ancient", {"updatedAt": 1})
    assert sorted(on_disk(path)) == ["ancient", "k1", "k2"]


# -- the statistics the O(1) checks rely on ------------------------------------------------

def _sneak_in(store, key, updated_at):
    """An entry file written behind the library's back (the reference code, or
    a writer that died after its rename)."""
    path = os.path.join(store.paths.entries, sessionsd.encode_key(key))
    with open(path, "wb") as fh:
        fh.write(encode_document(key, {"updatedAt": updated_at}))


def test_cap_holds_after_a_reference_writer_and_after_a_dead_writer(tmp_path, count_recounts):
    """The entry count lives in sessions.d/stats, valid for one (seq,
    state.json version).  A writer that does not keep it (the reference code
    bumps state.json) or one that died mid-commit (odd seq) costs one recount,
    never a cap that no longer holds."""
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(5)},
                       mode="enforce", max_entries=5)
    store.put("n0", {"updatedAt": NOW + 100})
    assert count_recounts == []
    # The reference code: three more entry files, then its version bump.
    for i in range(3):
        _sneak_in(store, f"ref{i}", NOW + 50 + i)
    state_path = os.path.join(store.paths.root, "state.json")
    with open(state_path) as fh:
        state = json.load(fh)
    state["version"] += 1
    with open(state_path, "w") as fh:
        json.dump(state, fh)
    store.put("n1", {"updatedAt": NOW + 101})
    assert len(on_disk(store.paths.store)) == 5 and len(count_recounts) == 1
    assert sorted(on_disk(store.paths.store)) == ["n0", "n1", "ref0", "ref1", "ref2"]
    # A writer that died after renaming its entry in: seq left odd, lock free.
    _sneak_in(store, "dead", NOW + 200)
    with open(store.paths.seq, "r+b") as fh:
        seq = int.from_bytes(fh.read(8), "little")
        fh.seek(0)
        fh.write((seq + 1).to_bytes(8, "little"))
    store.put("n2", {"updatedAt": NOW + 102})
    assert len(on_disk(store.paths.store)) == 5 and len(count_recounts) == 2
    for i in range(10):
        store.put(f"m{i}", {"updatedAt": NOW + 300 + i})
        assert len(os.listdir(store.paths.entries)) == 5
    assert len(count_recounts) == 2  # kept by every commit since


def test_statistics_survive_every_kind_of_commit(tmp_path, count_recounts):
    """Puts, patches, deletes, whole-store updates, evictions, a version-bumping
    writer and a plain second writer: no recount, and the stats always match
    the files (so the cap check stays O(1))."""
    store = make_store(tmp_path, {f"k{i}": {"updatedAt": NOW + i} for i in range(10)},
                       mode="enforce", max_entries=10, max_disk_bytes=1 << 20, prune_after=86_400)
    bumping = SessionStore(store.paths.store, durability="none", sessionsd_only=False)
    plain = SessionStore(store.paths.store, durability="none", sessionsd_only=True)
    for i in range(20):
        store.put(f"n{i}", {"updatedAt": NOW + 100 + i})
        bumping.put(f"b{i}", {"updatedAt": NOW + 200 + i})
        plain.patch(f"n{i}", {"x": i})
        store.mutate(lambda s, i=i: s.update({f"u{i}": {"updatedAt": NOW + 300 + i}}))
        plain.delete(f"b{i}")
    assert count_recounts == []
    with open(os.path.join(store.paths.root, "state.json")) as fh:
        state = json.load(fh)
    seq = store._backend._dir.read_seq()
    stats = store._backend._dir.read_stats(seq)
    files = [n for n in os.listdir(store.paths.entries) if not n.startswith(".")]
    assert stats is not None and stats.version == state["version"]
    assert stats.count == len(files) == 10
    assert stats.bytes == sum(os.lstat(os.path.join(store.paths.entries, n)).st_size for n in files)


# -- the maintain command ----------------------------------------------------------------

def test_maintain_command_json_report_and_usage_errors(tmp_path, capsys):
    (tmp_path / "t.jsonl").write_text("t")
    store = make_store(tmp_path, {"old": {"updatedAt": NOW - 10 * DAY, "sessionFile": "t.jsonl"},
                                  "new": {"updatedAt": NOW}}, mode="enforce", max_entries=10)
    path = str(store.paths.store)
    for bad in (["--max-entries", "-1"], ["--prune-after", "soon"], ["--max-disk-bytes", "-5"]):
        assert main(["maintain", path, *bad]) == 2
        assert "sessionsd maintain:" in capsys.readouterr().err
    assert main(["maintain", path, "--prune-after", "7d", "--mode", "enforce", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["applied"] and report["pruned"] == ["old"] and report["removed"] == ["old"]
    assert len(report["archived"]) == 1
    assert os.path.basename(report["archived"][0]).startswith("t.jsonl.deleted.")
    assert sorted(on_disk(path)) == ["new"]


@pytest.mark.parametrize("bad", [
    {"mode": "delete"}, {"max_entries": -1}, {"prune_after": float("nan")},
    {"max_disk_bytes": float("inf")}, {"max_entries": True}, {"sweep_interval": float("nan")},
    {"sweep_interval": -1}, {"sweep_interval": "300"},
])
def test_bad_settings_are_refused_up_front(bad):
    with pytest.raises(ValueError):
        Maintenance(**bad)
