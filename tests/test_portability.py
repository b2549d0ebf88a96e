"""Portability that can be simulated here: no orjson, no fcntl, Windows rename
retries, case-insensitive file systems, free-threaded hammering."""

from __future__ import annotations

import enum
import errno
import json
import os
import subprocess
import sys
import sysconfig
import threading
import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sessionsd
from sessionsd import KeyCollisionError, SessionStore, _codec_py, _fsutil, _json

try:
    import orjson
except ImportError:  # PyPy, free-threaded builds: the stdlib path is what runs
    orjson = None

# Only the tests that compare against orjson need it; the rest of this file
# (locking, renames, case folding, free-threaded hammering) must run exactly
# where orjson is absent.
needs_orjson = pytest.mark.skipif(orjson is None, reason="orjson is not installed here")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@needs_orjson
@given(json_values)
def test_stdlib_encoder_writes_orjsons_bytes(value):
    assert _json.IMPLEMENTATION.startswith("orjson")
    assert _json.stdlib_dumps(value) == _json.dumps(value)


class _Colour(enum.Enum):
    RED = "red"


# Bytes orjson wrote (OPT_INDENT_2) for GOLDEN_VALUE: checked on every
# interpreter, so one without orjson is held to them too.
GOLDEN_VALUE = {
    "updatedAt": 1790000000000,
    "f": [0.1, 1e-05, 1e-07, 1e16, 1e17, -0.0, 1.5e300, 123456.789, float("nan"), float("inf")],
    "s": "é\u2028\x00\"\\/\t<\U0001d11e", "n": None, "b": [True, False], "e": {}, "l": [],
    "nested": {"x": [1, {"y": None}]}, "big": 2**64 - 1, "neg": -(2**63),
    "u": uuid.UUID(int=0x12345678123456781234567812345678), "c": _Colour.RED, "t": (1, 2),
}
GOLDEN_BYTES = (
    b'{\n  "updatedAt": 1790000000000,\n  "f": [\n    0.1,\n    0.00001,\n    1e-7,\n    1e+16,\n'
    b'    1e+17,\n    -0.0,\n    1.5e+300,\n    123456.789,\n    null,\n    null\n  ],\n'
    b'  "s": "\xc3\xa9\xe2\x80\xa8\\u0000\\"\\\\/\\t<\xf0\x9d\x84\x9e",\n  "n": null,\n'
    b'  "b": [\n    true,\n    false\n  ],\n  "e": {},\n  "l": [],\n'
    b'  "nested": {\n    "x": [\n      1,\n      {\n        "y": null\n      }\n    ]\n  },\n'
    b'  "big": 18446744073709551615,\n  "neg": -9223372036854775808,\n'
    b'  "u": "12345678-1234-5678-1234-567812345678",\n  "c": "red",\n  "t": [\n    1,\n    2\n  ]\n}'
)


def test_both_encoders_write_the_golden_bytes():
    assert _json.stdlib_dumps(GOLDEN_VALUE) == GOLDEN_BYTES
    assert _json.dumps(GOLDEN_VALUE) == GOLDEN_BYTES


def test_without_orjson_the_stdlib_path_is_used_and_writes_the_golden_bytes():
    code = (
        "import sys; sys.modules['orjson'] = None; sys.path.insert(0, sys.argv[1])\n"
        "import test_portability as t; from sessionsd import _json\n"
        "assert _json.IMPLEMENTATION == 'stdlib json', _json.IMPLEMENTATION\n"
        "assert _json.dumps(t.GOLDEN_VALUE) == t.GOLDEN_BYTES\n"
        "assert _json.loads(t.GOLDEN_BYTES)['big'] == 2**64 - 1\n"
    )
    done = subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("value", [{1: 2}, {"a": 1 << 64}, {"a": object()}, {"a": {1}}])
def test_stdlib_encoder_refuses_what_orjson_refuses(value):
    with pytest.raises(TypeError):
        _json.dumps(value)
    with pytest.raises(TypeError):
        _json.stdlib_dumps(value)


WRITE_STORE = """
import sys, json
if sys.argv[2] == "block":
    sys.modules["orjson"] = None
import sessionsd
from sessionsd import SessionStore, _json
assert _json.IMPLEMENTATION.startswith("stdlib" if sys.argv[2] == "block" else "orjson")
store = SessionStore(sys.argv[1], durability="none")
store.put("a", {"updatedAt": 1790000000000, "f": [0.1, 1e-05, 1e-07, 1e16, -0.0], "s": "é\\u2028\\x00"})
store.put("b", {"nested": {"x": [1, {"y": None}], "e": {}}, "t": True})
store.mutate(lambda s: s.update({"c": {"n": 2.5}, "d": {}}))
store.put("hashed:" + "x" * 200, {"updatedAt": 5})
print(json.dumps(sorted(store.load())))
"""


def _files(root):
    result = {}
    for base, _dirs, files in os.walk(root):
        for name in files:
            if name in ("seq", "state.json") or name.startswith("sessions.json"):
                continue  # counters and timestamps differ by nature
            with open(os.path.join(base, name), "rb") as fh:
                data = fh.read()
            if name == "stats":
                data = data[:40]  # the last 8 bytes: the mtime of entries/, a timestamp
            result[os.path.relpath(os.path.join(base, name), root)] = data
    return result


@needs_orjson
def test_store_written_without_orjson_is_byte_identical(tmp_path):
    outputs = []
    for mode in ("orjson", "block"):
        directory = tmp_path / mode
        directory.mkdir()
        done = subprocess.run([sys.executable, "-c", WRITE_STORE, str(directory / "sessions.json"), mode],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    with_orjson, without = _files(tmp_path / "orjson"), _files(tmp_path / "block")
    assert with_orjson and with_orjson == without


def test_locking_without_fcntl_uses_filelock_and_still_excludes(tmp_path, monkeypatch):
    """Windows has no fcntl: every acquisition goes through filelock, which
    must exclude a process holding the thin flock on the same file."""
    import sessionsd._lock as lock_module

    path = tmp_path / "sessions.json"
    path.write_text('{"a": {"n": 0}}')
    sessionsd.migrate(path)
    holder = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(__file__), "workers.py"), "hold_lock",
         json.dumps([str(path), False, 1.5])], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    monkeypatch.setattr(lock_module, "fcntl", None)
    lock_module.StoreLock._registry.clear()  # a fresh lock object sees the patch
    store = SessionStore(path)
    began = time.monotonic()
    store.put("a", {"n": 1})
    waited = time.monotonic() - began
    holder.communicate(timeout=30)
    assert waited > 0.8
    assert store.get("a") == {"n": 1}
    lock_module.StoreLock._registry.clear()


def test_windows_rename_is_retried_on_transient_permission_errors(tmp_path, monkeypatch):
    target = tmp_path / "t.json"
    source = tmp_path / "s.json"
    source.write_text("new")
    failures = iter([True, True, False])
    real_replace = os.replace

    def flaky(src, dst):
        if next(failures):
            raise PermissionError(errno.EACCES, "file is open in another process")
        real_replace(src, dst)

    monkeypatch.setattr(_fsutil, "IS_WINDOWS", True)
    monkeypatch.setattr(os, "replace", flaky)
    _fsutil.replace(str(source), str(target))
    assert target.read_text() == "new"

    def always(src, dst):
        raise PermissionError(errno.EACCES, "still open")

    monkeypatch.setattr(os, "replace", always)
    with pytest.raises(PermissionError):
        _fsutil.replace(str(source), str(target))


def _case_variant_keys():
    """Two keys whose entry names differ only in letter case."""
    from sessionsd._codec_py import decode_name, encode_key

    for i in range(10_000):
        key = f"agent:main:k{i}"
        name = encode_key(key)
        middle = name[len("session-"):-len(".json")]
        for pos, char in enumerate(middle):
            if char.isalpha():
                flipped = "session-" + middle[:pos] + char.swapcase() + middle[pos + 1:] + ".json"
                other = decode_name(flipped)
                if other is not None and other == other.strip() and other != key:
                    return key, other
    raise AssertionError("no case-variant pair found")


def _fs_is_case_insensitive(directory) -> bool:
    """This test's own look at the file system, independent of the store's probe."""
    probe = os.path.join(directory, "case-Probe")
    with open(probe, "w"):
        pass
    try:
        return os.path.exists(os.path.join(directory, "CASE-pROBE"))
    finally:
        os.unlink(probe)


def _directory_store(tmp_path, **options):
    path = tmp_path / "sessions.json"
    path.write_text("{}")
    store = SessionStore(path, **options)
    store.put("x", {})
    assert store.mode == "directory"
    return store, tmp_path / "sessions.d" / "entries"


def test_case_insensitive_collision_is_refused(tmp_path):
    key, other = _case_variant_keys()
    store, entries = _directory_store(tmp_path, lower_keys=False)
    store.put(key, {"owner": key})
    insensitive = _fs_is_case_insensitive(entries)
    assert store._backend._dir._is_case_insensitive() is insensitive  # the probe, on this file system
    if not insensitive:
        # Simulate a case-insensitive volume: the other spelling is the same file.
        os.link(entries / sessionsd.encode_key(key), entries / sessionsd.encode_key(other))
        store._backend._dir._case_insensitive = True
    with pytest.raises(KeyCollisionError) as info:
        store.put(other, {"owner": other})
    assert info.value.existing_key == key and info.value.key == other
    assert store.get(key) == {"owner": key}
    store.put(key, {"owner": key, "v": 2})  # the owner itself may still write
    assert store.get(key) == {"owner": key, "v": 2}


@pytest.mark.parametrize("key", ["\x1cabc", "abc\x85"])
def test_owner_may_rewrite_a_key_that_python_would_strip(tmp_path, key):
    store, _entries = _directory_store(tmp_path)
    store._backend._dir._case_insensitive = True
    store.put(key, {"v": 1})
    store.put(key, {"v": 2})
    assert store.get(key) == {"v": 2}


def test_probe_detects_a_case_insensitive_volume(tmp_path, monkeypatch):
    """The probe answers for a volume that folds case (simulated here by an
    os.path.lexists that folds), and leaves nothing behind in entries/."""
    store, entries = _directory_store(tmp_path)
    before = sorted(os.listdir(entries))
    real_lexists = os.path.lexists

    def folding_lexists(path):
        head, tail = os.path.split(os.fspath(path))
        return real_lexists(path) or any(n.casefold() == tail.casefold() for n in os.listdir(head))

    monkeypatch.setattr(os.path, "lexists", folding_lexists)
    store._backend._dir._case_insensitive = None
    assert store._backend._dir._is_case_insensitive() is True
    monkeypatch.setattr(os.path, "lexists", real_lexists)
    store._backend._dir._case_insensitive = None
    assert store._backend._dir._is_case_insensitive() is _fs_is_case_insensitive(entries)
    assert sorted(os.listdir(entries)) == before


@pytest.fixture
def busy_switching():
    """On a GIL build, switch threads as often as possible so the hammering
    interleaves; a free-threaded build runs the threads truly in parallel."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def assert_gil_stayed_off():
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        # Importing sessionsd (its extension above all) did not turn the GIL
        # back on: the module declares Py_MOD_GIL_NOT_USED.
        assert not sys._is_gil_enabled()


def run_threads(count, work):
    """Start *count* threads together on work(t); re-raise the first failure."""
    barrier = threading.Barrier(count)
    errors = []

    def run(t):
        try:
            barrier.wait()
            work(t)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_threads_hammering_the_codec(codec, tmp_path, busy_switching):
    """Every codec function from many threads at once, on shared inputs,
    while another thread churns the scanned directory: each answer is the
    one a single thread gets."""
    keys = [f"agent:main:k{i}" for i in range(150)] + ["é" * 61, "€" * 40, " padded ", "x" * 300]
    names = [_codec_py.encode_key(k) for k in keys]
    decoded = [_codec_py.decode_name(n) for n in names]
    stable = {}
    for name in names[:100]:
        (tmp_path / name).write_text("{}")
        stable[name] = _codec_py.decode_name(name)
    (tmp_path / ".hidden.json").write_text("{}")
    document = tmp_path / "doc.json"
    document.write_bytes(b'{\n  "sessionKey": "k",\n  "entry": {\n    "updatedAt": 42\n  }\n}')
    shared_doc = {"a": [1, {"b": None}], "c": "d"}
    stop = threading.Event()

    def churn():
        i = 0
        while not stop.is_set():
            extra = tmp_path / codec.encode_key(f"churn:{i % 7}")
            extra.write_text("{}")
            (tmp_path / (extra.name + ".tmp")).write_text("{}")
            extra.unlink()
            (tmp_path / (extra.name + ".tmp")).unlink()
            i += 1

    def work(t):
        for _round in range(25):
            assert [codec.encode_key(k) for k in keys] == names
            assert codec.decode_names(names) == decoded
            assert [codec.classify_name(n) for n in names[-4:]] == ["hashed", "inline", "inline", "hashed"]
            assert codec.validate_key(" padded ") == "padded"
            try:
                codec.encode_key("\ud800")
            except sessionsd.InvalidKeyError as exc:
                assert "lone surrogate at position 0" in str(exc)
            else:
                raise AssertionError("a lone surrogate was accepted")
            found = dict(codec.scan_entries(tmp_path))
            assert stable.items() <= found.items()
            assert all(codec.decode_name(n) == k for n, k in found.items())
            assert codec.read_updated_at(str(document), "k") == (True, 42)
            copy = codec.copy_json(shared_doc)
            assert copy is not shared_doc and codec.same_json(copy, shared_doc)

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        run_threads(8, work)
    finally:
        stop.set()
        churner.join()
    assert_gil_stayed_off()


def test_threads_hammering_codec_and_store(tmp_path, busy_switching):
    """Many threads in one process on the codec and the store's hot paths;
    on a free-threaded interpreter (3.14t in the wheel matrix) this runs
    without the GIL."""
    path = tmp_path / "sessions.json"
    path.write_text('{"shared": {"n": 0}}')
    sessionsd.migrate(path)
    errors = []

    def work(t):
        try:
            store = SessionStore(path, durability="none")
            for i in range(60):
                key = f"agent:main:t{t}:{i}"
                assert sessionsd.decode_name(sessionsd.encode_key(key)) == key
                store.put(key, {"updatedAt": i, "t": t})
                assert store.updated_at(key) == i
                assert store.get(key) == {"updatedAt": i, "t": t}
                store.update_entry("shared", lambda e: {"n": e["n"] + 1})
                if i % 20 == 0:
                    store.load()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    final = SessionStore(path).load()
    assert final["shared"] == {"n": 480} and len(final) == 1 + 8 * 60
    assert_gil_stayed_off()
