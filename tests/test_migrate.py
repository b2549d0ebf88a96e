"""Migration, detection, rollback, discovery and the startup summary (SPEC §6)."""

from __future__ import annotations

import json
import logging
import os

import pytest
from spec_rules import is_lock_artifact

import sessionsd
from sessionsd import SessionStore, UnsafeStoreError, detect, migrate, rollback
from sessionsd.discovery import agent_store_paths, discover_stores, run_startup_migration


def legacy(tmp_path, content, name="sessions.json"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def snapshot_tree(root):
    result = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            info = os.lstat(path)
            result[os.path.relpath(path, root)] = (info.st_ino, info.st_mtime_ns, info.st_size)
    return result


REFERENCE_EXAMPLE = {
    "Agent:Main:Main": {"sessionId": "sess-older", "updatedAt": 10},
    "agent:main:main": {"sessionId": "sess-newer", "updatedAt": 20, "modelOverride": "gpt-5.2"},
    "agent:main:other": {"sessionId": "sess-other", "updatedAt": 30},
}


def test_fresh_migration_of_the_reference_example(tmp_path):
    path = legacy(tmp_path, REFERENCE_EXAMPLE)
    result = migrate(path)
    assert (result.outcome, result.legacy_entries, result.migrated_entries) == ("migrated", 3, 2)
    assert result.backup_path.startswith(str(path) + ".bak.") and os.path.exists(result.backup_path)
    with open(result.backup_path) as fh:
        assert json.load(fh) == REFERENCE_EXAMPLE
    assert not path.exists()
    loaded = SessionStore(path).load()
    assert sorted(loaded) == ["agent:main:main", "agent:main:other"]
    assert loaded["agent:main:main"]["modelOverride"] == "gpt-5.2"
    assert migrate(path).outcome == "already_directory"


def test_ties_keep_the_later_case_variant(tmp_path):
    path = legacy(tmp_path, '{"A": {"updatedAt": 5, "v": 1}, "a": {"updatedAt": 5, "v": 2}}')
    migrate(path)
    assert SessionStore(path).get("a") == {"updatedAt": 5, "v": 2}


@pytest.mark.parametrize("content,warning", [
    ("[1, 2]", "Legacy sessions.json does not contain an object store."),
    ("null", "Legacy sessions.json does not contain an object store."),
    ('{"a": ', "Failed to parse legacy sessions.json: "),
])
def test_invalid_legacy_inputs_are_skipped_untouched(tmp_path, content, warning):
    path = legacy(tmp_path, content)
    before = snapshot_tree(tmp_path)
    result = migrate(path)
    assert result.outcome == "skipped_invalid"
    assert result.warnings[0].startswith(warning)
    assert path.read_text() == content and {k for k in snapshot_tree(tmp_path) if not is_lock_artifact(os.path.basename(k))} == {k for k in before if not is_lock_artifact(os.path.basename(k))}
    assert detect(path).status == "invalid_legacy"


def test_symlinked_or_non_regular_legacy_is_invalid(tmp_path):
    real = legacy(tmp_path / "elsewhere", {"a": {}})
    (tmp_path / "s1").mkdir()
    os.symlink(real, tmp_path / "s1" / "sessions.json")
    result = migrate(tmp_path / "s1" / "sessions.json")
    assert result.outcome == "skipped_invalid"
    assert result.warnings == ["Legacy sessions.json is not a regular file."]
    assert not (tmp_path / "s1" / "sessions.d").exists()
    (tmp_path / "s2" / "sessions.json").mkdir(parents=True)
    assert migrate(tmp_path / "s2" / "sessions.json").outcome == "skipped_invalid"


def test_size_limit(tmp_path):
    path = legacy(tmp_path, {"a": {"x": "y" * 200}})
    size = os.path.getsize(path)
    result = migrate(path, max_bytes=100)
    assert result.outcome == "skipped_invalid"
    too_big = (f"Legacy sessions.json is {size} bytes, over the migration limit of 100 bytes set by "
               "--max-bytes / max_bytes=; raise the limit or drop it (--max-bytes none, "
               "max_bytes=None) to migrate the file.")
    assert result.warnings == [too_big]
    assert detect(path, max_bytes=100).warnings == [too_big]
    assert migrate(path).outcome == "migrated"  # no limit by default


def test_json5_legacy_migrates_with_a_warning(tmp_path):
    path = legacy(tmp_path, '{\n  // a comment\n  "a": {"n": 1,},\n}')
    result = migrate(path)
    assert result.outcome == "migrated"
    assert result.warnings == ["Legacy sessions.json is not strict JSON; it was read as JSON5."]
    assert SessionStore(path).get("a") == {"n": 1}


@pytest.mark.parametrize("content,raw", [(" \n ", 0), ('{"   ": {}, "\\t": {"n": 1}}', 2)])
def test_empty_legacy_is_skipped(tmp_path, content, raw):
    path = legacy(tmp_path, content)
    result = migrate(path)
    assert (result.outcome, result.legacy_entries, result.migrated_entries) == ("skipped_empty", raw, 0)
    assert path.read_text() == content
    assert detect(path).status == "empty_legacy"


def test_missing(tmp_path):
    assert migrate(tmp_path / "sessions.json").outcome == "missing"
    assert detect(tmp_path / "sessions.json").preview == "No legacy sessions.json store was found."


def test_detect_statuses_and_previews_write_nothing(tmp_path):
    path = legacy(tmp_path, {"a": {}, "B": {}})
    before = snapshot_tree(tmp_path)
    found = detect(path)
    assert snapshot_tree(tmp_path) == before
    assert (found.status, found.legacy_exists, found.directory_active) == ("ready_to_migrate", True, False)
    assert (found.legacy_entry_count, found.normalized_entry_count) == (2, 2)
    assert found.preview == "Legacy sessions.json is ready to migrate (2 normalized entries)."
    migrate(path)
    found = detect(path)
    assert found.status == "already_directory"
    assert found.preview == "Directory-backed session store is already active."
    legacy(tmp_path, "[]")
    assert detect(path).preview == "Legacy sessions.json exists but could not be migrated safely."
    legacy(tmp_path, "{}")
    assert detect(path).preview == "Legacy sessions.json contains no valid session entries to migrate."


def test_inactive_directory_is_quarantined(tmp_path):
    path = legacy(tmp_path, {"a": {"n": 1}})
    stale = tmp_path / "sessions.d"
    (stale / "entries").mkdir(parents=True)
    (stale / "entries" / "junk.json").write_text("keep me")
    assert migrate(path).outcome == "migrated"
    orphans = list(tmp_path.glob("sessions.d.orphan.*"))
    assert len(orphans) == 1 and (orphans[0] / "entries" / "junk.json").read_text() == "keep me"
    assert SessionStore(path).load() == {"a": {"n": 1}}


def test_symlinked_directory_store_path_is_refused(tmp_path):
    path = legacy(tmp_path, {"a": {"n": 1}})
    (tmp_path / "target").mkdir()
    os.symlink(tmp_path / "target", tmp_path / "sessions.d")
    with pytest.raises(UnsafeStoreError, match="symlinked"):
        migrate(path)
    assert path.exists() and os.path.islink(tmp_path / "sessions.d")


def test_merge_when_the_directory_is_already_active(tmp_path):
    path = legacy(tmp_path, {"a": {"updatedAt": 5, "v": "dir"}, "b": {"updatedAt": 5, "v": "dir"}})
    migrate(path)
    # An old process writes a legacy file back (or a crash left one behind).
    legacy(tmp_path, {"a": {"updatedAt": 9, "v": "legacy"}, "b": {"updatedAt": 5, "v": "legacy"},
                      "c": {"updatedAt": 1, "v": "legacy"}})
    result = migrate(path)
    assert (result.outcome, result.migrated_entries) == ("migrated", 3)
    loaded = SessionStore(path).load()
    assert loaded["a"]["v"] == "legacy"     # strictly newer wins
    assert loaded["b"]["v"] == "dir"        # a tie does not
    assert loaded["c"]["v"] == "legacy"     # new keys are added
    assert not path.exists() and result.backup_path


def test_active_directory_with_invalid_or_empty_legacy_leaves_it(tmp_path):
    path = legacy(tmp_path, {"a": {"n": 1}})
    migrate(path)
    legacy(tmp_path, "[]")
    assert migrate(path).outcome == "skipped_invalid" and path.read_text() == "[]"
    legacy(tmp_path, "{}")
    assert migrate(path).outcome == "skipped_empty" and path.exists()
    assert SessionStore(path).load() == {"a": {"n": 1}}


def test_stale_staging_of_dead_processes_is_removed(tmp_path):
    path = legacy(tmp_path, {"a": {"n": 1}})
    dead = tmp_path / "sessions.d.staging-999999-123"
    alive = tmp_path / f"sessions.d.staging-{os.getppid()}-456"
    for directory in (dead, alive):
        (directory / "entries").mkdir(parents=True)
    migrate(path)
    assert not dead.exists() and alive.exists()


def test_round_trip_with_rollback(tmp_path):
    path = legacy(tmp_path, {f"k{i}": {"i": i} for i in range(10)})
    migrate(path)
    store = SessionStore(path)
    store.put("new", {"i": 99})
    store.patch("k1", {"patched": True})
    store.delete("k2")
    expected = store.load()
    assert rollback(path, dry_run=True) is True and store.mode == "directory"
    assert rollback(path) is True
    assert store.mode == "legacy"
    assert json.loads(path.read_text()) == expected
    assert len(list(tmp_path.glob("sessions.d.bak.*"))) == 1
    assert rollback(path) is False
    assert migrate(path).outcome == "migrated"
    assert SessionStore(path).load() == expected


# -- discovery and the startup summary ---------------------------------------------

def build_state(tmp_path):
    state = tmp_path / "state"
    agents = state / "agents"
    legacy(agents / "a" / "sessions", {"k": {"n": 1}})
    (agents / "b" / "sessions").mkdir(parents=True)
    c = legacy(agents / "c" / "sessions", {"k": {"n": 1}})
    migrate(c)
    outside = legacy(tmp_path / "outside", {"k": {}})
    (agents / "d" / "sessions").mkdir(parents=True)
    os.symlink(outside, agents / "d" / "sessions" / "sessions.json")
    return state


def test_discovery(tmp_path):
    state = build_state(tmp_path)
    agents = state / "agents"
    assert agent_store_paths(state) == [str(agents / x / "sessions" / "sessions.json") for x in "abcd"]
    extra = tmp_path / "extra" / "sessions.json"
    found = discover_stores(state, [extra, agents / "a" / "sessions" / "sessions.json"])
    assert found == [str(agents / "a" / "sessions" / "sessions.json"),
                     str(agents / "c" / "sessions" / "sessions.json"), str(extra)]
    assert discover_stores(tmp_path / "nowhere") == []


def test_startup_summary_all_missing_is_info(tmp_path, caplog):
    state = tmp_path / "state"
    for name in "xyz":
        (state / "agents" / name / "sessions").mkdir(parents=True)
    with caplog.at_level(logging.INFO, logger="sessionsd"):
        results = run_startup_migration(state)
    assert [r.outcome for r in results] == ["missing"] * 3
    records = [r for r in caplog.records if r.getMessage().startswith("session-store migration summary")]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert records[0].getMessage() == (
        "session-store migration summary: inspected=3 migrated=0 already_directory=0 "
        "skipped_empty=0 skipped_invalid=0 missing=3 failed=0")


def test_startup_summary_with_issues_is_a_warning(tmp_path, caplog, monkeypatch):
    state = tmp_path / "state"
    ok = legacy(state / "agents" / "a" / "sessions", {"k": {"n": 1}})
    bad = legacy(state / "agents" / "b" / "sessions", "[]")
    failing = legacy(tmp_path / "custom", {"k": {"n": 1}})
    import sessionsd.discovery as discovery

    real = discovery.migrate

    def flaky(path, **options):
        if str(path) == str(failing):
            raise RuntimeError("boom")
        return real(path, **options)

    monkeypatch.setattr(discovery, "migrate", flaky)
    with caplog.at_level(logging.INFO, logger="sessionsd"):
        results = run_startup_migration(state, [failing])
    assert [r.outcome for r in results] == ["migrated", "skipped_invalid", "failed"]
    records = [r for r in caplog.records if r.getMessage().startswith("session-store migration summary")]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert records[0].getMessage() == (
        "session-store migration summary: inspected=3 migrated=1 already_directory=0 "
        "skipped_empty=0 skipped_invalid=1 missing=0 failed=1; issues: "
        f"{bad} (invalid legacy store, Legacy sessions.json does not contain an object store.); "
        f"{failing} (Migration failed: RuntimeError: boom)")
    assert SessionStore(ok).mode == "directory"


def test_startup_with_no_targets_logs_nothing(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="sessionsd"):
        assert run_startup_migration(tmp_path / "empty") == []
    assert not caplog.records


def test_save_time_migration_keeps_every_session(tmp_path):
    path = legacy(tmp_path, {f"k{i}": {"i": i} for i in range(5)})
    store = SessionStore(path)
    store.put("k5", {"i": 5})
    assert store.mode == "directory"
    assert store.load() == {f"k{i}": {"i": i} for i in range(6)}
    assert sessionsd.detect(path).status == "already_directory"


def test_migrating_a_store_that_is_not_there_creates_nothing(tmp_path):
    target = tmp_path / "no" / "such" / "sessions.json"
    assert migrate(target).outcome == "missing"
    assert not (tmp_path / "no").exists()


def test_the_library_logs_per_module_and_configures_nothing():
    import logging

    import sessionsd._file_backend
    import sessionsd.migration

    package = logging.getLogger("sessionsd")
    assert any(isinstance(h, logging.NullHandler) for h in package.handlers)
    assert sessionsd._file_backend._log.name == "sessionsd._file_backend"
    assert sessionsd.migration._log.name == "sessionsd.migration"
