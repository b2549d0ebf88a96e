"""Migrations and rollbacks by one process while others read and write
(issue "Through every flip and fault", items 2 and 3).  Real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sessionsd
from sessionsd import SessionStore

HERE = Path(__file__).parent
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


def run(function: str, *args, timeout: float = 120) -> dict:
    done = subprocess.run([sys.executable, str(HERE / "flip_workers.py"), function, json.dumps(list(args))],
                          capture_output=True, text=True, timeout=timeout, cwd=HERE)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def start(function: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "flip_workers.py"), function, json.dumps(list(args))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def legacy_store(tmp_path: Path, entries: dict) -> str:
    base = tmp_path / "sessions"
    base.mkdir(mode=0o700)
    path = base / "sessions.json"
    path.write_text(json.dumps(entries))
    return str(path)


@pytest.mark.parametrize("first", ["load", "get"])
def test_a_cached_view_never_outlives_its_store(tmp_path, first):
    """A loads; B rolls back and writes once (which migrates again, so the
    new store starts from the same version and seq).  A must see B's write,
    and A's read-modify-write must build on it."""
    path = legacy_store(tmp_path, {"n": {"n": 0}})
    sessionsd.migrate(path)
    a = SessionStore(path)
    assert a.load() == {"n": {"n": 0}}
    if first == "get":
        assert a.get("n") == {"n": 0}
    assert run("rollback_then_write", path) == {"mode": "directory"}
    assert a.load() == {"n": {"n": 1}}
    assert a.get("n") == {"n": 1}
    a.mutate(lambda sessions: sessions.__setitem__("n", {"n": sessions["n"]["n"] + 1}))
    assert SessionStore(path, cache=False).load() == {"n": {"n": 2}}
    a.update_entry("n", lambda e: {"n": e["n"] + 1})
    assert SessionStore(path, cache=False).get("n") == {"n": 3}


@pytest.mark.slow
def test_reads_during_migrate_and_rollback_cycles_see_every_session(tmp_path):
    count = 30
    path = legacy_store(tmp_path, {f"k{i}": {"updatedAt": i + 1, "i": i} for i in range(count)})
    readers = [start("reader", path, 4.0, count) for _ in range(3)]
    flipper = start("flipper", path, 3.5)
    flips = finish(flipper)
    results = [finish(reader) for reader in readers]
    assert flips["cycles"] > 10, flips
    for result in results:
        assert result["reads"] > 50, result
        assert result["error_count"] == 0, result
        assert result["wrong"] == {"load": 0, "get": 0, "keys": 0, "updated_at": 0}, result
