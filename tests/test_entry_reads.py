"""Entry reads that must agree with each other (SPEC §2, §3, §8).

* ``updated_at()`` answers from a fast path (head and end of the file) and
  ``get()``/``load()`` from a full parse: for every file, damaged or
  hand-written, they give the same answer.
* ``store.skipped`` lists every name in ``entries/`` a full load did not
  load, with the reason.
* An unreadable entry file (``chmod 000``, as a non-root user) is skipped and
  reported; it does not take the rest of the store down.

Store-level tests run on whichever backend the process selected (the suite
runs twice, once with ``SESSIONSD_NO_EXTENSIONS=1``); codec-level ones run on
both backends in one process.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest
from spec_rules import spec_name

import sessionsd
from sessionsd import SessionStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes, owners, FIFOs, symlinks")

KEY = "agent:main:x"
SEED = {
    "agent:main:main": {"updatedAt": 100, "sessionId": "m"},
    "agent:main:other": {"updatedAt": 200, "nested": {"list": [1, 2]}},
}


def directory_store(tmp_path, entries=None) -> SessionStore:
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps(SEED if entries is None else entries))
    assert sessionsd.migrate(path).outcome == "migrated"
    store = SessionStore(path)
    assert store.mode == "directory"
    return store


def entry_file(tmp_path, key=KEY):
    return tmp_path / "sessions.d" / "entries" / spec_name(key)


def layout(key, entry) -> bytes:
    """What the reference writes: ``JSON.stringify(doc, null, 2)``."""
    return json.dumps({"sessionKey": key, "entry": entry}, indent=2, ensure_ascii=False).encode()


def full_parse_updated_at(data: bytes, key: str):
    """What a full parse says ``updatedAt`` is (JSON keeps the last duplicate)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("sessionKey") != key or not isinstance(doc.get("entry"), dict):
        return None
    return doc["entry"].get("updatedAt")


# -- A: bytes appended to a whole document -------------------------------------------------

APPENDED = {  # each leaves invalid JSON
    "close-brace": b"\n}",
    "close-brace-newline": b"\n}\n",
    "space-brace": b" }",
    "entry-close-and-brace": b"\n  }\n}",
    "second-document": layout(KEY, {"updatedAt": 99}),
    "newline-second-document": b"\n" + layout(KEY, {"updatedAt": 99}),
    "field-and-closers": b',\n    "updatedAt": 99\n  }\n}',
}


@pytest.mark.parametrize("suffix", APPENDED.values(), ids=APPENDED.keys())
def test_updated_at_agrees_with_get_when_bytes_are_appended(tmp_path, suffix):
    store = directory_store(tmp_path)
    store.put(KEY, {"updatedAt": 20, "sessionId": "s"})
    path = entry_file(tmp_path)
    path.write_bytes(path.read_bytes() + suffix)

    assert store.get(KEY) is None  # not one JSON document any more
    assert store.updated_at(KEY) is None
    assert store._backend._dir.read_updated_at(KEY, spec_name(KEY)) == (False, None)
    fresh = SessionStore(tmp_path / "sessions.json", cache=False)
    assert KEY not in fresh.load()
    assert dict(fresh.skipped)[spec_name(KEY)] == "invalid JSON"


@pytest.mark.parametrize("suffix", [b"\n\n", b" ", b"\n  ", b"\r\n", b"\t"])
def test_appended_whitespace_keeps_the_document_and_the_answers_agree(tmp_path, suffix):
    store = directory_store(tmp_path)
    store.put(KEY, {"updatedAt": 20, "sessionId": "s"})
    path = entry_file(tmp_path)
    path.write_bytes(path.read_bytes() + suffix)
    assert store.get(KEY) == {"updatedAt": 20, "sessionId": "s"}
    assert store.updated_at(KEY) == 20


@pytest.mark.parametrize("suffix", APPENDED.values(), ids=APPENDED.keys())
def test_fast_path_leaves_appended_bytes_to_the_full_parse(codec, tmp_path, suffix):
    path = tmp_path / spec_name(KEY)
    whole = layout(KEY, {"updatedAt": 20, "blob": "x" * 9000, "n": {"a": [1]}})
    path.write_bytes(whole)
    assert codec.read_updated_at(str(path), KEY) == (True, 20)
    path.write_bytes(whole + suffix)
    assert codec.read_updated_at(str(path), KEY) is None


# Files in the layout that the fast path must keep answering (it is the hot
# path: losing it would be a silent slowdown, not a failure).
WHOLE = {
    "only-updatedAt": {"updatedAt": 5},
    "scalar-last": {"updatedAt": 5, "n": 1},
    "object-last": {"updatedAt": 5, "o": {"a": {"b": [1, {"c": None}]}}},
    "list-last": {"updatedAt": 5, "l": [1, [2, [3]]]},
    "empty-containers-last": {"updatedAt": 5, "e": {}, "f": []},
    "negative": {"updatedAt": -5, "x": "}\n}"},
    "big": {"updatedAt": 1790000000000, "blob": "y" * 200_000},
}


@pytest.mark.parametrize("entry", WHOLE.values(), ids=WHOLE.keys())
@pytest.mark.parametrize("newline", [b"", b"\n"], ids=["", "trailing-newline"])
def test_fast_path_answers_for_whole_documents(codec, tmp_path, entry, newline):
    path = tmp_path / spec_name(KEY)
    data = layout(KEY, entry) + newline
    path.write_bytes(data)
    assert codec.read_updated_at(str(path), KEY) == (True, entry["updatedAt"])
    assert full_parse_updated_at(data, KEY) == entry["updatedAt"]


@pytest.mark.parametrize("newline", [b"", b"\n"], ids=["", "trailing-newline"])
def test_a_nested_updated_at_takes_the_full_parse_and_agrees(codec, tmp_path, newline):
    """Any other line starting with "updatedAt": (at any indent) hands the
    file to the full parse: a duplicate at the entry's level written at
    another indent is the one JSON parsers keep."""
    path = tmp_path / spec_name(KEY)
    entry = {"updatedAt": 5, "child": {"updatedAt": 6}, "list": [{"updatedAt": 7}]}
    data = layout(KEY, entry) + newline
    path.write_bytes(data)
    assert codec.read_updated_at(str(path), KEY) is None
    assert full_parse_updated_at(data, KEY) == 5


def test_fast_path_answers_for_what_the_store_writes(codec, tmp_path):
    store = directory_store(tmp_path)
    entry = {"updatedAt": 1790000000000, "sessionId": "s", "skillsSnapshot": {"skills": [{"n": "a"}]},
             "deliveryContext": {"channel": "telegram"}, "label": "é\n\"}"}
    store.put(KEY, entry)
    assert codec.read_updated_at(str(entry_file(tmp_path)), KEY) == (True, 1790000000000)
    store.put(KEY, {"updatedAt": 3})
    assert codec.read_updated_at(str(entry_file(tmp_path)), KEY) == (True, 3)


# -- B: a duplicated updatedAt (or entry) ---------------------------------------------------

def _lines(*lines: str) -> bytes:
    return "\n".join(lines).encode()


DUPLICATES = {
    "updatedAt-last": _lines(
        "{", f'  "sessionKey": "{KEY}",', '  "entry": {', '    "updatedAt": 1,', '    "x": 2,',
        '    "updatedAt": 3', "  }", "}"),
    "updatedAt-middle": _lines(
        "{", f'  "sessionKey": "{KEY}",', '  "entry": {', '    "updatedAt": 1,',
        '    "updatedAt": 3,', '    "x": {', '      "y": 2', "    }", "  }", "}"),
    "updatedAt-null": _lines(
        "{", f'  "sessionKey": "{KEY}",', '  "entry": {', '    "updatedAt": 1,',
        '    "updatedAt": null', "  }", "}"),
    "entry-twice": _lines(
        "{", f'  "sessionKey": "{KEY}",', '  "entry": {', '    "updatedAt": 1', "  },",
        '  "entry": {', '    "updatedAt": 3', "  }", "}"),
    "sessionKey-after-entry": _lines(
        "{", f'  "sessionKey": "{KEY}",', '  "entry": {', '    "updatedAt": 1', "  },",
        '  "sessionKey": "agent:main:y"', "}"),
}


@pytest.mark.parametrize("data", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_updated_at_agrees_with_get_for_duplicated_fields(tmp_path, data):
    store = directory_store(tmp_path)
    entry_file(tmp_path).write_bytes(data)
    got = store.get(KEY)
    assert store.updated_at(KEY) == (None if got is None else got.get("updatedAt"))
    assert store.updated_at(KEY) == full_parse_updated_at(data, KEY)


@pytest.mark.parametrize("data", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_fast_path_leaves_duplicates_to_the_full_parse(codec, tmp_path, data):
    path = tmp_path / spec_name(KEY)
    path.write_bytes(data)
    assert codec.read_updated_at(str(path), KEY) is None


def test_a_nested_updatedAt_is_not_a_duplicate(tmp_path):
    store = directory_store(tmp_path)
    store.put(KEY, {"updatedAt": 4, "child": {"updatedAt": 9}})
    assert store.updated_at(KEY) == 4 == store.get(KEY)["updatedAt"]


# -- C: store.skipped lists every name a load did not load ----------------------------------

def plant_non_entries(tmp_path) -> dict[str, str]:
    """Every kind of non-entry in entries/; returns name -> expected reason."""
    entries = tmp_path / "sessions.d" / "entries"
    outside = tmp_path / "outside.json"
    outside.write_bytes(layout("agent:main:evil", {"updatedAt": 1}))
    expected = {}

    def file(name, reason, data=b"{}"):
        (entries / name).write_bytes(data)
        expected[name] = reason

    file(".hidden.json", "dotfile")
    file("." + spec_name("agent:main:dot"), "dotfile", layout("agent:main:dot", {}))
    file("." + spec_name("agent:main:tmp") + ".123-4.tmp", "temp file")   # this library's
    file(spec_name("agent:main:tmp") + ".5f2b9c.tmp", "temp file")        # the reference's
    file("notes.txt", "name is not an entry name")
    file("session-YWI+.json", "name is not an entry name")
    file("session-" + spec_name("a")[len("session-"):-len(".json")] + "=.json", "name is not an entry name")
    file("session-hash-short.json", "name is not an entry name")
    file(os.fsdecode(b"session-\xff.json"), "name is not an entry name")
    file("séssion.json", "name is not an entry name")
    os.symlink(outside, entries / spec_name("agent:main:evil"))
    expected[spec_name("agent:main:evil")] = "symlink"
    os.symlink(entries / spec_name("agent:main:main"), entries / spec_name("agent:main:alias"))
    expected[spec_name("agent:main:alias")] = "symlink"
    os.symlink(tmp_path / "missing", entries / spec_name("agent:main:dangling"))
    expected[spec_name("agent:main:dangling")] = "symlink"
    os.symlink(outside, entries / ".link.json")
    expected[".link.json"] = "dotfile"
    os.mkdir(entries / spec_name("agent:main:dir"))
    expected[spec_name("agent:main:dir")] = "directory"
    os.mkdir(entries / "subdir")
    expected["subdir"] = "name is not an entry name"
    os.mkfifo(entries / spec_name("agent:main:fifo"))
    expected[spec_name("agent:main:fifo")] = "not a regular file"
    return expected


@pytest.mark.parametrize("cache", [True, False])
def test_skipped_lists_every_name_that_was_not_loaded(tmp_path, caplog, cache):
    store = directory_store(tmp_path)
    store = SessionStore(tmp_path / "sessions.json", cache=cache)
    expected = plant_non_entries(tmp_path)
    entries = tmp_path / "sessions.d" / "entries"
    (entries / spec_name("agent:main:corrupt")).write_bytes(b'{"sessionKey": ')
    expected[spec_name("agent:main:corrupt")] = "invalid JSON"

    with caplog.at_level(logging.WARNING, logger="sessionsd"):
        assert store.load() == SEED
    assert dict(store.skipped) == expected
    assert len(store.skipped) == len(expected)  # each name once
    # Loaded plus skipped is the whole directory.
    assert set(os.listdir(entries)) == set(expected) | {spec_name(k) for k in SEED}
    # Logged by name (never contents); how loudly a temp file of a write in
    # flight is logged is the store's choice, so it is not asserted here.
    for name, reason in expected.items():
        if reason != "temp file":
            assert name in caplog.text, name
    assert os.path.islink(entries / spec_name("agent:main:evil"))  # left in place


def test_a_clean_store_skips_nothing(tmp_path):
    store = directory_store(tmp_path)
    store.put(KEY, {"updatedAt": 1})
    assert SessionStore(tmp_path / "sessions.json", cache=False).load() == {**SEED, KEY: {"updatedAt": 1}}
    fresh = SessionStore(tmp_path / "sessions.json", cache=False)
    fresh.load()
    assert fresh.skipped == []


# -- D: an unreadable entry file (needs a non-root user) ----------------------------------------

UNPRIVILEGED = 65534  # nobody


def _unprivileged_uid():
    if os.geteuid() == 0:
        try:
            return pwd.getpwnam("nobody").pw_uid
        except KeyError:
            return UNPRIVILEGED
    return os.geteuid()


CHILD = textwrap.dedent(r"""
    import json, logging, os, sys
    # Everything imported before privileges are dropped: the interpreter's
    # own files need not be readable by the unprivileged user.
    import ctypes, fcntl
    import sessionsd, sessionsd.store, sessionsd.migration, sessionsd._lock
    from sessionsd import SessionStore
    from sessionsd import _codec
    uid = int(sys.argv[2])
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    assert os.geteuid() != 0
    base = sys.argv[1]
    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.levelname, record.getMessage()))
    logging.getLogger("sessionsd").addHandler(Keep())
    logging.getLogger("sessionsd").setLevel(logging.DEBUG)

    path = os.path.join(base, "sessions.json")
    seed = {"agent:main:a": {"updatedAt": 1}, "agent:main:b": {"updatedAt": 2},
            "agent:main:locked": {"updatedAt": 3, "note": "SECRET"}}
    with open(path, "w") as fh:
        json.dump(seed, fh)
    assert sessionsd.migrate(path).outcome == "migrated"
    entries = os.path.join(base, "sessions.d", "entries")
    locked = os.path.join(entries, _codec.encode_key("agent:main:locked"))
    os.chmod(locked, 0)
    try:
        os.close(os.open(locked, os.O_RDONLY))
    except PermissionError:
        pass
    else:  # not root, yet chmod 000 does not deny (CAP_DAC_OVERRIDE or similar)
        print(json.dumps({"skip": "this user can read a mode-000 file and cannot drop that privilege"}))
        sys.exit(0)
    out = {"backend": sessionsd.BACKEND}
    store = SessionStore(path)
    out["load"] = store.load()
    out["skipped"] = store.skipped
    out["keys"] = sorted(store.keys())
    out["len"] = len(store)
    store.mutate(lambda s: s["agent:main:a"].update(updatedAt=10))
    store.put("agent:main:c", {"updatedAt": 4})
    out["after"] = SessionStore(path, cache=False).load()
    for name, call in (("get", lambda: store.get("agent:main:locked")),
                       ("updated_at", lambda: store.updated_at("agent:main:locked")),
                       ("codec", lambda: _codec.read_updated_at(locked, "agent:main:locked"))):
        try:
            out[name] = ["ok", call()]
        except OSError as exc:
            out[name] = ["raise", type(exc).__name__, exc.errno]
    out["warnings"] = [m for level, m in records if level == "WARNING"]
    out["mode"] = oct(os.stat(locked).st_mode & 0o777)
    print(json.dumps(out))
""")


def test_unreadable_entry_file_is_skipped_not_fatal(tmp_path):
    uid = _unprivileged_uid()
    parent = tempfile.mkdtemp(prefix="sessionsd-eacces-")
    try:
        os.chmod(parent, 0o711)  # traversable by the unprivileged uid, not listable
        base = os.path.join(parent, "store")
        os.mkdir(base, 0o700)
        if os.geteuid() == 0:
            os.chown(base, uid, uid)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        done = subprocess.run([sys.executable, "-c", CHILD, base, str(uid)], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    if "skip" in out:
        pytest.skip(out["skip"])

    locked = spec_name("agent:main:locked")
    assert out["backend"] == sessionsd.BACKEND
    assert out["mode"] == "0o0"
    assert out["load"] == {"agent:main:a": {"updatedAt": 1}, "agent:main:b": {"updatedAt": 2}}
    assert out["skipped"] == [[locked, "permission denied"]]
    assert out["keys"] == ["agent:main:a", "agent:main:b"] and out["len"] == 2
    assert out["after"] == {"agent:main:a": {"updatedAt": 10}, "agent:main:b": {"updatedAt": 2},
                            "agent:main:c": {"updatedAt": 4}}
    # The unreadable session itself: a read of it raises (it exists, so
    # "no such session" would be a lie a caller might act on).
    for name in ("get", "updated_at", "codec"):
        assert out[name] == ["raise", "PermissionError", 13], (name, out[name])
    assert any(locked in message and "permission denied" in message for message in out["warnings"])
    assert not any("SECRET" in message for message in out["warnings"])
