"""SessionStore under bad input (SPEC §2, §3, §8; reference-design §7-§8).

Every case here has a defined outcome in the SPEC: corrupt or foreign entry
files are skipped and reported, never trusted and never modified; an invalid
layout means legacy mode; unsafe directories are refused; bad keys and bad
entries are refused before anything is written; write failures propagate
unchanged and leave the previous state intact; every write stays inside the
store directory.

The helpers below build names and documents from the SPEC rules alone (not
from the library's codec), so a codec bug cannot hide itself.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import stat
import struct
import subprocess
import sys
import textwrap
import types
import uuid

import pytest
from spec_rules import b64url, is_lock_artifact, spec_name

import sessionsd
import sessionsd._fsutil as fsutil
import sessionsd._json as sjson
from sessionsd import (
    BlockedKeyError,
    InvalidEntryError,
    InvalidKeyError,
    InvalidKeyTypeError,
    SessionStore,
    UnsafeStoreError,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes, owners, FIFOs, symlinks")

SECRET = "SECRET-7f3a9c"  # planted in every bad file: must never reach a log line

VICTIM = "agent:main:victim"
ATTACKER = "agent:main:attacker"
LONG_VICTIM = "agent:main:subagent:" + "v" * 200
LONG_OTHER = "agent:main:subagent:" + "o" * 200
LONG_GOOD = "agent:main:subagent:" + "g" * 200

GOOD = {
    "good-1": {"updatedAt": 11, "sessionId": "g1"},
    "good-2": {"updatedAt": 12, "lastChannel": "telegram", "lastTo": "42"},
    LONG_GOOD: {"updatedAt": 13, "sessionId": "long"},
}
LEGACY = {"legacy-key": {"updatedAt": 2, "src": "legacy"}}
DIRECTORY = {"dir-key": {"updatedAt": 1, "src": "directory"}}


# -- helpers written from the SPEC -------------------------------------------------------

name_for = spec_name


def doc(key, entry) -> bytes:
    return json.dumps({"sessionKey": key, "entry": entry}, indent=2).encode()


def make_directory_store(base, entries=None, **options) -> SessionStore:
    """A directory-mode store at *base*/sessions.json holding *entries*."""
    base.mkdir(parents=True, exist_ok=True)
    path = base / "sessions.json"
    path.write_text(json.dumps(entries if entries is not None else GOOD))
    result = sessionsd.migrate(path)
    assert result.outcome == "migrated", result
    store = SessionStore(path, **options)
    assert store.mode == "directory"
    return store


def make_store(kind: str, base) -> SessionStore:
    """``fresh`` (no files), ``legacy`` (a sessions.json) or ``directory``."""
    base.mkdir(parents=True, exist_ok=True)
    path = base / "sessions.json"
    if kind == "directory":
        return make_directory_store(base)
    if kind == "legacy":
        path.write_text(json.dumps(GOOD))
    store = SessionStore(path)
    assert store.mode == "legacy"
    return store


def listing(root) -> dict:
    """Everything under *root*: kind, mode and content (files), target (links)."""
    result = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, root)
            if is_lock_artifact(name):
                continue  # the lock file is not store data (created on first lock)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                result[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                result[rel] = ("dir", stat.S_IMODE(info.st_mode), info.st_uid)
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as fh:
                    result[rel] = ("file", stat.S_IMODE(info.st_mode), fh.read())
            else:
                result[rel] = ("other", stat.S_IFMT(info.st_mode))
    return result


def seq_of(base) -> int:
    data = (base / "sessions.d" / "seq").read_bytes()
    return struct.unpack("<Q", data[:8])[0]


def version_of(base) -> int:
    return json.loads((base / "sessions.d" / "state.json").read_text())["version"]


def temp_files(base) -> list[str]:
    """Temp files and commit records left in the store (ours and the reference's)."""
    left = []
    for sub in ("sessions.d", "sessions.d/entries"):
        directory = base / sub
        if directory.is_dir():
            for name in os.listdir(directory):
                if name.endswith(".tmp") or name == "commit.json" or name.startswith("commit.json"):
                    left.append(f"{sub}/{name}")
    left += [name for name in os.listdir(base) if name.startswith("sessions.d.staging-")]
    return left


def entry_files(base) -> dict[str, bytes]:
    entries = base / "sessions.d" / "entries"
    return {name: (entries / name).read_bytes() for name in os.listdir(entries)
            if (entries / name).is_file() and not (entries / name).is_symlink()}


def assert_clean(base) -> None:
    """After any operation returned or raised: no temp files, no commit
    record, no staging directory, the seqlock even (no commit in flight)."""
    assert temp_files(base) == []
    if (base / "sessions.d" / "seq").exists():
        assert seq_of(base) % 2 == 0


def no_secret_logged(caplog) -> None:
    for record in caplog.records:
        message = record.getMessage()
        assert SECRET not in message, message
        assert "polluted" not in message, message


def write_state(base, data: bytes) -> None:
    """Replace state.json by rename (as every writer does)."""
    state = base / "sessions.d" / "state.json"
    temp = base / "sessions.d" / "state.json.new"
    temp.write_bytes(data)
    os.chmod(temp, 0o600)
    os.replace(temp, state)


VALID_STATE = {"kind": "openclaw-session-store-directory", "layoutVersion": 1, "version": 3,
               "updatedAt": 1711111111111}


@pytest.fixture
def stdlib_json():
    """Run the test on the stdlib JSON fallback (what PyPy and some
    free-threaded builds get): sessionsd._json reloaded without orjson."""
    saved = sys.modules.get("orjson", None)
    sys.modules["orjson"] = None  # makes "import orjson" raise ImportError
    try:
        importlib.reload(sjson)
        assert sjson.IMPLEMENTATION == "stdlib json"
        yield
    finally:
        if saved is None:
            del sys.modules["orjson"]
        else:
            sys.modules["orjson"] = saved
        importlib.reload(sjson)


@pytest.fixture
def base(tmp_path):
    """The store directory, one level down so escapes upward stay visible."""
    directory = tmp_path / "agents" / "main" / "sessions"
    directory.mkdir(parents=True)
    return directory


# =======================================================================================
# 1. Corrupt, foreign and impostor entry files: skipped, reported, never trusted
# =======================================================================================

def _bad(case_id, name, data, reason, queries):
    return pytest.param(name, data, reason, queries, id=case_id)


BAD_ENTRY_FILES = [
    _bad("empty", name_for(VICTIM), b"", "empty", [VICTIM]),
    _bad("whitespace-only", name_for(VICTIM), b" \n\t\r\n  ", "empty", [VICTIM]),
    _bad("truncated-json", name_for(VICTIM),
         b'{\n  "sessionKey": "agent:main:victim",\n  "entry": {\n    "updatedAt": 5,\n'
         b'    "note": "' + SECRET.encode(), "json", [VICTIM]),
    _bad("trailing-garbage", name_for(VICTIM),
         b'{"sessionKey": "agent:main:victim", "entry": {"updatedAt": 5}} ' + SECRET.encode(),
         "json", [VICTIM]),
    _bad("invalid-json-json5-like", name_for(VICTIM),
         b"{sessionKey: 'agent:main:victim', entry: {note: '" + SECRET.encode() + b"',},}",
         "json", [VICTIM]),
    _bad("nul-bytes", name_for(VICTIM), b"\x00\x00\x00" + SECRET.encode(), "json", [VICTIM]),
    _bad("json-array", name_for(VICTIM),
         json.dumps([{"sessionKey": VICTIM, "entry": {"note": SECRET}}]).encode(), "object", [VICTIM]),
    _bad("json-string", name_for(VICTIM), json.dumps(SECRET).encode(), "object", [VICTIM]),
    _bad("json-number", name_for(VICTIM), b"42", "object", [VICTIM]),
    _bad("json-null", name_for(VICTIM), b"null", "object", [VICTIM]),
    _bad("json-true", name_for(VICTIM), b"true", "object", [VICTIM]),
    _bad("sessionKey-blank", name_for(VICTIM), doc("   ", {"note": SECRET}), "sessionkey", [VICTIM]),
    # A copy of another session's file under a new name (cp / mv by hand).
    _bad("copied-file", name_for(VICTIM), doc("good-1", {"updatedAt": 99, "note": SECRET}),
         "match", [VICTIM]),
    # The stored key differs from the name's key only by case: still a different key.
    _bad("case-variant-sessionKey", name_for(VICTIM),
         doc(VICTIM.upper(), {"updatedAt": 5, "note": SECRET}), "match", [VICTIM]),
    # A file named for one key holding another key's document (impostor).
    _bad("impostor-inline", name_for(VICTIM), doc(ATTACKER, {"updatedAt": 5, "note": SECRET}),
         "match", [VICTIM, ATTACKER]),
    _bad("impostor-hashed", name_for(LONG_VICTIM), doc(LONG_OTHER, {"updatedAt": 5, "note": SECRET}),
         "match", [LONG_VICTIM, LONG_OTHER]),
    _bad("short-key-under-hashed-name", name_for(LONG_VICTIM),
         doc(VICTIM, {"updatedAt": 5, "note": SECRET}), "match", [LONG_VICTIM, VICTIM]),
    _bad("long-key-under-inline-name", name_for(VICTIM),
         doc(LONG_VICTIM, {"updatedAt": 5, "note": SECRET}), "match", [VICTIM, LONG_VICTIM]),
    # The older raw form is only valid where the name carries the key.  Files
    # the reference reader accepts (invalid UTF-8, a non-object entry, a
    # non-string sessionKey under an inline name) load as it loads them:
    # tests/test_reference_compat.py.
    _bad("raw-form-under-hashed-name", name_for(LONG_VICTIM),
         json.dumps({"updatedAt": 5, "note": SECRET}).encode(), "hash", [LONG_VICTIM]),
    # Prototype keys: skipped on load (parity with JavaScript readers).
    _bad("blocked-key-document", name_for("__proto__"),
         doc("__proto__", {"polluted": True, "note": SECRET}), "blocked", ["__proto__"]),
    _bad("blocked-key-raw-form", name_for("constructor"),
         json.dumps({"polluted": True, "note": SECRET}).encode(), "blocked", ["constructor"]),
    _bad("blocked-key-prototype", name_for("prototype"),
         doc("prototype", {"polluted": True, "note": SECRET}), "blocked", ["prototype"]),
]


@pytest.mark.parametrize("name, data, reason, queries", BAD_ENTRY_FILES)
def test_bad_entry_file_is_skipped_and_reported(base, caplog, name, data, reason, queries):
    store = make_directory_store(base)
    path = base / "sessions.d" / "entries" / name
    path.write_bytes(data)
    os.chmod(path, 0o600)

    with caplog.at_level(logging.DEBUG, logger="sessionsd"):
        loaded = store.load()
        assert loaded == GOOD  # every good session kept, the bad one absent
        assert not any(key in loaded for key in queries)
        skipped = dict(store.skipped)
        assert list(skipped) == [name], store.skipped
        assert isinstance(skipped[name], str) and reason in skipped[name].lower(), skipped
        # Fresh objects (no cache) agree, and the summary too.
        fresh = SessionStore(base / "sessions.json", cache=False)
        assert fresh.load() == GOOD and list(dict(fresh.skipped)) == [name]
        assert set(fresh.summary()) == set(GOOD)
        for key in queries:
            for reader in (store, fresh):
                assert reader.get(key) is None, key
                assert reader.get(key, "default") == "default", key
                assert reader.updated_at(key) is None, key
                assert key not in reader
        assert store.get("good-1") == GOOD["good-1"]
        assert store.updated_at(LONG_GOOD) == 13

    warnings = [r for r in caplog.records if r.name.startswith("sessionsd") and r.levelno == logging.WARNING]
    assert any(name in r.getMessage() for r in warnings), [r.getMessage() for r in warnings]
    no_secret_logged(caplog)
    # Loading never deletes or rewrites a file it does not understand.
    assert path.read_bytes() == data
    assert_clean(base)


def test_all_bad_entry_files_at_once_keep_every_good_session(base, caplog):
    """All the bad files of the table side by side (distinct names)."""
    store = make_directory_store(base)
    entries = base / "sessions.d" / "entries"
    planted = {}
    for index, param in enumerate(BAD_ENTRY_FILES):
        name, data, _reason, _queries = param.values
        if name == name_for(VICTIM):  # give each its own inline name
            key = f"agent:main:bad-{index}"
            name = name_for(key)
            data = data.replace(VICTIM.encode(), key.encode())
        if name in planted:
            continue
        planted[name] = data
        (entries / name).write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="sessionsd"):
        assert store.load() == GOOD
    assert set(dict(store.skipped)) == set(planted)
    text = caplog.text
    for name in planted:
        assert name in text
    no_secret_logged(caplog)
    assert {name: (entries / name).read_bytes() for name in planted} == planted
    # Writes of good sessions still work around them, and they stay untouched.
    store.put("good-3", {"updatedAt": 14})
    store.mutate(lambda s: s["good-1"].update(updatedAt=21))
    assert store.load() == {**GOOD, "good-1": {**GOOD["good-1"], "updatedAt": 21},
                            "good-3": {"updatedAt": 14}}
    assert {name: (entries / name).read_bytes() for name in planted} == planted
    assert_clean(base)


def test_prototype_document_does_not_pollute(base):
    store = make_directory_store(base)
    (base / "sessions.d" / "entries" / name_for("__proto__")).write_bytes(
        doc("__proto__", {"polluted": True}))
    loaded = store.load()
    assert "__proto__" not in loaded and type(loaded) is dict
    assert not hasattr({}, "polluted")


def test_raw_form_under_inline_name_is_accepted(base, caplog):
    store = make_directory_store(base)
    raw = {"updatedAt": 5, "sessionId": "raw", "lastChannel": "discord"}
    (base / "sessions.d" / "entries" / name_for(VICTIM)).write_text(json.dumps(raw))
    with caplog.at_level(logging.WARNING, logger="sessionsd"):
        assert store.load() == {**GOOD, VICTIM: raw}
    assert store.skipped == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert store.get(VICTIM) == raw and store.get(VICTIM.upper()) == raw
    assert store.updated_at(VICTIM) == 5
    assert store.summary()[VICTIM] == {"lastChannel": "discord", "lastTo": None, "updatedAt": 5}
    # A write to it keeps the entry and stores the document form.
    assert store.patch(VICTIM, {"lastTo": "7"}) == {**raw, "lastTo": "7"}
    written = json.loads((base / "sessions.d" / "entries" / name_for(VICTIM)).read_text())
    assert written == {"sessionKey": VICTIM, "entry": {**raw, "lastTo": "7"}}


@pytest.mark.parametrize("json_backend", ["default", "stdlib"])
def test_pathologically_nested_entry_file_is_skipped(base, request, caplog, json_backend):
    """Nesting deeper than any parser's limit is just another corrupt file,
    with orjson or with the stdlib fallback (PyPy, free-threaded builds)."""
    if json_backend == "stdlib":
        request.getfixturevalue("stdlib_json")
    store = make_directory_store(base)
    depth = 200_000
    data = (b'{"sessionKey": "agent:main:victim", "entry": {"d": ' + b"[" * depth + b"]" * depth
            + b"}}")
    (base / "sessions.d" / "entries" / name_for(VICTIM)).write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="sessionsd"):
        assert SessionStore(base / "sessions.json", cache=False).load() == GOOD
        assert store.get(VICTIM) is None and store.updated_at(VICTIM) is None


# =======================================================================================
# 2. Names that are not entry files, and non-regular files: ignored
# =======================================================================================

def test_dotfiles_temp_files_noncanonical_names_dirs_and_fifos_are_ignored(base, caplog):
    store = make_directory_store(base)
    entries = base / "sessions.d" / "entries"
    a_doc = doc("a", {"updatedAt": 5, "note": SECRET})
    long_a = "a" * 121
    foreign = {
        ".hidden.json": doc("hidden", {"note": SECRET}),
        "." + name_for("a"): a_doc,
        "." + name_for("a") + ".4242-7.tmp": a_doc,                       # our temp naming
        ".x.tmp": a_doc,
        name_for("a") + f".{uuid.uuid4()}.tmp": a_doc,                      # the reference's
        name_for("a") + ".tmp": a_doc,
        "session-YQ==.json": a_doc,                                         # padding
        "session-YQ=.json": a_doc,
        "session-YR.json": a_doc,                                           # non-zero trailing bits
        "session-Y+Q.json": a_doc,                                          # not base64url
        "session-YQ\n.json": a_doc,
        "session-IGE.json": doc(" a", {"note": SECRET}),                   # " a": leading space
        "session-YSA.json": doc("a ", {"note": SECRET}),                   # "a ": trailing space
        "session-_w.json": doc("\ufffd", {"note": SECRET}),                # invalid UTF-8
        "session-.json": a_doc,
        "session-YQ": a_doc,
        "Session-YQ.json": a_doc,
        "session-YQ.JSON": a_doc,
        "session-YQ.json.bak": a_doc,
        "session-YQ.json~": a_doc,
        "session-" + b64url(long_a.encode()) + ".json": doc(long_a, {"note": SECRET}),  # >120 B inline
        "session-hash-" + "A" * 42 + ".json": doc(long_a, {"note": SECRET}),         # too short
        "session-hash-" + "A" * 42 + "B.json": doc(long_a, {"note": SECRET}),        # trailing bits
        "session-hash-" + "A" * 44 + ".json": doc(long_a, {"note": SECRET}),         # too long
        name_for(long_a)[:-5] + ".json.tmp": doc(long_a, {"note": SECRET}),
        "sessions.json": json.dumps({"a": {"note": SECRET}}).encode(),
        "state.json": json.dumps(VALID_STATE).encode(),
        "commit.json": b'{"renames": [], "deletes": ["' + name_for("good-1").encode() + b'"]}',
    }
    for name, data in foreign.items():
        (entries / name).write_bytes(data)
    # A directory and a FIFO under perfectly valid entry names.
    (entries / name_for("adir")).mkdir()
    (entries / name_for("adir") / name_for("adir")).write_bytes(doc("adir", {"note": SECRET}))
    os.mkfifo(entries / name_for("fifo"))
    os.mkfifo(entries / "session-hash-fifo.json")
    (entries / "nested").mkdir()
    (entries / "nested" / name_for("a")).write_bytes(a_doc)
    before = listing(entries)

    with caplog.at_level(logging.DEBUG, logger="sessionsd"):
        assert store.load() == GOOD
        fresh = SessionStore(base / "sessions.json", cache=False)
        assert fresh.load() == GOOD
        for key in ("a", "hidden", " a", "a ", "\ufffd", long_a, "adir", "fifo", "nested"):
            for reader in (store, fresh):
                assert reader.get(key) is None, key
                assert reader.updated_at(key) is None, key
        assert store.delete("adir") is False and store.delete("fifo") is False
        assert store.delete("a") is False and store.delete(long_a) is False
    no_secret_logged(caplog)
    assert listing(entries) == before  # nothing read was changed, nothing followed

    # Writing the real keys creates their canonical files and touches nothing else.
    store.put("a", {"n": 1})
    store.put(long_a, {"n": 2})
    store.mutate(lambda s: s.update({"b": {"n": 3}}))
    assert store.load() == {**GOOD, "a": {"n": 1}, long_a: {"n": 2}, "b": {"n": 3}}
    after = listing(entries)
    for name, item in before.items():
        if name.startswith(".") and name.endswith(".tmp"):
            continue  # recovery may remove its own temp naming; that is not user data
        assert after.get(name) == item, name
    assert store.delete("a") is True and store.get("a") is None
    assert stat.S_ISFIFO(os.lstat(entries / name_for("fifo")).st_mode)
    assert (entries / name_for("adir")).is_dir()


# =======================================================================================
# 3. Symlinked entry files: never read, never followed, never replaced or removed
# =======================================================================================

@pytest.fixture
def evil(base, tmp_path):
    """A directory store plus entry paths that are symlinks to files elsewhere."""
    store = make_directory_store(base)
    outside = tmp_path / "outside"
    outside.mkdir()
    targets = {
        "evil": outside / "evil.json",
        LONG_VICTIM: outside / "long.json",
    }
    for key, target in targets.items():
        target.write_bytes(doc(key, {"updatedAt": 777, "note": SECRET}))
        os.chmod(target, 0o600)
        os.symlink(target, base / "sessions.d" / "entries" / name_for(key))
    (outside / "dir").mkdir()
    os.symlink(outside / "dir", base / "sessions.d" / "entries" / name_for("evil-dir"))
    os.symlink(outside / "missing.json", base / "sessions.d" / "entries" / name_for("dangling"))
    # A symlink to another entry of the same store is no entry either.
    os.symlink(name_for("good-1"), base / "sessions.d" / "entries" / name_for("alias"))
    return types.SimpleNamespace(store=store, outside=outside, base=base,
                                 keys=["evil", LONG_VICTIM, "evil-dir", "dangling", "alias"])


def _unchanged(ns, outside_before, links_before):
    assert listing(ns.outside) == outside_before
    entries = ns.base / "sessions.d" / "entries"
    for name, target in links_before.items():
        assert os.path.islink(entries / name) and os.readlink(entries / name) == target


def _links(ns):
    entries = ns.base / "sessions.d" / "entries"
    return {name: os.readlink(entries / name) for name in os.listdir(entries)
            if os.path.islink(entries / name)}


def test_symlinked_entries_are_not_loaded_or_read(evil, caplog):
    with caplog.at_level(logging.DEBUG, logger="sessionsd"):
        assert evil.store.load() == GOOD
        fresh = SessionStore(evil.base / "sessions.json", cache=False)
        assert fresh.load() == GOOD
        for key in evil.keys + ["EVIL", "  Evil  "]:
            for reader in (evil.store, fresh):
                assert reader.get(key) is None, key
                assert reader.updated_at(key) is None, key
        assert "evil" not in evil.store.summary()
    no_secret_logged(caplog)


def test_delete_leaves_symlinks_in_place(evil):
    outside_before, links_before = listing(evil.outside), _links(evil)
    version, seq = version_of(evil.base), seq_of(evil.base)
    for key in evil.keys:
        assert evil.store.delete(key) is False, key
    _unchanged(evil, outside_before, links_before)
    assert version_of(evil.base) == version
    # A whole-store delete of everything also leaves them alone.
    evil.store.mutate(lambda s: s.clear())
    assert evil.store.load() == {}
    _unchanged(evil, outside_before, links_before)
    assert seq_of(evil.base) > seq
    assert_clean(evil.base)


def test_put_over_a_symlinked_entry_is_refused(evil):
    outside_before, links_before = listing(evil.outside), _links(evil)
    files_before = entry_files(evil.base)
    version = version_of(evil.base)
    entries = evil.base / "sessions.d" / "entries"
    for key in ("evil", "EVIL", LONG_VICTIM, "evil-dir", "dangling", "alias"):
        with pytest.raises(UnsafeStoreError) as info:
            evil.store.put(key, {"updatedAt": 1, "n": "overwrite"})
        assert isinstance(info.value, PermissionError)
        assert name_for(key.strip().lower()) in str(info.value)
        assert str(info.value.path).startswith(str(entries))
        assert_clean(evil.base)
    with pytest.raises(UnsafeStoreError):
        evil.store.update_entry("evil", lambda current: {"n": "overwrite"})
    # patch of a missing (unreadable) entry writes nothing.
    assert evil.store.patch("evil", {"n": "overwrite"}) is None
    _unchanged(evil, outside_before, links_before)
    assert entry_files(evil.base) == files_before
    assert version_of(evil.base) == version
    assert evil.store.load() == GOOD
    assert_clean(evil.base)


def test_multi_entry_commit_touching_a_symlink_is_refused_atomically(evil):
    outside_before, links_before = listing(evil.outside), _links(evil)
    files_before = entry_files(evil.base)
    version = version_of(evil.base)

    def mutate(sessions):
        sessions["good-1"] = {"changed": True}
        sessions["new"] = {"n": 1}
        del sessions["good-2"]
        sessions["evil"] = {"n": "overwrite"}

    with pytest.raises(UnsafeStoreError):
        evil.store.mutate(mutate)
    with pytest.raises(UnsafeStoreError):
        evil.store.save({**GOOD, "evil": {"n": "overwrite"}})
    _unchanged(evil, outside_before, links_before)
    assert entry_files(evil.base) == files_before
    assert version_of(evil.base) == version
    assert SessionStore(evil.base / "sessions.json", cache=False).load() == GOOD
    assert_clean(evil.base)


# =======================================================================================
# 4. An invalid layout means legacy mode (the activity rule, SPEC §2)
# =======================================================================================

def _state_edit(**changes):
    def edit(base):
        state = dict(VALID_STATE)
        for key, value in changes.items():
            if value is _DROP:
                state.pop(key)
            else:
                state[key] = value
        write_state(base, json.dumps(state).encode())
    return edit


_DROP = object()


def _state_bytes(data: bytes):
    return lambda base: write_state(base, data)


def _state_missing(base):
    (base / "sessions.d" / "state.json").unlink()


def _state_symlink(base):
    real = base.parent / "real-state.json"
    real.write_text(json.dumps(VALID_STATE))
    os.chmod(real, 0o600)
    (base / "sessions.d" / "state.json").unlink()
    os.symlink(real, base / "sessions.d" / "state.json")


def _state_relative_symlink(base):
    real = base / "sessions.d" / "state-real.json"
    real.write_text(json.dumps(VALID_STATE))
    os.chmod(real, 0o600)
    (base / "sessions.d" / "state.json").unlink()
    os.symlink("state-real.json", base / "sessions.d" / "state.json")


def _state_directory(base):
    (base / "sessions.d" / "state.json").unlink()
    (base / "sessions.d" / "state.json").mkdir(mode=0o700)
    (base / "sessions.d" / "state.json" / "state.json").write_text(json.dumps(VALID_STATE))


def _state_fifo(base):
    (base / "sessions.d" / "state.json").unlink()
    os.mkfifo(base / "sessions.d" / "state.json", 0o600)


def _root_symlink(base):
    """sessions.d -> a complete, valid directory store somewhere else."""
    elsewhere = base.parent / "elsewhere"
    make_directory_store(elsewhere, DIRECTORY)
    os.rename(base / "sessions.d", base.parent / "moved-away")
    os.symlink(elsewhere / "sessions.d", base / "sessions.d")


def _root_file(base):
    os.rename(base / "sessions.d", base.parent / "moved-away")
    (base / "sessions.d").write_text(json.dumps(VALID_STATE))


def _entries_missing(base):
    os.rename(base / "sessions.d" / "entries", base.parent / "moved-entries")


def _entries_symlink(base):
    os.rename(base / "sessions.d" / "entries", base.parent / "moved-entries")
    os.symlink(base.parent / "moved-entries", base / "sessions.d" / "entries")


def _entries_file(base):
    os.rename(base / "sessions.d" / "entries", base.parent / "moved-entries")
    (base / "sessions.d" / "entries").write_bytes(doc("dir-key", DIRECTORY["dir-key"]))


INACTIVE_LAYOUTS = [
    pytest.param(_state_missing, id="state-missing"),
    pytest.param(_state_bytes(b""), id="state-empty"),
    pytest.param(_state_bytes(b"   \n"), id="state-whitespace"),
    pytest.param(_state_bytes(b'{"kind": "openclaw-session-store-directory", "layoutVe'), id="state-truncated"),
    pytest.param(_state_bytes(b"{kind: 'openclaw-session-store-directory', layoutVersion: 1, "
                              b"version: 3, updatedAt: 1,}"), id="state-json5"),
    pytest.param(_state_bytes(b"[]"), id="state-array"),
    pytest.param(_state_bytes(json.dumps([VALID_STATE]).encode()), id="state-array-of-valid"),
    pytest.param(_state_bytes(b'"openclaw-session-store-directory"'), id="state-string"),
    pytest.param(_state_bytes(b"null"), id="state-null"),
    pytest.param(_state_edit(kind="openclaw-session-store"), id="kind-wrong"),
    pytest.param(_state_edit(kind="OPENCLAW-SESSION-STORE-DIRECTORY"), id="kind-case"),
    pytest.param(_state_edit(kind=None), id="kind-null"),
    pytest.param(_state_edit(kind=_DROP), id="kind-missing"),
    pytest.param(_state_edit(layoutVersion=2), id="layoutVersion-2"),
    pytest.param(_state_edit(layoutVersion=0), id="layoutVersion-0"),
    pytest.param(_state_edit(layoutVersion="1"), id="layoutVersion-str"),
    pytest.param(_state_edit(layoutVersion=True), id="layoutVersion-true"),
    pytest.param(_state_edit(layoutVersion=_DROP), id="layoutVersion-missing"),
    pytest.param(_state_edit(version=0), id="version-0"),
    pytest.param(_state_edit(version=-1), id="version-negative"),
    pytest.param(_state_edit(version=1.5), id="version-float"),
    pytest.param(_state_edit(version="1"), id="version-str"),
    pytest.param(_state_edit(version=True), id="version-true"),
    pytest.param(_state_edit(version=None), id="version-null"),
    pytest.param(_state_edit(version=[1]), id="version-list"),
    pytest.param(_state_edit(version=_DROP), id="version-missing"),
    pytest.param(_state_edit(updatedAt=_DROP), id="updatedAt-missing"),
    pytest.param(_state_edit(updatedAt="x"), id="updatedAt-str"),
    pytest.param(_state_edit(updatedAt="1711111111111"), id="updatedAt-numeric-str"),
    pytest.param(_state_edit(updatedAt=None), id="updatedAt-null"),
    pytest.param(_state_edit(updatedAt=True), id="updatedAt-true"),
    pytest.param(_state_edit(updatedAt={}), id="updatedAt-object"),
    pytest.param(_state_bytes(json.dumps(VALID_STATE).replace("1711111111111", "1e999").encode()),
                 id="updatedAt-overflow"),
    pytest.param(_state_bytes(json.dumps(VALID_STATE).replace("1711111111111", "NaN").encode()),
                 id="updatedAt-NaN"),
    pytest.param(_state_bytes(json.dumps(VALID_STATE).replace("1711111111111", "Infinity").encode()),
                 id="updatedAt-Infinity"),
    pytest.param(_state_symlink, id="state-symlink-to-valid"),
    pytest.param(_state_relative_symlink, id="state-relative-symlink-to-valid"),
    pytest.param(_state_directory, id="state-directory"),
    pytest.param(_state_fifo, id="state-fifo"),
    pytest.param(_root_symlink, id="sessions.d-symlink-to-valid-store"),
    pytest.param(_root_file, id="sessions.d-file"),
    pytest.param(_entries_missing, id="entries-missing"),
    pytest.param(_entries_symlink, id="entries-symlink"),
    pytest.param(_entries_file, id="entries-file"),
]


def test_valid_state_variant_is_active(base):
    """Control for the table below: the same state written the same way is active."""
    make_directory_store(base, DIRECTORY)
    (base / "sessions.json").write_text(json.dumps(LEGACY))
    write_state(base, json.dumps({**VALID_STATE, "writer": "reference", "extra": [1]}).encode())
    store = SessionStore(base / "sessions.json")
    assert store.mode == "directory" and store.load() == DIRECTORY


@pytest.mark.parametrize("breakage", INACTIVE_LAYOUTS)
def test_inactive_layout_means_legacy(base, breakage):
    warm = make_directory_store(base, DIRECTORY)
    assert warm.load() == DIRECTORY and warm.get("dir-key") == DIRECTORY["dir-key"]
    (base / "sessions.json").write_text(json.dumps(LEGACY))  # different data to tell them apart
    breakage(base)

    assert sessionsd.detect(base / "sessions.json").directory_active is False
    if breakage in (_root_symlink, _entries_symlink):
        # Refused loudly (README): never read through, never silently legacy.
        for store in (SessionStore(base / "sessions.json"), warm):
            with pytest.raises(sessionsd.UnsafeStoreError):
                store.load()
        return
    for store in (SessionStore(base / "sessions.json"), SessionStore(base / "sessions.json", cache=False),
                  warm):
        assert store.mode == "legacy"
        assert store.load() == LEGACY
        assert store.get("legacy-key") == LEGACY["legacy-key"]
        assert store.updated_at("legacy-key") == 2
        assert store.get("dir-key") is None and store.updated_at("dir-key") is None
        assert set(store.summary()) == {"legacy-key"}
        assert store.mode == "legacy"


# =======================================================================================
# 5. Unsafe directories of an active store: refused, nothing written
# =======================================================================================

UNSAFE = [
    pytest.param("sessions.d", "mode", 0o777, "refusing writable session-store directory", id="root-0777"),
    pytest.param("sessions.d", "mode", 0o770, "refusing writable session-store directory", id="root-0770"),
    pytest.param("sessions.d", "mode", 0o720, "refusing writable session-store directory", id="root-0720"),
    pytest.param("sessions.d", "mode", 0o702, "refusing writable session-store directory", id="root-0702"),
    pytest.param("sessions.d", "mode", 0o1777, "refusing writable session-store directory",
                 id="root-sticky-1777"),
    pytest.param("sessions.d", "owner", 65534, "owned by another user", id="root-foreign-owner"),
    pytest.param("sessions.d/entries", "mode", 0o777, "refusing writable session-store directory",
                 id="entries-0777"),
    pytest.param("sessions.d/entries", "mode", 0o770, "refusing writable session-store directory",
                 id="entries-0770"),
    pytest.param("sessions.d/entries", "mode", 0o775, "refusing writable session-store directory",
                 id="entries-0775"),
    pytest.param("sessions.d/entries", "mode", 0o702, "refusing writable session-store directory",
                 id="entries-0702"),
    pytest.param("sessions.d/entries", "owner", 65534, "owned by another user", id="entries-foreign-owner"),
]


@pytest.mark.parametrize("which, how, value, message", UNSAFE)
def test_unsafe_directory_is_refused_and_nothing_written(base, which, how, value, message):
    warm = make_directory_store(base)
    assert warm.load() == GOOD
    warm.put("good-1", GOOD["good-1"])  # creates the lock file; the store is in use
    target = base / which
    if how == "mode":
        os.chmod(target, value)
    else:
        os.chown(target, value, -1)
    before = listing(base)

    def fresh():
        return SessionStore(base / "sessions.json")

    operations = {
        "load (warm)": lambda: warm.load(),
        "load (fresh)": lambda: fresh().load(),
        "load (no cache)": lambda: SessionStore(base / "sessions.json", cache=False).load(),
        "summary": lambda: fresh().summary(),
        "get (fresh)": lambda: fresh().get("good-1"),
        "updated_at (fresh)": lambda: fresh().updated_at("good-1"),
        "mode": lambda: fresh().mode,
        "put existing": lambda: warm.put("good-1", {"n": "new"}),
        "put new": lambda: warm.put("new", {"n": "new"}),
        "put new (fresh)": lambda: fresh().put("new", {"n": "new"}),
        "patch": lambda: warm.patch("good-1", {"n": "new"}),
        "update_entry": lambda: warm.update_entry("new", lambda current: {"n": "new"}),
        "delete": lambda: warm.delete("good-2"),
        "update": lambda: warm.mutate(lambda s: s.update({"new": {"n": "new"}})),
        "save": lambda: warm.save({"new": {"n": "new"}}),
    }
    for label, operation in operations.items():
        with pytest.raises(UnsafeStoreError) as info:
            operation()
        text = str(info.value)
        assert message in text, (label, text)
        assert str(target) in text, (label, text)
        assert os.path.samefile(info.value.path, target), label
        assert isinstance(info.value, PermissionError)
        assert listing(base) == before, label  # nothing written, nothing moved aside

    # Restoring the permissions makes the store usable again, with nothing lost.
    if how == "mode":
        os.chmod(target, 0o700)
    else:
        os.chown(target, os.geteuid(), -1)
    assert fresh().load() == GOOD
    assert_clean(base)


# =======================================================================================
# 6. Bad keys
# =======================================================================================

BAD_KEYS = [
    pytest.param("", False, id="empty"),
    pytest.param("   ", False, id="spaces"),
    pytest.param("\t\r\n\v\f", False, id="ascii-whitespace"),
    pytest.param("\u3000\ufeff\u00a0\u2028", False, id="unicode-whitespace"),
    pytest.param("\ud800", False, id="lone-high-surrogate"),
    pytest.param("agent:main:\udc00x", False, id="embedded-lone-surrogate"),
    pytest.param(None, True, id="None"),
    pytest.param(123, True, id="int"),
    pytest.param(1.5, True, id="float"),
    pytest.param(b"bytes", True, id="bytes"),
    pytest.param(bytearray(b"x"), True, id="bytearray"),
    pytest.param(["a"], True, id="list"),
    pytest.param(("a",), True, id="tuple"),
]


@pytest.mark.parametrize("mode", ["fresh", "legacy", "directory"])
@pytest.mark.parametrize("key, non_str", BAD_KEYS)
def test_bad_key_is_refused_everywhere(base, mode, key, non_str):
    store = make_store(mode, base)
    before = listing(base)
    expected = InvalidKeyTypeError if non_str else InvalidKeyError
    operations = {
        "get": lambda: store.get(key),
        "get default": lambda: store.get(key, "default"),
        "updated_at": lambda: store.updated_at(key),
        "contains": lambda: key in store,
        "put": lambda: store.put(key, {"n": 1}),
        "patch": lambda: store.patch(key, {"n": 1}),
        "update_entry": lambda: store.update_entry(key, lambda current: {"n": 1}),
        "delete": lambda: store.delete(key),
        "normalize_key": lambda: store.normalize_key(key),
    }
    if isinstance(key, str) or key is None or isinstance(key, (int, float, bytes, tuple)):
        # hashable: usable as a mapping key in whole-store operations
        operations["update"] = lambda: store.mutate(lambda s: s.__setitem__(key, {"n": 1}))
        operations["save"] = lambda: store.save({**GOOD, key: {"n": 1}})
    for label, operation in operations.items():
        with pytest.raises(expected) as info:
            operation()
        assert isinstance(info.value, ValueError), label
        if non_str:
            assert isinstance(info.value, TypeError), label
        assert listing(base) == before, label
    if mode != "fresh":
        assert store.load() == GOOD


@pytest.mark.parametrize("mode", ["fresh", "legacy", "directory"])
@pytest.mark.parametrize("key", ["__proto__", "prototype", "constructor", "  constructor\n",
                                 "__PROTO__", "Prototype"])
def test_blocked_keys_are_refused_on_write_and_absent_on_read(base, mode, key):
    store = make_store(mode, base)
    before = listing(base)
    writes = {
        "put": lambda: store.put(key, {"n": 1}),
        "patch": lambda: store.patch(key, {"n": 1}),
        "update_entry": lambda: store.update_entry(key, lambda current: {"n": 1}),
        "update": lambda: store.mutate(lambda s: s.__setitem__(key, {"n": 1})),
        "save": lambda: store.save({"ok": {"n": 2}, key: {"n": 1}}),
    }
    for label, operation in writes.items():
        with pytest.raises(BlockedKeyError) as info:
            operation()
        assert isinstance(info.value, InvalidKeyError) and isinstance(info.value, ValueError)
        assert listing(base) == before, label
    assert store.get(key) is None and store.updated_at(key) is None and key not in store
    assert store.delete(key) is False
    assert listing(base) == before


def test_blocked_key_match_is_exact_without_lower_casing(base):
    make_directory_store(base)
    store = SessionStore(base / "sessions.json", lower_keys=False)
    with pytest.raises(BlockedKeyError):
        store.put("constructor", {"n": 1})
    store.put("Constructor", {"n": 1})  # another key: JavaScript readers see it fine
    assert store.get("Constructor") == {"n": 1} and store.get("constructor") is None


def test_blocked_keys_in_a_legacy_file_are_dropped(base):
    (base / "sessions.json").write_text(json.dumps({"__proto__": {"polluted": True}, **GOOD}))
    store = SessionStore(base / "sessions.json")
    assert store.load() == GOOD and store.get("__proto__") is None
    result = sessionsd.migrate(base / "sessions.json")
    assert result.outcome == "migrated"
    assert SessionStore(base / "sessions.json").load() == GOOD
    assert not (base / "sessions.d" / "entries" / name_for("__proto__")).exists()


def test_ten_thousand_character_key_round_trips(base):
    store = make_directory_store(base)
    key = "agent:main:" + "k" * 10_000
    unicode_key = "agent:main:" + "é" * 5_000  # 10,000+ UTF-8 bytes
    for k, n in ((key, 1), (unicode_key, 2)):
        store.put(k, {"updatedAt": 100 + n, "n": n})
        name = name_for(k)
        assert name.startswith("session-hash-") and len(name) == 61
        path = base / "sessions.d" / "entries" / name
        assert json.loads(path.read_text())["sessionKey"] == k
        assert store.get(k) == {"updatedAt": 100 + n, "n": n}
        assert store.get("  " + k.upper() + "\n") == {"updatedAt": 100 + n, "n": n}
        assert store.updated_at(k) == 100 + n
        assert store.patch(k, {"x": True}) == {"updatedAt": 100 + n, "n": n, "x": True}
    loaded = SessionStore(base / "sessions.json", cache=False).load()
    assert loaded[key]["n"] == 1 and loaded[unicode_key]["n"] == 2
    assert store.skipped == [] or all(name_for(k) not in dict(store.skipped) for k in (key, unicode_key))
    assert store.delete(key) is True and store.get(key) is None
    assert store.delete(key) is False
    assert set(store.load()) == set(GOOD) | {unicode_key}


ODD_KEYS = [
    "/", "//", "\\", "..", "../", "../..", "../../escape", "../../../../../../tmp/x",
    "a/../../b", "/etc/passwd", "\\\\server\\share\\x", "..\\..\\x", "C:\\Windows\\x",
    "a\x00b", "\x00", "\x00/../x", "a\nb", "a\rb", "\x1b[31m", "sessions.json", "state.json",
    "seq", "commit.json", "entries", ".hidden", ".", "~", "$HOME", "%2e%2e%2f", "*", "?", "|",
    "é", "😀", "\u202egnp.exe", "a" * 120, "a" * 121, "é" * 60, "é" * 61,
]


@pytest.mark.parametrize("mode", ["fresh", "directory"])
def test_odd_keys_round_trip_and_stay_inside_the_store(base, tmp_path, mode):
    store = make_store(mode, base)
    escape = f"/tmp/sessionsd-escape-{uuid.uuid4().hex}"
    keys = ODD_KEYS + [escape, escape + "/x"]
    norm = {key: key.lower() for key in keys}  # no key here has surrounding whitespace
    for index, key in enumerate(keys):
        store.put(key, {"updatedAt": index, "key": key})
    for index, key in enumerate(keys):
        assert store.get(key) == {"updatedAt": index, "key": key}, repr(key)
        assert store.updated_at(key) == index, repr(key)
    fresh = SessionStore(base / "sessions.json", cache=False)
    loaded = fresh.load()
    assert fresh.skipped == []
    for index, key in enumerate(keys):
        assert loaded[norm[key]] == {"updatedAt": index, "key": key}, repr(key)
    # Whole-store operations and deletes with the same keys.
    store.mutate(lambda s: [s[norm[k]].update(touched=True) for k in keys[::2]])
    for key in keys[::2]:
        assert store.get(key)["touched"] is True, repr(key)
    for key in keys[1::3]:
        assert store.delete(key) is True, repr(key)
        assert store.get(key) is None, repr(key)
    assert store.patch("..", {"p": 1})["p"] == 1
    expected = {norm[k] for k in keys if k not in keys[1::3]}
    if mode == "directory":
        expected |= set(GOOD)
    assert set(store.load()) == expected

    # Every entry file is a canonical name directly inside entries/.
    entries = base / "sessions.d" / "entries"
    for name in os.listdir(entries):
        assert (entries / name).is_file() and not (entries / name).is_symlink()
        assert name.startswith("session-") and name.endswith(".json"), name
    assert_no_write_outside(tmp_path, base)
    assert not os.path.lexists(escape)


def _allowed_in_store(inside: str, is_dir: bool) -> bool:
    first = inside.split(os.sep)[0]
    if first == "sessions.d" or first.startswith(("sessions.d.bak.", "sessions.d.orphan.")):
        return True
    return not is_dir and os.sep not in inside and (first.startswith("sessions.json")
                                                    or is_lock_artifact(first))


def assert_no_write_outside(tmp_path, base) -> None:
    """Every file under *tmp_path* is inside sessions.d/ (or its backups) or
    is sessions.json* (the legacy file, its backups, the lock); no other
    directory (a leftover staging directory) exists."""
    rel_base = os.path.relpath(base, tmp_path)
    ancestors = set()
    head = rel_base
    while head:
        ancestors.add(head)
        head = os.path.dirname(head)
    for directory, dirs, files in os.walk(tmp_path):
        for name in files + dirs:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, tmp_path)
            is_dir = os.path.isdir(path) and not os.path.islink(path)
            if is_dir and rel in ancestors:
                continue
            inside = os.path.relpath(rel, rel_base)
            assert not inside.startswith(".."), f"written outside the store: {rel}"
            assert _allowed_in_store(inside, is_dir), f"unexpected path in the store directory: {rel}"


def test_every_write_stays_inside_the_store_directory(base, tmp_path):
    """A life cycle from a fresh install through migration, odd keys,
    whole-store commits, deletes and a rollback."""
    path = base / "sessions.json"
    store = SessionStore(path)
    store.put("../first", {"updatedAt": 1})            # legacy write
    store.put("/second", {"updatedAt": 2})             # changing save: migrates
    assert store.mode == "directory"
    for key in ODD_KEYS[:12]:
        store.put(key, {"k": key})
    store.mutate(lambda s: s.update({"\\x": {"n": 1}, "../y": {"n": 2}}))
    store.save({key: {"k": key} for key in ODD_KEYS[5:20]})
    store.update_entry("a/../../b", lambda current: {"n": 3})
    store.patch("..", {"p": 1})
    store.delete("../../escape")
    assert sessionsd.rollback(path) is True
    SessionStore(path).put("../after-rollback", {"n": 4})
    assert_no_write_outside(tmp_path, base)
    modes = {stat.S_IMODE(os.lstat(os.path.join(d, f)).st_mode)
             for d, _, fs in os.walk(base / "sessions.d") for f in fs}
    assert modes <= {0o600}


# =======================================================================================
# 7. Bad entries: refused before anything is written
# =======================================================================================

def _circular():
    value = {"updatedAt": 1}
    value["self"] = value
    return value


NON_DICT_ENTRIES = [
    pytest.param(["a", 1], id="list"),
    pytest.param("entry", id="str"),
    pytest.param(None, id="None"),
    pytest.param(5, id="int"),
    pytest.param(("a",), id="tuple"),
    pytest.param(b"{}", id="bytes"),
    pytest.param(types.MappingProxyType({"a": 1}), id="mappingproxy"),
]

UNSERIALISABLE_ENTRIES = [
    pytest.param({"updatedAt": 1, "tags": {"a", "b"}}, id="set"),
    pytest.param({"updatedAt": 1, "obj": object()}, id="object"),
    pytest.param({"updatedAt": 1, "raw": b"bytes"}, id="bytes-value"),
    pytest.param({"updatedAt": 1, 7: "int key"}, id="int-key"),
    pytest.param({"updatedAt": 1, "nested": {None: 1}}, id="nested-None-key"),
    pytest.param({"updatedAt": 1, "nested": [{("t",): 1}]}, id="nested-tuple-key"),
    pytest.param({"updatedAt": 1, "big": 2 ** 64}, id="int-over-64-bits"),
    pytest.param({"updatedAt": 1, "small": -(2 ** 63) - 1}, id="int-under-64-bits"),
    pytest.param({"updatedAt": 1, "f": lambda: None}, id="function"),
    pytest.param({"updatedAt": 1, "c": 1j}, id="complex"),
    pytest.param(_circular(), id="circular"),
]


def _entry_writes(store, entry, key="good-1"):
    ops = {
        "put existing": lambda: store.put(key, entry),
        "put new": lambda: store.put("brand-new", entry),
        "update_entry existing": lambda: store.update_entry(key, lambda current: entry),
        "update_entry new": lambda: store.update_entry("brand-new", lambda current: entry),
        "update add": lambda: store.mutate(lambda s: s.__setitem__("brand-new", entry)),
        "update replace": lambda: store.mutate(lambda s: s.__setitem__(key, entry)),
        "save": lambda: store.save({**GOOD, "brand-new": entry}),
    }
    return ops


def _assert_nothing_changed(base, before, store, mode):
    assert listing(base) == before
    if mode != "fresh":
        assert SessionStore(base / "sessions.json", cache=False).load() == GOOD
        assert store.load() == GOOD
    else:
        assert store.load() == {}
    assert_clean(base)


@pytest.mark.parametrize("mode", ["fresh", "legacy", "directory"])
@pytest.mark.parametrize("entry", NON_DICT_ENTRIES)
def test_non_dict_entry_is_refused(base, mode, entry):
    store = make_store(mode, base)
    before = listing(base)
    for label, operation in _entry_writes(store, entry).items():
        if entry is None and label.startswith("update_entry"):
            continue  # update_entry's fn returning None means "store nothing"
        with pytest.raises(InvalidEntryError) as info:
            operation()
        assert isinstance(info.value, ValueError), label
        _assert_nothing_changed(base, before, store, mode)
    if mode != "fresh" and not isinstance(entry, types.MappingProxyType):
        with pytest.raises(InvalidEntryError):
            store.patch("good-1", entry)  # fields must be a mapping of fields
        _assert_nothing_changed(base, before, store, mode)


@pytest.mark.parametrize("mode", ["fresh", "legacy", "directory"])
@pytest.mark.parametrize("entry", UNSERIALISABLE_ENTRIES)
def test_unserialisable_entry_is_refused(base, mode, entry):
    store = make_store(mode, base)
    before = listing(base)
    for label, operation in _entry_writes(store, entry).items():
        with pytest.raises(InvalidEntryError) as info:
            operation()
        assert isinstance(info.value, ValueError), label
        _assert_nothing_changed(base, before, store, mode)
    if mode != "fresh":
        bad_fields = {k: v for k, v in entry.items() if k != "updatedAt"}
        with pytest.raises(InvalidEntryError):
            store.patch("good-1", bad_fields)
        _assert_nothing_changed(base, before, store, mode)


@pytest.mark.parametrize("entry", [p for p in UNSERIALISABLE_ENTRIES if p.id != "circular"])
def test_unserialisable_entry_is_refused_with_stdlib_json(base, stdlib_json, entry):
    store = make_store("directory", base)
    before = listing(base)
    for _label, operation in _entry_writes(store, entry).items():
        with pytest.raises(InvalidEntryError):
            operation()
        _assert_nothing_changed(base, before, store, "directory")


def test_circular_entry_with_stdlib_json_fails_fast(base):
    """Without orjson (PyPy, some free-threaded builds) the stdlib encoder
    must refuse a self-referencing entry as orjson does -- not hang."""
    make_directory_store(base)
    script = textwrap.dedent(
        """
        import sys
        sys.modules["orjson"] = None
        import sessionsd, sessionsd._json as j
        assert j.IMPLEMENTATION == "stdlib json", j.IMPLEMENTATION
        store = sessionsd.SessionStore(sys.argv[1])
        for make in (lambda: {"a": {1, 2}}, lambda: {1: 2}, lambda: {"x": 2 ** 64}):
            try:
                store.put("k", make())
            except sessionsd.InvalidEntryError:
                pass
            else:
                raise SystemExit("accepted")
        cycle = {"updatedAt": 1}
        cycle["self"] = cycle
        try:
            store.put("k", cycle)
        except sessionsd.InvalidEntryError:
            print("refused")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        done = subprocess.run([sys.executable, "-c", script, str(base / "sessions.json")],
                              capture_output=True, text=True, timeout=5, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("stdlib_dumps never returns for a self-referencing entry")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "refused"
    assert SessionStore(base / "sessions.json").get("k") is None


# NaN and infinities are refused before anything is written (README):
# tests/test_bad_values.py::test_non_finite_float_is_refused_before_anything_is_written.


@pytest.mark.parametrize("mode", ["legacy", "directory"])
def test_update_with_bad_value_commits_nothing(base, mode):
    store = make_store(mode, base)
    store.load()
    before = listing(base)
    version = version_of(base) if mode == "directory" else None

    def non_dict(sessions):
        sessions["good-1"]["updatedAt"] = 1000   # a valid change first...
        del sessions["good-2"]                  # ...and a delete...
        sessions["added"] = {"n": 1}            # ...and an add...
        sessions["bad"] = ["not", "a", "dict"]  # ...then one bad value

    def unserialisable(sessions):
        sessions["good-1"]["updatedAt"] = 1000
        del sessions["good-2"]
        sessions["bad"] = {"s": {1, 2}}

    def bad_key(sessions):
        sessions["good-1"]["updatedAt"] = 1000
        sessions[42] = {"n": 1}

    def empty_key(sessions):
        del sessions["good-2"]
        sessions["  "] = {"n": 1}

    def duplicate_after_normalising(sessions):
        sessions["NEW"] = {"n": 1}
        sessions["new"] = {"n": 2}

    class Boom(Exception):
        pass

    def raises(sessions):
        sessions.clear()
        raise Boom

    for mutator, error in ((non_dict, InvalidEntryError), (unserialisable, InvalidEntryError),
                           (bad_key, InvalidKeyTypeError), (empty_key, InvalidKeyError),
                           (duplicate_after_normalising, InvalidKeyError), (raises, Boom)):
        with pytest.raises(error):
            store.mutate(mutator)
        assert listing(base) == before, mutator.__name__
        assert store.load() == GOOD, mutator.__name__
        if version is not None:
            assert version_of(base) == version
        assert_clean(base)
    assert store.mode == mode


# =======================================================================================
# 8. Huge input
# =======================================================================================

@pytest.mark.parametrize("mode", ["fresh", "directory"])
def test_five_megabyte_entry_round_trips(base, mode):
    store = make_store(mode, base)
    blob = "x" * 5_000_000
    entry = {"updatedAt": 1711111111111, "skillsSnapshot": {"prompt": blob, "list": list(range(1000))}}
    store.put("agent:main:big", entry)
    assert store.get("agent:main:big") == entry
    assert store.updated_at("agent:main:big") == 1711111111111
    assert SessionStore(base / "sessions.json", cache=False).load()["agent:main:big"] == entry
    store.put("agent:main:other", {"updatedAt": 1})  # a fresh store migrates here
    assert store.patch("agent:main:big", {"lastTo": "1"}) == {**entry, "lastTo": "1"}
    assert SessionStore(base / "sessions.json", cache=False).get("agent:main:big") == {**entry, "lastTo": "1"}
    assert_clean(base)


def _too_big(size: str, limit: str) -> str:
    return (f"Legacy sessions.json is {size}, over the migration limit of {limit} set by "
            "--max-bytes / max_bytes=; raise the limit or drop it (--max-bytes none, "
            "max_bytes=None) to migrate the file.")


def test_legacy_file_over_64_mib_is_read_and_refused_for_its_content_only(base):
    """No size limit by default: a file over 64 MiB is read (streaming); this
    one is refused because NUL bytes follow its object, and says so."""
    path = base / "sessions.json"
    with open(path, "wb") as fh:
        fh.write(b'{"a": {"updatedAt": 1}}')
        fh.truncate(64 * 1024 * 1024 + 1)  # sparse: cheap to make
    info = os.stat(path)
    detection = sessionsd.detect(path)
    assert detection.status == "invalid_legacy"
    assert detection.directory_active is False and detection.legacy_exists is True
    [warning] = detection.warnings
    assert warning.startswith("Failed to parse legacy sessions.json: unexpected byte 0x00 at byte 23 "
                              "after the end of the top-level object; a file over 64 MiB is read as "
                              "strict JSON only"), warning
    result = sessionsd.migrate(path)
    assert result.outcome == "skipped_invalid" and result.warnings == detection.warnings
    # A limit, when one is set, is checked first and named.
    limited = [_too_big("64.0 MiB (67108865 bytes)", "64 MiB")]
    assert sessionsd.detect(path, max_bytes=64 * 1024 * 1024).warnings == limited
    assert sessionsd.migrate(path, max_bytes=64 * 1024 * 1024).warnings == limited
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (info.st_ino, info.st_size, info.st_mtime_ns)
    assert sorted(n for n in os.listdir(base) if not is_lock_artifact(n)) == ["sessions.json"]


def test_legacy_file_over_a_small_max_bytes_is_not_migrated(base):
    path = base / "sessions.json"
    data = json.dumps(GOOD).encode()
    path.write_bytes(data)
    limit = len(data) - 1
    detection = sessionsd.detect(path, max_bytes=limit)
    assert detection.status == "invalid_legacy"
    assert detection.warnings == [_too_big(f"{len(data)} bytes", f"{limit} bytes")]
    result = sessionsd.migrate(path, max_bytes=limit)
    assert result.outcome == "skipped_invalid" and result.backup_path is None
    assert path.read_bytes() == data and not (base / "sessions.d").exists()
    # Exactly at the limit is allowed.
    assert sessionsd.detect(path, max_bytes=len(data)).status == "ready_to_migrate"
    assert sessionsd.migrate(path, max_bytes=len(data)).outcome == "migrated"
    assert SessionStore(path).load() == GOOD


# =======================================================================================
# 9. Write failures propagate unchanged and leave the previous state intact
# =======================================================================================

class DiskFull:
    """Replaces sessionsd._fsutil._write_all: writes half, then ENOSPC --
    the real write_new must clean up its partial temp file."""

    def __init__(self, fail_on=(1,)):
        self.calls = 0
        self.fail_on = set(fail_on)
        self.error = OSError(errno.ENOSPC, "No space left on device")
        self.real = fsutil._write_all

    def __call__(self, fd, data):
        if not data:
            return self.real(fd, data)  # e.g. the case-sensitivity probe: not counted
        self.calls += 1
        if self.calls in self.fail_on or "always" in self.fail_on:
            os.write(fd, bytes(data[: len(data) // 2]))
            raise self.error
        return self.real(fd, data)


class FailingReplace:
    """Replaces os.replace: fails for targets ending with *suffix* (the first
    *times* such calls, or always)."""

    def __init__(self, suffix, times=None, err=errno.EIO):
        self.suffix = suffix
        self.times = times
        self.failed = 0
        self.error = OSError(err, os.strerror(err))
        self.real = os.replace

    def __call__(self, src, dst, **kwargs):
        if os.fspath(dst).endswith(self.suffix) and (self.times is None or self.failed < self.times):
            self.failed += 1
            raise self.error
        return self.real(src, dst, **kwargs)


def _state_after_failure(base, before_files):
    assert_clean(base)
    assert entry_files(base) == before_files


def test_put_write_failure_propagates_unchanged(base, monkeypatch):
    store = make_directory_store(base)
    files, version, seq = entry_files(base), version_of(base), seq_of(base)
    fail = DiskFull(fail_on=("always",))
    monkeypatch.setattr(fsutil, "_write_all", fail)
    for operation in (lambda: store.put("good-1", {"n": "new"}),
                      lambda: store.put("new", {"n": "new"}),
                      lambda: store.patch("good-1", {"n": "new"}),
                      lambda: store.update_entry("good-2", lambda current: {**current, "n": 1})):
        with pytest.raises(OSError) as info:
            operation()
        assert info.value is fail.error and type(info.value) is OSError
        assert info.value.errno == errno.ENOSPC
        _state_after_failure(base, files)
    monkeypatch.undo()
    assert version_of(base) == version and seq_of(base) >= seq
    assert store.load() == GOOD and store.get("good-1") == GOOD["good-1"]
    assert store.get("new") is None


def test_put_rename_failure_propagates_unchanged(base, monkeypatch):
    store = make_directory_store(base)
    files = entry_files(base)
    fail = FailingReplace(name_for("good-1"))
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError) as info:
        store.put("good-1", {"n": "new"})
    assert info.value is fail.error
    _state_after_failure(base, files)
    monkeypatch.undo()
    assert store.load() == GOOD


def test_delete_failure_propagates_unchanged(base, monkeypatch):
    store = make_directory_store(base)
    files = entry_files(base)
    error = PermissionError(errno.EACCES, "Permission denied")
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if os.fspath(path).endswith(name_for("good-2")):
            raise error
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(PermissionError) as info:
        store.delete("good-2")
    assert info.value is error
    monkeypatch.undo()
    _state_after_failure(base, files)
    assert store.load() == GOOD


def _three_way_update(sessions):
    sessions["good-1"] = {**sessions["good-1"], "updatedAt": 101}
    sessions["good-2"] = {**sessions["good-2"], "updatedAt": 102}
    del sessions[LONG_GOOD]
    sessions["added"] = {"updatedAt": 104}


NEW_STATE = {
    "good-1": {**GOOD["good-1"], "updatedAt": 101},
    "good-2": {**GOOD["good-2"], "updatedAt": 102},
    "added": {"updatedAt": 104},
}


@pytest.mark.parametrize("fail_on", [1, 2, 3, 4], ids=["1st-temp", "2nd-temp", "3rd-temp", "commit-record"])
def test_update_write_failure_before_the_commit_point_keeps_the_old_state(base, monkeypatch, fail_on):
    store = make_directory_store(base)
    store.load()
    files, version = entry_files(base), version_of(base)
    fail = DiskFull(fail_on=(fail_on,))
    monkeypatch.setattr(fsutil, "_write_all", fail)
    with pytest.raises(OSError) as info:
        store.mutate(_three_way_update)
    assert info.value is fail.error
    assert fail.calls == fail_on  # the failure hit the write it was meant for
    monkeypatch.undo()
    _state_after_failure(base, files)
    assert version_of(base) == version
    assert store.load() == GOOD
    assert SessionStore(base / "sessions.json", cache=False).load() == GOOD
    # The store keeps working.
    store.mutate(_three_way_update)
    assert store.load() == NEW_STATE


@pytest.mark.parametrize("target", ["good-1", "good-2", "added"])
def test_update_transient_rename_failure_is_never_a_mix(base, monkeypatch, target):
    """A rename that fails once while a decided commit is being applied:
    the error propagates and the store shows the old state or the new one,
    never a mix (SPEC §4, §8)."""
    store = make_directory_store(base)
    store.load()
    fail = FailingReplace(name_for(target), times=1)
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError) as info:
        store.mutate(_three_way_update)
    assert info.value is fail.error and fail.failed == 1
    monkeypatch.undo()
    assert_clean(base)
    loaded = SessionStore(base / "sessions.json", cache=False).load()
    assert loaded in (GOOD, NEW_STATE), loaded
    assert store.load() == loaded


def test_update_state_bump_failure_after_the_commit_point_is_never_a_mix(base, monkeypatch):
    """The write of state.json fails once after every rename was applied."""
    store = make_directory_store(base)
    store.load()
    fail = DiskFull(fail_on=(5,))  # 3 temp files, the commit record, then state.json
    monkeypatch.setattr(fsutil, "_write_all", fail)
    with pytest.raises(OSError) as info:
        store.mutate(_three_way_update)
    assert info.value is fail.error and fail.calls >= 5
    monkeypatch.undo()
    assert_clean(base)
    loaded = SessionStore(base / "sessions.json", cache=False).load()
    assert loaded in (GOOD, NEW_STATE), loaded
    assert store.load() == loaded


@pytest.mark.parametrize("target", ["good-1", "good-2", "added"])
def test_update_persistent_rename_failure_recovers_to_one_state(base, monkeypatch, target):
    """The rename keeps failing: the error propagates; once the file system
    works again the next reader recovers the old or the new state, whole."""
    store = make_directory_store(base)
    store.load()
    fail = FailingReplace(name_for(target))
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError) as info:
        store.mutate(_three_way_update)
    assert info.value is fail.error
    monkeypatch.undo()
    loaded = SessionStore(base / "sessions.json", cache=False).load()
    assert loaded in (GOOD, NEW_STATE), loaded
    assert store.load() == loaded
    store.put("after", {"n": 1})  # a writer completes any recovery
    assert_clean(base)
    assert SessionStore(base / "sessions.json", cache=False).load() == {**loaded, "after": {"n": 1}}


def test_migrating_save_write_failure_keeps_the_legacy_file(base, monkeypatch):
    path = base / "sessions.json"
    path.write_text(json.dumps(GOOD))
    data = path.read_bytes()
    store = SessionStore(path)
    fail = DiskFull(fail_on=(2,))
    monkeypatch.setattr(fsutil, "_write_all", fail)
    with pytest.raises(OSError) as info:
        store.put("new", {"n": 1})  # the first changing save migrates
    assert info.value is fail.error
    monkeypatch.undo()
    assert path.read_bytes() == data
    assert sorted(n for n in os.listdir(base) if not is_lock_artifact(n)) == ["sessions.json"]
    assert store.mode == "legacy" and store.load() == GOOD


def test_fresh_legacy_write_failure_creates_nothing(base, monkeypatch):
    store = SessionStore(base / "sessions.json")
    fail = DiskFull(fail_on=("always",))
    monkeypatch.setattr(fsutil, "_write_all", fail)
    with pytest.raises(OSError) as info:
        store.put("new", {"n": 1})
    assert info.value is fail.error
    monkeypatch.undo()
    assert [n for n in os.listdir(base) if not is_lock_artifact(n)] == []
    assert store.load() == {}


# =======================================================================================
# 10. Reads right after the migrating save (found by the non-finite float test)
# =======================================================================================

def test_reads_after_the_migrating_save_see_the_directory_store(base):
    """The first changing save of a legacy store migrates it and renames
    sessions.json away (SPEC §5): reads through the same object -- and
    through another object that last saw legacy mode -- find every session."""
    path = base / "sessions.json"
    path.write_text(json.dumps(GOOD))
    writer, other = SessionStore(path), SessionStore(path)
    assert writer.get("good-1") == GOOD["good-1"]
    assert other.get("good-1") == GOOD["good-1"]  # both last saw legacy mode
    writer.put("new", {"updatedAt": 5})
    assert not path.exists()
    for store in (writer, other):
        assert store.get("good-1") == GOOD["good-1"]
        assert store.get("new") == {"updatedAt": 5}
        assert store.updated_at("new") == 5 and store.updated_at("good-2") == 12
        assert store.load() == {**GOOD, "new": {"updatedAt": 5}}
