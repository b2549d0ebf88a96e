"""SessionStore: the API in both modes, the layout, bad input, no-scan hot paths."""

from __future__ import annotations

import json
import os
import stat
import struct

import pytest
from spec_rules import spec_name

import sessionsd
from sessionsd import (
    BlockedKeyError,
    CorruptStoreError,
    InvalidEntryError,
    InvalidKeyError,
    SessionStore,
    StoreClosedError,
    UnsafeStoreError,
)

name_for = spec_name


def directory_store(tmp_path, entries=None, **options) -> SessionStore:
    """A store in directory mode holding *entries* (migrated from legacy)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(entries or {"seed": {"updatedAt": 1}}))
    assert sessionsd.migrate(path).outcome == "migrated"
    store = SessionStore(path, **options)
    assert store.mode == "directory"
    return store


def tree(root) -> dict[str, bytes]:
    result = {}
    for base, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            if not os.path.islink(path) and stat.S_ISREG(os.lstat(path).st_mode):
                with open(path, "rb") as fh:
                    result[os.path.relpath(path, root)] = fh.read()
    return result


# -- the layout: a checker written from SPEC §2-§3 ------------------------------------

def check_layout(store_dir) -> dict[str, dict]:
    """Assert every SPEC rule on a directory store; returns its sessions."""
    root = store_dir / "sessions.d"
    entries_dir = root / "entries"
    for directory in (root, entries_dir):
        info = os.lstat(directory)
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    state = json.loads((root / "state.json").read_text())
    assert state["kind"] == "openclaw-session-store-directory"
    assert state["layoutVersion"] == 1 and type(state["layoutVersion"]) is int
    assert type(state["version"]) is int and state["version"] >= 1
    assert isinstance(state["updatedAt"], (int, float)) and not isinstance(state["updatedAt"], bool)
    assert stat.S_IMODE(os.lstat(root / "state.json").st_mode) == 0o600
    seq = (root / "seq").read_bytes()
    assert len(seq) >= 8 and struct.unpack("<Q", seq[:8])[0] % 2 == 0
    assert not (root / "commit.json").exists()
    sessions = {}
    for name in os.listdir(entries_dir):
        path = entries_dir / name
        assert not name.endswith(".tmp"), f"temp file left: {name}"
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        text = path.read_text()
        doc = json.loads(text)
        assert set(doc) == {"sessionKey", "entry"} and isinstance(doc["entry"], dict)
        assert name == name_for(doc["sessionKey"])
        assert text == json.dumps(doc, indent=2, ensure_ascii=False)
        if "updatedAt" in doc["entry"]:
            assert next(iter(doc["entry"])) == "updatedAt"
        sessions[doc["sessionKey"]] = doc["entry"]
    return sessions


def test_library_written_store_passes_the_spec_checker(tmp_path):
    store = directory_store(tmp_path, {"Agent:Main:Main": {"sessionId": "a", "updatedAt": 3}})
    store.put("agent:main:telegram:dm:1", {"sessionId": "b", "updatedAt": 5, "lastTo": "1"})
    store.put("agent:main:" + "x" * 200, {"updatedAt": 7})
    store.mutate(lambda s: s.update({"k2": {"x": [1, {"y": None}]}, "k3": {}}))
    store.delete("k3")
    sessions = check_layout(tmp_path)
    assert sessions == store.load()
    assert set(sessions) == {"agent:main:main", "agent:main:telegram:dm:1", "agent:main:" + "x" * 200, "k2"}


def test_hand_built_store_loads(tmp_path):
    """A store laid out from the SPEC rules alone (no seq, reference formatting)."""
    root = tmp_path / "sessions.d"
    entries = root / "entries"
    entries.mkdir(parents=True, mode=0o700)
    os.chmod(root, 0o700)
    (root / "state.json").write_text(json.dumps(
        {"kind": "openclaw-session-store-directory", "layoutVersion": 1, "version": 4,
         "updatedAt": 1711111111111, "writer": "reference"}, indent=2))
    long_key = "agent:main:subagent:" + "z" * 150
    docs = {
        "agent:main:main": {"sessionId": "m", "updatedAt": 10, "lastChannel": "telegram"},
        long_key: {"updatedAt": 12.5, "sessionId": "long"},
    }
    for key, entry in docs.items():
        (entries / name_for(key)).write_text(json.dumps({"sessionKey": key, "entry": entry}, indent=2))
    # The older raw form under an inline name.
    (entries / name_for("agent:main:raw")).write_text(json.dumps({"sessionId": "r", "updatedAt": 11}))
    for path in [root / "state.json", *entries.iterdir()]:
        os.chmod(path, 0o600)  # as the reference writes them
    store = SessionStore(tmp_path / "sessions.json")
    assert store.mode == "directory"
    loaded = store.load()
    assert loaded == {**docs, "agent:main:raw": {"sessionId": "r", "updatedAt": 11}}
    assert store.updated_at("AGENT:MAIN:MAIN") == 10
    assert store.updated_at(long_key) == 12.5
    assert store.updated_at("agent:main:raw") == 11
    assert store.get(long_key) == docs[long_key]
    assert store.summary()["agent:main:main"] == {"lastChannel": "telegram", "lastTo": None, "updatedAt": 10}
    store.put("agent:main:new", {"updatedAt": 1})  # writing into a reference store works
    assert store.get("agent:main:new") == {"updatedAt": 1}
    assert store.load()["agent:main:main"] == docs["agent:main:main"]


# -- API ------------------------------------------------------------------------------

@pytest.fixture(params=["legacy", "directory"])
def store(request, tmp_path):
    if request.param == "directory":
        return directory_store(tmp_path)
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"seed": {"updatedAt": 1}}))
    return SessionStore(path)


def test_crud_round_trip(store):
    store.put("Agent:Main:A", {"updatedAt": 5, "sessionId": "a"})
    assert store.mode == "directory"  # the first changing save of a legacy store migrates
    assert store.get(" agent:main:a ") == {"updatedAt": 5, "sessionId": "a"}
    assert store.updated_at("AGENT:MAIN:A") == 5
    assert store.patch("agent:main:a", {"lastTo": "x"}) == {"updatedAt": 5, "sessionId": "a", "lastTo": "x"}
    assert store.patch("agent:main:missing", {"lastTo": "x"}) is None
    assert store.get("agent:main:missing") is None and "agent:main:missing" not in store
    assert store.update_entry("agent:main:a", lambda e: {**e, "n": 1})["n"] == 1
    assert store.update_entry("agent:main:b", lambda e: {"created": e is None}) == {"created": True}
    assert store.update_entry("agent:main:b", lambda e: None) == {"created": True}
    assert store.delete("agent:main:b") is True and store.delete("agent:main:b") is False
    assert sorted(store.keys()) == ["agent:main:a", "seed"] and len(store) == 2
    assert store.summary()["agent:main:a"] == {"lastChannel": None, "lastTo": "x", "updatedAt": 5}


def test_load_returns_a_private_copy(store):
    store.put("k", {"updatedAt": 1, "nested": {"list": [1, 2]}})
    first = store.load()
    first["k"]["nested"]["list"].append(3)
    first["k2"] = {}
    assert store.load()["k"]["nested"]["list"] == [1, 2]
    assert "k2" not in store.load()
    got = store.get("k")
    got["nested"]["list"].clear()
    assert store.get("k")["nested"]["list"] == [1, 2]


def test_update_commits_the_diff_once(tmp_path):
    store = directory_store(tmp_path, {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}})
    state = tmp_path / "sessions.d" / "state.json"
    version = json.loads(state.read_text())["version"]
    before = tree(tmp_path / "sessions.d" / "entries")
    assert store.mutate(lambda s: "result") == "result"
    assert json.loads(state.read_text())["version"] == version  # unchanged: nothing written
    assert tree(tmp_path / "sessions.d" / "entries") == before

    def mutate(sessions):
        sessions["a"]["n"] = 10
        del sessions["b"]
        sessions["D"] = {"n": 4}

    store.mutate(mutate)
    assert json.loads(state.read_text())["version"] == version + 1
    assert store.load() == {"a": {"n": 10}, "c": {"n": 3}, "d": {"n": 4}}
    store.save({"x": {"n": 0}})
    assert store.load() == {"x": {"n": 0}}
    assert json.loads(state.read_text())["version"] == version + 2


def test_reentrant_calls_inside_mutators(store):
    def mutator(sessions):
        store.put("inner", {"updatedAt": 9})
        sessions["outer"] = {"updatedAt": 8}

    store.mutate(mutator)
    store.update_entry("outer", lambda e: store.put("inner2", {"v": 1}) or {**e, "touched": True})
    loaded = store.load()
    assert loaded["inner"] == {"updatedAt": 9} and loaded["inner2"] == {"v": 1}
    assert loaded["outer"] == {"updatedAt": 8, "touched": True}


def test_cache_follows_other_writers(tmp_path):
    store = directory_store(tmp_path, {"a": {"n": 1}})
    assert store.load() == {"a": {"n": 1}}
    other = SessionStore(tmp_path / "sessions.json", cache=False)
    other.put("a", {"n": 2})
    assert store.load() == {"a": {"n": 2}}
    # A hand edit plus a manual version bump (what a reference writer does).
    entry = tmp_path / "sessions.d" / "entries" / name_for("a")
    entry.write_text(json.dumps({"sessionKey": "a", "entry": {"n": 3}}))
    state_path = tmp_path / "sessions.d" / "state.json"
    state = json.loads(state_path.read_text())
    state["version"] += 1
    state_path.write_text(json.dumps(state))
    assert store.load() == {"a": {"n": 3}}


def test_lower_keys_off_keeps_case(tmp_path):
    store = directory_store(tmp_path, lower_keys=False)
    store.put("Agent:X", {"v": 1})
    store.put("agent:x", {"v": 2})
    assert store.get("Agent:X") == {"v": 1} and store.get("agent:x") == {"v": 2}


def test_bad_keys_and_entries(store):
    for bad in ("", "   ", "\ud800"):
        with pytest.raises(InvalidKeyError):
            store.put(bad, {})
        with pytest.raises(InvalidKeyError):
            store.get(bad)
    with pytest.raises(TypeError):
        store.updated_at(5)
    for blocked in ("__proto__", " PROTOTYPE ", "constructor"):
        with pytest.raises(BlockedKeyError):
            store.put(blocked, {})
        assert store.get(blocked) is None
    for bad_entry in ([], "x", None, {"s": {1, 2}}, {"o": object()}):
        with pytest.raises(InvalidEntryError):
            store.put("k", bad_entry)
    assert store.get("k") is None
    with pytest.raises(InvalidEntryError):
        store.mutate(lambda s: s.__setitem__("k", ["not", "a", "dict"]))
    assert store.get("k") is None


def test_closed_store_refuses_everything(tmp_path):
    with SessionStore(tmp_path / "sessions.json") as store:
        store.put("k", {})
    for call in (lambda: store.get("k"), lambda: store.put("k", {}), store.load,
                 lambda: store.updated_at("k"), lambda: store.mutate(lambda s: None)):
        with pytest.raises(StoreClosedError):
            call()


def test_updated_at_and_get_never_list_a_directory(tmp_path, monkeypatch):
    store = directory_store(tmp_path, {"agent:main:a": {"updatedAt": 7}, "raw": {"x": 1}})
    # Also a file in reference formatting (updatedAt not first): the full-parse path.
    (tmp_path / "sessions.d" / "entries" / name_for("agent:main:ref")).write_text(
        json.dumps({"sessionKey": "agent:main:ref", "entry": {"sessionId": "s", "updatedAt": 9}}, indent=2))

    def forbidden(*args, **kwargs):
        raise AssertionError("directory listed on a hot path")

    import sessionsd._directory

    monkeypatch.setattr(os, "scandir", forbidden)
    monkeypatch.setattr(os, "listdir", forbidden)
    monkeypatch.setattr(sessionsd._directory, "scan_entries", forbidden)
    monkeypatch.setattr(sessionsd._codec, "scan_entries", forbidden)
    assert store.updated_at("agent:main:a") == 7
    assert store.updated_at("agent:main:ref") == 9
    assert store.updated_at("agent:main:missing") is None
    assert store.get("AGENT:MAIN:A") == {"updatedAt": 7}
    assert store.get("agent:main:missing") is None


# -- legacy-mode rules ------------------------------------------------------------------

def test_fresh_install_starts_as_a_directory_store(tmp_path):
    path = tmp_path / "sessions.json"
    store = SessionStore(path)
    assert store.mode == "legacy" and store.load() == {}  # nothing there: reads create nothing
    store.put("a", {"n": 1})
    assert store.mode == "directory" and not path.exists()
    assert stat.S_IMODE(os.stat(tmp_path / "sessions.d").st_mode) == 0o700
    store.put("b", {"n": 2})
    assert list(tmp_path.glob("sessions.json.bak.*")) == []
    assert store.load() == {"a": {"n": 1}, "b": {"n": 2}}


def test_unchanged_legacy_save_writes_nothing(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text('{"a": {"n": 1}}')  # compact: not our formatting, same data
    before = os.stat(path)
    store = SessionStore(path)
    store.save({"A": {"n": 1}})
    store.mutate(lambda s: None)
    after = os.stat(path)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert store.mode == "legacy" and not (tmp_path / "sessions.d").exists()


def test_empty_save_keeps_legacy(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text('{"a": {"n": 1}}')
    SessionStore(path).save({})
    assert json.loads(path.read_text()) == {} and not (tmp_path / "sessions.d").exists()


def test_json5_and_case_variants_in_legacy(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text('{\n // comment\n "Agent:A": {"updatedAt": 1},\n "agent:a": {"updatedAt": 2,},\n}')
    store = SessionStore(path)
    assert store.load() == {"agent:a": {"updatedAt": 2}}
    assert store.updated_at("AGENT:A") == 2


def test_array_legacy_file_is_never_rewritten(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text("[1, 2]")
    store = SessionStore(path)
    assert store.load() == {}
    store.save({})
    assert path.read_text() == "[1, 2]"
    store.put("a", {"n": 1})
    assert store.mode == "directory" and store.load() == {"a": {"n": 1}}
    backups = list(tmp_path.glob("sessions.json.bak.*"))
    assert len(backups) == 1 and backups[0].read_text() == "[1, 2]"


def test_corrupt_legacy_file_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text('{"a": ')
    store = SessionStore(path)
    with pytest.raises(CorruptStoreError):
        store.load()
    with pytest.raises(CorruptStoreError):
        store.put("b", {})
    assert path.read_text() == '{"a": '


# -- bad input in directory mode -------------------------------------------------------------

def test_corrupt_and_impostor_entry_files_are_skipped_and_reported(tmp_path, caplog):
    store = directory_store(tmp_path, {"good": {"n": 1}})
    entries = tmp_path / "sessions.d" / "entries"
    bad = {
        name_for("empty"): b"",
        name_for("spaces"): b"   \n",
        name_for("truncated"): b'{"sessionKey": "truncated", "entry": {"n"',
        name_for("array"): b"[1, 2]",
        name_for("number"): b"5",
        name_for("copy"): b'{"sessionKey": "good", "entry": {"n": 666}}',
        name_for("__proto__"): b'{"sessionKey": "__proto__", "entry": {"polluted": true}}',
        "session-hash-" + "A" * 43 + ".json": b'{"raw": "form under a hashed name"}',
        ".hidden.json": b'{"sessionKey": "hidden", "entry": {}}',
        name_for("tmp") + ".1-2.tmp": b'{"sessionKey": "tmp", "entry": {}}',
        "session-Z29vZA==.json": b'{"sessionKey": "good", "entry": {}}',
    }
    for name, data in bad.items():
        (entries / name).write_bytes(data)
    (entries / name_for("adir")).mkdir()
    os.mkfifo(entries / name_for("fifo"))
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"sessionKey": "evil", "entry": {"stolen": True}}))
    os.symlink(outside, entries / name_for("evil"))
    with caplog.at_level("WARNING", logger="sessionsd"):
        assert store.load() == {"good": {"n": 1}}
    reasons = dict(store.skipped)
    assert reasons[name_for("empty")] == "empty file"
    assert reasons[name_for("truncated")] == "invalid JSON"
    assert reasons[name_for("array")] == "not a JSON object"
    assert reasons[name_for("copy")] == "sessionKey does not match the file name"
    assert reasons[name_for("__proto__")] == "blocked key"
    assert reasons[name_for("evil")] == "symlink" and reasons[".hidden.json"] == "dotfile"  # listed, never read
    assert "polluted" not in caplog.text and "stolen" not in caplog.text
    assert name_for("truncated") in caplog.text
    for key in ("empty", "truncated", "copy", "evil", "fifo", "adir", "__proto__"):
        assert store.get(key) is None and store.updated_at(key) is None


def test_symlinked_entry_is_never_followed_or_replaced(tmp_path):
    store = directory_store(tmp_path)
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"sessionKey": "evil", "entry": {"n": 1}}))
    link = tmp_path / "sessions.d" / "entries" / name_for("evil")
    os.symlink(outside, link)
    assert store.delete("evil") is False and os.path.islink(link)
    with pytest.raises(UnsafeStoreError):
        store.put("evil", {"n": 2})
    assert os.path.islink(link) and json.loads(outside.read_text())["entry"] == {"n": 1}


@pytest.mark.parametrize("mutate", [
    lambda s: s.update(kind="other"),
    lambda s: s.update(layoutVersion=2),
    lambda s: s.pop("layoutVersion"),
    lambda s: s.update(version=0),
    lambda s: s.update(version=1.5),
    lambda s: s.update(version="1"),
    lambda s: s.update(version=True),
    lambda s: s.pop("version"),
    lambda s: s.update(updatedAt="x"),
    lambda s: s.update(updatedAt=None),
])
def test_invalid_state_json_means_legacy(tmp_path, mutate):
    store = directory_store(tmp_path, {"dir": {"n": 1}})
    (tmp_path / "sessions.json").write_text('{"legacy": {"n": 2}}')
    state_path = tmp_path / "sessions.d" / "state.json"
    state = json.loads(state_path.read_text())
    mutate(state)
    state_path.write_text(json.dumps(state))
    assert store.mode == "legacy"
    assert store.load() == {"legacy": {"n": 2}}
    assert store.get("dir") is None


@pytest.mark.parametrize("how", ["missing", "empty", "garbage", "array", "symlink", "directory",
                                 "entries-missing", "entries-symlink", "root-symlink"])
def test_inactive_layouts_mean_legacy(tmp_path, how):
    store = directory_store(tmp_path / "a", {"dir": {"n": 1}})
    base = tmp_path / "a"
    (base / "sessions.json").write_text('{"legacy": {"n": 2}}')
    root = base / "sessions.d"
    state = root / "state.json"
    if how == "missing":
        state.unlink()
    elif how == "empty":
        state.write_text("")
    elif how == "garbage":
        state.write_text("{nope")
    elif how == "array":
        state.write_text("[]")
    elif how == "symlink":
        real = base / "real-state.json"
        real.write_text(state.read_text())
        state.unlink()
        os.symlink(real, state)
    elif how == "directory":
        state.unlink()
        state.mkdir()
    elif how == "entries-missing":
        os.rename(root / "entries", base / "moved")
    elif how == "entries-symlink":
        os.rename(root / "entries", base / "moved")
        os.symlink(base / "moved", root / "entries")
    elif how == "root-symlink":
        os.rename(root, base / "real-root")
        os.symlink(base / "real-root", root)
    if how in ("entries-symlink", "root-symlink"):
        # A symlinked store directory is refused loudly, never read through
        # and never silently replaced by the legacy file.
        with pytest.raises(sessionsd.UnsafeStoreError):
            store.load()
        return
    assert store.mode == "legacy" and store.load() == {"legacy": {"n": 2}}


@pytest.mark.parametrize("which", ["sessions.d", "sessions.d/entries"])
def test_unsafe_directories_are_refused(tmp_path, which):
    store = directory_store(tmp_path, {"a": {"n": 1}})
    target = tmp_path / which
    for change in (lambda: os.chmod(target, 0o777), lambda: os.chmod(target, 0o770),
                   lambda: os.chown(target, 65534, -1)):
        change()
        with pytest.raises(UnsafeStoreError, match="refusing"):
            store.load()
        with pytest.raises(UnsafeStoreError):
            store.put("b", {"n": 2})
        os.chmod(target, 0o700)
        os.chown(target, os.geteuid(), -1)
    assert store.load() == {"a": {"n": 1}}


def test_odd_keys_stay_inside_the_store(tmp_path):
    store = directory_store(tmp_path / "store")
    keys = ["../../escape", "a/b", "a\\b", "..", "a\x00b", "x" * 10_000, "é" * 61, " k "]
    for key in keys:
        store.put(key, {"k": key})
    for key in keys:
        assert store.get(key) == {"k": key}
    for base, _dirs, files in os.walk(tmp_path):
        for name in files:
            path = os.path.relpath(os.path.join(base, name), tmp_path)
            assert path.startswith("store" + os.sep), path
    assert sorted(os.listdir(tmp_path)) == ["store"]


def test_write_failure_propagates_and_keeps_the_old_state(tmp_path, monkeypatch):
    import errno

    import sessionsd._directory as directory

    store = directory_store(tmp_path, {"a": {"n": 1}})

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(directory, "replace", disk_full)
    with pytest.raises(OSError) as info:
        store.put("a", {"n": 2})
    assert info.value.errno == errno.ENOSPC and type(info.value) is OSError
    assert store.load() == {"a": {"n": 1}}
    # A rename failing after the commit record is written: the commit is
    # decided, so it ends whole -- old or new state, never a mix.
    with pytest.raises(OSError):
        store.mutate(lambda s: s.update({"a": {"n": 3}, "b": {"n": 4}}))
    monkeypatch.undo()
    assert store.load() in ({"a": {"n": 1}}, {"a": {"n": 3}, "b": {"n": 4}})
    store.put("c", {"n": 5})  # the next writer completes any recovery
    check_layout(tmp_path)  # no temp files, seq even, no commit record


def test_huge_entry_round_trips(tmp_path):
    store = directory_store(tmp_path)
    big = {"blob": "x" * 5_000_000, "updatedAt": 3}
    store.put("big", big)
    assert store.get("big") == big and store.updated_at("big") == 3
