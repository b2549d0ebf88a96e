"""Portability that can be simulated here: no orjson, no fcntl, Windows rename
retries, case-insensitive file systems, free-threaded hammering."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import sysconfig
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sessionsd
from sessionsd import KeyCollisionError, SessionStore, _fsutil, _json

orjson = pytest.importorskip("orjson")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_stdlib_encoder_writes_orjsons_bytes(value):
    assert _json.stdlib_dumps(value) == _json.dumps(value)


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
store.update(lambda s: s.update({"c": {"n": 2.5}, "d": {}}))
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
                result[os.path.relpath(os.path.join(base, name), root)] = fh.read()
    return result


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


def test_case_insensitive_collision_is_refused(tmp_path):
    key, other = _case_variant_keys()
    path = tmp_path / "sessions.json"
    path.write_text("{}")
    store = SessionStore(path, lower_keys=False)
    store.put(key, {"owner": key})
    store.put("x", {})
    assert store.mode == "directory"
    assert store._dir._is_case_insensitive() is False  # the probe, on this file system
    # Simulate a case-insensitive volume: the other spelling is the same file.
    entries = tmp_path / "sessions.d" / "entries"
    os.link(entries / sessionsd.encode_key(key), entries / sessionsd.encode_key(other))
    store._dir._case_insensitive = True
    with pytest.raises(KeyCollisionError) as info:
        store.put(other, {"owner": other})
    assert info.value.existing_key == key and info.value.key == other
    assert store.get(key) == {"owner": key}
    store.put(key, {"owner": key, "v": 2})  # the owner itself may still write


def test_threads_hammering_codec_and_store(tmp_path):
    """Many threads in one process on the codec and the hot paths; on a
    free-threaded interpreter (3.14t in the wheel matrix) this runs without
    the GIL."""
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
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        assert not sys._is_gil_enabled()  # importing the extension kept the GIL off
