"""Child processes for tests/test_flips.py: a flipper and readers.

Usage: python flip_workers.py <function> <json args>; prints a JSON result
on its last line.
"""

from __future__ import annotations

import json
import sys
import time

import sessionsd
from sessionsd import SessionStore


def flipper(path: str, seconds: float) -> dict:
    """Migrate and roll back, over and over, changing no session."""
    deadline = time.monotonic() + seconds
    cycles = 0
    while time.monotonic() < deadline:
        assert sessionsd.migrate(path).outcome == "migrated"
        assert sessionsd.rollback(path) is True
        cycles += 1
    return {"cycles": cycles}


def reader(path: str, seconds: float, expected: int) -> dict:
    """load(), keys() and get() in a loop; count every wrong answer."""
    deadline = time.monotonic() + seconds
    reused = SessionStore(path)
    wrong: dict[str, int] = {"load": 0, "get": 0, "keys": 0, "updated_at": 0}
    errors: list[str] = []
    reads = 0
    while time.monotonic() < deadline:
        for store in (reused, SessionStore(path)):
            try:
                if len(store.load()) != expected:
                    wrong["load"] += 1
                if store.get(f"k{reads % expected}") is None:
                    wrong["get"] += 1
                if len(store.keys()) != expected:
                    wrong["keys"] += 1
                if store.updated_at(f"k{reads % expected}") != reads % expected + 1:
                    wrong["updated_at"] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted, not fatal
                errors.append(f"{type(exc).__name__}: {exc}")
            reads += 1
    return {"reads": reads, "wrong": wrong, "errors": errors[:5], "error_count": len(errors)}


def rollback_then_write(path: str) -> dict:
    """Roll the store back, then one write, which migrates it again."""
    assert sessionsd.rollback(path) is True
    SessionStore(path).update_entry("n", lambda e: {"n": (e or {"n": 0})["n"] + 1})
    return {"mode": SessionStore(path).mode}


if __name__ == "__main__":
    function = globals()[sys.argv[1]]
    print(json.dumps(function(*json.loads(sys.argv[2]))), flush=True)
