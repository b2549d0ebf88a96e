"""Rollback killed at any instant (real child processes, real SIGKILL).

Rollback writes ``sessions.json`` from the directory store, then renames
``sessions.d`` away.  Killed in between, the directory store stays active
and a complete-but-stale ``sessions.json`` lies beside it.  Sessions
deleted (or changed) after that crash must not come back when the next
``migrate()`` finds that file: rollback records a marker in ``sessions.d``
naming the file it is about to write, and migration sets such a leftover
aside as a backup instead of merging it.

After every kill exactly one store is authoritative and complete: the
directory store with everything it had, or the legacy file with everything.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sessionsd
from sessionsd import SessionStore
from sessionsd._layout import StorePaths, read_state

pytestmark = pytest.mark.slow

WORKERS = os.path.join(os.path.dirname(__file__), "workers.py")
ROLLBACK_POINTS = [
    "rollback:after-legacy-backup",   # a stray sessions.json was backed up
    "rollback:after-temp",            # the new legacy file exists under its temp name
    "rollback:after-marker",          # ...and the marker names it
    "rollback:after-legacy-write",    # sessions.json is in place, sessions.d still active
    "rollback:after-directory-backup",
]
STRAY = {"stray": {"from": "an old process", "updatedAt": 1}}


def start(function: str, *args, stdin=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKERS, function, json.dumps(args)],
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sample(count: int = 30) -> dict:
    data = {f"k{i}": {"i": i, "updatedAt": 100, "blob": "x" * 2000} for i in range(count)}
    data["b"] = {"i": -1, "updatedAt": 100}
    return data


def make_directory_store(directory, data: dict):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sessions.json"
    path.write_text(json.dumps(data))
    assert sessionsd.migrate(path).outcome == "migrated"
    return path


def names(directory, prefix: str) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith(prefix))


def leftover_temps(directory) -> list[str]:
    """Temp files of legacy-file writes (``.sessions.json.<pid>-<n>.tmp``)."""
    return sorted(n for n in os.listdir(directory)
                  if n.startswith(".sessions.json.") and n.endswith(".tmp"))


def assert_one_authoritative(path, data: dict) -> str:
    """Exactly one store is authoritative and it holds *data*; its mode."""
    paths = StorePaths.from_store_path(path)
    store = SessionStore(path)
    if read_state(paths) is not None:
        assert store.mode == "directory"
        assert store.load() == data
        return "directory"
    assert store.mode == "legacy"
    assert json.loads(path.read_text()) == data, "the legacy file is authoritative but incomplete"
    assert store.load() == data
    return "legacy"


def assert_nothing_comes_back(path, data: dict):
    """Delete ``b`` and change ``k1`` now, then run migrate() (the next
    startup): ``b`` stays deleted, ``k1`` keeps its change, nothing is lost."""
    store = SessionStore(path)
    assert store.delete("b") is True
    assert store.patch("k1", {"i": "changed"}) is not None
    result = sessionsd.migrate(path)
    assert result.outcome in ("migrated", "already_directory"), result
    expected = {k: v for k, v in data.items() if k != "b"}
    expected["k1"] = {**data["k1"], "i": "changed"}
    store = SessionStore(path)
    assert store.mode == "directory"
    assert store.load() == expected, "a stale legacy file was merged back"
    assert not path.exists()
    assert not os.path.lexists(os.path.join(store.paths.root, "rollback.json"))
    assert names(path.parent, "sessions.d.staging-") == []
    assert leftover_temps(path.parent) == []
    return result


def kill_at(path, point: str) -> None:
    proc = start("crash", str(path), point, "rollback")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err


# -- the reported defect ---------------------------------------------------------------

def test_rollback_killed_as_sessions_json_appears_resurrects_nothing(tmp_path):
    """SIGKILL the moment sessions.json appears (polled from here): the
    directory store is often still active with a full sessions.json beside
    it.  A session deleted after that stays deleted through migrate()."""
    data = sample()
    windows = {"directory": 0, "legacy": 0}
    for round_ in range(40):
        path = make_directory_store(tmp_path / f"r{round_}", data)
        proc = start("rollback", str(path))
        deadline = time.monotonic() + 30
        while not os.path.lexists(path) and proc.poll() is None and time.monotonic() < deadline:
            pass
        proc.kill()
        proc.communicate(timeout=60)
        mode = assert_one_authoritative(path, data)
        windows[mode] += 1
        result = assert_nothing_comes_back(path, data)
        if mode == "directory" and result.backup_path is not None:
            # The leftover was set aside, and the result says so.
            assert any("interrupted rollback" in w for w in result.warnings), result.warnings
            assert json.loads(Path(result.backup_path).read_text()) == data
    assert sum(windows.values()) == 40


@pytest.mark.parametrize("point,stray", [
    *[pytest.param(point, False, id=f"{point}-clean") for point in ROLLBACK_POINTS[1:]],
    # (with no stray file there is nothing to back up: the first point is not on the path)
    *[pytest.param(point, True, id=f"{point}-stray-legacy-file") for point in ROLLBACK_POINTS],
])
def test_rollback_killed_at_each_step(tmp_path, point, stray):
    data = sample(10)
    path = make_directory_store(tmp_path, data)
    if stray:
        path.write_text(json.dumps(STRAY))  # an old process wrote one; the directory wins
    kill_at(path, point)
    mode = assert_one_authoritative(path, data)
    assert mode == ("legacy" if point == "rollback:after-directory-backup" else "directory")
    leftover = point == "rollback:after-legacy-write"
    assert path.exists() == (leftover or mode == "legacy")
    if mode == "directory":
        found = sessionsd.detect(path)
        warned = any("interrupted rollback" in w for w in found.warnings)
        assert warned == leftover, found.warnings
    result = assert_nothing_comes_back(path, data)
    if leftover:
        assert result.outcome == "already_directory"
        assert result.warnings and "interrupted rollback" in result.warnings[0]
        assert result.warnings[0].endswith(result.backup_path)
        assert json.loads(Path(result.backup_path).read_text()) == data
    if stray:  # never deleted: kept as a backup
        kept = [json.loads((tmp_path / b).read_text()) for b in names(tmp_path, "sessions.json.bak.")]
        assert STRAY in kept


@pytest.mark.parametrize("point", ROLLBACK_POINTS[1:])
def test_rollback_after_a_killed_rollback_restores_the_current_sessions(tmp_path, point):
    """The directory store stays authoritative after the crash and takes
    writes; rolling back again writes what it holds now."""
    data = sample(10)
    path = make_directory_store(tmp_path, data)
    kill_at(path, point)
    store = SessionStore(path)
    store.delete("b")  # a finished rollback: this save migrates again
    store.put("late", {"n": 1})
    expected = {k: v for k, v in data.items() if k != "b"}
    expected["late"] = {"n": 1}
    assert store.mode == "directory"
    assert sessionsd.rollback(path) is True
    assert SessionStore(path).mode == "legacy"
    assert json.loads(path.read_text()) == expected
    assert leftover_temps(tmp_path) == []


def test_a_legacy_file_written_after_the_crash_is_merged(tmp_path):
    """Only the very file the dead rollback wrote is set aside: a legacy file
    an old process writes afterwards (a new file) is merged as usual."""
    data = sample(5)
    path = make_directory_store(tmp_path, data)
    kill_at(path, "rollback:after-legacy-write")
    newer = {"k1": {"i": "old process", "updatedAt": 200}, "z": {"n": 1}}
    temp = tmp_path / "other-writer.tmp"
    temp.write_text(json.dumps(newer))
    os.replace(temp, path)  # how writers replace it: a new inode
    found = sessionsd.detect(path)
    assert not any("interrupted rollback" in w for w in found.warnings)
    result = sessionsd.migrate(path)
    assert result.outcome == "migrated" and result.warnings == []
    store = SessionStore(path)
    assert store.load() == {**data, **newer}
    assert not os.path.lexists(os.path.join(store.paths.root, "rollback.json"))


def test_a_killed_set_aside_is_finished_by_the_next_run(tmp_path):
    """migrate() itself killed after setting the leftover aside, before it
    removed the marker: the next run only removes the marker."""
    data = sample(5)
    path = make_directory_store(tmp_path, data)
    kill_at(path, "rollback:after-legacy-write")
    proc = start("crash", str(path), "migrate:after-set-aside", "migrate")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    assert not path.exists() and len(names(tmp_path, "sessions.json.bak.")) == 2
    assert os.path.lexists(tmp_path / "sessions.d" / "rollback.json")
    assert_nothing_comes_back(path, data)


def test_the_leftover_changed_in_place_is_still_set_aside(tmp_path):
    """Rewritten in place (same file), it still began as a copy of the
    directory store: set aside, never merged, and the warning says so."""
    data = sample(5)
    path = make_directory_store(tmp_path, data)
    kill_at(path, "rollback:after-legacy-write")
    with open(path, "r+") as fh:  # an in-place editor: same inode
        fh.write(json.dumps({**data, "z": {"n": 1}}))
        fh.truncate()
    SessionStore(path).delete("b")
    result = sessionsd.migrate(path)
    assert result.outcome == "already_directory"
    assert "changed in place since" in result.warnings[0]
    assert json.loads(Path(result.backup_path).read_text()) == {**data, "z": {"n": 1}}
    assert SessionStore(path).load() == {k: v for k, v in data.items() if k != "b"}


def test_check_reports_and_fixes_the_leftover(tmp_path):
    from sessionsd.check import check

    data = sample(5)
    path = make_directory_store(tmp_path, data)
    kill_at(path, "rollback:after-legacy-write")
    report = check(path)
    assert not report.ok
    assert any("interrupted rollback" in p for p in report.problems), report.problems
    report = check(path, fix=True)
    assert report.ok, report.problems
    assert any("interrupted rollback" in f for f in report.fixed), report.fixed
    assert not path.exists()
    SessionStore(path).delete("b")
    assert sessionsd.migrate(path).outcome == "already_directory"
    assert "b" not in SessionStore(path).load()


def test_rollback_killed_at_random_instants(tmp_path):
    """Kill a rollback of a bigger store at uniformly random instants of
    its run: every outcome is one complete authoritative store, and nothing
    deleted afterwards comes back."""
    data = sample(300)
    timing = make_directory_store(tmp_path / "timing", data)
    proc = start("rollback_on_go", str(timing), stdin=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "ready"
    began = time.monotonic()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    proc.communicate(timeout=60)
    span = time.monotonic() - began
    assert proc.returncode == 0
    rng = random.Random(20240501)
    for round_ in range(25):
        path = make_directory_store(tmp_path / f"r{round_}", data)
        proc = start("rollback_on_go", str(path), stdin=subprocess.PIPE)
        assert proc.stdout.readline().strip() == "ready"
        delay = rng.uniform(0, span * 1.1)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(delay)
        proc.kill()
        proc.communicate(timeout=60)
        assert_one_authoritative(path, data)
        assert_nothing_comes_back(path, data)
