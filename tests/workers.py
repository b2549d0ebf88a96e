"""Code run in child processes by the multi-process tests.

Usage: python workers.py <function> <json args>.  Each function prints a JSON
result on its last line.
"""

from __future__ import annotations

import json
import sys
import time

import sessionsd
from sessionsd import SessionStore


def increment(path: str, key: str, times: int, other: str) -> dict:
    store = SessionStore(path, durability="none")
    for i in range(times):
        store.update_entry(key, lambda e: {**(e or {}), "n": (e or {}).get("n", 0) + 1})
        store.patch(other, {"last": i}) or store.put(other, {"last": i})
    return {"done": times}


def invariant_writer(path: str, rounds: int) -> dict:
    store = SessionStore(path, durability="none")
    for i in range(1, rounds + 1):
        def mutate(sessions, i=i):
            sessions["a"] = {"n": i}
            sessions["b"] = {"n": -i}
            if i % 2:
                sessions["c"] = {"n": i}
            else:
                sessions.pop("c", None)
        store.mutate(mutate)
    return {"rounds": rounds}


def invariant_reader(path: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    reused = SessionStore(path)
    broken = 0
    seen = set()
    loads = 0
    while time.monotonic() < deadline:
        for store in (reused, SessionStore(path)):
            snapshot = store.load()
            loads += 1
            a = snapshot.get("a", {"n": 0})["n"]
            b = snapshot.get("b", {"n": 0})["n"]
            c = snapshot.get("c")
            if a + b != 0 or (c is not None and c["n"] != a) or (c is None and a % 2):
                broken += 1
            seen.add(a)
    return {"broken": broken, "distinct": len(seen), "loads": loads}


def hold_lock(path: str, heavy: bool, seconds: float) -> dict:
    store = SessionStore(path)
    with store._backend._lock.hold(heavy=heavy):
        print("locked", flush=True)
        time.sleep(seconds)
    return {"held": seconds}


def migrate(path: str) -> dict:
    return {"outcome": sessionsd.migrate(path).outcome}


def put_many(path: str, prefix: str, count: int) -> dict:
    store = SessionStore(path, durability="none")
    for i in range(count):
        store.put(f"{prefix}{i}", {"i": i})
    return {"done": count}


def crash(path: str, point: str, operation: str) -> dict:
    from crashpoints import crash_at

    store = SessionStore(path, durability="none")
    crash_at(point)
    if operation == "put":
        store.put("a", {"n": "new"})
    elif operation == "delete":
        store.delete("b")
    elif operation == "update":
        def mutate(sessions):
            sessions["a"] = {"n": "new"}
            sessions["b"]["n"] = "new"
            del sessions["c"]
            sessions["d"] = {"n": "new"}
        store.mutate(mutate)
    elif operation == "migrate":
        sessionsd.migrate(path)
    elif operation == "rollback":
        sessionsd.rollback(path)
    return {"survived": True}


def rollback(path: str) -> dict:
    return {"restored": sessionsd.rollback(path)}


def rollback_on_go(path: str) -> dict:
    """Print ``ready`` once imported, wait for a line on stdin, then roll
    back: the parent kills it at a chosen instant of the rollback."""
    print("ready", flush=True)
    sys.stdin.readline()
    return {"restored": sessionsd.rollback(path)}


def try_put(path: str, key: str) -> dict:
    """One put; the error's type and message if it raised."""
    try:
        SessionStore(path).put(key, {"from": "child"})
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"error": None}


if __name__ == "__main__":
    function = globals()[sys.argv[1]]
    print(json.dumps(function(*json.loads(sys.argv[2]))), flush=True)
