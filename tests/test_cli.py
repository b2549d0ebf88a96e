"""The command line: output, --json and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

from sessionsd import encode_key
from sessionsd.cli import main


def test_encode_and_decode(capsys):
    assert main(["encode", "a", "agent:main:x"]) == 0
    assert capsys.readouterr().out.split() == ["session-YQ.json", encode_key("agent:main:x")]
    assert main(["decode", "session-YQ.json"]) == 0
    assert capsys.readouterr().out.strip() == "a"


def test_decode_of_a_non_entry_name_fails(capsys):
    assert main(["decode", "session-YQ==.json"]) == 1
    assert "not an entry file name" in capsys.readouterr().out


def test_json_output_parses_before_or_after_the_command(capsys):
    for argv in (["--json", "encode", "k"], ["encode", "k", "--json"]):
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out) == [{"key": "k", "name": encode_key("k")}]
    long_name = encode_key("x" * 130)
    assert main(["decode", "--json", long_name]) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": long_name, "kind": "hashed", "key": None}]


def test_scan(tmp_path, capsys):
    (tmp_path / encode_key("k")).write_text("{}")
    (tmp_path / ".dot").write_text("{}")
    assert main(["scan", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": encode_key("k"), "key": "k"}]


def test_scan_of_missing_directory_is_a_failure(tmp_path, capsys):
    assert main(["scan", str(tmp_path / "nope")]) == 1
    assert "No such file or directory" in capsys.readouterr().err


def test_bad_key_is_a_failure_with_a_clear_message(capsys):
    assert main(["encode", "   "]) == 1
    assert "empty after trimming" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["encode"]) == 2


def test_demo_runs_end_to_end(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sessionsd", "demo", "--sessions", "150",
                           "--dir", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "verified: all 150 sessions read back identical" in done.stdout
    assert "read one session's updatedAt" in done.stdout
    # --dir keeps the migrated store: it is a valid directory store.
    assert (tmp_path / "agents" / "main" / "sessions" / "sessions.d" / "state.json").is_file()
