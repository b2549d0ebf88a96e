"""sessionsd.copy_store: every direction (legacy -> directory, directory ->
PostgreSQL -> directory, PostgreSQL namespace -> namespace), equal JSON values
after a round trip, the rules (an empty DST unless resume or replace), a copy
killed mid-way (SIGKILL after a batch committed) leaving a prefix of complete
entries that ``resume`` finishes, and a source that changes under the copy.
PostgreSQL is a real server (tests/pg_server.py), never a mock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from urllib.parse import unquote

import pg_server
import pytest

import sessionsd
from sessionsd import CopyError, SessionStore, copy_store
from sessionsd.datagen import generate_store

postgres_server = pg_server.postgres_server
postgres_url = pg_server.postgres_url


def _entries(count: int = 60) -> dict:
    """Generated sessions plus values that are easy to get wrong in a copy."""
    entries = generate_store(count, seed=7, small=True)
    entries["agent:odd:values"] = {
        "updatedAt": 1.5, "lastChannel": {"nested": [1, 2.0, "x"]}, "lastTo": None,
        "float": 1e300, "negative_zero": -0.0, "big": 2**63 - 1, "tiny": 5e-324,
        "text": "é\u2028\u0000 \U0001f600", "empty": {}, "list": [], "flag": False,
    }
    entries["agent:odd:no-updated-at"] = {"label": "x" * 3000}
    return entries


def _canonical(entries: dict) -> str:
    """The JSON text of a whole store, key order fixed: equal iff every value
    is equal as JSON (1 and 1.0 differ)."""
    return json.dumps(entries, sort_keys=True, ensure_ascii=False)


def _legacy(path, entries: dict) -> str:
    os.makedirs(path, exist_ok=True)
    store = os.path.join(path, "sessions.json")
    with open(store, "w", encoding="utf-8") as handle:
        json.dump(entries, handle)
    return store


def _directory(path, entries: dict) -> str:
    os.makedirs(path, exist_ok=True)
    store = os.path.join(path, "sessions.json")
    with SessionStore(store, durability="none") as s:
        s.put_many(entries)
    return store


def _load(target) -> dict:
    with sessionsd.open(target) as store:
        return store.load()


# -- directions -----------------------------------------------------------------------------------

def test_legacy_to_directory(tmp_path):
    entries = _entries()
    src = _legacy(tmp_path / "src", entries)
    (tmp_path / "dst").mkdir()
    result = copy_store(src, tmp_path / "dst", batch_size=16)
    assert (result.total, result.copied, result.skipped) == (len(entries), len(entries), 0)
    assert result.batches == -(-len(entries) // 16)
    assert not result.source_changed
    assert _canonical(_load(tmp_path / "dst" / "sessions.json")) == _canonical(entries)
    with SessionStore(tmp_path / "dst" / "sessions.json") as dst:
        assert dst.mode == "directory"
    # The source is read, never migrated.
    assert not os.path.exists(tmp_path / "src" / "sessions.d")
    assert f"copied {len(entries)} sessions from" in result.summary() and "(skipped 0 equal)" in result.summary()


def test_directory_to_postgres_to_directory_round_trip(tmp_path, postgres_url):
    entries = _entries()
    src = _directory(tmp_path / "a", entries)
    to_pg = copy_store(src, postgres_url, batch_size=25)
    assert to_pg.copied == len(entries) and to_pg.batches == 3
    assert _canonical(_load(postgres_url)) == _canonical(entries)
    (tmp_path / "b").mkdir()
    back = copy_store(postgres_url, tmp_path / "b")
    assert back.copied == len(entries)
    assert _canonical(_load(tmp_path / "b" / "sessions.json")) == _canonical(entries)
    with SessionStore(tmp_path / "b" / "sessions.json") as store:
        for key, entry in entries.items():
            assert json.dumps(store[key], sort_keys=True) == json.dumps(entry, sort_keys=True)
            assert store.updated_at(key) == entry.get("updatedAt")
        assert store.summary() == {key: {"lastChannel": e.get("lastChannel"), "lastTo": e.get("lastTo"),
                                         "updatedAt": e.get("updatedAt")} for key, e in entries.items()}


def test_postgres_namespace_to_namespace(postgres_server, postgres_url):
    entries = _entries(40)
    with sessionsd.open(postgres_url) as src:
        src.put_many(entries)
    other = postgres_url + "-copy"
    try:
        result = copy_store(postgres_url, other, batch_size=10)
        assert result.copied == len(entries) and result.batches == 5
        assert _canonical(_load(other)) == _canonical(entries)
        with sessionsd.open(other) as dst:
            assert len(dst) == len(entries)
            assert dst.recent(3) == src_recent(postgres_url, 3)
    finally:
        with postgres_server.connect() as conn:
            namespace = other.rpartition("namespace=")[2]
            conn.execute("DELETE FROM sessionsd_entries WHERE namespace = %s", (unquote(namespace),))
            conn.execute("DELETE FROM sessionsd_namespaces WHERE namespace = %s", (unquote(namespace),))


def src_recent(url, limit):
    with sessionsd.open(url) as store:
        return store.recent(limit)


def test_open_stores_are_accepted_and_left_open(tmp_path):
    entries = _entries(20)
    (tmp_path / "b").mkdir()
    with SessionStore(_directory(tmp_path / "a", entries)) as src, \
            SessionStore(tmp_path / "b" / "sessions.json") as dst:
        result = copy_store(src, dst)
        assert result.copied == len(entries) and not dst.closed and not src.closed
        assert dst.load() == src.load()


# -- the rules -------------------------------------------------------------------------------------

def test_a_non_empty_destination_is_refused(tmp_path, postgres_url):
    src = _directory(tmp_path / "a", _entries(10))
    dst = _directory(tmp_path / "b", {"other": {"updatedAt": 1}})
    with pytest.raises(CopyError, match=r"not empty \(1 sessions\).*--resume.*--replace"):
        copy_store(src, dst)
    assert _load(dst) == {"other": {"updatedAt": 1}}
    with sessionsd.open(postgres_url) as pg:
        pg["x"] = {"updatedAt": 2}
    with pytest.raises(CopyError, match="not empty"):
        copy_store(src, postgres_url)
    assert _load(postgres_url) == {"x": {"updatedAt": 2}}


def test_replace_makes_the_destination_hold_exactly_the_source(tmp_path, postgres_url):
    entries = _entries(30)
    src = _directory(tmp_path / "a", entries)
    first = sorted(entries)[0]
    with sessionsd.open(postgres_url) as pg:
        pg.put_many({"zz-extra-1": {"updatedAt": 1}, "zz-extra-2": {}, first: {"changed": True},
                     sorted(entries)[1]: entries[sorted(entries)[1]]})
    result = copy_store(src, postgres_url, replace=True)
    assert (result.copied, result.skipped, result.removed, result.extra) == (len(entries) - 1, 1, 2, 0)
    assert _canonical(_load(postgres_url)) == _canonical(entries)
    again = copy_store(src, postgres_url, replace=True)
    assert (again.copied, again.skipped, again.removed, again.batches) == (0, len(entries), 0, 0)


def test_resume_skips_equal_entries_and_leaves_others(tmp_path):
    entries = _entries(30)
    src = _directory(tmp_path / "a", entries)
    keys = sorted(entries)
    dst = _directory(tmp_path / "b", {**{key: entries[key] for key in keys[:10]}, "zz-other": {"a": 1}})
    result = copy_store(src, dst, resume=True, batch_size=8)
    assert (result.copied, result.skipped, result.extra, result.removed) == (len(entries) - 10, 10, 1, 0)
    assert "left 1 not in the source" in result.summary()
    assert _canonical(_load(dst)) == _canonical({**entries, "zz-other": {"a": 1}})


def test_missing_sources_and_bad_options(tmp_path, postgres_server, postgres_url):
    with pytest.raises(CopyError, match="no session store at .*no such directory"):
        copy_store(tmp_path / "nowhere" / "sessions.json", tmp_path / "dst")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CopyError, match="no session store in directory"):
        copy_store(tmp_path / "empty", tmp_path / "dst")
    with pytest.raises(CopyError, match="namespace .* does not exist"):
        copy_store(postgres_url, tmp_path / "dst")
    src = _directory(tmp_path / "a", {"k": {}})
    with pytest.raises(CopyError, match="same store"):
        copy_store(src, tmp_path / "a")
    with pytest.raises(CopyError, match="resume or replace"):
        copy_store(src, tmp_path / "dst", resume=True, replace=True)
    with pytest.raises(CopyError, match="batch_size"):
        copy_store(src, tmp_path / "dst", batch_size=0)
    with pytest.raises(CopyError, match="no such directory"):
        copy_store(src, tmp_path / "missing-dir" / "sessions.json")
    assert not os.path.exists(tmp_path / "dst")
    with sessionsd.open(postgres_url) as pg:
        pg["k"] = {}
    with pytest.raises(CopyError, match="same store"):
        copy_store(postgres_url, postgres_url)


def test_a_source_written_during_the_copy_is_reported(tmp_path, postgres_url):
    entries = _entries(20)
    src = _directory(tmp_path / "a", entries)

    def write_source(number, keys):
        if number == 1:
            with SessionStore(src) as store:
                store["late"] = {"updatedAt": 5}

    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    result = copy_store(src, tmp_path / "b", batch_size=5, on_batch=write_source)
    assert result.source_changed and result.copied == len(entries)
    assert "late" not in _load(tmp_path / "b" / "sessions.json")  # DST holds SRC as of the start

    with sessionsd.open(postgres_url) as pg:
        pg.put_many(entries)

    def write_pg(number, keys):
        if number == 2:
            with sessionsd.open(postgres_url) as store:
                store.patch(sorted(entries)[0], {"late": True})

    result = copy_store(postgres_url, tmp_path / "c", batch_size=5, on_batch=write_pg)
    assert result.source_changed
    quiet = copy_store(postgres_url, tmp_path / "c", replace=True)
    assert not quiet.source_changed and quiet.copied == 1
    assert _load(tmp_path / "c" / "sessions.json") == _load(postgres_url)


def test_progress_is_reported_after_each_commit(tmp_path):
    entries = _entries(25)
    src = _directory(tmp_path / "a", entries)
    seen = []
    batches = []
    (tmp_path / "b").mkdir()
    copy_store(src, tmp_path / "b", batch_size=10, progress=lambda done, total: seen.append((done, total)),
               on_batch=lambda number, keys: batches.append((number, list(keys))))
    total = len(entries)
    assert seen == [(0, total), (10, total), (20, total), (total, total)]
    flat = [key for _, keys in batches for key in keys]
    assert flat == sorted(entries) and [n for n, _ in batches] == [1, 2, 3]


# -- a copy killed mid-way, then resumed -----------------------------------------------------------

_KILLER = textwrap.dedent("""
    import os, signal, sys
    import sessionsd

    def die(number, keys):
        if number == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    sessionsd.copy_store(sys.argv[1], sys.argv[2], batch_size=int(sys.argv[3]), on_batch=die)
    raise SystemExit("not killed")
""")


@pytest.mark.parametrize("destination", ["directory", "postgres"])
def test_a_killed_copy_leaves_a_prefix_and_resume_finishes_it(tmp_path, destination, request):
    entries = _entries(50)
    src = _directory(tmp_path / "a", entries)
    if destination == "postgres":
        dst = request.getfixturevalue("postgres_url")
    else:
        (tmp_path / "b").mkdir()
        dst = str(tmp_path / "b" / "sessions.json")
    killed = subprocess.run([sys.executable, "-c", _KILLER, src, dst, "12"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    held = _load(dst)
    keys = sorted(entries)
    # Exactly the first two batches, complete: a prefix in key order.
    assert sorted(held) == keys[:24]
    assert all(held[key] == entries[key] for key in held)
    with pytest.raises(CopyError, match="not empty"):
        copy_store(src, dst)
    result = copy_store(src, dst, resume=True, batch_size=12)
    assert (result.skipped, result.copied, result.batches) == (24, len(entries) - 24, 3)
    assert _canonical(_load(dst)) == _canonical(entries)
