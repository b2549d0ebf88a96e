"""Child processes of tests/test_index.py (the listing index).

Usage: python index_workers.py <function> <json args>; each prints a JSON
result on its last line.
"""

from __future__ import annotations

import json
import sys
import time

from sessionsd import SessionStore


def writer(path: str, rounds: int) -> dict:
    """Multi-entry commits that keep an invariant a listing can check from
    the summary alone: a.updatedAt == i, b.updatedAt == -i, and c exists
    (with updatedAt i) exactly when i is odd."""
    store = SessionStore(path, durability="none")
    for i in range(1, rounds + 1):
        def mutate(sessions, i=i):
            sessions["a"] = {"updatedAt": i, "lastChannel": f"a{i}"}
            sessions["b"] = {"updatedAt": -i, "lastTo": f"b{i}"}
            if i % 2:
                sessions["c"] = {"updatedAt": i}
            else:
                sessions.pop("c", None)
        store.mutate(mutate)
    return {"rounds": rounds}


def _summary_broken(summary: dict) -> bool:
    a = summary.get("a", {"updatedAt": 0})["updatedAt"]
    b = summary.get("b", {"updatedAt": 0})["updatedAt"]
    c = summary.get("c")
    if a + b != 0 or (c is not None and c["updatedAt"] != a) or (c is None and a % 2):
        return True
    return bool(a) and (summary["a"]["lastChannel"] != f"a{a}" or summary["b"]["lastTo"] != f"b{a}")


def reader(path: str, seconds: float) -> dict:
    """Listings in a loop from a kept store and fresh ones; counts every
    answer that shows half of a commit.  Each call is one snapshot, so each
    answer is checked against the invariant on its own."""
    deadline = time.monotonic() + seconds
    kept = SessionStore(path)
    broken = {"summary": 0, "recent": 0, "len": 0, "keys": 0}
    seen = set()
    listings = 0
    while time.monotonic() < deadline:
        for store in (kept, SessionStore(path, cache=False)):
            summary = store.summary()
            seen.add(summary.get("a", {"updatedAt": 0})["updatedAt"])
            broken["summary"] += _summary_broken(summary)
            recent = store.recent(3)
            top = dict(recent)
            a = top.get("a", {"updatedAt": 0})["updatedAt"]
            # a is the newest (c ties with it and sorts after it), b the oldest.
            expected = ["a", "c", "b"] if "c" in top else ["a", "b"]
            broken["recent"] += ([key for key, _ in recent] != expected or _summary_broken(top)
                                 or (a % 2 == 1) != ("c" in top))
            broken["len"] += len(store) not in (2, 3)
            broken["keys"] += sorted(store.keys()) not in (["a", "b"], ["a", "b", "c"])
            listings += 1
    return {"broken": sum(broken.values()), "by_call": broken, "distinct": len(seen), "listings": listings}


def crash(path: str, point: str, operation: str) -> dict:
    """Kill this process at *point* of *operation*."""
    from crashpoints import crash_at

    store = SessionStore(path, durability="none")
    crash_at(point)
    if operation == "put":
        store.put("a", {"updatedAt": 99, "lastChannel": "new"})
    elif operation == "update":
        def mutate(sessions):
            sessions["a"] = {"updatedAt": 99, "lastChannel": "new"}
            sessions.pop("b", None)
            sessions["d"] = {"updatedAt": 98}
        store.mutate(mutate)
    elif operation == "list":
        store.summary()
    return {"survived": True}


if __name__ == "__main__":
    function = globals()[sys.argv[1]]
    print(json.dumps(function(*json.loads(sys.argv[2]))), flush=True)
