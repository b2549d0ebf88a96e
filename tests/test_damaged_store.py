"""A damaged directory store is loud and repairable, never silently buried.

``sessions.d`` holding entry files while its ``state.json`` is missing,
garbage or of the wrong kind is *inactive* by the activity rule (SPEC §2,
shared with the reference), so the legacy file stays authoritative.  But its
sessions must not vanish silently: reads warn once, naming the store, what
is wrong and ``sessionsd check --fix PATH``; writes and migrations raise
instead of starting a fresh legacy store or moving the damaged one aside;
``check`` exits 1; ``check --fix`` restores a valid ``state.json`` (with a
version above any seen, so caching readers reload) where that is safe and
refuses where it is not.  A symlinked ``sessions.d`` or ``entries/`` raises
``UnsafeStoreError`` on read and write.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import time

import pytest

import sessionsd
from sessionsd import SessionStore, UnsafeStoreError
from sessionsd.check import check
from sessionsd.cli import main
from sessionsd.discovery import discover_stores, run_startup_migration
from sessionsd.errors import DamagedStoreError, SessionsdError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX symlinks and modes")

WORKERS = os.path.join(os.path.dirname(__file__), "workers.py")
SESSIONS = {"a": {"n": 1, "updatedAt": 10}, "b": {"n": 2, "updatedAt": 20}, "c": {"n": 3, "updatedAt": 30}}
VALID = {"kind": "openclaw-session-store-directory", "layoutVersion": 1, "version": 7, "updatedAt": 1}


def make_store(directory, sessions=SESSIONS):
    """A directory store holding *sessions* at state.json version 7."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sessions.json"
    path.write_text(json.dumps(sessions))
    assert sessionsd.migrate(path).outcome == "migrated"
    write_state(directory, json.dumps(VALID).encode())
    assert SessionStore(path).load() == sessions
    return path


def write_state(directory, data: bytes) -> None:
    state = directory / "sessions.d" / "state.json"
    temp = directory / "sessions.d" / "state.json.new"
    temp.write_bytes(data)
    os.chmod(temp, 0o600)
    os.replace(temp, state)


def state_version(directory) -> int:
    return json.loads((directory / "sessions.d" / "state.json").read_text())["version"]


def _missing(directory):
    (directory / "sessions.d" / "state.json").unlink()


def _garbage(directory):
    write_state(directory, b"{nope")


def _empty(directory):
    write_state(directory, b"")


def _array(directory):
    write_state(directory, b"[]")


def _wrong_kind(directory):
    write_state(directory, json.dumps({**VALID, "kind": "something-else"}).encode())


def _bad_version(directory):
    write_state(directory, json.dumps({**VALID, "version": "7"}).encode())


# Damage that check --fix repairs (entries/ is a real directory with entry files).
FIXABLE = [
    pytest.param(_missing, "state.json is missing", id="state-missing"),
    pytest.param(_garbage, "state.json is not valid JSON", id="state-garbage"),
    pytest.param(_empty, "state.json is empty", id="state-empty"),
    pytest.param(_array, "state.json is not a JSON object", id="state-array"),
    pytest.param(_wrong_kind, "state.json has the wrong kind ('something-else')", id="state-wrong-kind"),
    pytest.param(_bad_version, "state.json has an invalid version ('7')", id="state-version-string"),
]


def _root_symlink(directory):
    os.rename(directory / "sessions.d", directory.parent / "elsewhere")
    os.symlink(directory.parent / "elsewhere", directory / "sessions.d")
    return directory / "sessions.d"


def _entries_symlink(directory):
    os.rename(directory / "sessions.d" / "entries", directory.parent / "moved-entries")
    os.symlink(directory.parent / "moved-entries", directory / "sessions.d" / "entries")
    return directory / "sessions.d" / "entries"


SYMLINKS = [pytest.param(_root_symlink, id="sessions.d-symlink"),
            pytest.param(_entries_symlink, id="entries-symlink")]


def listing(directory) -> dict:
    found = {}
    for base, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(base, name)
            if name == "sessions.json.lock" or name.startswith(".sessions.json.lock"):
                continue
            rel = os.path.relpath(path, directory)
            if os.path.islink(path):
                found[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[rel] = "dir"
            else:
                with open(path, "rb") as fh:
                    found[rel] = fh.read()
    return found


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def damage_warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and "check --fix" in r.getMessage()]


# -- reads: one warning per distinct damage -----------------------------------------------

@pytest.mark.parametrize("damage,reason", FIXABLE)
def test_reads_warn_once_naming_the_store_and_the_fix(tmp_path, caplog, damage, reason):
    path = make_store(tmp_path)
    damage(tmp_path)
    store = SessionStore(path)
    with caplog.at_level(logging.WARNING, logger="sessionsd"):
        for _ in range(3):
            assert store.mode == "legacy"          # the activity rule is unchanged
            assert store.load() == {}
            assert store.get("a") is None and store.updated_at("a") is None
            assert SessionStore(path, cache=False).load() == {}
    [record] = damage_warnings(caplog)
    message = record.getMessage()
    assert str(tmp_path / "sessions.d") in message and reason in message
    assert f"sessionsd check --fix {path}" in message
    assert "session files" in message


def test_a_new_damage_warns_again(tmp_path, caplog):
    path = make_store(tmp_path)
    store = SessionStore(path)
    with caplog.at_level(logging.WARNING, logger="sessionsd"):
        _missing(tmp_path)
        store.load()
        store.load()
        _garbage(tmp_path)
        store.load()
        store.load()
    reasons = [r.getMessage() for r in damage_warnings(caplog)]
    assert len(reasons) == 2
    assert "state.json is missing" in reasons[0] and "not valid JSON" in reasons[1]


def test_inspection_is_cheap(tmp_path, monkeypatch):
    """No sessions.d: never inspected (one lstat).  A damaged one: inspected
    once, then remembered while nothing in it changes."""
    from sessionsd import damage

    calls = []
    real = damage.inspect_directory
    monkeypatch.setattr(damage, "inspect_directory", lambda *a, **k: calls.append(1) or real(*a, **k))
    legacy = tmp_path / "legacy" / "sessions.json"
    legacy.parent.mkdir()
    legacy.write_text(json.dumps(SESSIONS))
    store = SessionStore(legacy)
    for _ in range(50):
        assert store.load() == SESSIONS and store.get("a") == SESSIONS["a"]
    assert calls == []
    path = make_store(tmp_path / "damaged")
    _missing(tmp_path / "damaged")
    store = SessionStore(path)
    for _ in range(50):
        store.load()
        store.get("a")
    assert len(calls) == 1


# -- writes and migration: refused, nothing written or moved --------------------------------

@pytest.mark.parametrize("damage,reason", FIXABLE)
def test_writes_are_refused_and_nothing_moves(tmp_path, damage, reason):
    path = make_store(tmp_path)
    damage(tmp_path)
    before = listing(tmp_path)
    store = SessionStore(path)
    operations = {
        "put": lambda: store.put("d", {"n": 4}),
        "patch": lambda: store.patch("a", {"n": 9}),
        "update_entry": lambda: store.update_entry("d", lambda e: {"n": 4}),
        "delete": lambda: store.delete("a"),
        "update": lambda: store.mutate(lambda s: s.update(d={"n": 4})),
        "save": lambda: store.save({"d": {"n": 4}}),
        "migrate": lambda: sessionsd.migrate(path),
        "rollback": lambda: sessionsd.rollback(path),
        "rollback (dry run)": lambda: sessionsd.rollback(path, dry_run=True),
    }
    for label, operation in operations.items():
        with pytest.raises(DamagedStoreError) as info:
            operation()
        error = info.value
        assert isinstance(error, SessionsdError), label
        assert error.path == str(tmp_path / "sessions.d"), label
        assert reason in str(error) and f"sessionsd check --fix {path}" in str(error), label
        assert listing(tmp_path) == before, label  # no fresh legacy file, no orphan
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.path) == (DamagedStoreError, str(error), error.path)


def test_migration_with_a_legacy_file_beside_a_damaged_store_is_refused(tmp_path, caplog):
    """The reported sequence: a legacy file beside a damaged store must not
    be promoted over it (the sessions would go to sessions.d.orphan.*)."""
    path = make_store(tmp_path)
    _missing(tmp_path)
    path.write_text(json.dumps({"z": {"n": 26}}))
    found = sessionsd.detect(path)
    assert any("check --fix" in w for w in found.warnings), found.warnings
    with pytest.raises(DamagedStoreError):
        sessionsd.migrate(path)
    with pytest.raises(DamagedStoreError):
        SessionStore(path).put("y", {"n": 25})
    state = tmp_path / "state"
    os.makedirs(state / "agents" / "main")
    os.rename(tmp_path / "sessions.d", tmp_path / "keep")
    agent = state / "agents" / "main" / "sessions"
    agent.mkdir()
    os.rename(tmp_path / "keep", agent / "sessions.d")
    with caplog.at_level(logging.INFO, logger="sessionsd"):
        [result] = run_startup_migration(state)
    assert result.outcome == "failed"
    assert result.warnings[0].startswith("Migration failed: DamagedStoreError: directory store ")
    assert [p.name for p in agent.iterdir() if "sessions.json.lock" not in p.name] == ["sessions.d"]
    assert discover_stores(state) == [str(agent / "sessions.json")]


def test_legitimate_leftovers_are_still_moved_aside(tmp_path, caplog):
    """What holds no sessions is not damage: an empty sessions.d, one whose
    entries/ holds no entry files, a plain file.  No warning; the first
    changing save migrates and moves it aside, as before."""
    for case in ("empty", "no-entry-files", "plain-file", "entries-missing"):
        directory = tmp_path / case
        directory.mkdir()
        path = directory / "sessions.json"
        path.write_text(json.dumps({"a": {"n": 1}}))
        root = directory / "sessions.d"
        if case == "plain-file":
            root.write_text("junk")
        else:
            root.mkdir(mode=0o700)
            if case == "no-entry-files":
                (root / "entries").mkdir(mode=0o700)
                (root / "entries" / "junk.json").write_text("keep me")
                (root / "entries" / ".session-YQ.json.1-1.tmp").write_text("{}")
        with caplog.at_level(logging.WARNING, logger="sessionsd"):
            store = SessionStore(path)
            assert store.load() == {"a": {"n": 1}}
            assert damage_warnings(caplog) == []
            store.put("b", {"n": 2})
        assert store.mode == "directory" and store.load() == {"a": {"n": 1}, "b": {"n": 2}}
        assert len(list(directory.glob("sessions.d.orphan.*"))) == 1, case


# -- symlinks: UnsafeStoreError, as README promises --------------------------------------------

@pytest.mark.parametrize("make_link", SYMLINKS)
def test_symlinked_store_directories_are_refused(tmp_path, capsys, make_link):
    path = make_store(tmp_path)
    link = make_link(tmp_path)
    before = listing(tmp_path)
    store = SessionStore(path)
    for label, operation in {
        "load": store.load, "get": lambda: store.get("a"), "updated_at": lambda: store.updated_at("a"),
        "summary": store.summary, "len": lambda: len(store),
        "put": lambda: store.put("d", {"n": 4}), "delete": lambda: store.delete("a"),
        "update": lambda: store.mutate(lambda s: None), "migrate": lambda: sessionsd.migrate(path),
        "rollback": lambda: sessionsd.rollback(path),
    }.items():
        with pytest.raises(UnsafeStoreError) as info:
            operation()
        assert info.value.path == str(link), label
        assert "symlink" in str(info.value), label
        assert listing(tmp_path) == before, label
    code, out, _ = run(capsys, "check", path)
    assert code == 1 and "problem: damaged directory store: " in out and str(link) in out
    code, out, _ = run(capsys, "check", "--fix", path)
    assert code == 1 and "refused: not repaired: " in out and "symlink" in out
    assert listing(tmp_path) == before


# -- check and check --fix -------------------------------------------------------------------

@pytest.mark.parametrize("damage,reason", FIXABLE)
def test_check_reports_and_fix_restores(tmp_path, capsys, damage, reason):
    path = make_store(tmp_path)
    SessionStore(path, cache=False).put("d", {"n": 4, "updatedAt": 40})
    high = state_version(tmp_path)
    damage(tmp_path)
    code, out, _ = run(capsys, "check", path)
    assert code == 1
    assert f"problem: damaged directory store: directory store {tmp_path / 'sessions.d'} is not " \
           f"active ({reason}) but holds 4 session file(s) that are not being used" in out
    assert f"sessionsd check --fix {path}" in out
    assert out.strip().endswith("1 problem(s); run with --fix to repair what is safe to repair")
    code, out, _ = run(capsys, "--json", "check", path)
    report = json.loads(out)
    assert code == 1 and report["damaged_entries"] == 4 and report["damage_fixable"] is True

    code, out, _ = run(capsys, "check", "--fix", path)
    assert code == 0, out
    assert f"fixed: restored {tmp_path / 'sessions.d' / 'state.json'} (version " in out
    assert "the directory store with 4 session file(s) is active again" in out
    assert out.strip().endswith("ok")
    store = SessionStore(path)
    assert store.mode == "directory"
    assert store.load() == {**SESSIONS, "d": {"n": 4, "updatedAt": 40}}
    assert state_version(tmp_path) > high  # readers that cache on the version reload
    store.put("e", {"n": 5})
    assert sessionsd.migrate(path).outcome == "already_directory"
    kept = list((tmp_path / "sessions.d").glob("state.json.damaged.*"))
    assert len(kept) == (0 if damage is _missing else 1)


def test_fix_keeps_a_version_seen_only_in_the_damaged_file(tmp_path):
    path = make_store(tmp_path)
    """The lost version is unknown; the new one is above the clock in ms (no
    counter bumped once per write gets there) and above any version still
    recorded, however it was damaged."""
    far = 10 ** 14  # above the clock in ms
    write_state(tmp_path, json.dumps({**VALID, "kind": "nope", "version": far}).encode())
    report = check(path, fix=True)
    assert report.ok and state_version(tmp_path) == far + 1
    write_state(tmp_path, b'{"kind": "openclaw-session-store-directory", "version": %d, garbage' % (far * 3))
    check(path, fix=True)
    assert state_version(tmp_path) == far * 3 + 1
    _missing(tmp_path)
    check(path, fix=True)
    assert state_version(tmp_path) >= time.time_ns() // 1_000_000 - 60_000
    assert SessionStore(path).load() == SESSIONS


def test_fix_notes_a_legacy_file_written_meanwhile(tmp_path, capsys):
    path = make_store(tmp_path)
    _missing(tmp_path)
    path.write_text(json.dumps({"a": {"n": "newer", "updatedAt": 99}}))  # e.g. by an old process
    code, out, _ = run(capsys, "check", "--fix", path)
    assert code == 0 and f"note: a legacy {path} is there too" in out
    assert sessionsd.migrate(path).outcome == "migrated"
    assert SessionStore(path).load() == {**SESSIONS, "a": {"n": "newer", "updatedAt": 99}}


@pytest.mark.parametrize("breakage,refusal", [
    ("state-directory", "state.json is a directory"),
    ("state-symlink", "state.json is a symlink"),
    ("newer-layout", "layoutVersion 2"),
    ("world-writable", "refusing writable session-store directory"),
])
def test_fix_refuses_what_is_unsafe(tmp_path, capsys, breakage, refusal):
    path = make_store(tmp_path)
    state = tmp_path / "sessions.d" / "state.json"
    if breakage == "state-directory":
        state.unlink()
        state.mkdir()
    elif breakage == "state-symlink":
        (tmp_path / "real.json").write_text(json.dumps(VALID))
        state.unlink()
        os.symlink(tmp_path / "real.json", state)
    elif breakage == "newer-layout":
        write_state(tmp_path, json.dumps({**VALID, "layoutVersion": 2}).encode())
    else:
        _missing(tmp_path)
        os.chmod(tmp_path / "sessions.d", 0o777)
    before = listing(tmp_path)
    with pytest.raises(DamagedStoreError):
        SessionStore(path).put("d", {"n": 4})
    code, out, _ = run(capsys, "check", "--fix", path)
    assert code == 1 and "refused: not repaired: " in out and refusal in out, out
    assert "problem: damaged directory store" in out
    assert listing(tmp_path) == before


# -- real processes ----------------------------------------------------------------------------

def test_other_processes_see_the_damage_and_the_repair(tmp_path):
    """A child's put is refused with DamagedStoreError; the CLI (a real
    `python -m sessionsd` process) reports it, repairs it, and the child's
    next put lands in the directory store."""
    path = make_store(tmp_path)
    _garbage(tmp_path)

    def child(key: str) -> dict:
        proc = subprocess.run([sys.executable, WORKERS, "try_put", json.dumps([str(path), key])],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def cli(*argv) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sessionsd", *argv], capture_output=True, text=True,
                              timeout=60)

    result = child("d")
    assert result["error"] == "DamagedStoreError" and "check --fix" in result["message"]
    assert not path.exists() and not list(tmp_path.glob("sessions.d.orphan.*"))
    checked = cli("check", str(path))
    assert checked.returncode == 1 and "damaged directory store" in checked.stdout
    fixed = cli("check", "--fix", str(path))
    assert fixed.returncode == 0 and "fixed: restored" in fixed.stdout, fixed.stdout + fixed.stderr
    assert child("d") == {"error": None}
    assert SessionStore(path).load() == {**SESSIONS, "d": {"from": "child"}}
    rolled = cli("rollback", "--store", str(path))
    assert rolled.returncode == 0 and f"restored {path}" in rolled.stdout
