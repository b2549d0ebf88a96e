"""Code run in child processes by tests/test_postgres.py.

Usage: python pg_workers.py <function> <json args>.  Each function prints a
JSON result on its last line (``ready`` lines before it are signals to the
parent).
"""

from __future__ import annotations

import json
import sys
import time

from sessionsd.postgres import PostgresStore


def increment_entry(url: str, key: str, times: int) -> dict:
    """*times* read-modify-writes of one counter with update_entry."""
    with PostgresStore(url) as store:
        for _ in range(times):
            store.update_entry(key, lambda e: {**(e or {}), "n": (e or {}).get("n", 0) + 1})
    return {"done": times}


def increment_mutate(url: str, times: int, own: str) -> dict:
    """*times* whole-store read-modify-writes: a shared counter and an own one."""
    with PostgresStore(url) as store:
        for i in range(times):
            def fn(sessions: dict, i: int = i) -> None:
                counter = sessions.setdefault("counter", {"n": 0})
                counter["n"] += 1
                sessions[own] = {"last": i}
            store.mutate(fn)
    return {"done": times}


def invariant_writer(url: str, rounds: int) -> dict:
    """Multi-entry commits that keep a + b == 0 and c present iff a is odd."""
    with PostgresStore(url) as store:
        for i in range(1, rounds + 1):
            def fn(sessions: dict, i: int = i) -> None:
                sessions["a"] = {"n": i}
                sessions["b"] = {"n": -i}
                if i % 2:
                    sessions["c"] = {"n": i}
                else:
                    sessions.pop("c", None)
            store.mutate(fn)
    return {"rounds": rounds}


def invariant_reader(url: str, seconds: float) -> dict:
    """Full loads (cached and uncached) checking the writer's invariant."""
    deadline = time.monotonic() + seconds
    broken = 0
    loads = 0
    seen = set()
    with PostgresStore(url) as cached, PostgresStore(url, cache=False) as fresh:
        while time.monotonic() < deadline:
            for store in (cached, fresh):
                snapshot = store.load()
                loads += 1
                a = snapshot.get("a", {"n": 0})["n"]
                b = snapshot.get("b", {"n": 0})["n"]
                c = snapshot.get("c")
                if a + b != 0 or (c is not None and c["n"] != a) or (c is None and a % 2):
                    broken += 1
                seen.add(a)
    return {"broken": broken, "distinct": len(seen), "loads": loads}


def write(url: str, op: str, key: str, value: dict | None) -> dict:
    """One write from another process: put, delete, pop, a mutate that sets
    *key*, or an update (one put_many commit) that sets *key* and
    ``{key}-too``."""
    with PostgresStore(url) as store:
        if op == "put":
            store[key] = value
        elif op == "delete":
            del store[key]
        elif op == "pop":
            store.pop(key)
        elif op == "mutate":
            store.mutate(lambda sessions: sessions.__setitem__(key, value))
        elif op == "update":
            store.update({key: value, f"{key}-too": value})
        else:
            raise ValueError(f"unknown write {op!r}")
    return {"done": op}


def hold_transaction(url: str) -> dict:
    """A mutate that writes (a nested put and a changed entry) and then
    waits inside its transaction: the parent SIGKILLs it there."""
    with PostgresStore(url) as store:
        def fn(sessions: dict) -> None:
            store.put("nested", {"half": True})  # joins the open transaction
            sessions["x"] = {"half": True}
            print("ready", flush=True)
            time.sleep(60)
        store.mutate(fn)
    return {"done": "never"}


def churn(url: str, entries: int) -> dict:
    """Rewrite *entries* sessions to one round number per commit, forever
    (the parent kills it): every commit replaces them all."""
    with PostgresStore(url) as store:
        i = 0
        print("ready", flush=True)
        while True:
            i += 1
            store.save({f"s{j}": {"round": i, "pad": "x" * 200} for j in range(entries)})


def open_at(url: str, when: float) -> dict:
    """Open a store at wall-clock time *when* (concurrent first opens)."""
    time.sleep(max(0.0, when - time.time()))
    with PostgresStore(url) as store:
        store.put(f"opened-{time.time_ns()}", {"ok": True})
    return {"opened": True}


if __name__ == "__main__":
    result = globals()[sys.argv[1]](*json.loads(sys.argv[2]))
    print(json.dumps(result))
