"""The on-disk layout (SPEC §2, §3), checked from the SPEC rules alone.

Nothing here asks the library how a name or a document should look: the
expected file names are computed with ``base64``/``hashlib`` and the checker
reads the files with the stdlib ``json``.  Three directions:

1. a store built by hand, the way the reference writes it, loads completely;
2. every store the library writes (put, patch, update, save, migrate, save-time
   migration, rollback) passes :func:`check_directory_store`;
3. entry files are 2-space indented JSON with ``updatedAt`` first.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import struct
from pathlib import Path

import pytest
from spec_rules import now_ms, spec_name

import sessionsd
from sessionsd import SessionStore

STATE_KIND = "openclaw-session-store-directory"
STATE_FIELDS = {"kind", "layoutVersion", "version", "updatedAt"}
BLOCKED = {"__proto__", "prototype", "constructor"}


# -- the SPEC rules, written out independently of the library -----------------------

def write_json(path: Path, value, *, indent=2) -> None:
    """Write JSON as the reference does (JSON.stringify(v, null, 2)), mode 0600."""
    path.write_text(json.dumps(value, indent=indent, ensure_ascii=False), encoding="utf-8")
    os.chmod(path, 0o600)


def mode_of(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def file_bytes(directory: Path) -> dict[str, bytes]:
    """name -> bytes of every regular file below *directory* (relative names)."""
    result = {}
    for base, _dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                result[os.path.relpath(path, directory)] = Path(path).read_bytes()
    return result


def check_directory_store(store_dir: Path, *, since_ms: int | None = None,
                          require_seq: bool = True) -> dict[str, dict]:
    """Assert every SPEC §2/§3 rule on the directory store beside
    ``store_dir/sessions.json``; returns ``{sessionKey: entry}``."""
    root = store_dir / "sessions.d"
    entries_dir = root / "entries"

    # Directories: real directories (not symlinks), mode 0700.
    for directory in (root, entries_dir):
        info = os.lstat(directory)
        assert stat.S_ISDIR(info.st_mode), f"{directory} is not a real directory"
        assert stat.S_IMODE(info.st_mode) == 0o700, f"{directory} mode {stat.S_IMODE(info.st_mode):o}"

    # state.json: a regular file, 0600, exactly the four fields with exact types.
    state_path = root / "state.json"
    info = os.lstat(state_path)
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    state = json.loads(state_path.read_bytes())
    assert isinstance(state, dict)
    assert set(state) == STATE_FIELDS, f"state.json fields: {sorted(state)}"
    assert type(state["kind"]) is str and state["kind"] == STATE_KIND
    assert type(state["layoutVersion"]) is int and state["layoutVersion"] == 1
    assert type(state["version"]) is int and state["version"] >= 1
    assert type(state["updatedAt"]) in (int, float) and math.isfinite(state["updatedAt"])
    if since_ms is not None:  # epoch milliseconds, written during the test
        assert since_ms - 1000 <= state["updatedAt"] <= now_ms() + 1000, state["updatedAt"]

    # Nothing in sessions.d but the layout's own files: no temp file, no
    # leftover commit record.  ``stats`` is this library's own addition (the
    # entry count and bytes maintenance reads instead of listing entries/),
    # and so are ``index`` and ``index.log`` (the listing index);
    # the reference ignores unknown files there.
    allowed = {"entries", "state.json", "seq", "stats", "index", "index.log", "legacy-file"}
    assert set(os.listdir(root)) <= allowed, f"unexpected files in sessions.d: {sorted(set(os.listdir(root)) - allowed)}"
    assert not (root / "commit.json").exists()

    # seq: the seqlock counter, even (no commit in flight), 0600.  Its exact
    # size (8 bytes, SPEC §4) has its own test below, so that a deviation there
    # does not hide every other rule this checker enforces.
    seq_path = root / "seq"
    if require_seq or seq_path.exists():
        info = os.lstat(seq_path)
        assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        seq = seq_path.read_bytes()
        assert len(seq) >= 8, f"seq is {len(seq)} bytes"
        assert struct.unpack("<Q", seq[:8])[0] % 2 == 0, "seq is odd: a commit was left in flight"

    stats_path = root / "stats"
    if stats_path.exists():
        info = os.lstat(stats_path)
        assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert len(stats_path.read_bytes()) == 48, "stats: seq, version, count, bytes, last sweep, entries/ mtime"

    # Entry files: named by the codec rule from their own sessionKey, exactly
    # {"sessionKey", "entry"} with an object entry, mode 0600, no dotfiles.
    sessions: dict[str, dict] = {}
    for name in sorted(os.listdir(entries_dir)):
        path = entries_dir / name
        assert not name.startswith("."), f"dotfile (temp file?) left in entries/: {name}"
        info = os.lstat(path)
        assert stat.S_ISREG(info.st_mode), f"{name} is not a regular file"
        assert stat.S_IMODE(info.st_mode) == 0o600, f"{name} mode {stat.S_IMODE(info.st_mode):o}"
        doc = json.loads(path.read_bytes())
        assert type(doc) is dict and set(doc) == {"sessionKey", "entry"}, f"{name}: {sorted(doc)}"
        key, entry = doc["sessionKey"], doc["entry"]
        assert type(key) is str and key and key == key.strip()
        assert type(entry) is dict
        assert name == spec_name(key), f"{name} does not encode {key!r}"
        assert key not in BLOCKED
        assert key not in sessions
        if "updatedAt" in entry:
            assert next(iter(entry)) == "updatedAt", f"{name}: updatedAt is not the entry's first field"
        sessions[key] = entry

    # No staging directory left beside the store.
    leftovers = [n for n in os.listdir(store_dir) if n.startswith("sessions.d.staging-")]
    assert not leftovers, leftovers
    return sessions


# -- 1. a store built by hand from the SPEC rules loads completely ----------------------

INLINE_120 = "agent:main:" + "x" * 109                     # exactly 120 UTF-8 bytes: inline
HASHED_121 = "agent:main:" + "x" * 110                     # 121 bytes: hashed
MULTIBYTE_120 = "é" * 60                                   # 120 bytes in 60 characters: inline
MULTIBYTE_121 = "é" * 60 + "a"                             # 121 bytes: hashed
LONG_KEY = "agent:main:cron:" + "5f0c2a4e-8a5b-4d3c-9b1e-2f6d7c8e9a0b" * 4 + ":run:1"
URLSAFE_KEY = "agent:main:??>~~~"                          # base64 needs '-' / '_' here


def build_reference_store(store_dir: Path, version: int = 7) -> dict[str, dict]:
    """Lay out a directory store by hand, as the reference code writes one:
    2-space JSON, updatedAt wherever the caller put it, no seq file."""
    root = store_dir / "sessions.d"
    entries = root / "entries"
    os.mkdir(root, 0o700)
    os.mkdir(entries, 0o700)
    os.chmod(root, 0o700)
    os.chmod(entries, 0o700)
    write_json(root / "state.json", {"kind": STATE_KIND, "layoutVersion": 1,
                                     "version": version, "updatedAt": 1711111111111})
    documents = {
        "agent:main:main": {"sessionId": "m", "updatedAt": 1711111111000,
                            "lastChannel": "telegram", "lastTo": "821071206"},
        "agent:main:telegram:dm:821071206": {"updatedAt": 1711111112000, "sessionId": "t",
                                             "skillsSnapshot": {"skills": [{"name": "x", "n": 1}]}},
        "agent:main:telegram:dm:привет": {"sessionId": "cyr", "updatedAt": 1711111113000.5},
        "agent:main:slack:😀": {"sessionId": "emoji"},
        INLINE_120: {"sessionId": "inline-120", "updatedAt": 1},
        HASHED_121: {"sessionId": "hashed-121", "updatedAt": 2},
        MULTIBYTE_120: {"sessionId": "mb-120", "updatedAt": 3},
        MULTIBYTE_121: {"sessionId": "mb-121", "updatedAt": 4},
        LONG_KEY: {"sessionId": "long", "lastChannel": "cron", "updatedAt": 5},
        URLSAFE_KEY: {"sessionId": "urlsafe", "updatedAt": 6},
    }
    for key, entry in documents.items():
        write_json(entries / spec_name(key), {"sessionKey": key, "entry": entry})
    # The older raw form: the file is the entry itself, under an inline name.
    raw_key = "agent:main:legacy-raw"
    raw_entry = {"sessionId": "raw", "lastTo": "42", "updatedAt": 1711111114000}
    write_json(entries / spec_name(raw_key), raw_entry)
    return {**documents, raw_key: raw_entry}


def test_the_codec_names_files_as_the_spec_says():
    """The SPEC §3 example and the corners the hand-built store relies on;
    the library's codec must agree with the rule written out here."""
    assert spec_name("a") == "session-YQ.json"
    assert not spec_name(INLINE_120).startswith("session-hash-")
    assert spec_name(HASHED_121).startswith("session-hash-")
    assert not spec_name(MULTIBYTE_120).startswith("session-hash-")
    assert spec_name(MULTIBYTE_121).startswith("session-hash-")
    assert spec_name(LONG_KEY).startswith("session-hash-")
    middle = spec_name(URLSAFE_KEY)[len("session-"):-len(".json")]
    assert set(middle) & {"-", "_"}, middle
    keys = ["a", INLINE_120, HASHED_121, MULTIBYTE_120, MULTIBYTE_121, LONG_KEY, URLSAFE_KEY,
            "agent:main:telegram:dm:привет", "agent:main:slack:😀"]
    for key in keys:
        name = spec_name(key)
        assert "=" not in name and (len(name) == 61 if name.startswith("session-hash-") else True)
        assert sessionsd.encode_key(key) == name, key
        assert sessionsd.encode_key("  " + key + "\n") == name, key  # trimmed first


def test_hand_built_reference_store_loads_completely(tmp_path):
    expected = build_reference_store(tmp_path)
    before = file_bytes(tmp_path / "sessions.d")
    store = SessionStore(tmp_path / "sessions.json")

    assert store.mode == "directory"
    assert store.load() == expected
    assert store.skipped == []
    assert len(store) == len(expected)
    assert sorted(store.keys()) == sorted(expected)
    for key, entry in expected.items():
        assert store.get(key) == entry, key
        assert store.get("  " + key.upper() + "\n") == entry, key  # normalised to the stored key
        updated = store.updated_at(key)
        assert updated == entry.get("updatedAt") and type(updated) is type(entry.get("updatedAt")), key
    summary = store.summary()
    assert summary["agent:main:main"] == {"lastChannel": "telegram", "lastTo": "821071206",
                                          "updatedAt": 1711111111000}
    assert summary[LONG_KEY] == {"lastChannel": "cron", "lastTo": None, "updatedAt": 5}
    assert summary["agent:main:legacy-raw"] == {"lastChannel": None, "lastTo": "42",
                                                "updatedAt": 1711111114000}
    assert store.get("agent:main:missing") is None
    assert store.updated_at("agent:main:missing") is None
    # Reading writes nothing (not even a seq file) into a reference store,
    # except this library's derived listing index (sessionsd.index), which
    # a listing stores when it can take the lock without waiting.
    after = file_bytes(tmp_path / "sessions.d")
    assert set(after) - set(before) <= {"index", "index.log"}
    assert {name: data for name, data in after.items() if name in before} == before


def test_hand_built_store_accepts_writes_and_keeps_foreign_files(tmp_path):
    expected = build_reference_store(tmp_path)
    before = file_bytes(tmp_path / "sessions.d" / "entries")
    store = SessionStore(tmp_path / "sessions.json")
    store.put("agent:main:new", {"sessionId": "new", "updatedAt": 9})

    entries = tmp_path / "sessions.d" / "entries"
    new_doc = json.loads((entries / spec_name("agent:main:new")).read_bytes())
    assert new_doc == {"sessionKey": "agent:main:new", "entry": {"sessionId": "new", "updatedAt": 9}}
    after = file_bytes(entries)
    del after[spec_name("agent:main:new")]
    assert after == before  # the reference-written files were not touched
    assert SessionStore(tmp_path / "sessions.json", cache=False).load() == {
        **expected, "agent:main:new": {"sessionId": "new", "updatedAt": 9}}


def test_hand_built_store_ignores_files_the_rules_exclude(tmp_path):
    expected = build_reference_store(tmp_path)
    entries = tmp_path / "sessions.d" / "entries"
    good_name = spec_name("agent:main:main")
    good_bytes = (entries / good_name).read_bytes()
    impostors = {
        # A raw entry under a hashed name: its key is unknowable.
        spec_name("h" * 200): json.dumps({"sessionId": "raw-hashed"}),
        # A copy of a document under another key's name.
        spec_name("agent:main:copy"): good_bytes.decode(),
        # Documents whose sessionKey does not encode to their (hashed) name.
        spec_name("z" * 130): json.dumps({"sessionKey": "z" * 131, "entry": {}}),
        # Non-canonical names: padding, a dotfile, a temp file, the wrong case of prefix.
        "session-YQ==.json": json.dumps({"sessionKey": "a", "entry": {}}),
        "." + spec_name("agent:main:dot"): json.dumps({"sessionKey": "agent:main:dot", "entry": {}}),
        good_name + ".1234.tmp": good_bytes.decode(),
        "Session-YQ.json": json.dumps({"sessionKey": "a", "entry": {}}),
        # Bad contents under valid names.
        spec_name("agent:main:empty"): "",
        spec_name("agent:main:array"): "[1, 2]",
        spec_name("agent:main:invalid"): "{\"sessionKey\": ",
        # Blocked keys are skipped on load.
        spec_name("__proto__"): json.dumps({"sessionKey": "__proto__", "entry": {"polluted": True}}),
        spec_name("constructor"): json.dumps({"polluted": True}),
    }
    for name, text in impostors.items():
        (entries / name).write_text(text, encoding="utf-8")
    # A symlink and a directory with entry names are not entries either.
    os.symlink(entries / good_name, entries / spec_name("agent:main:link"))
    os.mkdir(entries / spec_name("agent:main:dir"))

    store = SessionStore(tmp_path / "sessions.json")
    assert store.load() == expected
    for key in ("agent:main:copy", "agent:main:link", "agent:main:dir", "agent:main:empty",
                "agent:main:array", "agent:main:invalid", "z" * 131,
                "agent:main:dot", "__proto__", "constructor"):
        assert store.get(key) is None, key
        assert store.updated_at(key) is None, key
    skipped = {name for name, _reason in store.skipped}
    assert {spec_name("agent:main:empty"), spec_name("agent:main:array"),
            spec_name("agent:main:invalid")} <= skipped
    assert not skipped & {spec_name(key) for key in expected}


# -- the activity rule (SPEC §2): only a valid layout is authoritative ------------------

def _valid_state() -> dict:
    return {"kind": STATE_KIND, "layoutVersion": 1, "version": 3, "updatedAt": 1711111111111}


STATE_VARIANTS = {
    "version-string": {"version": "3"},
    "version-bool": {"version": True},
    "version-zero": {"version": 0},
    "version-negative": {"version": -1},
    "version-missing": {"version": None},
    "kind-other": {"kind": "openclaw-session-store"},
    "kind-missing": {"kind": None},
    "layout-2": {"layoutVersion": 2},
    "layout-string": {"layoutVersion": "1"},
    "updatedAt-string": {"updatedAt": "1711111111111"},
    "updatedAt-null": {"updatedAt": None},
    "updatedAt-bool": {"updatedAt": True},
}


def _legacy_and_reference(tmp_path: Path) -> None:
    (tmp_path / "sessions.json").write_text(json.dumps({"legacy": {"from": "legacy"}}))
    build_reference_store(tmp_path)


@pytest.mark.parametrize("variant", sorted(STATE_VARIANTS))
def test_invalid_state_json_leaves_the_legacy_file_authoritative(tmp_path, variant):
    _legacy_and_reference(tmp_path)
    state = _valid_state()
    for field, value in STATE_VARIANTS[variant].items():
        if value is None:
            del state[field]
        else:
            state[field] = value
    write_json(tmp_path / "sessions.d" / "state.json", state)
    store = SessionStore(tmp_path / "sessions.json")
    assert store.mode == "legacy"
    assert store.load() == {"legacy": {"from": "legacy"}}
    assert store.get("agent:main:main") is None


@pytest.mark.parametrize("how", ["no-state", "state-not-json", "state-array", "state-symlink",
                                 "state-directory", "no-entries", "entries-file",
                                 "entries-symlink", "root-symlink"])
def test_inactive_layouts_leave_the_legacy_file_authoritative(tmp_path, how):
    _legacy_and_reference(tmp_path)
    root = tmp_path / "sessions.d"
    state = root / "state.json"
    if how == "no-state":
        state.unlink()
    elif how == "state-not-json":
        state.write_text("{\"kind\": ")
    elif how == "state-array":
        state.write_text(json.dumps([_valid_state()]))
    elif how == "state-symlink":
        real = tmp_path / "real-state.json"
        write_json(real, _valid_state())
        state.unlink()
        os.symlink(real, state)
    elif how == "state-directory":
        state.unlink()
        state.mkdir()
    elif how in ("no-entries", "entries-file", "entries-symlink"):
        moved = tmp_path / "real-entries"
        os.rename(root / "entries", moved)
        if how == "entries-file":
            (root / "entries").write_text("")
        elif how == "entries-symlink":
            os.symlink(moved, root / "entries")
    elif how == "root-symlink":
        os.rename(root, tmp_path / "real-sessions.d")
        os.symlink(tmp_path / "real-sessions.d", root)
    store = SessionStore(tmp_path / "sessions.json")
    assert store.mode == "legacy"
    if how in ("entries-symlink", "root-symlink"):
        with pytest.raises(sessionsd.UnsafeStoreError):  # refused loudly, never read through
            store.load()
        return
    assert store.load() == {"legacy": {"from": "legacy"}}


def test_unknown_state_fields_are_ignored_and_float_updated_at_is_accepted(tmp_path):
    expected = build_reference_store(tmp_path)
    write_json(tmp_path / "sessions.d" / "state.json",
               {**_valid_state(), "updatedAt": 1711111111111.25, "writer": "reference", "extra": [1]})
    store = SessionStore(tmp_path / "sessions.json")
    assert store.mode == "directory"
    assert store.load() == expected


# -- 2. what the library writes passes the checker ------------------------------------

def test_library_written_store_passes_the_checker_through_every_write_path(tmp_path):
    since = now_ms()
    path = tmp_path / "sessions.json"
    store = SessionStore(path)
    store.put("Agent:Main:Main", {"sessionId": "m", "lastChannel": "telegram", "updatedAt": 1})
    assert store.mode == "directory"  # a new store starts as a directory store
    store.put("agent:main:telegram:dm:ПРИВЕТ", {"sessionId": "cyr", "updatedAt": 2})
    sessions = check_directory_store(tmp_path, since_ms=since)
    assert sessions == {
        "agent:main:main": {"updatedAt": 1, "sessionId": "m", "lastChannel": "telegram"},
        "agent:main:telegram:dm:привет": {"updatedAt": 2, "sessionId": "cyr"},
    }

    versions = [json.loads((tmp_path / "sessions.d" / "state.json").read_bytes())["version"]]

    def step(action):
        action()
        result = check_directory_store(tmp_path, since_ms=since)
        versions.append(json.loads((tmp_path / "sessions.d" / "state.json").read_bytes())["version"])
        assert result == SessionStore(path, cache=False).load()
        return result

    step(lambda: store.put(LONG_KEY, {"sessionId": "long", "updatedAt": 3}))
    step(lambda: store.put(MULTIBYTE_121, {"sessionId": "mb"}))
    step(lambda: store.patch("agent:main:main", {"lastTo": "x", "updatedAt": 4}))
    step(lambda: store.update_entry(URLSAFE_KEY, lambda e: {"created": e is None, "updatedAt": 5}))
    step(lambda: store.delete(MULTIBYTE_121))

    def mutate(all_sessions):
        all_sessions["agent:main:telegram:dm:привет"]["updatedAt"] = 6
        del all_sessions[LONG_KEY]
        all_sessions["Agent:Main:Added"] = {"sessionId": "added", "updatedAt": 7}
        all_sessions[HASHED_121] = {"sessionId": "hashed"}

    step(lambda: store.mutate(mutate))
    final = step(lambda: store.save({**store.load(), "agent:main:saved": {"updatedAt": 8}}))
    assert versions == sorted(versions), versions  # the version never goes back
    assert set(final) == {"agent:main:main", "agent:main:telegram:dm:привет", URLSAFE_KEY,
                          "agent:main:added", HASHED_121, "agent:main:saved"}
    assert final["agent:main:main"] == {"updatedAt": 4, "sessionId": "m", "lastChannel": "telegram",
                                        "lastTo": "x"}
    # A new store never had a legacy file: none written, no backup of nothing.
    assert not path.exists()
    assert list(tmp_path.glob("sessions.json.bak.*")) == []


@pytest.mark.parametrize("options", [
    {"durability": "none"},
    {"durability": "full"},
    {"sessionsd_only": True},
    {"lower_keys": False},
    {"cache": False},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_store_options_do_not_change_the_layout(tmp_path, options):
    since = now_ms()
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"Seed:Key": {"updatedAt": 1}}))
    store = SessionStore(path, **options)
    store.put("Mixed:Case:Key", {"n": 1, "updatedAt": 2})  # save-time migration
    store.put(LONG_KEY.upper(), {"n": 2})
    store.mutate(lambda s: s.update({"Batch:A": {"n": 3}, "Batch:B": {"updatedAt": 4, "n": 4}}))
    store.delete("Batch:A")
    sessions = check_directory_store(tmp_path, since_ms=since)
    fold = (lambda k: k) if options.get("lower_keys") is False else str.lower
    assert set(sessions) == {fold("Seed:Key"), fold("Mixed:Case:Key"), fold(LONG_KEY.upper()), fold("Batch:B")}


def test_seq_file_is_the_8_byte_commit_counter(tmp_path):
    """SPEC §4: ``sessions.d/seq`` is an 8-byte counter, even between commits."""
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"a": {"n": 1}}))
    sessionsd.migrate(path)
    store = SessionStore(path)
    seq_path = tmp_path / "sessions.d" / "seq"
    sizes = {"migrate": len(seq_path.read_bytes())}
    store.put("b", {"n": 2})
    sizes["put"] = len(seq_path.read_bytes())
    store.mutate(lambda s: s.update({"c": {"n": 3}, "d": {"n": 4}}))
    sizes["update"] = len(seq_path.read_bytes())
    store.delete("c")
    sizes["delete"] = len(seq_path.read_bytes())
    assert sizes == {"migrate": 8, "put": 8, "update": 8, "delete": 8}


def test_explicit_migrate_writes_a_version_1_store_that_passes_the_checker(tmp_path):
    since = now_ms()
    path = tmp_path / "sessions.json"
    legacy = {
        "Agent:Main:Main": {"sessionId": "old", "updatedAt": 1},
        "agent:main:main": {"sessionId": "new", "updatedAt": 2, "lastTo": "x"},  # case variant: newest wins
        "  agent:main:spaced  ": {"lastChannel": "slack", "updatedAt": 3},
        LONG_KEY: {"sessionId": "long", "updatedAt": 4},
        "agent:main:no-updated-at": {"sessionId": "n"},
        "agent:main:updated-last": {"a": 1, "b": 2, "updatedAt": 5},
        "agent:main:not-an-object": [1, 2],
    }
    original = json.dumps(legacy, indent=2).encode()
    path.write_bytes(original)

    result = sessionsd.migrate(path)

    assert result.outcome == "migrated"
    sessions = check_directory_store(tmp_path, since_ms=since)
    assert json.loads((tmp_path / "sessions.d" / "state.json").read_bytes())["version"] == 1
    assert sessions == {
        "agent:main:main": {"sessionId": "new", "updatedAt": 2, "lastTo": "x"},
        "agent:main:spaced": {"lastChannel": "slack", "updatedAt": 3},
        LONG_KEY: {"sessionId": "long", "updatedAt": 4},
        "agent:main:no-updated-at": {"sessionId": "n"},
        "agent:main:updated-last": {"a": 1, "b": 2, "updatedAt": 5},
        "agent:main:not-an-object": {"sessionKey": "agent:main:not-an-object", "entry": [1, 2]},
    }
    backup = Path(result.backup_path)
    assert re.fullmatch(r"sessions\.json\.bak\.\d+", backup.name)
    assert backup.read_bytes() == original
    assert not path.exists()


def test_rollback_writes_a_complete_private_legacy_file(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"a": {"updatedAt": 1}}))
    sessionsd.migrate(path)
    store = SessionStore(path)
    store.put(LONG_KEY, {"updatedAt": 2, "n": 1})
    store.put("b", {"x": [1, {"y": None}]})
    expected = store.load()

    assert sessionsd.rollback(path) is True

    assert stat.S_ISREG(os.lstat(path).st_mode) and mode_of(path) == 0o600
    assert json.loads(path.read_bytes()) == expected
    assert not (tmp_path / "sessions.d").exists()
    backups = [n for n in os.listdir(tmp_path) if re.fullmatch(r"sessions\.d\.bak\.\d+", n)]
    assert len(backups) == 1
    assert SessionStore(path).mode == "legacy"


def test_library_written_legacy_file_is_a_private_json_object(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"agent:a": {"updatedAt": 1}, "agent:b": {"label": "ü"}}))
    os.chmod(path, 0o644)
    store = SessionStore(path)
    store.delete("Agent:A")  # a changing save: migrates
    store.mutate(lambda sessions: sessions.clear())
    sessionsd.rollback(path)  # the library writes the legacy file
    assert stat.S_ISREG(os.lstat(path).st_mode) and mode_of(path) == 0o600
    assert json.loads(path.read_bytes()) == {}
    path.write_text(json.dumps({"agent:a": {"updatedAt": 1, "label": "ü"}}))
    os.chmod(path, 0o644)
    SessionStore(path).delete("agent:a")  # the last session gone: rewritten in place, not migrated
    assert stat.S_ISREG(os.lstat(path).st_mode) and mode_of(path) == 0o600
    assert json.loads(path.read_bytes()) == {}


# -- 3. entry file bytes: 2-space JSON, updatedAt first --------------------------------

SIMPLE_ENTRY = {
    "sessionId": "s-1",
    "label": "Grüße, 世界 😀 / \u2028",
    "quote": "a \"q\" \\ b\nline\ttab",
    "n": 42,
    "neg": -7,
    "ok": True,
    "no": False,
    "none": None,
    "list": [1, "two", [3], {}, []],
    "nested": {"a": {"b": []}, "c": {}},
    "updatedAt": 1711111111111,
}


def read_entry_file(tmp_path: Path, key: str) -> tuple[str, dict]:
    path = tmp_path / "sessions.d" / "entries" / spec_name(key)
    text = path.read_bytes().decode("utf-8")
    return text, json.loads(text)


def assert_reference_formatting(text: str, doc: dict, key: str, entry: dict) -> None:
    assert doc == {"sessionKey": key, "entry": entry}
    assert list(doc) == ["sessionKey", "entry"]
    assert text == json.dumps(doc, indent=2, ensure_ascii=False)
    if "updatedAt" in entry:
        assert next(iter(doc["entry"])) == "updatedAt"


@pytest.mark.parametrize("key", ["agent:main:simple", "agent:main:ünïcödé", LONG_KEY])
def test_entry_file_is_two_space_json_with_updated_at_first(tmp_path, key):
    path = tmp_path / "sessions.json"
    path.write_text("{\"seed\": {}}")
    sessionsd.migrate(path)
    store = SessionStore(path)
    store.put(key, SIMPLE_ENTRY)  # updatedAt is the *last* field given
    text, doc = read_entry_file(tmp_path, key)
    assert_reference_formatting(text, doc, key, SIMPLE_ENTRY)


def test_updated_at_is_first_whatever_the_write_path(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({
        "migrated": {"a": 1, "updatedAt": 1},
        "patched": {"a": 1},
        "untouched": {"a": 1, "b": 2},
    }))
    sessionsd.migrate(path)
    store = SessionStore(path)
    store.patch("patched", {"b": 2, "updatedAt": 2})
    store.update_entry("via-fn", lambda e: {"x": 1, "updatedAt": 3})
    store.mutate(lambda s: s.__setitem__("via-update", {"y": 1, "updatedAt": 4}))
    store.save({**store.load(), "via-save": {"z": 1, "updatedAt": 5}})
    expected = {
        "migrated": {"a": 1, "updatedAt": 1},
        "patched": {"a": 1, "b": 2, "updatedAt": 2},
        "untouched": {"a": 1, "b": 2},
        "via-fn": {"x": 1, "updatedAt": 3},
        "via-update": {"y": 1, "updatedAt": 4},
        "via-save": {"z": 1, "updatedAt": 5},
    }
    for key, entry in expected.items():
        text, doc = read_entry_file(tmp_path, key)
        assert_reference_formatting(text, doc, key, entry)
    assert check_directory_store(tmp_path) == expected


def test_save_time_migration_writes_formatted_documents(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"kept": {"a": [1, 2], "updatedAt": 10}}))
    store = SessionStore(path)
    store.put("added", SIMPLE_ENTRY)
    assert store.mode == "directory"
    for key, entry in {"kept": {"a": [1, 2], "updatedAt": 10}, "added": SIMPLE_ENTRY}.items():
        text, doc = read_entry_file(tmp_path, key)
        assert_reference_formatting(text, doc, key, entry)
