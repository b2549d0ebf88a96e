"""SessionStore's public API in both modes (SPEC §3-§5, §8).

Each behaviour is asserted where it applies in legacy mode (a ``sessions.json``
file), directory mode (``sessions.d``) and, where it differs, a fresh install
(no file at all).  Remember the legacy rule while reading: the first *changing*
save of an existing legacy file migrates it, so a legacy-mode assertion is
always made on the first write to a fresh legacy store.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from spec_rules import is_lock_artifact, spec_name

import sessionsd
import sessionsd._codec
import sessionsd._directory
import sessionsd._lock
from sessionsd import (
    BlockedKeyError,
    CorruptStoreError,
    InvalidEntryError,
    InvalidKeyError,
    SessionStore,
    StoreClosedError,
    StoreLockTimeout,
)

SEED = {
    "agent:main:main": {"sessionId": "m", "updatedAt": 100, "lastChannel": "telegram", "lastTo": "821"},
    "agent:main:other": {"sessionId": "o", "updatedAt": 200, "nested": {"list": [1, 2]}},
}


# -- helpers (file names from the SPEC rules, not from the library) ------------------

def make_store(tmp_path: Path, mode: str, entries: dict | None = None, **options) -> SessionStore:
    """A store in *mode*: ``fresh`` (no file), ``legacy`` (a sessions.json
    holding *entries*) or ``directory`` (*entries* migrated to sessions.d)."""
    path = tmp_path / "sessions.json"
    if mode != "fresh":
        path.write_text(json.dumps(SEED if entries is None else entries, indent=2))
    if mode == "directory":
        lower = options.get("lower_keys", True)
        assert sessionsd.migrate(path, lower_keys=lower).outcome == "migrated"
    store = SessionStore(path, **options)
    assert store.mode == ("directory" if mode == "directory" else "legacy")
    return store


def disk_state(root: Path) -> dict[str, tuple]:
    """Everything a write could change below *root*: per path its kind and,
    for files, (bytes, inode, mtime_ns).  The lock file is not data."""
    result = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, root)
            if is_lock_artifact(name):
                continue
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                result[rel] = ("file", Path(path).read_bytes(), info.st_ino, info.st_mtime_ns)
            else:
                result[rel] = (stat.S_IFMT(info.st_mode),)
    return result


def state_version(tmp_path: Path) -> int:
    return json.loads((tmp_path / "sessions.d" / "state.json").read_bytes())["version"]


def seq_value(tmp_path: Path) -> int:
    return struct.unpack("<Q", (tmp_path / "sessions.d" / "seq").read_bytes()[:8])[0]


def backups(tmp_path: Path) -> list[Path]:
    return sorted(p for p in tmp_path.iterdir() if re.fullmatch(r"sessions\.json\.bak\.\d+", p.name))


def with_deadline(fn, seconds: float = 15.0):
    """Run *fn* in a thread; a deadlock fails the test instead of hanging it."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"call did not return within {seconds} s (deadlock?)"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def run_child(code: str, *args: str) -> str:
    """Run *code* in another Python process that imports this sessionsd."""
    env = dict(os.environ)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(sessionsd.__file__)))
    env["PYTHONPATH"] = package_parent + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def write_reference_entry(tmp_path: Path, key: str, entry: dict, *, raw: bool = False) -> Path:
    """An entry file as the reference writes it: JSON.stringify(doc, null, 2)."""
    path = tmp_path / "sessions.d" / "entries" / spec_name(key)
    doc = entry if raw else {"sessionKey": key, "entry": entry}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    os.chmod(path, 0o600)
    return path


MODES = ["legacy", "directory"]
ALL_MODES = ["fresh", "legacy", "directory"]


# -- single-entry operations -------------------------------------------------------------

@pytest.mark.parametrize("mode", ALL_MODES)
def test_put_then_get_round_trips_a_private_copy(tmp_path, mode):
    store = make_store(tmp_path, mode)
    entry = {"sessionId": "n", "updatedAt": 5, "nested": {"list": [1, {"x": None}]}}
    assert store.put("agent:main:new", entry) is None
    entry["nested"]["list"].append("caller mutated its own dict after put")

    first = store.get("agent:main:new")
    assert first == {"sessionId": "n", "updatedAt": 5, "nested": {"list": [1, {"x": None}]}}
    first["nested"]["list"].clear()
    second = store.get("agent:main:new")
    assert second["nested"]["list"] == [1, {"x": None}] and second is not first
    assert "agent:main:new" in store and "agent:main:absent" not in store


@pytest.mark.parametrize("mode", ALL_MODES)
def test_get_default_and_put_replaces_the_whole_entry(tmp_path, mode):
    store = make_store(tmp_path, mode)
    marker = object()
    assert store.get("agent:main:absent") is None
    assert store.get("agent:main:absent", marker) is marker
    assert store.get("agent:main:absent", {"d": 1}) == {"d": 1}
    store.put("k", {"a": 1, "b": 2})
    store.put("k", {"c": 3})
    assert store.get("k", marker) == {"c": 3}


@pytest.mark.parametrize("mode", MODES)
def test_patch_merges_shallowly_and_returns_the_merged_entry(tmp_path, mode):
    store = make_store(tmp_path, mode)
    merged = store.patch("agent:main:other", {"lastTo": "x", "nested": {"replaced": True}})
    assert merged == {"sessionId": "o", "updatedAt": 200, "lastTo": "x", "nested": {"replaced": True}}
    assert store.get("agent:main:other") == merged
    assert store.load()["agent:main:main"] == SEED["agent:main:main"]


@pytest.mark.parametrize("mode", ALL_MODES)
def test_patch_of_a_missing_entry_returns_none_and_writes_nothing(tmp_path, mode):
    store = make_store(tmp_path, mode)
    before = disk_state(tmp_path)
    assert store.patch("agent:main:absent", {"lastTo": "x"}) is None
    assert disk_state(tmp_path) == before
    assert store.get("agent:main:absent") is None
    with pytest.raises(InvalidEntryError):
        store.patch("agent:main:main", ["not", "a", "mapping"])
    assert disk_state(tmp_path) == before


@pytest.mark.parametrize("mode", MODES)
def test_update_entry_passes_a_copy_and_returns_the_stored_entry(tmp_path, mode):
    store = make_store(tmp_path, mode)
    before = disk_state(tmp_path)
    seen = []

    def mutate_in_place_but_return_none(entry):
        seen.append(entry)
        entry["sessionId"] = "changed in place"
        entry["nested"]["list"].append(99)
        return None

    # None: nothing stored, the current entry returned, the in-place change lost.
    assert store.update_entry("agent:main:other", mutate_in_place_but_return_none) == SEED["agent:main:other"]
    assert seen[0] is not None
    assert store.get("agent:main:other") == SEED["agent:main:other"]
    assert disk_state(tmp_path) == before

    result = store.update_entry("agent:main:other", lambda e: {**e, "count": 1})
    assert result == {**SEED["agent:main:other"], "count": 1}
    assert store.get("agent:main:other") == result


@pytest.mark.parametrize("mode", ALL_MODES)
def test_update_entry_creates_a_missing_entry(tmp_path, mode):
    store = make_store(tmp_path, mode)
    received = []
    stored = store.update_entry("agent:main:created", lambda e: received.append(e) or {"created": True})
    assert received == [None]
    assert stored == {"created": True}
    assert store.get("agent:main:created") == {"created": True}


@pytest.mark.parametrize("mode", ALL_MODES)
def test_update_entry_returning_none_for_a_missing_entry_creates_nothing(tmp_path, mode):
    store = make_store(tmp_path, mode)
    before = disk_state(tmp_path)
    assert store.update_entry("agent:main:absent", lambda e: None) is None
    assert store.get("agent:main:absent") is None
    assert disk_state(tmp_path) == before


@pytest.mark.parametrize("mode", MODES)
def test_delete_returns_whether_there_was_an_entry(tmp_path, mode):
    store = make_store(tmp_path, mode)
    assert store.delete("agent:main:absent") is False
    assert store.delete("AGENT:MAIN:OTHER") is True
    assert store.get("agent:main:other") is None
    assert store.updated_at("agent:main:other") is None
    assert store.load() == {"agent:main:main": SEED["agent:main:main"]}
    assert store.delete("agent:main:other") is False
    if store.mode == "directory":
        assert not (tmp_path / "sessions.d" / "entries" / spec_name("agent:main:other")).exists()


@pytest.mark.parametrize("mode", ALL_MODES)
def test_deleting_a_missing_key_writes_nothing(tmp_path, mode):
    """Nothing to delete: no file touched, and in directory mode no commit
    counted either (a seq bump would make every other process's cached
    snapshot stale and force a full re-read of the store)."""
    store = make_store(tmp_path, mode)
    before = disk_state(tmp_path)
    assert store.delete("agent:main:absent") is False
    assert store.delete("agent:main:" + "h" * 130) is False
    assert disk_state(tmp_path) == before


# -- whole-store reads ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ALL_MODES)
def test_load_keys_len_and_summary(tmp_path, mode):
    store = make_store(tmp_path, mode)
    if mode == "fresh":
        assert store.load() == {} and list(store.keys()) == [] and len(store) == 0 and store.summary() == {}
        store.save(SEED)
    assert store.load() == SEED
    assert sorted(store.keys()) == sorted(SEED)
    assert len(store) == 2
    assert store.summary() == {
        "agent:main:main": {"lastChannel": "telegram", "lastTo": "821", "updatedAt": 100},
        "agent:main:other": {"lastChannel": None, "lastTo": None, "updatedAt": 200},
    }


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_load_returns_data_the_caller_owns(tmp_path, mode, cache):
    store = make_store(tmp_path, mode, cache=cache)
    first = store.load()
    first["agent:main:other"]["nested"]["list"].append(3)
    first["agent:main:main"]["sessionId"] = "mutated"
    del first["agent:main:main"]["lastTo"]
    first["agent:main:injected"] = {}
    del first["agent:main:other"]
    assert store.load() == SEED
    summary = store.summary()
    summary["agent:main:main"]["updatedAt"] = -1
    assert store.summary()["agent:main:main"]["updatedAt"] == 100
    keys = store.keys()
    assert "agent:main:injected" not in keys and list(keys) == sorted(SEED)


# -- update() and save() ---------------------------------------------------------------

@pytest.mark.parametrize("mode", ALL_MODES)
def test_update_returns_the_mutators_result_and_keeps_no_reference(tmp_path, mode):
    store = make_store(tmp_path, mode)

    def mutator(sessions):
        sessions["agent:main:added"] = {"updatedAt": 1}
        return sessions

    returned = store.mutate(mutator)
    assert returned["agent:main:added"] == {"updatedAt": 1}
    returned["agent:main:added"]["updatedAt"] = 999  # the private copy, not the store
    returned["agent:main:late"] = {}
    assert store.get("agent:main:added") == {"updatedAt": 1}
    assert "agent:main:late" not in store.load()


@pytest.mark.parametrize("mode", MODES)
def test_update_whose_mutator_raises_writes_nothing(tmp_path, mode):
    store = make_store(tmp_path, mode)
    before = disk_state(tmp_path)

    def failing(sessions):
        sessions["agent:main:main"]["sessionId"] = "half"
        sessions["agent:main:new"] = {}
        raise RuntimeError("mutator failed")

    with pytest.raises(RuntimeError, match="mutator failed"):
        store.mutate(failing)
    assert disk_state(tmp_path) == before
    assert store.load() == SEED


@pytest.mark.parametrize("mode", ALL_MODES)
def test_save_makes_the_store_hold_exactly_the_mapping(tmp_path, mode):
    store = make_store(tmp_path, mode)
    assert store.save({" Agent:Main:Main ": {"sessionId": "saved"}, "agent:main:third": {"n": 3}}) is None
    assert store.load() == {"agent:main:main": {"sessionId": "saved"}, "agent:main:third": {"n": 3}}
    with pytest.raises(InvalidEntryError):
        store.save([("agent:main:x", {})])


def test_update_with_no_change_writes_nothing_in_directory_mode(tmp_path):
    store = make_store(tmp_path, "directory")
    store.put("agent:main:main", {**SEED["agent:main:main"], "extra": 1})  # a seq file with history
    before = disk_state(tmp_path)
    version, seq = state_version(tmp_path), seq_value(tmp_path)

    def no_change(sessions):
        sessions["agent:main:other"] = json.loads(json.dumps(sessions["agent:main:other"]))  # equal copy
        reordered = dict(reversed(list(sessions["agent:main:main"].items())))
        sessions["agent:main:main"] = reordered
        return "result"

    assert store.mutate(no_change) == "result"
    assert store.mutate(lambda sessions: None) is None
    store.save(store.load())
    assert (state_version(tmp_path), seq_value(tmp_path)) == (version, seq)
    assert disk_state(tmp_path) == before


def test_update_with_no_change_creates_nothing_in_a_reference_store(tmp_path):
    """A store written by the reference code has no seq file: an empty diff
    must not add one (SPEC §4: "an empty diff writes nothing")."""
    root = tmp_path / "sessions.d"
    os.makedirs(root / "entries", mode=0o700)
    os.chmod(root, 0o700)
    (root / "state.json").write_text(json.dumps(
        {"kind": "openclaw-session-store-directory", "layoutVersion": 1, "version": 3,
         "updatedAt": 1711111111111}, indent=2))
    write_reference_entry(tmp_path, "agent:main:main", {"sessionId": "m", "updatedAt": 1})
    store = SessionStore(tmp_path / "sessions.json")
    assert store.mode == "directory"
    before = disk_state(tmp_path)
    store.mutate(lambda sessions: None)
    assert disk_state(tmp_path) == before


def test_update_commits_add_change_and_remove_with_one_version_bump(tmp_path):
    store = make_store(tmp_path, "directory", {
        "keep": {"n": 0}, "change": {"n": 1}, "remove": {"n": 2}})
    entries = tmp_path / "sessions.d" / "entries"
    keep_before = os.lstat(entries / spec_name("keep"))
    keep_bytes = (entries / spec_name("keep")).read_bytes()
    version, seq = state_version(tmp_path), seq_value(tmp_path)

    def mutate(sessions):
        sessions["change"]["n"] = 10
        del sessions["remove"]
        sessions["Added"] = {"n": 3}

    store.mutate(mutate)

    assert state_version(tmp_path) == version + 1
    new_seq = seq_value(tmp_path)
    assert new_seq > seq and new_seq % 2 == 0
    assert store.load() == {"keep": {"n": 0}, "change": {"n": 10}, "added": {"n": 3}}
    keep_after = os.lstat(entries / spec_name("keep"))
    assert (keep_after.st_ino, keep_after.st_mtime_ns) == (keep_before.st_ino, keep_before.st_mtime_ns)
    assert (entries / spec_name("keep")).read_bytes() == keep_bytes  # only the diff was written
    assert not (entries / spec_name("remove")).exists()
    assert json.loads((entries / spec_name("added")).read_bytes()) == {"sessionKey": "added", "entry": {"n": 3}}

    store.save({"only": {"n": 4}})
    assert state_version(tmp_path) == version + 2
    assert store.load() == {"only": {"n": 4}}
    assert sorted(os.listdir(entries)) == [spec_name("only")]


@pytest.mark.parametrize("mode", MODES)
def test_update_diff_tells_json_booleans_from_numbers(tmp_path, mode):
    """JSON ``true`` and ``1`` are different values; Python's ``True == 1``
    must not make the diff drop the change."""
    store = make_store(tmp_path, mode, {"a": {"flag": 1, "count": 0}, "b": {"n": 1}})

    def mutate(sessions):
        sessions["a"]["flag"] = True
        sessions["a"]["count"] = False
        sessions["b"]["n"] = 2  # a real change, so legacy mode saves at all

    store.mutate(mutate)
    stored = SessionStore(tmp_path / "sessions.json", cache=False).load()
    assert stored["a"]["flag"] is True and stored["a"]["count"] is False
    assert stored["b"] == {"n": 2}


@pytest.mark.parametrize("how", ["save", "patch", "update_entry", "put"])
@pytest.mark.parametrize("mode", MODES)
def test_a_change_between_a_boolean_and_a_number_is_written(tmp_path, mode, how):
    """The only change is 1 -> true / 0 -> false: it is a change, so it is
    written (in legacy mode it is the first changing save, so it migrates)."""
    store = make_store(tmp_path, mode, {"a": {"flag": 1, "count": 0}, "b": {"n": 0}})
    new = {"flag": True, "count": False}
    if how == "save":
        store.save({"a": new, "b": {"n": 0}})
    elif how == "patch":
        assert store.patch("a", new) == new
    elif how == "update_entry":
        assert store.update_entry("a", lambda e: {**e, **new}) == new
    else:
        store.put("a", new)
    stored = SessionStore(tmp_path / "sessions.json", cache=False).get("a")
    assert stored["flag"] is True and stored["count"] is False
    assert store.get("a")["flag"] is True


@pytest.mark.parametrize("bump", [False, True])
def test_single_entry_writes_bump_seq_and_optionally_the_version(tmp_path, bump):
    store = make_store(tmp_path, "directory", sessionsd_only=not bump)
    version, seq = state_version(tmp_path), seq_value(tmp_path)
    store.put("agent:main:a", {"n": 1})
    store.patch("agent:main:a", {"n": 2})
    store.update_entry("agent:main:a", lambda e: {**e, "n": 3})
    store.delete("agent:main:a")
    assert state_version(tmp_path) == version + (4 if bump else 0)
    new_seq = seq_value(tmp_path)
    assert new_seq % 2 == 0 and new_seq >= seq + 8  # four commits, each odd then even


# -- re-entrancy and the lock ---------------------------------------------------------

@pytest.mark.parametrize("mode", ALL_MODES)
def test_put_inside_an_update_mutator_does_not_deadlock_or_get_lost(tmp_path, mode):
    store = make_store(tmp_path, mode, lock_timeout=5)

    def mutator(sessions):
        store.put("agent:main:inner", {"from": "nested put"})
        sessions["agent:main:outer"] = {"from": "mutator"}
        return "done"

    assert with_deadline(lambda: store.mutate(mutator)) == "done"
    loaded = SessionStore(tmp_path / "sessions.json", cache=False).load()
    assert loaded["agent:main:inner"] == {"from": "nested put"}
    assert loaded["agent:main:outer"] == {"from": "mutator"}


@pytest.mark.parametrize("mode", ALL_MODES)
def test_put_inside_an_update_entry_fn_does_not_deadlock_or_get_lost(tmp_path, mode):
    store = make_store(tmp_path, mode, lock_timeout=5)

    def fn(entry):
        store.put("agent:main:inner", {"from": "nested put"})
        return {**(entry or {}), "touched": True}

    stored = with_deadline(lambda: store.update_entry("agent:main:main", fn))
    assert stored["touched"] is True
    loaded = SessionStore(tmp_path / "sessions.json", cache=False).load()
    assert loaded["agent:main:inner"] == {"from": "nested put"}
    assert loaded["agent:main:main"]["touched"] is True


@pytest.mark.parametrize("mode", MODES)
def test_writers_wait_for_the_lock_and_readers_do_not(tmp_path, mode):
    holder = make_store(tmp_path, mode)
    other = SessionStore(tmp_path / "sessions.json", lock_timeout=0.2)
    inside, release = threading.Event(), threading.Event()

    def slow_mutator(sessions):
        inside.set()
        assert release.wait(15)
        sessions["agent:main:from-holder"] = {"n": 1}

    thread = threading.Thread(target=lambda: holder.mutate(slow_mutator), daemon=True)
    thread.start()
    try:
        assert inside.wait(15)
        with pytest.raises(StoreLockTimeout):
            other.put("agent:main:blocked", {"n": 2})
        assert issubclass(StoreLockTimeout, TimeoutError)
        # Readers take no lock: they answer while the writer holds it.
        assert with_deadline(lambda: other.get("agent:main:main"), 5) == SEED["agent:main:main"]
        assert with_deadline(lambda: other.updated_at("agent:main:other"), 5) == 200
        assert with_deadline(other.load, 5) == SEED
        assert with_deadline(other.summary, 5)["agent:main:main"]["updatedAt"] == 100
    finally:
        release.set()
        thread.join(15)
    assert not thread.is_alive()
    assert other.get("agent:main:from-holder") == {"n": 1}
    assert other.get("agent:main:blocked") is None


# -- keys -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ALL_MODES)
def test_case_and_whitespace_variants_name_one_session(tmp_path, mode):
    store = make_store(tmp_path, mode)
    store.put("AGENT:MAIN:TELEGRAM", {"n": 1, "updatedAt": 7})
    for variant in (" agent:main:telegram ", "Agent:Main:Telegram", "\t\nAGENT:main:TELEGRAM\u3000"):
        assert store.normalize_key(variant) == "agent:main:telegram"
        assert store.get(variant) == {"n": 1, "updatedAt": 7}
        assert store.updated_at(variant) == 7
        assert variant in store
    assert store.patch(" Agent:Main:Telegram ", {"m": 2}) == {"n": 1, "updatedAt": 7, "m": 2}
    assert store.update_entry("agent:main:TELEGRAM", lambda e: {**e, "k": 3})["k"] == 3
    assert [k for k in store.load() if k.startswith("agent:main:telegram")] == ["agent:main:telegram"]
    if store.mode == "directory":
        names = os.listdir(tmp_path / "sessions.d" / "entries")
        assert spec_name("agent:main:telegram") in names
        assert spec_name("AGENT:MAIN:TELEGRAM") not in names
    assert store.delete("  AGENT:MAIN:TELEGRAM") is True
    assert store.get("agent:main:telegram") is None


def test_same_session_across_spellings_matches_the_spec_example(tmp_path):
    store = make_store(tmp_path, "directory")
    store.put("AGENT:MAIN:MAIN", {"sessionId": "upper"})
    assert store.get(" agent:main:main ") == {"sessionId": "upper"}
    assert store.load()["agent:main:main"] == {"sessionId": "upper"}
    assert len(store) == 2


@pytest.mark.parametrize("mode", ALL_MODES)
def test_lower_keys_false_keeps_case_but_still_trims(tmp_path, mode):
    store = make_store(tmp_path, mode, lower_keys=False)
    assert store.normalize_key("  Agent:X\n") == "Agent:X"
    store.put("Agent:X", {"v": 1})
    store.put(" agent:x ", {"v": 2})
    assert store.get("Agent:X") == {"v": 1}
    assert store.get("agent:x") == {"v": 2}
    assert store.get("AGENT:X") is None
    loaded = store.load()
    assert loaded["Agent:X"] == {"v": 1} and loaded["agent:x"] == {"v": 2}


def test_legacy_case_variants_collapse_to_the_newest_unless_lower_keys_is_off(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({
        "Agent:A": {"updatedAt": 5, "v": "newest"},
        "agent:a": {"updatedAt": 1, "v": "older"},
        " AGENT:A ": {"updatedAt": 3, "v": "middle"},
    }))
    assert SessionStore(path).load() == {"agent:a": {"updatedAt": 5, "v": "newest"}}
    # A separate test directory so that no per-path cache is involved.
    other = tmp_path / "other"
    other.mkdir()
    (other / "sessions.json").write_bytes(path.read_bytes())
    kept = SessionStore(other / "sessions.json", lower_keys=False).load()
    assert kept["Agent:A"] == {"updatedAt": 5, "v": "newest"}
    assert kept["agent:a"] == {"updatedAt": 1, "v": "older"}


@pytest.mark.parametrize("mode", MODES)
def test_stores_with_different_key_rules_do_not_share_normalised_data(tmp_path, mode):
    """Two store objects on one path, one lower-casing keys and one not, in
    one process: the second must not be served the first one's view."""
    store = make_store(tmp_path, mode, {"Agent:Upper": {"v": 1}}, lower_keys=False)
    SessionStore(tmp_path / "sessions.json").load()  # lower_keys=True, same path, first
    case_kept = SessionStore(tmp_path / "sessions.json", lower_keys=False)
    assert case_kept.load() == {"Agent:Upper": {"v": 1}}
    assert case_kept.get("Agent:Upper") == {"v": 1}
    assert store.get("Agent:Upper") == {"v": 1}


BAD_KEYS = {
    "empty": "",
    "spaces": "   ",
    "whitespace": "\t\n\u3000",
    "lone-surrogate": "agent:\ud800",
    "int": 5,
    "none": None,
    "bytes": b"agent:main:main",
}
KEYED_CALLS = {
    "get": lambda s, k: s.get(k),
    "updated_at": lambda s, k: s.updated_at(k),
    "put": lambda s, k: s.put(k, {"n": 1}),
    "patch": lambda s, k: s.patch(k, {"n": 1}),
    "update_entry": lambda s, k: s.update_entry(k, lambda e: {"n": 1}),
    "delete": lambda s, k: s.delete(k),
    "normalize_key": lambda s, k: s.normalize_key(k),
    "contains": lambda s, k: k in s,
    "update": lambda s, k: s.mutate(lambda sessions: sessions.__setitem__(k, {"n": 1})),
    "save": lambda s, k: s.save({k: {"n": 1}}),
}


@pytest.mark.parametrize("call", sorted(KEYED_CALLS))
@pytest.mark.parametrize("bad", sorted(BAD_KEYS))
@pytest.mark.parametrize("mode", MODES)
def test_bad_keys_raise_invalid_key_error_and_write_nothing(tmp_path, mode, bad, call):
    store = make_store(tmp_path, mode)
    before = disk_state(tmp_path)
    with pytest.raises(InvalidKeyError) as info:
        KEYED_CALLS[call](store, BAD_KEYS[bad])
    assert isinstance(info.value, ValueError)
    assert disk_state(tmp_path) == before
    assert store.mode == mode


@pytest.mark.parametrize("mode", MODES)
def test_keys_that_normalise_alike_in_one_save_are_refused(tmp_path, mode):
    store = make_store(tmp_path, mode)
    before = disk_state(tmp_path)
    with pytest.raises(InvalidKeyError):
        store.save({"Agent:Dup": {"v": 1}, " agent:dup ": {"v": 2}})
    assert disk_state(tmp_path) == before


BLOCKED_SPELLINGS = ["__proto__", "prototype", "constructor", " Constructor ", "PROTOTYPE", "__PROTO__"]


@pytest.mark.parametrize("key", BLOCKED_SPELLINGS)
@pytest.mark.parametrize("mode", ALL_MODES)
def test_blocked_keys_are_refused_on_every_write(tmp_path, mode, key):
    store = make_store(tmp_path, mode)
    before = disk_state(tmp_path)
    writes = [
        lambda: store.put(key, {"n": 1}),
        lambda: store.update_entry(key, lambda e: {"n": 1}),
        lambda: store.mutate(lambda sessions: sessions.__setitem__(key, {"n": 1})),
        lambda: store.save({**SEED, key: {"n": 1}}),
    ]
    for write in writes:
        with pytest.raises(BlockedKeyError) as info:
            write()
        assert isinstance(info.value, InvalidKeyError) and isinstance(info.value, ValueError)
    if mode != "fresh":  # patch of a missing key writes nothing anyway; here it must refuse
        with pytest.raises(BlockedKeyError):
            store.patch(key, {"n": 1})
    assert disk_state(tmp_path) == before


@pytest.mark.parametrize("mode", MODES)
def test_blocked_keys_on_disk_read_as_missing(tmp_path, mode):
    polluted = {**SEED, "__proto__": {"polluted": 1, "updatedAt": 1},
                "constructor": {"polluted": 2, "updatedAt": 2}}
    if mode == "legacy":
        store = make_store(tmp_path, "legacy", polluted)
    else:
        store = make_store(tmp_path, "directory")
        write_reference_entry(tmp_path, "__proto__", polluted["__proto__"])
        write_reference_entry(tmp_path, "constructor", polluted["constructor"], raw=True)
        write_reference_entry(tmp_path, "prototype", {"polluted": 3})
    before = disk_state(tmp_path)
    assert store.load() == SEED
    marker = object()
    for key in ("__proto__", "constructor", "prototype", " PROTOTYPE "):
        assert store.get(key) is None
        assert store.get(key, marker) is marker
        assert store.updated_at(key) is None
        assert key not in store
        assert store.delete(key) is False
    assert disk_state(tmp_path) == before  # never deleted, never rewritten


BAD_ENTRIES = {
    "list": [1, 2],
    "str": "entry",
    "none": None,
    "int": 3,
    "tuple": ("a", 1),
    "set-value": {"tags": {"a", "b"}},
    "object-value": {"obj": object()},
    "deep-set": {"a": {"b": [1, {"c": frozenset({1})}]}},
    "bytes-value": {"raw": b"\x00"},
}
NON_SERIALISABLE = {"set-value", "object-value", "deep-set", "bytes-value"}


@pytest.mark.parametrize("bad", sorted(BAD_ENTRIES))
@pytest.mark.parametrize("mode", ALL_MODES)
def test_bad_entries_raise_invalid_entry_error_and_write_nothing(tmp_path, mode, bad):
    store = make_store(tmp_path, mode)
    value = BAD_ENTRIES[bad]
    before = disk_state(tmp_path)
    writes = {
        "put": lambda: store.put("agent:main:bad", value),
        "update": lambda: store.mutate(lambda sessions: sessions.__setitem__("agent:main:bad", value)),
        "save": lambda: store.save({"agent:main:bad": value}),
    }
    if value is not None:  # update_entry's fn returns None to mean "no change"
        writes["update_entry"] = lambda: store.update_entry("agent:main:bad", lambda e: value)
    if bad in NON_SERIALISABLE and mode != "fresh":
        writes["patch"] = lambda: store.patch("agent:main:main", value)
    for name, write in writes.items():
        with pytest.raises(InvalidEntryError) as info:
            write()
        assert isinstance(info.value, ValueError), name
        assert disk_state(tmp_path) == before, f"{name} wrote something"
    assert store.get("agent:main:bad") is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("sessions.d.staging-")]


# -- updated_at ------------------------------------------------------------------------

UPDATED_AT_VALUES = {
    "int": 1711111111111,
    "zero": 0,
    "negative": -5,
    "float": 1711111111111.5,
    "integral-float": 5.0,
    "beyond-2**53": 2**53 + 1,
    "beyond-18-digits": 10**19,
    "string": "2026-01-01",
    "null": None,
    "bool": True,
}


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("label", sorted(UPDATED_AT_VALUES))
def test_updated_at_returns_the_stored_value_exactly(tmp_path, mode, label):
    store = make_store(tmp_path, mode)
    value = UPDATED_AT_VALUES[label]
    store.put("agent:main:k", {"sessionId": "s", "updatedAt": value})
    result = store.updated_at("agent:main:k")
    assert result == value and type(result) is type(value)
    assert store.get("agent:main:k")["updatedAt"] == value


@pytest.mark.parametrize("mode", ALL_MODES)
def test_updated_at_is_none_when_missing(tmp_path, mode):
    store = make_store(tmp_path, mode)
    assert store.updated_at("agent:main:absent") is None
    store.put("agent:main:no-field", {"sessionId": "s"})
    assert store.updated_at("agent:main:no-field") is None
    assert store.updated_at("AGENT:MAIN:NO-FIELD ") is None


REFERENCE_ENTRIES = {
    # key -> (entry as the reference wrote it, expected updatedAt)
    "agent:main:ref-last": ({"sessionId": "a", "lastTo": "x", "updatedAt": 1711111111111}, 1711111111111),
    "agent:main:ref-first": ({"updatedAt": 1711111111222, "sessionId": "b"}, 1711111111222),
    "agent:main:ref-float": ({"sessionId": "c", "updatedAt": 1711111111333.75}, 1711111111333.75),
    "agent:main:ref-nested-first": ({"meta": {"updatedAt": 1}, "updatedAt": 2}, 2),
    "agent:main:ref-none": ({"sessionId": "d"}, None),
    "agent:main:ref-big": ({"updatedAt": 12345678901234567890, "x": 1}, 12345678901234567890),
    "agent:main:" + "h" * 130: ({"sessionId": "hashed", "updatedAt": 17}, 17),
}


def test_updated_at_reads_reference_formatted_files_exactly(tmp_path):
    store = make_store(tmp_path, "directory")
    for key, (entry, _expected) in REFERENCE_ENTRIES.items():
        write_reference_entry(tmp_path, key, entry)
    write_reference_entry(tmp_path, "agent:main:ref-raw", {"sessionId": "r", "updatedAt": 33}, raw=True)
    for key, (entry, expected) in REFERENCE_ENTRIES.items():
        result = store.updated_at(key)
        assert result == expected and type(result) is type(expected), key
        assert store.get(key) == entry
    assert store.updated_at("agent:main:ref-raw") == 33


# -- single-entry reads: one file, no listing, no lock, no cache ------------------------

def _forbid(*_args, **_kwargs):
    raise AssertionError("a single-entry read listed a directory")


def test_get_and_updated_at_never_list_a_directory(tmp_path, monkeypatch):
    make_store(tmp_path, "directory", {**SEED, "agent:main:" + "h" * 130: {"updatedAt": 9}})
    write_reference_entry(tmp_path, "agent:main:reference", {"sessionId": "r", "updatedAt": 11})
    write_reference_entry(tmp_path, "agent:main:raw", {"updatedAt": 12, "sessionId": "raw"}, raw=True)
    path = tmp_path / "sessions.json"
    warm = SessionStore(path)
    warm.get("agent:main:main")

    monkeypatch.setattr(os, "scandir", _forbid)
    monkeypatch.setattr(os, "listdir", _forbid)
    monkeypatch.setattr(sessionsd._codec, "scan_entries", _forbid)
    monkeypatch.setattr(sessionsd._directory, "scan_entries", _forbid)
    monkeypatch.setattr(sessionsd, "scan_entries", _forbid)
    for module_name in ("sessionsd._codec_py", "sessionsd._codec_c"):
        if module_name in sys.modules:
            monkeypatch.setattr(sys.modules[module_name], "scan_entries", _forbid)

    for store in (warm, SessionStore(path)):  # mode known, and mode not yet detected
        assert store.get("AGENT:MAIN:MAIN") == SEED["agent:main:main"]
        assert store.updated_at(" agent:main:other ") == 200
        assert store.get("agent:main:" + "h" * 130) == {"updatedAt": 9}
        assert store.updated_at("agent:main:" + "H" * 130) == 9
        assert store.updated_at("agent:main:reference") == 11
        assert store.get("agent:main:raw") == {"updatedAt": 12, "sessionId": "raw"}
        assert store.updated_at("agent:main:raw") == 12
        # Misses re-check the mode: that must not list either.
        assert store.get("agent:main:absent") is None
        assert store.get("agent:main:absent", 0) == 0
        assert store.updated_at("agent:main:absent") is None
        assert store.updated_at("agent:main:" + "m" * 130) is None
        assert store.get("__proto__") is None and store.updated_at("constructor") is None
        assert "agent:main:absent" not in store


def test_get_and_updated_at_take_no_lock(tmp_path, monkeypatch):
    store = make_store(tmp_path, "directory")

    def no_lock(*_args, **_kwargs):
        raise AssertionError("a single-entry read took the store lock")

    monkeypatch.setattr(sessionsd._lock.StoreLock, "acquire", no_lock)
    assert store.get("agent:main:main") == SEED["agent:main:main"]
    assert store.updated_at("agent:main:main") == 100
    assert store.get("agent:main:absent") is None
    assert store.updated_at("agent:main:absent") is None


def test_get_and_updated_at_see_a_hand_edit_at_once(tmp_path):
    """No cache on single-entry reads: an entry file rewritten by another
    writer (no version bump at all) is seen by the very next read."""
    store = make_store(tmp_path, "directory")
    assert store.get("agent:main:main") == SEED["agent:main:main"]
    assert store.updated_at("agent:main:main") == 100
    write_reference_entry(tmp_path, "agent:main:main", {"sessionId": "edited", "updatedAt": 101})
    assert store.get("agent:main:main") == {"sessionId": "edited", "updatedAt": 101}
    assert store.updated_at("agent:main:main") == 101
    (tmp_path / "sessions.d" / "entries" / spec_name("agent:main:main")).unlink()
    assert store.get("agent:main:main") is None
    assert store.updated_at("agent:main:main") is None


def test_single_entry_reads_open_only_the_entry_file(tmp_path, monkeypatch):
    store = make_store(tmp_path, "directory")
    write_reference_entry(tmp_path, "agent:main:reference", {"sessionId": "r", "lastTo": "x", "updatedAt": 11})
    store.get("agent:main:main")  # the mode is known from here on
    entries_dir = str(tmp_path / "sessions.d" / "entries")
    opened: list[str] = []
    real_open = os.open

    def counting_open(path, *args, **kwargs):
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)

    def opens(call) -> list[str]:
        opened.clear()
        call()
        return list(opened)

    assert len(opens(lambda: store.get("agent:main:main"))) <= 1
    assert len(opens(lambda: store.updated_at("agent:main:main"))) <= 1
    # A reference-formatted file (updatedAt not first): at most the head, then the file.
    reference = opens(lambda: store.updated_at("agent:main:reference"))
    assert all(path.startswith(entries_dir) for path in reference)
    assert len(reference) <= 2, f"updated_at opened the entry file {len(reference)} times"


# -- the cache follows other writers ------------------------------------------------------

@pytest.mark.parametrize("writer_cache", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_load_sees_another_store_objects_writes(tmp_path, mode, writer_cache):
    reader = make_store(tmp_path, mode)
    assert reader.load() == SEED
    writer = SessionStore(tmp_path / "sessions.json", cache=writer_cache)
    writer.put("agent:main:new", {"n": 1})
    assert reader.load()["agent:main:new"] == {"n": 1}
    writer.delete("agent:main:other")
    writer.patch("agent:main:main", {"lastTo": "changed"})
    expected = {"agent:main:main": {**SEED["agent:main:main"], "lastTo": "changed"},
                "agent:main:new": {"n": 1}}
    assert reader.load() == expected
    writer.mutate(lambda s: s.update({"agent:main:batch1": {}, "agent:main:batch2": {}}))
    assert set(reader.load()) == set(expected) | {"agent:main:batch1", "agent:main:batch2"}
    assert len(reader) == 4


CHILD_WRITES = """
import sys
from sessionsd import SessionStore
store = SessionStore(sys.argv[1])
store.put("agent:main:from-child", {"pid": "child", "updatedAt": 1})
store.patch("agent:main:main", {"lastTo": "child"})
store.delete("agent:main:other")
store.mutate(lambda s: s.update({"agent:main:c1": {"n": 1}, "agent:main:c2": {"n": 2}}))
print(store.mode)
"""


@pytest.mark.parametrize("mode", ALL_MODES)
def test_load_and_get_see_another_process_writes(tmp_path, mode):
    store = make_store(tmp_path, mode)
    assert store.load() == ({} if mode == "fresh" else SEED)
    assert store.get("agent:main:from-child") is None

    child_mode = run_child(CHILD_WRITES, str(tmp_path / "sessions.json")).strip()

    assert child_mode == "directory"
    loaded = store.load()
    assert loaded["agent:main:from-child"] == {"pid": "child", "updatedAt": 1}
    assert "agent:main:other" not in loaded
    assert loaded["agent:main:c1"] == {"n": 1} and loaded["agent:main:c2"] == {"n": 2}
    if mode != "fresh":
        assert loaded["agent:main:main"]["lastTo"] == "child"
    assert store.get("agent:main:from-child") == {"pid": "child", "updatedAt": 1}
    assert store.updated_at("agent:main:from-child") == 1
    assert store.mode == "directory"


def test_load_sees_a_hand_edit_followed_by_a_version_bump(tmp_path):
    store = make_store(tmp_path, "directory")
    assert store.load() == SEED
    # What a reference writer does: rewrite the entry file, then bump state.json.
    write_reference_entry(tmp_path, "agent:main:other", {"sessionId": "hand", "updatedAt": 999})
    write_reference_entry(tmp_path, "agent:main:added-by-hand", {"updatedAt": 5})
    state_path = tmp_path / "sessions.d" / "state.json"
    state = json.loads(state_path.read_bytes())
    state["version"] += 1
    state_path.write_text(json.dumps(state, indent=2))
    loaded = store.load()
    assert loaded["agent:main:other"] == {"sessionId": "hand", "updatedAt": 999}
    assert loaded["agent:main:added-by-hand"] == {"updatedAt": 5}
    assert store.summary()["agent:main:other"]["updatedAt"] == 999


def test_legacy_load_sees_a_hand_edit(tmp_path):
    store = make_store(tmp_path, "legacy")
    assert store.load() == SEED
    (tmp_path / "sessions.json").write_text(json.dumps({"agent:main:edited": {"by": "hand", "n": 12345}}))
    assert store.load() == {"agent:main:edited": {"by": "hand", "n": 12345}}
    assert store.get("agent:main:edited") == {"by": "hand", "n": 12345}


def test_reads_follow_a_migration_done_by_another_store_object(tmp_path):
    reader = make_store(tmp_path, "legacy")
    assert reader.get("agent:main:main") == SEED["agent:main:main"]  # legacy mode remembered
    assert reader.updated_at("agent:main:other") == 200
    SessionStore(tmp_path / "sessions.json").put("agent:main:new", {"updatedAt": 3})  # migrates
    assert not (tmp_path / "sessions.json").exists()
    assert reader.get("agent:main:main") == SEED["agent:main:main"]
    assert reader.updated_at("agent:main:other") == 200
    assert reader.get("agent:main:new") == {"updatedAt": 3}
    assert reader.updated_at("agent:main:new") == 3
    assert reader.load() == {**SEED, "agent:main:new": {"updatedAt": 3}}


def test_reads_follow_a_rollback_done_by_another_store_object(tmp_path):
    reader = make_store(tmp_path, "directory")
    assert reader.get("agent:main:main") == SEED["agent:main:main"]
    assert sessionsd.rollback(tmp_path / "sessions.json") is True
    assert reader.get("agent:main:main") == SEED["agent:main:main"]
    assert reader.updated_at("agent:main:other") == 200
    assert reader.load() == SEED
    assert reader.mode == "legacy"


@pytest.mark.parametrize("cache", [True, False])
def test_skipped_reports_the_last_full_load(tmp_path, cache):
    store = make_store(tmp_path, "directory", cache=cache)
    assert store.skipped == []
    entries = tmp_path / "sessions.d" / "entries"
    (entries / spec_name("agent:main:corrupt")).write_text("{\"sessionKey\": ")
    (entries / spec_name("agent:main:empty")).write_text("")
    store.put("agent:main:bump", {"n": 1})  # a commit, so cached readers look again
    assert store.load() == {**SEED, "agent:main:bump": {"n": 1}}
    assert {name for name, _reason in store.skipped} == {
        spec_name("agent:main:corrupt"), spec_name("agent:main:empty")}
    assert all(isinstance(reason, str) and reason for _name, reason in store.skipped)
    # Both files are replaced through the store: the next load skips nothing.
    store.put("agent:main:corrupt", {"fixed": True})
    store.put("agent:main:empty", {"fixed": True})
    for each in (store, SessionStore(tmp_path / "sessions.json", cache=cache)):
        loaded = each.load()
        assert loaded["agent:main:corrupt"] == {"fixed": True} and loaded["agent:main:empty"] == {"fixed": True}
        assert each.skipped == []


# -- closing -----------------------------------------------------------------------------

CLOSED_CALLS = {
    "mode": lambda s: s.mode,
    "get": lambda s: s.get("agent:main:main"),
    "updated_at": lambda s: s.updated_at("agent:main:main"),
    "contains": lambda s: "agent:main:main" in s,
    "put": lambda s: s.put("agent:main:x", {}),
    "patch": lambda s: s.patch("agent:main:main", {"x": 1}),
    "update_entry": lambda s: s.update_entry("agent:main:x", lambda e: {}),
    "delete": lambda s: s.delete("agent:main:main"),
    "load": lambda s: s.load(),
    "summary": lambda s: s.summary(),
    "keys": lambda s: s.keys(),
    "len": lambda s: len(s),
    "update": lambda s: s.mutate(lambda sessions: sessions.clear()),
    "save": lambda s: s.save({}),
    "enter": lambda s: s.__enter__(),
}


@pytest.mark.parametrize("mode", MODES)
def test_a_closed_store_refuses_every_operation_and_writes_nothing(tmp_path, mode):
    with make_store(tmp_path, mode) as store:
        assert store.get("agent:main:main") == SEED["agent:main:main"]
    assert store.closed
    before = disk_state(tmp_path)
    for name, call in CLOSED_CALLS.items():
        with pytest.raises(StoreClosedError):
            call(store)
            pytest.fail(f"{name} worked on a closed store")
    assert disk_state(tmp_path) == before
    store.close()  # closing twice is harmless
    # Closing one object does not close the store for others.
    assert SessionStore(tmp_path / "sessions.json").get("agent:main:main") == SEED["agent:main:main"]


def test_the_context_manager_closes_on_error(tmp_path):
    with pytest.raises(RuntimeError), SessionStore(tmp_path / "sessions.json") as store:
        raise RuntimeError("boom")
    with pytest.raises(StoreClosedError):
        store.get("agent:main:main")


def test_constructor_validates_durability(tmp_path):
    with pytest.raises(ValueError):
        SessionStore(tmp_path / "sessions.json", durability="sometimes")
    for durability in ("none", "file", "full"):
        store = SessionStore(tmp_path / durability / "sessions.json", durability=durability)
        store.put("a", {"n": 1})
        store.put("b", {"n": 2})
        assert store.mode == "directory" and store.load() == {"a": {"n": 1}, "b": {"n": 2}}


# -- legacy-mode rules (SPEC §5) --------------------------------------------------------

def test_fresh_install_starts_as_a_directory_store_with_no_backup(tmp_path):
    path = tmp_path / "sessions.json"
    store = SessionStore(path)
    assert store.mode == "legacy" and store.load() == {} and not path.exists()
    store.put("Agent:Main:A", {"n": 1})
    assert store.mode == "directory" and not path.exists()
    assert (tmp_path / "sessions.d" / "legacy-file").read_text() == "sessions.json\n"
    store.put("agent:main:b", {"n": 2})
    assert backups(tmp_path) == []
    assert store.load() == {"agent:main:a": {"n": 1}, "agent:main:b": {"n": 2}}


def test_fresh_install_save_of_an_empty_store_stays_legacy(tmp_path):
    store = SessionStore(tmp_path / "sessions.json")
    store.save({})
    store.mutate(lambda sessions: None)
    assert store.mode == "legacy"
    assert not (tmp_path / "sessions.d").exists()
    assert backups(tmp_path) == []


def test_unchanged_legacy_saves_write_nothing(tmp_path):
    store = make_store(tmp_path, "legacy")
    path = tmp_path / "sessions.json"
    before = disk_state(tmp_path)
    info = os.stat(path)
    store.save(SEED)
    store.save({k.upper(): v for k, v in SEED.items()})  # same keys once normalised
    store.mutate(lambda sessions: None)
    store.mutate(lambda sessions: sessions.update(json.loads(json.dumps(SEED))))
    store.put("agent:main:main", dict(SEED["agent:main:main"]))
    store.patch("agent:main:main", {})
    store.patch("agent:main:main", {"lastTo": "821"})
    store.update_entry("agent:main:other", lambda e: None)
    store.update_entry("agent:main:other", lambda e: e)
    store.delete("agent:main:absent")
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (info.st_ino, info.st_mtime_ns, info.st_size)
    assert disk_state(tmp_path) == before
    assert store.mode == "legacy" and backups(tmp_path) == []


@pytest.mark.parametrize("how", ["save", "update", "delete-last"])
def test_saving_an_empty_store_keeps_it_legacy(tmp_path, how):
    if how == "delete-last":
        store = make_store(tmp_path, "legacy", {"agent:main:only": {"n": 1}})
        assert store.delete("agent:main:only") is True
    else:
        store = make_store(tmp_path, "legacy")
        if how == "save":
            store.save({})
        else:
            store.mutate(lambda sessions: sessions.clear())
    assert store.mode == "legacy"
    assert json.loads((tmp_path / "sessions.json").read_bytes()) == {}
    assert not (tmp_path / "sessions.d").exists()
    assert backups(tmp_path) == []
    assert store.load() == {}


def test_json5_legacy_file_is_read_and_migrated_intact(tmp_path):
    path = tmp_path / "sessions.json"
    text = """// written by hand
{
  /* the main session */
  "agent:main:main": {"sessionId": "m", "updatedAt": 100, "lastTo": "821",},
  "Agent:Main:Other": {"sessionId": "o", "updatedAt": 200, "tags": ["a", "b",],},
}
"""
    path.write_text(text)
    store = SessionStore(path)
    assert store.mode == "legacy"
    expected = {"agent:main:main": {"sessionId": "m", "updatedAt": 100, "lastTo": "821"},
                "agent:main:other": {"sessionId": "o", "updatedAt": 200, "tags": ["a", "b"]}}
    assert store.load() == expected
    assert store.get("agent:main:other") == expected["agent:main:other"]
    assert store.updated_at("AGENT:MAIN:MAIN") == 100
    assert store.summary()["agent:main:main"] == {"lastChannel": None, "lastTo": "821", "updatedAt": 100}
    assert path.read_text() == text  # reads never rewrite it
    store.put("agent:main:new", {"n": 1})
    assert store.mode == "directory"
    assert store.load() == {**expected, "agent:main:new": {"n": 1}}
    [backup] = backups(tmp_path)
    assert backup.read_text() == text


def test_legacy_array_file_loads_empty_and_is_never_rewritten_in_place(tmp_path):
    path = tmp_path / "sessions.json"
    array_bytes = json.dumps([{"sessionKey": "agent:main:main", "updatedAt": 1}]).encode()
    path.write_bytes(array_bytes)
    store = SessionStore(path)
    assert store.mode == "legacy"
    assert store.load() == {} and len(store) == 0 and store.get("agent:main:main") is None
    assert sessionsd.detect(path).status == "invalid_legacy"
    assert sessionsd.migrate(path).outcome == "skipped_invalid"
    info = os.stat(path)
    store.save({})
    store.mutate(lambda sessions: None)
    assert store.delete("agent:main:main") is False
    assert store.patch("agent:main:main", {"x": 1}) is None
    after = os.stat(path)
    assert path.read_bytes() == array_bytes
    assert (after.st_ino, after.st_mtime_ns) == (info.st_ino, info.st_mtime_ns)
    assert not (tmp_path / "sessions.d").exists()

    store.put("agent:main:new", {"n": 1})  # the first changing save migrates
    assert store.mode == "directory"
    assert store.load() == {"agent:main:new": {"n": 1}}
    assert not path.exists()
    [backup] = backups(tmp_path)
    assert backup.read_bytes() == array_bytes


@pytest.mark.parametrize("content", [b"{not json", b"{\"a\": {\"b\": }", b"\xff\xfe\x00garbage", b"[1, 2"])
def test_unparsable_legacy_file_raises_and_is_never_overwritten(tmp_path, content):
    path = tmp_path / "sessions.json"
    path.write_bytes(content)
    store = SessionStore(path)
    before = disk_state(tmp_path)
    calls = [
        store.load, store.summary, store.keys, lambda: len(store),
        lambda: store.get("agent:main:main"), lambda: store.updated_at("agent:main:main"),
        lambda: store.put("agent:main:main", {"n": 1}), lambda: store.patch("agent:main:main", {"n": 1}),
        lambda: store.update_entry("agent:main:main", lambda e: {"n": 1}),
        lambda: store.delete("agent:main:main"), lambda: store.mutate(lambda s: s.clear()),
        lambda: store.save({}), lambda: store.save({"agent:main:main": {"n": 1}}),
    ]
    for call in calls:
        with pytest.raises(CorruptStoreError) as info:
            call()
        assert isinstance(info.value, ValueError)
    assert path.read_bytes() == content
    assert disk_state(tmp_path) == before
    assert store.mode == "legacy"


def test_whitespace_only_legacy_file_is_an_empty_store(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text("  \n\t ")
    store = SessionStore(path)
    assert store.mode == "legacy" and store.load() == {} and store.get("a") is None


def test_save_time_migration_keeps_everything(tmp_path):
    legacy = {
        **SEED,
        "Agent:Main:Upper": {"updatedAt": 300, "v": "case"},
        "agent:main:" + "l" * 130: {"updatedAt": 400, "v": "long"},
        "agent:main:not-an-object": "kept",
    }
    path = tmp_path / "sessions.json"
    original = json.dumps(legacy, indent=2).encode()
    path.write_bytes(original)
    store = SessionStore(path)
    assert store.mode == "legacy"

    merged = store.patch("agent:main:main", {"lastTo": "patched"})

    assert merged == {**SEED["agent:main:main"], "lastTo": "patched"}
    assert store.mode == "directory"
    assert not path.exists()
    [backup] = backups(tmp_path)
    assert backup.read_bytes() == original
    expected = {
        "agent:main:main": {**SEED["agent:main:main"], "lastTo": "patched"},
        "agent:main:other": SEED["agent:main:other"],
        "agent:main:upper": {"updatedAt": 300, "v": "case"},
        "agent:main:" + "l" * 130: {"updatedAt": 400, "v": "long"},
        # Never dropped: kept as the document the reference reads back.
        "agent:main:not-an-object": {"sessionKey": "agent:main:not-an-object", "entry": "kept"},
    }
    fresh = SessionStore(path)
    assert fresh.mode == "directory"
    assert fresh.load() == expected
    assert fresh.get("AGENT:MAIN:" + "L" * 130) == {"updatedAt": 400, "v": "long"}
    assert fresh.updated_at("agent:main:upper") == 300
    assert sessionsd.detect(path).status == "already_directory"
    assert sorted(os.listdir(tmp_path / "sessions.d" / "entries")) == sorted(spec_name(k) for k in expected)


# -- module functions ---------------------------------------------------------------

def test_detect_migrate_and_rollback(tmp_path):
    path = tmp_path / "sessions.json"
    assert sessionsd.detect(path).status == "missing"
    assert sessionsd.migrate(path).outcome == "missing"
    path.write_text("{}")
    assert sessionsd.detect(path).status == "empty_legacy"
    assert sessionsd.migrate(path).outcome == "skipped_empty"
    path.write_text(json.dumps(SEED))
    detection = sessionsd.detect(path)
    assert (detection.status, detection.legacy_exists, detection.directory_active) == (
        "ready_to_migrate", True, False)
    assert detection.normalized_entry_count == 2
    assert path.read_text() == json.dumps(SEED)  # detection is read-only
    assert not (tmp_path / "sessions.d").exists()

    result = sessionsd.migrate(path)
    assert (result.outcome, result.legacy_entries, result.migrated_entries) == ("migrated", 2, 2)
    assert Path(result.backup_path).exists() and not path.exists()
    assert sessionsd.migrate(path).outcome == "already_directory"
    assert SessionStore(path).load() == SEED

    before = disk_state(tmp_path)
    assert sessionsd.rollback(path, dry_run=True) is True
    assert disk_state(tmp_path) == before
    assert sessionsd.rollback(path) is True
    assert SessionStore(path).mode == "legacy" and SessionStore(path).load() == SEED
    assert sessionsd.rollback(path) is False
