"""sessionsd beside the reference host on one store (issue: "Safe beside the
reference implementation").

The reference side is tests/reference_host.py: its lock protocol, its
writes and its reader, written from the reference's documented behaviour.
Real processes throughout; every test runs on both codec backends (ci/test.sh
runs the suite twice).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import reference_host as ref

import sessionsd
from sessionsd import SessionStore, StoreLockTimeout

HERE = Path(__file__).parent
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")


def start(function: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "reference_host.py"), function, json.dumps(list(args))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)


def finish(proc: subprocess.Popen, timeout: float = 120) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def directory_store(tmp_path: Path, entries: dict | None = None) -> str:
    base = tmp_path / "agents" / "main" / "sessions"
    base.mkdir(parents=True)
    os.chmod(base, 0o700)
    path = base / "sessions.json"
    path.write_text(json.dumps(entries if entries is not None else {"seed": {"updatedAt": 1}}))
    assert sessionsd.migrate(path).outcome == "migrated"
    return str(path)


def lock_path(store_path: str) -> str:
    return os.path.join(os.path.realpath(os.path.dirname(store_path)), "sessions.json.lock")


def state_version(store_path: str) -> int:
    with open(os.path.join(os.path.dirname(store_path), "sessions.d", "state.json")) as fh:
        return json.load(fh)["version"]


# =======================================================================================
# 1. One lock for every mix of writers
# =======================================================================================

@pytest.mark.slow
@pytest.mark.parametrize("recordless", ["mtime", "immediate"])
def test_sessionsd_and_reference_writers_lose_no_update(tmp_path, recordless):
    """Two sessionsd processes (one with two threads) and one process speaking
    the reference's lock protocol increment one counter: the total is exact.
    *recordless*: the reference revision that deletes a record-less lock file
    at once is safe too, since sessionsd's file never appears without its record."""
    path = directory_store(tmp_path, {"counter": {"n": 0}})
    procs = [start("sd_increment", path, "counter", 60, 2), start("sd_increment", path, "counter", 80),
             start("increment", path, "counter", 80, recordless)]
    for proc in procs:
        finish(proc)
    assert SessionStore(path, cache=False).get("counter") == {"n": 60 * 2 + 80 + 80}
    assert ref.read_entry(path, "counter") == {"n": 280}
    assert not os.path.exists(lock_path(path))  # every holder released it


@pytest.mark.slow
def test_a_vandal_deleting_the_lock_file_never_lets_two_sessionsd_writers_in(tmp_path):
    path = directory_store(tmp_path, {"counter": {"n": 0}})
    stop = threading.Event()
    vandalised = [0]

    def vandal():
        lock = lock_path(path)
        while not stop.is_set():
            try:
                os.unlink(lock)
                vandalised[0] += 1
            except FileNotFoundError:
                pass
            if vandalised[0] % 3 == 0:
                Path(lock).write_text("garbage, not an owner record")
            time.sleep(0.0005)

    thread = threading.Thread(target=vandal)
    thread.start()
    try:
        procs = [start("sd_increment", path, "counter", 100, 2) for _ in range(2)]
        for proc in procs:
            finish(proc)
    finally:
        stop.set()
        thread.join()
    assert vandalised[0] > 0
    assert SessionStore(path, cache=False).get("counter") == {"n": 400}


def test_a_deleted_or_replaced_lock_file_does_not_free_a_held_store(tmp_path):
    path = directory_store(tmp_path)
    holder = start("sd_hold", path, 3.0)
    assert holder.stdout.readline().strip() == "locked"
    lock = lock_path(path)
    os.unlink(lock)
    Path(lock).write_text(json.dumps({"pid": 999_999_999, "createdAt": "2000-01-01T00:00:00Z"}))
    with pytest.raises(StoreLockTimeout):
        SessionStore(path, lock_timeout=0.5).put("other", {"n": 1})
    with pytest.raises(StoreLockTimeout):
        SessionStore(path, lock_timeout=0.5, sessionsd_only=True).put("other", {"n": 1})
    finish(holder)
    SessionStore(path, lock_timeout=5).put("other", {"n": 1})


def test_a_reference_process_waits_for_a_sessionsd_holder_and_sees_a_live_owner(tmp_path):
    path = directory_store(tmp_path)
    holder = start("sd_hold", path, 1.5)
    assert holder.stdout.readline().strip() == "locked"
    stale, pid = ref.judge(lock_path(path), 30_000)
    assert (stale, pid) == (False, holder.pid)
    record = json.loads(Path(lock_path(path)).read_text())
    assert record["pid"] == holder.pid and record["createdAt"].endswith("Z")
    waiter = start("wait_for_lock", path, 10.0, 30_000)
    result = finish(waiter)
    finish(holder)
    assert result["waited"] > 0.8, result


@pytest.mark.slow
def test_a_long_hold_is_kept_fresh_and_never_reclaimed_as_stale(tmp_path):
    """The reference calls a record older than staleMs stale.  With a 1 s
    staleMs on the reference side and sessionsd refreshing its record every
    0.3 s, a 3 s hold (a long migration) is never taken over."""
    path = directory_store(tmp_path)
    holder = start("sd_hold", path, 3.0, 0.3)
    assert holder.stdout.readline().strip() == "locked"
    first = json.loads(Path(lock_path(path)).read_text())["createdAt"]
    waiter = start("wait_for_lock", path, 20.0, 1_000)
    result = finish(waiter)
    finish(holder)
    assert result["waited"] > 2.0, result
    assert first  # the record was there from the first instant


def test_a_dead_sessionsd_holder_is_reclaimed_by_both_sides(tmp_path):
    path = directory_store(tmp_path)
    for reclaimer in ("reference", "sessionsd"):
        holder = start("sd_hold", path, 60.0)
        assert holder.stdout.readline().strip() == "locked"
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
        assert os.path.exists(lock_path(path))  # left behind, with a dead pid
        began = time.monotonic()
        if reclaimer == "reference":
            finish(start("wait_for_lock", path, 5.0, 30_000))
        else:
            SessionStore(path, lock_timeout=5).put("after", {"n": 1})
        assert time.monotonic() - began < 4.0
        assert not os.path.exists(lock_path(path))


def test_a_young_recordless_lock_file_is_someone_taking_the_lock(tmp_path):
    """The reference creates its file first and writes the record after: a
    young empty file is live (waited for), an old one is stale."""
    path = directory_store(tmp_path)
    lock = Path(lock_path(path))
    lock.write_text("")
    with pytest.raises(StoreLockTimeout):
        SessionStore(path, lock_timeout=0.3).put("a", {"n": 1})
    assert lock.exists()
    old = time.time() - 60
    os.utime(lock, (old, old))
    SessionStore(path, lock_timeout=2).put("a", {"n": 1})
    assert not lock.exists()


def test_every_exit_path_releases_the_lock(tmp_path):
    path = directory_store(tmp_path)
    store = SessionStore(path)

    def boom(sessions):
        raise RuntimeError("mutator failed")

    with pytest.raises(RuntimeError):
        store.mutate(boom)
    assert not os.path.exists(lock_path(path))
    with pytest.raises(ZeroDivisionError):
        store.update_entry("a", lambda e: {"n": 1 / 0})
    assert not os.path.exists(lock_path(path))
    # A process that exits (sys.exit) while holding it: atexit releases it.
    code = ("import sys, sessionsd; s = sessionsd.SessionStore(sys.argv[1]); "
            "s._backend._lock.acquire(); sys.exit(3)")
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert not os.path.exists(lock_path(path))
    mine = f".sessions.json.lock.sessionsd-{os.getpid()}-"  # this test process's own owner file
    assert not [n for n in os.listdir(os.path.dirname(path))
                if n.startswith(".sessions.json.lock.") and not n.startswith(mine)]
    finish(start("wait_for_lock", path, 1.0, 30_000))


# =======================================================================================
# 2. Reference readers' caches see every sessionsd commit
# =======================================================================================

@pytest.mark.parametrize("operation", ["put", "patch", "update_entry", "delete", "update", "save"])
def test_every_commit_is_visible_to_a_cached_reference_reader(tmp_path, operation):
    path = directory_store(tmp_path, {"a": {"n": 0}, "b": {"n": 0}})
    reader = ref.CachedReader(path)
    before = reader.load()
    assert before == {"a": {"n": 0}, "b": {"n": 0}}
    version = state_version(path)
    store = SessionStore(path)
    if operation == "put":
        store.put("a", {"n": 1})
    elif operation == "patch":
        store.patch("a", {"n": 1})
    elif operation == "update_entry":
        store.update_entry("a", lambda e: {**e, "n": 1})
    elif operation == "delete":
        store.delete("b")
    elif operation == "update":
        store.mutate(lambda s: s.__setitem__("a", {"n": 1}))
    else:
        store.save({"a": {"n": 1}, "b": {"n": 0}})
    assert state_version(path) > version
    after = reader.load()
    assert after == store.load() and after != before


def test_sessionsd_only_stores_skip_the_version_bump_and_the_lock_file(tmp_path):
    path = directory_store(tmp_path, {"a": {"n": 0}})
    version = state_version(path)
    store = SessionStore(path, sessionsd_only=True)
    other = SessionStore(path)  # a default store in the same process sees it all the same
    cached = other.load()
    store.put("a", {"n": 1})
    store.delete("a")
    store.put("b", {"n": 2})
    assert state_version(path) == version
    assert other.load() == {"b": {"n": 2}} != cached
    # No reference lock file is touched either: a reference holder does not block it.
    holder = start("hold", path, 2.0)
    assert holder.stdout.readline().strip() == "locked"
    store.put("c", {"n": 3})
    with pytest.raises(StoreLockTimeout):
        SessionStore(path, lock_timeout=0.2).put("d", {"n": 4})
    finish(holder)


def test_reference_writes_are_seen_by_sessionsd_caches(tmp_path):
    path = directory_store(tmp_path, {"a": {"n": 0}})
    store = SessionStore(path)
    assert store.load() == {"a": {"n": 0}}
    lock = ref.acquire(path)
    try:
        ref.write_entry(path, "a", {"n": 5})
    finally:
        ref.release(lock)
    assert store.load() == {"a": {"n": 5}} and store.get("a") == {"n": 5}


# =======================================================================================
# 3. Reads agree with the reference reader, file by file
# =======================================================================================

KEY = "agent:main:x"
HASHED_KEY = "agent:main:" + "h" * 130

FILES = {
    # name-key: bytes.  The reference reader's verdict is computed, not written here.
    "non-string sessionKey": (KEY, b'{"sessionKey": 5, "entry": {"updatedAt": 15}}'),
    "array entry": (KEY, b'{"sessionKey": "agent:main:x", "entry": [1]}'),
    "null entry": (KEY, b'{"sessionKey": "agent:main:x", "entry": null}'),
    "string entry": (KEY, b'{"sessionKey": "agent:main:x", "entry": "text"}'),
    "no sessionKey": (KEY, b'{"entry": {"updatedAt": 3}}'),
    "raw form": (KEY, b'{"updatedAt": 7, "lastChannel": "telegram"}'),
    "invalid UTF-8": (KEY, b'{"sessionKey": "agent:main:x", "entry": {"note": "caf\xe9 \xff\xfe ok"}}'),
    "invalid UTF-8 in a raw form": (KEY, b'{"note": "\xc3\x28 \xe2\x82 \xf0\x9f\x98"}'),
    "document": (KEY, b'{"sessionKey": "agent:main:x", "entry": {"updatedAt": 9}}'),
    "padded key": (KEY, b'{"sessionKey": "  agent:main:x\\t", "entry": {"updatedAt": 9}}'),
    "other key": (KEY, b'{"sessionKey": "agent:main:y", "entry": {"updatedAt": 9}}'),
    "empty": (KEY, b""),
    "whitespace": (KEY, b" \n "),
    "array file": (KEY, b"[1, 2]"),
    "truncated": (KEY, b'{"sessionKey": "agent:main:x", "entry": {'),
    "hashed document": (HASHED_KEY, ('{"sessionKey": "' + HASHED_KEY + '", "entry": {"n": 1}}').encode()),
    "hashed raw form": (HASHED_KEY, b'{"n": 1}'),
    "hashed array entry": (HASHED_KEY, ('{"sessionKey": "' + HASHED_KEY + '", "entry": [1]}').encode()),
    "blocked": ("constructor", b'{"polluted": true}'),
    "duplicate fields": (KEY, b'{"sessionKey": "agent:main:x", "entry": {"updatedAt": 1, "updatedAt": 2}}'),
}


@pytest.mark.parametrize("case", list(FILES))
def test_each_entry_file_reads_as_the_reference_reads_it(tmp_path, case):
    path = directory_store(tmp_path, {"good": {"updatedAt": 1}})
    key, data = FILES[case]
    entry_path = Path(path).parent / "sessions.d" / "entries" / ref.encode(key)
    entry_path.write_bytes(data)
    os.chmod(entry_path, 0o600)
    expected = ref.load_directory(path)
    store = SessionStore(path, cache=False, lower_keys=False)
    assert store.load() == expected
    assert store.get(key) == expected.get(key)
    assert store.updated_at(key) == (expected.get(key) or {}).get("updatedAt")
    assert sorted(store.keys()) == sorted(expected)


def test_state_json_versions_javascript_calls_integers_are_active(tmp_path):
    path = directory_store(tmp_path, {"a": {"n": 1}})
    state = Path(path).parent / "sessions.d" / "state.json"
    for spelling, value in (("1.0", 1), ("1e3", 1000), ("7.00", 7)):
        state.write_text(f'{{"kind": "{ref.STATE_KIND}", "layoutVersion": 1, "version": {spelling}, "updatedAt": 1}}')
        assert ref.read_state(path) is not None
        store = SessionStore(path, cache=False)
        assert store.mode == "directory" and store.load() == {"a": {"n": 1}}
        store.put("b", {"n": 2})
        assert state_version(path) == value + 1  # bumped as the reference bumps it
        store.delete("b")
    for spelling in ("1.5", '"1"', "true", "0", "-1"):
        state.write_text(f'{{"kind": "{ref.STATE_KIND}", "layoutVersion": 1, "version": {spelling}, "updatedAt": 1}}')
        assert ref.read_state(path) is None
        assert SessionStore(path, cache=False).mode == "legacy"


def test_updated_at_agrees_with_get_after_bytes_are_appended(tmp_path):
    path = directory_store(tmp_path)
    store = SessionStore(path)
    store.put(KEY, {"updatedAt": 20})
    entry_path = Path(path).parent / "sessions.d" / "entries" / ref.encode(KEY)
    with open(entry_path, "ab") as fh:
        fh.write(b"\n}")
    assert store.get(KEY) is None and ref.read_entry(path, KEY) is None
    assert store.updated_at(KEY) is None


# =======================================================================================
# 4. Migration never drops a session, whatever its value
# =======================================================================================

def test_migration_keeps_every_session_whatever_its_value(tmp_path):
    base = tmp_path / "sessions"
    base.mkdir(mode=0o700)
    path = base / "sessions.json"
    legacy = {"agent:main:ok": {"updatedAt": 5}, "agent:main:array": [1, 2],
              "agent:main:null": None, "agent:main:text": "hello", "agent:main:number": 7,
              "agent:main:" + "long" * 40: ["hashed", "name"]}
    path.write_text(json.dumps(legacy))
    before = SessionStore(path).load()
    assert len(before) == len(legacy)
    result = sessionsd.migrate(path)
    assert result.outcome == "migrated"
    assert result.legacy_entries == result.migrated_entries == len(legacy)
    after = SessionStore(path, cache=False).load()
    assert after == before == ref.load_directory(str(path))
    assert after["agent:main:array"] == {"sessionKey": "agent:main:array", "entry": [1, 2]}
    assert after["agent:main:null"] == {"sessionKey": "agent:main:null", "entry": None}
    # The legacy file is kept as the backup, untouched.
    assert json.loads(Path(result.backup_path).read_text()) == legacy
