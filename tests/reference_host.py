"""A stand-in for the reference TypeScript host, for the compatibility tests.

Written in Python from the reference's documented behaviour (SPEC §2 and §4,
shared/reference/reference-design.md), not from sessionsd's code, so the
tests check sessionsd against the reference's rules rather than against
itself:

* the store lock ``sessions.json.lock``: created with ``O_CREAT|O_EXCL``,
  the owner record written *afterwards* (as the reference does), stale when
  the record has no pid/createdAt (judged by mtime, or at once in one
  revision), when the pid is dead or recycled, or when older than staleMs;
  a stale file is deleted and the create retried;
* writes: the entry file replaced atomically, then ``state.json``'s version
  bumped;
* reads: the reader of store-directory.ts, file by file, and the
  per-process whole-store cache keyed on ``state.json``'s version.

Usage as a worker: ``python reference_host.py <function> <json args>``;
the result is printed as JSON on the last line.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import sys
import time
from typing import Any

STATE_KIND = "openclaw-session-store-directory"
BLOCKED = {"__proto__", "prototype", "constructor"}
# JavaScript's String.prototype.trim() whitespace.
JS_WHITESPACE = ("\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                 "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")


# -- the lock --------------------------------------------------------------------------

def _iso_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def _starttime(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def judge(path: str, stale_ms: float, recordless: str = "mtime") -> tuple[bool, int | None]:
    """(stale, pid) of the lock file at *path*, by the reference's rules."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        info = os.stat(path)
    except FileNotFoundError:
        return False, None
    pid = created = starttime = None
    try:
        doc = json.loads(raw.decode("utf-8"))
        if isinstance(doc, dict):
            if type(doc.get("pid")) is int and doc["pid"] > 0:
                pid = doc["pid"]
            if isinstance(doc.get("createdAt"), str):
                created = datetime.datetime.fromisoformat(
                    doc["createdAt"].replace("Z", "+00:00")).timestamp() * 1000
            if type(doc.get("starttime")) is int:
                starttime = doc["starttime"]
    except (ValueError, UnicodeDecodeError):
        pass
    now = time.time() * 1000
    reasons = []
    if pid is None:
        reasons.append("missing-pid")
    elif not _alive(pid):
        reasons.append("dead-pid")
    elif starttime is not None and _starttime(pid) not in (None, starttime):
        reasons.append("recycled-pid")
    if created is None:
        reasons.append("invalid-createdAt")
    elif now - created > stale_ms:
        reasons.append("too-old")
    if not reasons:
        return False, pid
    if all(r in ("missing-pid", "invalid-createdAt") for r in reasons):
        if recordless == "immediate":
            return True, pid
        return now - info.st_mtime * 1000 > stale_ms, pid
    return True, pid


def acquire(store_path: str, timeout: float = 10.0, stale_ms: float = 30_000,
            recordless: str = "mtime") -> str:
    lock = os.path.join(os.path.realpath(os.path.dirname(store_path)), "sessions.json.lock")
    deadline = time.monotonic() + timeout
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            stale, _pid = judge(lock, stale_ms, recordless)
            if stale:
                try:
                    os.unlink(lock)
                except FileNotFoundError:
                    pass
                continue
            time.sleep(min(0.02, 0.002 * attempt))
            continue
        # The record is written after the file exists, as the reference does.
        record = {"pid": os.getpid(), "createdAt": _iso_now()}
        starttime = _starttime(os.getpid())
        if starttime is not None:
            record["starttime"] = starttime
        os.write(fd, json.dumps(record, indent=2).encode())
        os.close(fd)
        return lock
    raise TimeoutError(f"session file locked (timeout {int(timeout * 1000)}ms): {lock}")


def release(lock: str) -> None:
    try:
        os.unlink(lock)
    except FileNotFoundError:
        pass


# -- the key codec and the reader ---------------------------------------------------------

def encode(key: str) -> str:
    key = key.strip(JS_WHITESPACE)
    raw = key.encode("utf-8", "replace")
    if len(raw) > 120:
        digest = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
        return f"session-hash-{digest}.json"
    return "session-" + base64.urlsafe_b64encode(raw).decode().rstrip("=") + ".json"


def decode(name: str) -> str | None:
    if name.startswith("session-hash-") and name.endswith(".json"):
        return None
    if name.startswith(".") or not name.startswith("session-") or not name.endswith(".json"):
        return None
    middle = name[len("session-"):-len(".json")]
    if not middle:
        return None
    try:
        decoded = base64.urlsafe_b64decode(middle + "=" * (-len(middle) % 4)).decode("utf-8", "replace")
    except ValueError:
        return None
    if not decoded or encode(decoded) != name:
        return None
    return decoded


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def js_parse(data: bytes) -> Any:
    """readFileSync(path, "utf-8") then JSON.parse."""
    text = data.decode("utf-8", "replace")
    return json.loads(text, parse_constant=_reject_constant)


def _is_record(value: Any) -> bool:
    return isinstance(value, dict)


def read_entry_file(path: str, expected: str | None) -> tuple[str, dict] | None:
    try:
        if not os.path.isfile(path) or os.path.islink(path):
            return None
        with open(path, "rb") as fh:
            data = fh.read()
        if not data.decode("utf-8", "replace").strip(JS_WHITESPACE):
            return None
        parsed = js_parse(data)
    except (OSError, ValueError, RecursionError):
        return None
    if not _is_record(parsed):
        return None
    if isinstance(parsed.get("sessionKey"), str) and _is_record(parsed.get("entry")):
        key = parsed["sessionKey"].strip(JS_WHITESPACE)
        if not key:
            return None
        if expected and expected != key:
            return None
        return key, parsed["entry"]
    if not expected:
        return None
    return expected, parsed


def read_state(store_path: str) -> dict | None:
    root = os.path.join(os.path.dirname(os.path.abspath(store_path)), "sessions.d")
    for path in (root, os.path.join(root, "entries")):
        if os.path.islink(path) or not os.path.isdir(path):
            return None
    state = os.path.join(root, "state.json")
    if os.path.islink(state) or not os.path.isfile(state):
        return None
    try:
        with open(state, "rb") as fh:
            doc = js_parse(fh.read())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("kind") != STATE_KIND or doc.get("layoutVersion") != 1:
        return None
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, (int, float)) \
            or float(version) != int(version) or version < 1:
        return None
    updated = doc.get("updatedAt")
    if isinstance(updated, bool) or not isinstance(updated, (int, float)):
        return None
    return doc


def load_directory(store_path: str) -> dict[str, Any]:
    """loadSessionStoreFromDirectory."""
    entries = os.path.join(os.path.dirname(os.path.abspath(store_path)), "sessions.d", "entries")
    store: dict[str, Any] = {}
    for _attempt in range(2):
        start = read_state(store_path)
        if start is None:
            return {}
        store = {}
        try:
            listing = list(os.scandir(entries))
        except OSError:
            return {}
        for item in listing:
            if not item.is_file(follow_symlinks=False):
                continue
            found = read_entry_file(item.path, decode(item.name))
            if found is None or found[0] in BLOCKED:
                continue
            if encode(found[0]) != item.name:
                continue
            store[found[0]] = found[1]
        end = read_state(store_path)
        if end is not None and end["version"] == start["version"]:
            return store
    return store


class CachedReader:
    """loadSessionStore's per-process cache, keyed on state.json's version."""

    def __init__(self, store_path: str, ttl: float = 45.0) -> None:
        self.store_path = store_path
        self.ttl = ttl
        self.cached: tuple[Any, float, dict] | None = None

    def load(self) -> dict:
        state = read_state(self.store_path)
        version = state["version"] if state else None
        if self.cached is not None and version is not None and self.cached[0] == version \
                and time.monotonic() - self.cached[1] < self.ttl:
            return self.cached[2]
        store = load_directory(self.store_path)
        self.cached = (version, time.monotonic(), store)
        return store


# -- writes ----------------------------------------------------------------------------

def _write_atomic(path: str, text: str) -> None:
    temp = f"{path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    with open(temp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(temp, 0o600)
    os.replace(temp, path)


def write_entry(store_path: str, key: str, entry: dict) -> None:
    """writeSessionEntryToDirectory: the entry file, then version + 1."""
    state = read_state(store_path)
    if state is None:
        raise RuntimeError(f"directory session store is not active: {store_path}")
    root = os.path.join(os.path.dirname(os.path.abspath(store_path)), "sessions.d")
    key = key.strip(JS_WHITESPACE)
    _write_atomic(os.path.join(root, "entries", encode(key)),
                  json.dumps({"sessionKey": key, "entry": entry}, indent=2, ensure_ascii=False))
    _write_atomic(os.path.join(root, "state.json"), json.dumps(
        {"kind": STATE_KIND, "layoutVersion": 1, "version": int(state["version"]) + 1,
         "updatedAt": int(time.time() * 1000)}, indent=2))


def read_entry(store_path: str, key: str) -> dict | None:
    root = os.path.join(os.path.dirname(os.path.abspath(store_path)), "sessions.d")
    key = key.strip(JS_WHITESPACE).lower()
    found = read_entry_file(os.path.join(root, "entries", encode(key)), key)
    return found[1] if found else None


# -- workers ---------------------------------------------------------------------------

def increment(store_path: str, key: str, times: int, recordless: str = "mtime") -> dict:
    """Read-modify-write a counter under the reference's lock, *times* times."""
    for _ in range(times):
        lock = acquire(store_path, timeout=60, recordless=recordless)
        try:
            entry = read_entry(store_path, key) or {}
            entry["n"] = entry.get("n", 0) + 1
            write_entry(store_path, key, entry)
        finally:
            release(lock)
    return {"done": times}


def hold(store_path: str, seconds: float) -> dict:
    """Hold the lock for *seconds*, printing "locked" once held."""
    lock = acquire(store_path)
    print("locked", flush=True)
    time.sleep(seconds)
    release(lock)
    return {"held": seconds}


def wait_for_lock(store_path: str, timeout: float, stale_ms: float) -> dict:
    """Take the lock once; report how long it took."""
    began = time.monotonic()
    lock = acquire(store_path, timeout=timeout, stale_ms=stale_ms)
    waited = time.monotonic() - began
    release(lock)
    return {"waited": waited}


# -- the sessionsd side, for the mixed tests ------------------------------------------------

def sd_increment(store_path: str, key: str, times: int, threads: int = 1) -> dict:
    """sessionsd's read-modify-write of the same counter, from *threads* threads."""
    import threading

    from sessionsd import SessionStore

    def work() -> None:
        store = SessionStore(store_path, durability="none", lock_timeout=60)
        for _ in range(times):
            store.update_entry(key, lambda e: {**(e or {}), "n": (e or {}).get("n", 0) + 1})

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"done": times * threads}


def sd_hold(store_path: str, seconds: float, refresh_after: float = 0.0) -> dict:
    """Hold the store lock for *seconds* (printing "locked" once held)."""
    from sessionsd import SessionStore, _reference_lock

    if refresh_after:
        _reference_lock.REFRESH_AFTER_S = refresh_after
        _reference_lock.HEARTBEAT_INTERVAL_S = refresh_after / 4
    store = SessionStore(store_path)
    with store._backend._hold():
        print("locked", flush=True)
        time.sleep(seconds)
    return {"held": seconds}


if __name__ == "__main__":
    function = globals()[sys.argv[1]]
    print(json.dumps(function(*json.loads(sys.argv[2]))), flush=True)
