"""CLI store subcommands: output, --json and exit codes."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys

import pytest
from spec_rules import is_lock_artifact
from terminal import run_on_a_terminal

import sessionsd
from sessionsd import SessionStore
from sessionsd.cli import main


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "agents" / "main" / "sessions" / "sessions.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"b": {"updatedAt": 2, "lastChannel": "telegram", "lastTo": "9"},
                                "a": {"updatedAt": 1}}))
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_info_get_ls(capsys, store_path):
    sessionsd.migrate(store_path)
    code, out, _ = run(capsys, "info", store_path)
    assert code == 0 and re.search(r"^mode: +directory$", out, re.M) and re.search(r"^sessions: +2$", out, re.M)
    code, out, _ = run(capsys, "info", store_path, "--json")
    info = json.loads(out)
    assert info["mode"] == "directory" and info["sessions"] == 2 and info["version"] == 1
    assert info["backend"] in ("compiled", "python") and info["seq"] % 2 == 0
    code, out, _ = run(capsys, "get", store_path, "B")
    assert code == 0 and json.loads(out)["lastTo"] == "9"
    code, out, err = run(capsys, "get", store_path, "nope")
    assert code == 1 and "no session" in err and out == ""
    code, out, _ = run(capsys, "ls", store_path)
    assert out.splitlines() == ["a\t1", "b\t2"]
    code, out, _ = run(capsys, "--json", "ls", store_path)
    assert json.loads(out)[1] == {"key": "b", "lastChannel": "telegram", "lastTo": "9", "updatedAt": 2}


def test_detect_and_migrate(capsys, store_path):
    code, out, _ = run(capsys, "detect", store_path)
    assert code == 0 and out.splitlines()[0] == "Legacy sessions.json is ready to migrate (2 normalized entries)."
    code, out, _ = run(capsys, "detect", store_path, "--json")
    assert json.loads(out)["status"] == "ready_to_migrate"
    code, out, _ = run(capsys, "migrate", store_path)
    assert code == 0 and out.startswith(f"migrated {store_path} (legacy 2, migrated 2) backup ")
    code, out, _ = run(capsys, "migrate", store_path, "--json")
    assert code == 0 and json.loads(out)[0]["outcome"] == "already_directory"
    bad = store_path.parent / "bad" / "sessions.json"
    bad.parent.mkdir()
    bad.write_text("[]")
    code, out, _ = run(capsys, "migrate", bad)
    assert code == 1 and out.startswith("skipped_invalid")


def test_migrate_state_dir(capsys, tmp_path, store_path):
    state = tmp_path
    code, out, err = run(capsys, "migrate", "--state-dir", state)
    assert code == 0 and out.startswith("migrated ")
    assert "session-store migration summary: inspected=1 migrated=1" in err
    (tmp_path / "empty").mkdir()
    code, out, _ = run(capsys, "migrate", "--state-dir", tmp_path / "empty")
    assert code == 0 and "No session stores found" in out


def test_rollback_commands(capsys, tmp_path, store_path):
    other = tmp_path / "agents" / "two" / "sessions" / "sessions.json"
    other.parent.mkdir(parents=True)
    other.write_text('{"x": {}}')
    sessionsd.migrate(store_path)
    code, out, _ = run(capsys, "rollback", "--store", store_path, "--store", other, "--dry-run")
    assert code == 0
    assert out.splitlines() == sorted([f"would restore {store_path}",
                                       f"would skip {other}: already a legacy store (no sessions.d to restore from)"],
                                      key=lambda line: line.split()[2]) + ["Summary: restored 1, skipped 1"]
    assert SessionStore(store_path).mode == "directory"  # dry run changed nothing
    code, out, _ = run(capsys, "rollback", "--state-dir", tmp_path)
    assert f"restored {store_path}" in out and out.strip().endswith("Summary: restored 1, skipped 1")
    assert SessionStore(store_path).mode == "legacy"
    (tmp_path / "none").mkdir()
    code, out, _ = run(capsys, "rollback", "--state-dir", tmp_path / "none")
    assert code == 0 and out.startswith("No session stores found")


def test_check_and_fix(capsys, store_path):
    sessionsd.migrate(store_path)
    code, out, _ = run(capsys, "check", store_path)
    assert code == 0 and out.strip().endswith("ok")
    root = store_path.parent / "sessions.d"
    (root / "entries" / ".x.json.1-1.tmp").write_text("{}")
    seq = root / "seq"
    seq.write_bytes(struct.pack("<Q", 5) + seq.read_bytes()[8:])
    (root / "entries" / sessionsd.encode_key("corrupt")).write_text("{nope")
    (store_path.parent / "sessions.d.orphan.1").mkdir()
    code, out, _ = run(capsys, "check", store_path)
    assert code == 1
    assert "problem: stray temp file" in out and "odd commit counter" in out
    assert "problem: corrupt entry file" in out and "orphan:" in out and "backup:" in out
    code, out, _ = run(capsys, "check", store_path, "--fix", "--json")
    report = json.loads(out)
    assert report["fixed"] and not report["temp_files"] and not report["odd_seq"]
    assert report["corrupt_entries"] and report["ok"] is False  # corrupt entries are kept
    assert report["orphans"] and report["backups"]
    assert (root / "entries" / sessionsd.encode_key("corrupt")).exists()


def test_maintain_command(capsys, store_path):
    sessionsd.migrate(store_path)
    code, out, _ = run(capsys, "maintain", store_path, "--max-entries", "1", "--dry-run")
    assert code == 0 and "would remove (over cap): a" in out
    assert len(SessionStore(store_path).load()) == 2
    code, out, _ = run(capsys, "maintain", store_path, "--max-entries", "1")  # warn: the default
    assert code == 0 and "would remove (over cap): a" in out
    assert len(SessionStore(store_path).load()) == 2
    code, out, _ = run(capsys, "maintain", store_path, "--max-entries", "1", "--mode", "enforce")
    assert code == 0 and "removed (over cap): a" in out
    assert list(SessionStore(store_path).load()) == ["b"]
    code, out, err = run(capsys, "maintain", store_path)
    assert code == 2 and "give --prune-after" in err


def test_usage_errors(capsys):
    assert run(capsys, "info")[0] == 2
    assert run(capsys, "rollback", "--bogus")[0] == 2
    assert run(capsys, "migrate")[0] == 2


def test_console_entry_point_and_version():
    done = subprocess.run([sys.executable, "-m", "sessionsd", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("sessionsd ")
    assert os.environ.get("SESSIONSD_NO_EXTENSIONS") != "1" or "python codec" in done.stdout


# -- migrate / rollback / detect: every line, --json, exit codes ------------------------

def tree(root) -> dict:
    """Every path under *root* with its inode, size and mtime (the lock file aside)."""
    found = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            if not is_lock_artifact(name):
                info = os.lstat(path)
                found[os.path.relpath(path, root)] = (info.st_ino, info.st_size, info.st_mtime_ns)
    return found


@pytest.mark.parametrize("content,first_line,status", [
    (None, "No legacy sessions.json store was found.", "missing"),
    ("{}", "Legacy sessions.json contains no valid session entries to migrate.", "empty_legacy"),
    ("[]", "Legacy sessions.json exists but could not be migrated safely.", "invalid_legacy"),
    ('{"A": {}, "a": {}, "b": 1}', "Legacy sessions.json is ready to migrate (2 normalized entries).",
     "ready_to_migrate"),
])
def test_detect_lines_json_and_exit_code(capsys, tmp_path, content, first_line, status):
    path = tmp_path / "sessions.json"
    if content is not None:
        path.write_text(content)
    before = tree(tmp_path)
    code, out, _ = run(capsys, "detect", path)
    assert code == 0 and out.splitlines()[:2] == [first_line, f"status: {status}"]
    code, out, _ = run(capsys, "detect", "--json", path)
    found = json.loads(out)
    assert found["status"] == status and found["preview"] == first_line
    assert set(found) == {"store_path", "status", "legacy_exists", "directory_active", "legacy_entry_count",
                          "normalized_entry_count", "warnings", "preview"}
    assert tree(tmp_path) == before  # read-only


def test_migrate_lines_for_every_outcome_and_one_failure_does_not_stop_the_rest(capsys, tmp_path):
    def store(name, content=None):
        path = tmp_path / name / "sessions.json"
        path.parent.mkdir()
        if content is not None:
            path.write_text(content)
        return path

    good = store("good", '{"a": {"n": 1}}')
    json5 = store("json5", '{"a": {"n": 1,},}')
    empty = store("empty", "{}")
    invalid = store("invalid", "[]")
    missing = store("missing")
    failing = store("failing", '{"a": {}}')
    os.symlink(tmp_path, failing.parent / "sessions.d")
    code, out, err = run(capsys, "migrate", good, json5, empty, invalid, missing, failing)
    # No terminal: no progress bar; the missing store and the two not migrated are named.
    assert code == 1 and err.splitlines() == [
        f"sessionsd migrate: no session store at {missing}: neither sessions.json nor sessions.d "
        f"exists in {missing.parent}",
        "sessionsd migrate: 2 store(s) not migrated (failed=1, skipped_invalid=1): fix or move them "
        "aside, then run migrate again"]
    lines = out.splitlines()
    assert lines[0].startswith(f"migrated {good} (legacy 1, migrated 1) backup {good}.bak.")
    assert lines[1].startswith(f"migrated {json5} (legacy 1, migrated 1) backup ")
    assert lines[2:] == [
        "  warning: Legacy sessions.json is not strict JSON; it was read as JSON5.",
        f"skipped_empty {empty} (legacy 0, migrated 0)",
        f"skipped_invalid {invalid} (legacy 0, migrated 0)",
        "  warning: Legacy sessions.json does not contain an object store.",
        f"missing {missing} (legacy 0, migrated 0)",
        f"failed {failing} (legacy 0, migrated 0)",
        ("  warning: Migration failed: UnsafeStoreError: refusing to use symlinked directory session "
         f"store path: {failing.parent / 'sessions.d'}"),
    ]
    assert SessionStore(good).mode == "directory" and SessionStore(json5).mode == "directory"
    code, out, _ = run(capsys, "migrate", good, empty, "--json")
    assert code == 0
    assert [r["outcome"] for r in json.loads(out)] == ["already_directory", "skipped_empty"]


def test_migrate_state_dir_json_and_summary(capsys, tmp_path, store_path):
    (tmp_path / "agents" / "bad" / "sessions").mkdir(parents=True)
    (tmp_path / "agents" / "bad" / "sessions" / "sessions.json").write_text("[]")
    code, out, err = run(capsys, "--json", "migrate", "--state-dir", tmp_path)
    assert code == 1
    assert [(r["store_path"], r["outcome"]) for r in json.loads(out)] == [
        (str(tmp_path / "agents" / "bad" / "sessions" / "sessions.json"), "skipped_invalid"),
        (str(store_path), "migrated")]
    assert err.startswith("session-store migration summary: inspected=2 migrated=1 already_directory=0 "
                          "skipped_empty=0 skipped_invalid=1 missing=0 failed=0; issues: ")
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, "migrate", "--state-dir", tmp_path / "empty", "--json")
    assert (code, json.loads(out), err) == (0, [], "")


def test_migrate_shows_a_progress_bar_on_a_terminal(tmp_path):
    pytest.importorskip("pty")
    path = tmp_path / "agents" / "main" / "sessions" / "sessions.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({f"k{i}": {"i": i} for i in range(300)}))
    legacy_bytes = path.stat().st_size
    done, text = run_on_a_terminal([sys.executable, "-m", "sessionsd", "migrate", str(path)], timeout=60)
    shown = text.encode()
    assert done.returncode == 0 and done.stdout.startswith(f"migrated {path} (legacy 300, migrated 300)")
    text = shown.decode()
    assert "\rmigrating main [" in text
    # By bytes of the legacy file read; the last redraw says how long it took.
    size = f"{legacy_bytes / 1024:.1f} KiB"
    assert re.search(rf"migrating main \[{'#' * 30}\] 100% {re.escape(size)} in \d+\.\ds( \(.*/s\))?$",
                     text.rstrip()), text


def test_rollback_output_json_and_dry_run(capsys, tmp_path, store_path):
    other = tmp_path / "agents" / "two" / "sessions" / "sessions.json"
    other.parent.mkdir(parents=True)
    other.write_text('{"x": {}}')
    sessionsd.migrate(store_path)
    sessionsd.migrate(other)
    before = tree(tmp_path)
    code, out, _ = run(capsys, "rollback", "--state-dir", tmp_path, "--dry-run")
    assert code == 0 and out.splitlines() == [
        f"would restore {store_path}", f"would restore {other}", "Summary: restored 2, skipped 0"]
    code, out, _ = run(capsys, "rollback", "--store", store_path, "--dry-run", "--json")
    assert json.loads(out) == {"stores": [{"store": str(store_path), "action": "would restore"}],
                               "restored": 1, "skipped": 0, "failed": 0, "dry_run": True}
    assert tree(tmp_path) == before  # --dry-run changed nothing
    code, out, _ = run(capsys, "rollback", "--store", other, "--store", store_path, "--store", other)
    assert code == 0 and out.splitlines() == [
        f"restored {store_path}", f"restored {other}", "Summary: restored 2, skipped 0"]
    assert json.loads(store_path.read_text()) == SessionStore(store_path).load()
    code, out, _ = run(capsys, "rollback", "--store", store_path, "--json")
    assert json.loads(out)["stores"] == [{"store": str(store_path), "action": "skipped",
                                          "reason": "already a legacy store (no sessions.d to restore from)"}]
    (tmp_path / "none").mkdir()
    code, out, _ = run(capsys, "rollback", "--state-dir", tmp_path / "none", "--json")
    assert (code, json.loads(out)["stores"]) == (0, [])


def test_rollback_failure_of_one_store_exits_1_after_the_others(capsys, tmp_path, store_path):
    unsafe = tmp_path / "agents" / "unsafe" / "sessions" / "sessions.json"
    unsafe.parent.mkdir(parents=True)
    unsafe.write_text('{"x": {}}')
    sessionsd.migrate(store_path)
    sessionsd.migrate(unsafe)
    os.chmod(unsafe.parent / "sessions.d", 0o777)  # refused: others could write into it
    code, out, err = run(capsys, "rollback", "--state-dir", tmp_path)
    assert code == 1
    assert out.splitlines() == [f"restored {store_path}", "Summary: restored 1, skipped 0, failed 1"]
    assert err.startswith(f"sessionsd rollback: {unsafe}: refusing writable session-store directory")
    assert SessionStore(store_path).mode == "legacy"


def test_rollback_needs_a_target(capsys):
    code, out, err = run(capsys, "rollback", "--dry-run")
    assert code == 2 and out == "" and "give a store path (PATH or --store PATH) or --state-dir DIR" in err


def test_check_of_a_legacy_store(capsys, store_path):
    code, out, _ = run(capsys, "check", store_path)
    assert code == 0 and out.splitlines() == [f"store: {store_path} (legacy, 2 sessions)", "ok"]
    store_path.write_text('{"a": ')
    code, out, _ = run(capsys, "check", store_path, "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["legacy_error"]
    assert report["problems"][0].startswith("unreadable legacy sessions.json: ")
    assert store_path.read_text() == '{"a": '


def test_get_ls_info_on_a_legacy_store_and_bad_input(capsys, store_path):
    code, out, _ = run(capsys, "--json", "info", store_path)
    info = json.loads(out)
    assert (code, info["mode"], info["sessions"], info["version"], info["legacy_file"]) == (
        0, "legacy", 2, None, True)
    code, out, _ = run(capsys, "get", store_path, "A", "--json")
    assert code == 0 and json.loads(out) == {"updatedAt": 1}
    code, out, err = run(capsys, "get", store_path, "   ")
    assert code == 1 and out == "" and "empty" in err
    store_path.write_text("{nope")
    code, out, err = run(capsys, "ls", store_path)
    assert code == 1 and out == "" and err.startswith("sessionsd ls: legacy session store is not valid JSON")


def test_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")
    pyproject = os.path.join(os.path.dirname(__file__), os.pardir, "pyproject.toml")
    with open(pyproject, "rb") as fh:
        scripts = tomllib.load(fh)["project"]["scripts"]
    assert scripts["sessionsd"] == "sessionsd.cli:main"


def test_demo_json_and_bad_arguments(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--sessions", "60", "--dir", tmp_path / "work", "--json")
    report = json.loads(out)
    assert code == 0 and report["verified"] is True and report["sessions"] == 60
    assert report["migration"]["outcome"] == "migrated"
    assert [row["operation"] for row in report["rows"]] == [
        "read one session's updatedAt", "update one session", "load all sessions (cold)",
        "load all sessions (cached)"]
    assert all(row["legacy_seconds"] > 0 and row["directory_seconds"] > 0 for row in report["rows"])
    assert "verified: all 60 sessions read back identical" in err  # the human lines go to stderr
    code, out, err = run(capsys, "demo", "--dir", tmp_path / "work")
    assert code == 2 and "not empty" in err
    assert run(capsys, "demo", "--sessions", "0")[0] == 2
