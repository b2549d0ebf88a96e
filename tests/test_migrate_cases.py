"""Migration edge cases (SPEC §6) not covered by test_migrate.py: every input
check with its warning, case-variant order, quarantine of a plain file, the
merge as one commit, backups never overwritten, rollback keeping a legacy file
it finds, discovery's skipped candidates, and the summary with real failures."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest
from spec_rules import is_lock_artifact

from sessionsd import SessionStore, detect, migrate, rollback
from sessionsd.discovery import discover_stores, migrate_or_fail, run_startup_migration

NOT_REGULAR = "Legacy sessions.json is not a regular file."


def too_big(size: int, limit: int) -> str:
    return (f"Legacy sessions.json is {size} bytes, over the migration limit of {limit} bytes set by "
            "--max-bytes / max_bytes=; raise the limit or drop it (--max-bytes none, "
            "max_bytes=None) to migrate the file.")


NOT_OBJECT = "Legacy sessions.json does not contain an object store."
JSON5 = "Legacy sessions.json is not strict JSON; it was read as JSON5."


def write(path, content) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def listing(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if not is_lock_artifact(n))


def state_version(directory) -> int:
    return json.loads((directory / "sessions.d" / "state.json").read_text())["version"]


# -- input checks: outcome, status and the exact warning ----------------------------------

def make_symlink(tmp_path):
    target = write(tmp_path / "elsewhere.json", {"a": {"n": 1}})
    os.symlink(target, tmp_path / "s" / "sessions.json")


def make_directory(tmp_path):
    (tmp_path / "s" / "sessions.json").mkdir()


def make_fifo(tmp_path):
    os.mkfifo(tmp_path / "s" / "sessions.json")


def make_dangling_symlink(tmp_path):
    os.symlink(tmp_path / "nowhere.json", tmp_path / "s" / "sessions.json")


@pytest.mark.parametrize("make", [make_symlink, make_directory, make_fifo, make_dangling_symlink])
def test_a_legacy_path_that_is_not_a_regular_file_is_skipped_invalid(tmp_path, make):
    (tmp_path / "s").mkdir()
    make(tmp_path)
    path = tmp_path / "s" / "sessions.json"
    before = listing(tmp_path / "s")
    found = detect(path)
    assert (found.status, found.legacy_exists, found.warnings) == ("invalid_legacy", True, [NOT_REGULAR])
    assert found.preview == "Legacy sessions.json exists but could not be migrated safely."
    result = migrate(path)  # a FIFO must not block it
    assert (result.outcome, result.warnings, result.backup_path) == ("skipped_invalid", [NOT_REGULAR], None)
    assert (result.legacy_entries, result.migrated_entries) == (0, 0)
    assert listing(tmp_path / "s") == before  # nothing moved, nothing created


@pytest.mark.parametrize("content,outcome,warnings", [
    ("[]", "skipped_invalid", [NOT_OBJECT]),
    ('"a string"', "skipped_invalid", [NOT_OBJECT]),
    ("[1, 2, ] // json5 array", "skipped_invalid", [JSON5, NOT_OBJECT]),
    (b"\xff\xfe{}", "skipped_invalid", None),
    ("{\"a\": {}", "skipped_invalid", None),
    ("{\"a\": {\"n\": 1,},}", "migrated", [JSON5]),
    ("\n\t  \n", "skipped_empty", []),
    ("{}", "skipped_empty", []),
    ('{"  ": {}, "__proto__": {}}', "skipped_empty", []),
])
def test_outcomes_and_warnings(tmp_path, content, outcome, warnings):
    raw = content if isinstance(content, bytes) else content.encode()
    path = write(tmp_path / "sessions.json", raw)
    result = migrate(path)
    assert result.outcome == outcome
    if warnings is None:  # unparsable: the parser's message follows the fixed prefix
        assert len(result.warnings) == 1
        assert result.warnings[0].startswith("Failed to parse legacy sessions.json: ")
    else:
        assert result.warnings == warnings
    if outcome != "migrated":
        assert (tmp_path / "sessions.json").read_bytes() == raw  # left untouched
        assert not (tmp_path / "sessions.d").exists() and result.backup_path is None
    else:
        assert SessionStore(path).load() == {"a": {"n": 1}}


def test_size_limit_counts_bytes_exactly_and_can_be_lifted(tmp_path):
    path = write(tmp_path / "sessions.json", {"a": {"n": 1}})
    size = os.path.getsize(path)
    assert migrate(path, max_bytes=size - 1).warnings == [too_big(size, size - 1)]
    assert detect(path, max_bytes=size - 1).warnings == [too_big(size, size - 1)]
    assert detect(path, max_bytes=size - 1).status == "invalid_legacy"
    assert detect(path, max_bytes=None).status == "ready_to_migrate"
    assert migrate(path, max_bytes=size).outcome == "migrated"


# -- normalisation ----------------------------------------------------------------------------

def test_the_case_variant_with_the_greatest_updated_at_wins_whatever_its_position(tmp_path):
    path = write(tmp_path / "sessions.json",
                 '{"Agent:X": {"updatedAt": 9, "v": "first"}, "agent:x": {"updatedAt": 3, "v": "second"},'
                 ' " AGENT:X ": {"v": "no updatedAt"}, "agent:y": {"updatedAt": 1}}')
    found = detect(path)
    assert (found.legacy_entry_count, found.normalized_entry_count) == (4, 2)
    result = migrate(path)
    assert (result.legacy_entries, result.migrated_entries) == (4, 2)
    assert SessionStore(path).load() == {"agent:x": {"updatedAt": 9, "v": "first"},
                                         "agent:y": {"updatedAt": 1}}


# -- quarantine, merge, backups ------------------------------------------------------------

def test_a_plain_file_named_sessions_d_is_moved_aside_and_reported(tmp_path):
    path = write(tmp_path / "sessions.json", {"a": {"n": 1}})
    (tmp_path / "sessions.d").write_text("not a store")
    result = migrate(path)
    [orphan] = tmp_path.glob("sessions.d.orphan.*")
    assert orphan.read_text() == "not a store"
    assert result.outcome == "migrated"
    assert result.warnings == [f"moved an inactive session-store directory aside to {orphan}"]
    assert SessionStore(path).load() == {"a": {"n": 1}}


def test_merge_is_one_commit_and_a_stale_legacy_file_never_clobbers(tmp_path):
    path = write(tmp_path / "sessions.json", {"a": {"updatedAt": 5, "v": 1}})
    migrate(path)
    store = SessionStore(path)
    store.put("b", {"updatedAt": 7, "v": "dir"})
    version = state_version(tmp_path)
    write(tmp_path / "sessions.json", {"a": {"updatedAt": 4, "v": "stale"}, "b": {"updatedAt": 8, "v": "newer"},
                                       "c": {"v": "new"}, "d": "not an object"})
    result = migrate(path)
    assert (result.outcome, result.legacy_entries, result.migrated_entries) == ("migrated", 4, 4)
    assert state_version(tmp_path) == version + 1  # one commit for all changes
    # A value that is not an object is kept, as the reference reads it once migrated.
    assert store.load() == {"a": {"updatedAt": 5, "v": 1}, "b": {"updatedAt": 8, "v": "newer"},
                            "c": {"v": "new"}, "d": {"sessionKey": "d", "entry": "not an object"}}
    assert len(list(tmp_path.glob("sessions.json.bak.*"))) == 2 and not os.path.exists(path)


def test_a_merge_that_changes_nothing_still_backs_the_file_up(tmp_path):
    path = write(tmp_path / "sessions.json", {"a": {"updatedAt": 5}})
    migrate(path)
    version = state_version(tmp_path)
    write(tmp_path / "sessions.json", {"a": {"updatedAt": 5}})
    result = migrate(path)
    assert result.outcome == "migrated" and os.path.exists(result.backup_path)
    assert state_version(tmp_path) == version and not os.path.exists(path)


def test_backups_are_never_overwritten(tmp_path):
    """Migrate, roll back and migrate again many times quickly: every legacy
    file ever migrated survives under its own backup name."""
    path = write(tmp_path / "sessions.json", {"a": {"n": 0}})
    for i in range(1, 6):
        assert migrate(path).outcome == "migrated"
        SessionStore(path).put("a", {"n": i})
        assert rollback(path) is True
    backups = sorted(tmp_path.glob("sessions.json.bak.*"))
    assert sorted(json.loads(b.read_text())["a"]["n"] for b in backups) == [0, 1, 2, 3, 4]
    assert len(list(tmp_path.glob("sessions.d.bak.*"))) == 5


def test_rollback_keeps_a_legacy_file_it_would_overwrite(tmp_path):
    path = write(tmp_path / "sessions.json", {"a": {"n": 1}})
    migrate(path)
    write(tmp_path / "sessions.json", {"z": {"written": "by an old process"}})
    assert rollback(path) is True
    assert json.loads((tmp_path / "sessions.json").read_text()) == {"a": {"n": 1}}
    kept = [json.loads(b.read_text()) for b in tmp_path.glob("sessions.json.bak.*")]
    assert {"z": {"written": "by an old process"}} in kept


def test_rollback_over_an_identical_legacy_file_makes_no_extra_backup(tmp_path):
    path = write(tmp_path / "sessions.json", {"a": {"n": 1}})
    migrate(path)
    assert rollback(path) is True
    data = (tmp_path / "sessions.json").read_bytes()
    migrate(path)
    (tmp_path / "sessions.json").write_bytes(data)  # what a crashed rollback leaves
    assert rollback(path) is True
    assert len(list(tmp_path.glob("sessions.json.bak.*"))) == 2  # one per migration


def test_dry_run_rollback_changes_nothing(tmp_path):
    path = write(tmp_path / "sessions.json", {"a": {"n": 1}})
    migrate(path)
    before = {name: os.lstat(tmp_path / name).st_mtime_ns for name in listing(tmp_path)}
    assert rollback(path, dry_run=True) is True
    assert {name: os.lstat(tmp_path / name).st_mtime_ns for name in listing(tmp_path)} == before
    assert rollback(tmp_path / "other" / "sessions.json", dry_run=True) is False


# -- discovery -----------------------------------------------------------------------------

def test_discovery_skips_what_it_cannot_or_must_not_read(tmp_path):
    state = tmp_path / "state"
    agents = state / "agents"
    good = write(agents / "good" / "sessions" / "sessions.json", {"k": {}})
    migrated = write(agents / "migrated" / "sessions" / "sessions.json", {"k": {}})
    migrate(migrated)
    agents.joinpath("file-not-dir").write_text("x")                       # ENOTDIR
    (agents / "loop").mkdir()
    os.symlink(agents / "loop" / "sessions", agents / "loop" / "sessions")  # ELOOP
    # A sessions directory that is a symlink out of the agents root, holding a
    # legacy file and an active directory store: neither is discovered.
    outside = write(tmp_path / "outside" / "sessions" / "sessions.json", {"k": {}})
    write(tmp_path / "outside2" / "sessions" / "sessions.json", {"k": {}})
    migrate(tmp_path / "outside2" / "sessions" / "sessions.json")
    (agents / "escape").mkdir()
    os.symlink(os.path.dirname(outside), agents / "escape" / "sessions")
    (agents / "escape2").mkdir()
    os.symlink(tmp_path / "outside2" / "sessions", agents / "escape2" / "sessions")
    # A half-built sessions.d with no legacy file is not a store.
    (agents / "half" / "sessions" / "sessions.d" / "entries").mkdir(parents=True)
    assert discover_stores(state) == [good, migrated]


def test_discovery_inside_a_symlinked_state_dir_still_works(tmp_path):
    real = tmp_path / "real"
    good = write(real / "agents" / "a" / "sessions" / "sessions.json", {"k": {}})
    os.symlink(real, tmp_path / "link")
    found = discover_stores(tmp_path / "link")
    assert found == [str(tmp_path / "link" / "agents" / "a" / "sessions" / "sessions.json")]
    assert os.path.samefile(found[0], good)


# -- the startup summary with real stores ------------------------------------------------

def summary_records(caplog):
    return [r for r in caplog.records if r.getMessage().startswith("session-store migration summary")]


def test_summary_with_every_outcome_and_a_real_failure(tmp_path, caplog):
    state = tmp_path / "state"
    agents = state / "agents"
    migrated = write(agents / "a" / "sessions" / "sessions.json", {"k": {"n": 1}})
    # The second store fails (a symlinked sessions.d); every later one still runs.
    failing = write(agents / "aa" / "sessions" / "sessions.json", {"k": {"n": 1}})
    (tmp_path / "target").mkdir()
    os.symlink(tmp_path / "target", agents / "aa" / "sessions" / "sessions.d")
    already = write(agents / "b" / "sessions" / "sessions.json", {"k": {"n": 1}})
    migrate(already)
    empty = write(agents / "c" / "sessions" / "sessions.json", "{}")
    invalid = write(agents / "d" / "sessions" / "sessions.json", "[]")
    (agents / "e" / "sessions").mkdir(parents=True)
    missing = str(agents / "e" / "sessions" / "sessions.json")
    late = write(agents / "f" / "sessions" / "sessions.json", {"k": {"n": 2}})
    with caplog.at_level(logging.DEBUG, logger="sessionsd"):
        results = run_startup_migration(state)
    assert [(r.store_path, r.outcome) for r in results] == [
        (migrated, "migrated"), (failing, "failed"), (already, "already_directory"),
        (empty, "skipped_empty"), (invalid, "skipped_invalid"), (missing, "missing"), (late, "migrated")]
    [record] = summary_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "session-store migration summary: inspected=7 migrated=2 already_directory=1 skipped_empty=1 "
        "skipped_invalid=1 missing=1 failed=1; issues: "
        f"{failing} (Migration failed: UnsafeStoreError: refusing to use symlinked directory "
        f"session store path: {agents / 'aa' / 'sessions' / 'sessions.d'}); "
        f"{invalid} (invalid legacy store, {NOT_OBJECT})")
    # Exactly one line above DEBUG for the whole run.
    assert [r for r in caplog.records if r.levelno > logging.DEBUG] == [record]
    assert SessionStore(late).load() == {"k": {"n": 2}} and SessionStore(late).mode == "directory"
    assert os.path.exists(failing) and os.path.exists(invalid) and os.path.exists(empty)


def test_summary_of_benign_warnings_is_info(tmp_path, caplog):
    state = tmp_path / "state"
    json5 = write(state / "agents" / "a" / "sessions" / "sessions.json", '{"k": {"n": 1,},}')
    write(state / "agents" / "a" / "sessions" / "sessions.d", "junk")
    with caplog.at_level(logging.INFO, logger="sessionsd"):
        run_startup_migration(state)
    [record] = caplog.records
    [orphan] = (state / "agents" / "a" / "sessions").glob("sessions.d.orphan.*")
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "session-store migration summary: inspected=1 migrated=1 already_directory=0 skipped_empty=0 "
        f"skipped_invalid=0 missing=0 failed=0; issues: {json5} ({JSON5}, "
        f"moved an inactive session-store directory aside to {orphan})")


def test_extra_paths_are_migrated_once_after_the_agents(tmp_path, caplog):
    state = tmp_path / "state"
    agent = write(state / "agents" / "a" / "sessions" / "sessions.json", {"k": {}})
    extra = write(tmp_path / "custom" / "sessions.json", {"k": {}})
    with caplog.at_level(logging.INFO, logger="sessionsd"):
        results = run_startup_migration(state, [extra, agent, tmp_path / "custom" / "sessions.json"])
    assert [(r.store_path, r.outcome) for r in results] == [(agent, "migrated"), (extra, "migrated")]
    assert "inspected=2 migrated=2" in summary_records(caplog)[0].getMessage()


def test_migrate_or_fail_names_the_error(tmp_path):
    path = write(tmp_path / "sessions.json", {"k": {}})
    os.symlink(tmp_path, tmp_path / "sessions.d")
    result = migrate_or_fail(path)
    assert (result.outcome, result.store_path) == ("failed", path)
    assert result.warnings == [
        ("Migration failed: UnsafeStoreError: refusing to use symlinked directory session store path: "
         f"{tmp_path / 'sessions.d'}")]


def test_save_time_migration_logs_what_it_moved_aside(tmp_path, caplog):
    path = write(tmp_path / "sessions.json", {"a": {"n": 1}})
    (tmp_path / "sessions.d").mkdir()
    with caplog.at_level(logging.INFO, logger="sessionsd"):
        SessionStore(path).put("b", {"n": 2})
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages[0][0] == logging.WARNING and "moved an inactive session-store directory aside" in messages[0][1]
    assert messages[-1] == (logging.INFO, f"migrated session store to directory mode on save: {path} (2 entries)")
    assert stat.S_ISDIR(os.lstat(next(tmp_path.glob("sessions.d.orphan.*"))).st_mode)
