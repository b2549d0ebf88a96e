"""CLI store subcommands: output, --json and exit codes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

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
    assert code == 0 and "mode:" in out and "directory" in out and "sessions:     2" in out
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
    code, out, _ = run(capsys, "migrate", "--state-dir", tmp_path / "empty")
    assert "No session stores found." in out


def test_rollback_commands(capsys, tmp_path, store_path):
    other = tmp_path / "agents" / "two" / "sessions" / "sessions.json"
    other.parent.mkdir(parents=True)
    other.write_text('{"x": {}}')
    sessionsd.migrate(store_path)
    code, out, _ = run(capsys, "rollback", "--store", store_path, "--store", other, "--dry-run")
    assert code == 0
    assert out.splitlines() == sorted([f"would restore {store_path}", f"would skip {other}"],
                                      key=lambda line: line.split()[-1]) + ["Summary: restored 1, skipped 1"]
    assert SessionStore(store_path).mode == "directory"  # dry run changed nothing
    code, out, _ = run(capsys, "rollback", "--state-dir", tmp_path)
    assert f"restored {store_path}" in out and out.strip().endswith("Summary: restored 1, skipped 1")
    assert SessionStore(store_path).mode == "legacy"
    code, out, _ = run(capsys, "rollback", "--state-dir", tmp_path / "none")
    assert out.strip() == "No session stores found."


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
    code, out, _ = run(capsys, "maintain", store_path, "--max-entries", "1")
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
