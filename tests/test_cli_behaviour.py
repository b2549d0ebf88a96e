"""The command line as a user meets it (issue 14, CLI): a reader that stops
early, mistyped paths, exit codes that follow the summary, rollback's forms,
maintenance previews, units, help texts, escaped keys and library warnings.

Each behaviour is checked by running the console script (or ``python -m
sessionsd``) in a subprocess: a real pipe, a real terminal, real stderr.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from terminal import run_on_a_terminal

import sessionsd
from sessionsd import SessionStore
from sessionsd._units import parse_duration, parse_size
from sessionsd.cli import build_parser
from sessionsd.maintenance import Maintenance

_SCRIPT = shutil.which("sessionsd", path=os.path.dirname(sys.executable))
# The console script when installed beside this interpreter, else the module.
COMMAND = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "sessionsd"]


def cli(*argv, module: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sessionsd"] if module else COMMAND
    return subprocess.run([*command, *map(str, argv)], capture_output=True, text=True, timeout=120,
                          check=False)


def legacy_store(root, entries: dict, agent: str = "main"):
    path = root / "agents" / agent / "sessions" / "sessions.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture
def store_path(tmp_path):
    return legacy_store(tmp_path, {"b": {"updatedAt": 2}, "a": {"updatedAt": 1}})


# -- a reader that stops early ----------------------------------------------------------

@pytest.mark.parametrize("argv", [["ls"], ["--json", "ls"]], ids=["text", "json"])
@pytest.mark.parametrize("mode", ["legacy", "directory"])
def test_ls_into_a_pipe_closed_after_one_line_exits_0_quietly(tmp_path, argv, mode):
    # Far more than a pipe buffer (64 KiB), so the writer meets the closed pipe.
    path = legacy_store(tmp_path, {f"session-{i:06d}-{'x' * 40}": {"updatedAt": i} for i in range(6000)})
    if mode == "directory":
        sessionsd.migrate(path)
    child = subprocess.Popen([*COMMAND, *argv, str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    first = child.stdout.readline()
    child.stdout.close()  # what `| head -1` does
    err = child.stderr.read()
    child.stderr.close()
    assert child.wait(timeout=120) == 0
    assert first.strip() and err == b""  # no "[Errno 32] Broken pipe", no traceback


def test_help_into_a_closed_pipe_and_a_shell_pipeline(tmp_path, store_path):
    child = subprocess.Popen([*COMMAND, "maintain", "--help"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    child.stdout.close()
    assert child.wait(timeout=60) == 0 and child.stderr.read() == b""
    child.stderr.close()
    # The shell form from the issue, with the writer's status as the result.
    shell = shutil.which("bash")
    if shell is None:
        pytest.skip("no bash for PIPESTATUS")
    store_path.write_text(json.dumps({f"k{i:05d}{'y' * 60}": {"updatedAt": i} for i in range(3000)}))
    done = subprocess.run([shell, "-c", '"$@" | head -1; exit "${PIPESTATUS[0]}"', "sh",
                           *COMMAND, "ls", str(store_path)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("k00000")


# -- a path that names no store --------------------------------------------------------

@pytest.mark.parametrize("argv", [["info"], ["ls"], ["check"], ["check", "--fix"], ["get", "KEY"],
                                  ["maintain", "--max-entries", "1", "--mode", "enforce"], ["detect"]])
def test_a_mistyped_directory_is_an_error_naming_the_path(tmp_path, argv):
    path = tmp_path / "nonexist" / "x" / "sessions.json"
    command, rest = argv[0], argv[1:]
    done = cli(command, path, *rest)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (f"sessionsd {command}: no session store at {path}: "
                           f"no such directory: {path.parent}\n")
    assert not (tmp_path / "nonexist").exists()  # nothing was created


@pytest.mark.parametrize("command", ["info", "ls", "check", "get", "maintain"])
def test_a_directory_without_a_store_is_an_error(tmp_path, command):
    path = tmp_path / "sesions.json"  # a typo in the file name
    extra = {"get": ["k"], "maintain": ["--max-entries", "1"]}.get(command, [])
    done = cli(command, path, *extra)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"sessionsd {command}: no session store at {path}: neither sesions.json "
                                  f"nor sessions.d exists in {tmp_path}")
    assert os.listdir(tmp_path) == []


def test_the_directory_holding_a_store_names_it(store_path):
    done = cli("ls", store_path.parent)
    assert (done.returncode, done.stdout) == (0, "a\t1\nb\t2\n")
    done = cli("info", store_path.parent.parent)  # no store in it
    assert done.returncode == 1 and "no session store in directory" in done.stderr


def test_migrate_and_rollback_of_a_mistyped_path_fail_and_create_nothing(tmp_path, store_path):
    typo = tmp_path / "agnets" / "main" / "sessions" / "sessions.json"
    done = cli("migrate", store_path, typo)
    assert done.returncode == 1
    assert done.stdout.splitlines()[1] == f"missing {typo} (legacy 0, migrated 0)"
    assert f"sessionsd migrate: no session store at {typo}: no such directory" in done.stderr
    assert not (tmp_path / "agnets").exists()
    assert SessionStore(store_path).mode == "directory"  # the good one still migrated
    done = cli("rollback", typo)
    assert done.returncode == 1 and f"no session store at {typo}" in done.stderr


def test_migrate_state_dir_that_does_not_exist_or_holds_no_store(tmp_path):
    for command in ("migrate", "rollback"):
        done = cli(command, "--state-dir", tmp_path / "nope")
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr == f"sessionsd {command}: --state-dir {tmp_path / 'nope'}: no such directory\n"
        (tmp_path / "file").write_text("")
        done = cli(command, "--state-dir", tmp_path / "file")
        assert done.returncode == 1 and "not a directory" in done.stderr
    # An existing state directory with no store yet (a fresh install): exit 0, and it says where it looked.
    state = tmp_path / "state"
    state.mkdir()
    done = cli("migrate", "--state-dir", state)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"No session stores found (looked in {state / 'agents' / '*' / 'sessions'}).\n"
    assert cli("--json", "migrate", "--state-dir", state).stdout == "[]\n"
    # An agent directory without a store yet is listed as missing, and is not an error.
    (state / "agents" / "main" / "sessions").mkdir(parents=True)
    done = cli("migrate", "--state-dir", state)
    assert done.returncode == 0 and done.stdout.startswith("missing ")
    assert ("inspected=1 migrated=0 already_directory=0 skipped_empty=0 skipped_invalid=0 "
            "missing=1") in done.stderr
    done = cli("--json", "rollback", "--state-dir", state)
    assert done.returncode == 0 and json.loads(done.stdout)["stores"] == []


# -- migrate: the exit status follows the summary ----------------------------------------

def test_an_invalid_store_exits_1_every_run_and_says_why(tmp_path, store_path):
    bad = legacy_store(tmp_path, [], agent="bad")  # valid JSON, not an object store
    bad.write_text("{unparsable")
    for run in range(2):
        done = cli("migrate", "--state-dir", tmp_path)
        summary, reason = done.stderr.splitlines()
        assert "skipped_invalid=1 missing=0 failed=0" in summary
        # Exit 1 follows the summary's skipped_invalid count, and the last line says so.
        assert done.returncode == 1
        assert reason == ("sessionsd migrate: 1 store(s) not migrated (failed=0, skipped_invalid=1): "
                          "fix or move them aside, then run migrate again")
        outcome = "migrated" if run == 0 else "already_directory"
        assert [line.split()[0] for line in done.stdout.splitlines() if not line.startswith(" ")] == [
            "skipped_invalid", outcome]
    bad.write_text("{}")  # repaired: the next run is clean
    done = cli("migrate", "--state-dir", tmp_path)
    assert done.returncode == 0 and "failed=0" in done.stderr and "not migrated" not in done.stderr


def test_the_summary_names_an_invalid_store_once(tmp_path, store_path):
    bad = legacy_store(tmp_path, {}, agent="bad")
    bad.write_text("[]")
    done = cli("migrate", "--state-dir", tmp_path)
    issues = done.stderr.splitlines()[0].split("; issues: ", 1)[1]
    assert issues.count(str(bad)) == 1


# -- rollback: the same forms as migrate, and the reason for each skip ---------------------

def test_rollback_takes_positional_paths_like_migrate(tmp_path, store_path):
    other = legacy_store(tmp_path, {"x": {}}, agent="two")
    assert cli("migrate", store_path).returncode == 0
    done = cli("rollback", store_path, "--store", other, "--dry-run")
    assert done.returncode == 0 and done.stdout.splitlines() == [
        f"would restore {store_path}",
        f"would skip {other}: already a legacy store (no sessions.d to restore from)",
        "Summary: restored 1, skipped 1"]
    done = cli("rollback", store_path)
    assert done.returncode == 0 and done.stdout.splitlines()[0] == f"restored {store_path}"
    assert SessionStore(store_path).mode == "legacy"
    done = cli("--json", "rollback", "--dry-run", store_path)
    assert json.loads(done.stdout)["stores"] == [
        {"store": str(store_path), "action": "would skip",
         "reason": "already a legacy store (no sessions.d to restore from)"}]


def test_rollback_reasons_for_an_inactive_or_a_symlinked_directory_store(tmp_path, store_path):
    (store_path.parent / "sessions.d").mkdir()  # an empty, inactive sessions.d
    done = cli("rollback", "--dry-run", store_path)
    assert done.returncode == 0 and done.stdout.splitlines() == [
        f"would skip {store_path}: sessions.d is not an active directory store (see: sessionsd check)",
        "Summary: restored 0, skipped 1"]
    (store_path.parent / "sessions.d").rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, store_path.parent / "sessions.d")
    done = cli("rollback", "--dry-run", store_path)
    assert done.returncode == 1 and done.stdout == "Summary: restored 0, skipped 0, failed 1\n"
    assert done.stderr.startswith(f"sessionsd rollback: {store_path}: refusing to use symlinked directory")


# -- maintain: the real after-figures, one default mode ------------------------------------

def entry_bytes(path) -> dict[str, int]:
    entries = path.parent / "sessions.d" / "entries"
    return {sessionsd.decode_name(name): (entries / name).stat().st_size for name in os.listdir(entries)}


@pytest.mark.parametrize("mode", ["legacy", "directory"])
def test_maintain_dry_run_prints_the_figures_after_what_it_would_remove(tmp_path, mode):
    path = legacy_store(tmp_path, {f"k{i:02d}": {"updatedAt": i, "pad": "p" * i} for i in range(20)})
    if mode == "directory":
        sessionsd.migrate(path)
    done = cli("--json", "maintain", path, "--max-entries", "15", "--max-disk-bytes", "600", "--dry-run")
    assert done.returncode == 0, done.stderr
    preview = json.loads(done.stdout)
    assert preview["applied"] is False and preview["removed"]
    assert preview["entries_after"] == 20 - len(preview["removed"]) < preview["entries_before"]
    assert preview["bytes_after"] < preview["bytes_before"]
    if mode == "directory":
        sizes = entry_bytes(path)
        assert preview["bytes_before"] == sum(sizes.values())
        kept = [size for key, size in sizes.items() if key not in preview["removed"]]
        assert preview["bytes_after"] == sum(kept)
    text = cli("maintain", path, "--max-entries", "15", "--max-disk-bytes", "600", "--dry-run").stdout
    assert (f"(20 -> {preview['entries_after']} sessions, {preview['bytes_before']} -> "
            f"{preview['bytes_after']} bytes)") in text.splitlines()[0]
    # The preview is what enforcing then does.
    done = cli("--json", "maintain", path, "--max-entries", "15", "--max-disk-bytes", "600",
               "--mode", "enforce")
    applied = json.loads(done.stdout)
    assert applied["applied"] is True and applied["removed"] == preview["removed"]
    assert applied["entries_after"] == preview["entries_after"]
    assert applied["bytes_after"] == preview["bytes_after"]
    assert len(SessionStore(path).load()) == preview["entries_after"]


def test_maintain_mode_defaults_to_the_library_default(store_path):
    assert Maintenance().mode == "warn"
    maintain = build_parser()._subparsers._group_actions[0].choices["maintain"]
    assert maintain.get_default("mode") == Maintenance().mode
    done = cli("maintain", store_path, "--max-entries", "1")
    assert done.returncode == 0 and done.stdout.startswith("would remove 1 session(s)")
    assert "warn mode (the default) changes nothing; --mode enforce removes" in done.stderr
    assert len(SessionStore(store_path).load()) == 2  # warn changed nothing
    assert "default: warn" in cli("maintain", "--help").stdout


# -- durations and sizes ----------------------------------------------------------------

@pytest.mark.parametrize("text,seconds", [
    ("3weeks", 3 * 604800), ("3w", 3 * 604800), ("2d", 172800), ("12h", 43200), ("90m", 5400),
    ("30s", 30), ("3600", 3600), ("1.5h", 5400), ("2 days", 172800), ("1h30m", 5400), (" 45 MIN ", 2700),
    ("0", 0), ("1week", 604800),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text,size", [
    ("10MB", 10_000_000), ("10M", 10 * 2**20), ("1GiB", 2**30), ("512k", 512 * 1024), ("512K", 524288),
    ("4096", 4096), ("100b", 100), ("1.5k", 1536), ("2kB", 2000), ("1 G", 2**30), ("3TiB", 3 * 2**40),
])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "w", "3fortnights", "-5s", "nan", "inf", "3w2", "1e400"])
def test_bad_duration_names_the_accepted_forms(text):
    with pytest.raises(ValueError, match=r"not a duration: .* 30s, 90m, 12h, 2d, 3w"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["", "MB", "10XB", "-1", "1.2.3", "10 MiBs", "0x10"])
def test_bad_size_names_the_accepted_forms(text):
    with pytest.raises(ValueError, match=r"not a size: .* 512k, 10M, 1GiB .* 10MB"):
        parse_size(text)


def test_units_on_the_command_line(store_path):
    done = cli("--json", "maintain", store_path, "--prune-after", "3weeks", "--max-disk-bytes", "10MB")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pruned"] == ["a", "b"]  # updatedAt 1 and 2 ms: long stale
    for flag, value in (("--prune-after", "2d"), ("--prune-after", "90m"), ("--max-disk-bytes", "1GiB"),
                        ("--max-disk-bytes", "512k"), ("--max-disk-bytes", "4096")):
        assert cli("maintain", store_path, flag, value, "--dry-run").returncode == 0
    done = cli("maintain", store_path, "--prune-after", "3fortnights")
    assert done.returncode == 2
    assert "argument --prune-after: not a duration: '3fortnights' (give seconds (3600), or a number " \
           "with a unit: 30s, 90m, 12h, 2d, 3w" in done.stderr
    done = cli("maintain", store_path, "--max-disk-bytes", "10XB")
    assert done.returncode == 2 and "argument --max-disk-bytes: not a size: '10XB'" in done.stderr
    assert "512k, 10M, 1GiB (powers of 1024), 10kB, 10MB, 1GB (powers of 1000)" in done.stderr
    done = cli("migrate", store_path, "--max-bytes", "10MB")
    assert done.returncode == 0 and done.stdout.startswith("migrated ")
    done = cli("migrate", store_path, "--max-bytes", "ten")
    assert done.returncode == 2 and "not a size: 'ten'" in done.stderr
    assert "'none' for no limit" in done.stderr


# -- help texts ---------------------------------------------------------------------------

def test_help_is_plain_text_and_complete():
    done = cli("--help", module=True)
    assert done.returncode == 0
    assert not re.search(r"``|:func:|:mod:|:class:|\*[a-z]+\*", done.stdout), done.stdout
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert set(subcommands) >= {"info", "get", "ls", "detect", "migrate", "rollback", "check", "maintain",
                                "demo", "encode", "decode", "scan"}
    for name, sub in subcommands.items():
        assert sub.description and len(sub.description) > 20, name
        for action in sub._actions:
            if not action.option_strings:  # a positional
                assert action.help, f"{name} {action.dest} has no help"
            elif action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"
    done = cli("rollback", "--help")
    assert done.returncode == 0 and "PATH" in done.stdout and "--store PATH" in done.stdout


# -- output that stays one line per item ------------------------------------------------------

def test_ls_escapes_keys_with_a_newline_a_tab_or_a_backslash(tmp_path):
    keys = ["a\nb", "c\td", "back\\slash", "esc\x1bape", "plain", "ünïcode"]
    path = legacy_store(tmp_path, {key: {"updatedAt": i} for i, key in enumerate(keys)})
    for prepare in (lambda: None, lambda: sessionsd.migrate(path)):
        prepare()
        done = cli("ls", path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "a\\nb\t0", "back\\\\slash\t2", "c\\td\t1", "esc\\u001bape\t3", "plain\t4", "ünïcode\t5"]
        assert all(line.count("\t") == 1 for line in done.stdout.splitlines())
        assert [row["key"] for row in json.loads(cli("--json", "ls", path).stdout)] == sorted(keys)
        recent = cli("ls", path, "--recent", "6").stdout.splitlines()
        assert recent[-1] == "a\\nb\t0" and len(recent) == 6


def test_info_prints_key_colon_value_lines(store_path):
    for prepare in (lambda: None, lambda: sessionsd.migrate(store_path)):
        prepare()
        done = cli("info", store_path)
        assert done.returncode == 0
        lines = done.stdout.splitlines()
        assert all(re.fullmatch(r"[a-z_]+: +\S.*", line) for line in lines), lines
        fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines}
        assert fields["skipped_files"] == "0" and fields["sessions"] == "2"
        assert "skipped_files:0" not in done.stdout


# -- library log records -------------------------------------------------------------------

def test_library_warnings_are_prefixed_on_stderr_and_v_shows_info(tmp_path, store_path):
    # A legacy store beside a damaged sessions.d: the library warns on read.
    entries = store_path.parent / "sessions.d" / "entries"
    entries.mkdir(parents=True)
    (entries / sessionsd.encode_key("z")).write_text('{"updatedAt": 3}')
    (store_path.parent / "sessions.d" / "state.json").write_text("{")
    done = cli("ls", store_path)
    assert done.returncode == 0 and done.stdout == "a\t1\nb\t2\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sessionsd: warning: session store {store_path}: ")
    other = legacy_store(tmp_path, {"x": {}}, agent="two")
    assert cli("migrate", other).returncode == 0
    done = cli("rollback", other)
    assert done.returncode == 0 and done.stderr == ""  # INFO is not shown by default
    assert cli("migrate", other).returncode == 0
    done = cli("-v", "rollback", other)
    assert done.returncode == 0
    assert done.stderr.startswith(f"sessionsd: info: rolled back session store {other}")
    assert cli("rollback", "-v", "--store", other).returncode == 0  # -v after the command too


# -- progress on a terminal -------------------------------------------------------------------

def test_migrate_state_dir_shows_a_progress_bar_on_a_terminal(tmp_path):
    pytest.importorskip("pty")
    legacy_store(tmp_path, {f"k{i}": {"i": i} for i in range(300)}, agent="alpha")
    legacy_store(tmp_path, {f"k{i}": {"i": i} for i in range(200)}, agent="beta")
    done, text = run_on_a_terminal([*COMMAND, "migrate", "--state-dir", str(tmp_path)], timeout=60)
    shown = text.encode()
    assert done.returncode == 0, shown
    text = shown.decode()
    for agent in ("alpha", "beta"):
        assert re.search(rf"\rmigrating {agent} \[#{{30}}\] 100% [\d.]+ KiB in \d+\.\ds", text), text
    assert "session-store migration summary: inspected=2 migrated=2" in text
