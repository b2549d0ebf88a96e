"""One contract, every backend: the store façade over the directory store,
a store that starts as a legacy ``sessions.json``, and PostgreSQL.

Each test runs on every backend through the public API only
(``sessionsd.open``); what a backend may do differently (its files, its
tables) is tested in its own module.  The contract is the one
``sessionsd._backend`` states: normalised keys, caller-owned entries, atomic
single- and multi-entry writes with no lost update across processes,
one-snapshot listings, the recency order, the mapping conventions, and the
same errors for the same bad input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pg_server
import pytest

import sessionsd
from sessionsd import (
    BlockedKeyError,
    InvalidEntryError,
    InvalidKeyError,
    InvalidKeyTypeError,
    StoreClosedError,
)
from sessionsd.maintenance import Maintenance

postgres_server = pg_server.postgres_server
postgres_url = pg_server.postgres_url

BACKENDS = ["directory", "legacy", "postgres"]
NOW = 1_790_000_000_000


@pytest.fixture(params=BACKENDS)
def target(request, tmp_path):
    """What ``sessionsd.open`` takes for a new, empty store of the backend."""
    if request.param == "directory":
        return str(tmp_path / "store")  # a directory path: a new store starts as a directory store
    if request.param == "legacy":
        path = tmp_path / "sessions.json"
        path.write_text("{}")  # an existing legacy store: reads stay legacy, the first change migrates
        return str(path)
    return request.getfixturevalue("postgres_url")  # a real server; skipped loudly (or failed in CI) without


@pytest.fixture
def store(target):
    with sessionsd.open(target) as opened:
        yield opened


def seed(store, count=5):
    store.update({f"agent:main:k{i}": {"updatedAt": NOW + i, "lastChannel": f"c{i}", "lastTo": f"t{i}", "n": i}
                  for i in range(count)})


# -- single entries ------------------------------------------------------------------


def test_put_get_contains_delete(store):
    assert store.get("agent:main:a") is None and "agent:main:a" not in store and len(store) == 0
    store["agent:main:a"] = {"updatedAt": NOW, "label": "Grüße 😀", "nested": {"x": [1, 2.5, None, True]}}
    assert store["agent:main:a"] == {"updatedAt": NOW, "label": "Grüße 😀", "nested": {"x": [1, 2.5, None, True]}}
    assert store.updated_at("agent:main:a") == NOW and store.updated_at("agent:main:b") is None
    assert "agent:main:a" in store and len(store) == 1
    assert store.delete("agent:main:a") is True and store.delete("agent:main:a") is False
    with pytest.raises(KeyError):
        store["agent:main:a"]
    with pytest.raises(KeyError):
        del store["agent:main:a"]


def test_keys_are_normalised_the_same_way(store):
    store["  Agent:Main:Telegram:DM:X  "] = {"n": 1}
    assert list(store) == ["agent:main:telegram:dm:x"]
    assert store["AGENT:MAIN:TELEGRAM:DM:X"] == {"n": 1}
    assert store.updated_at(" agent:main:telegram:dm:x") is None


def test_odd_keys_and_exact_case(target, store):
    for key in ("a\x00b", "../../escape", "x" * 10_000, "é" * 61, "𝄞", "tab\tnew\nline"):
        store.put(key, {"key": key})
        assert store[key] == {"key": key}
    assert list(store) == sorted(store)
    with sessionsd.open(target, lower_keys=False) as exact:
        exact.put("MiXed", {"v": 2})
        assert exact.get("MiXed") == {"v": 2} and exact.get("mixed") is None


def test_blocked_keys_are_never_written_and_read_as_missing(store):
    for key in ("__proto__", "prototype", " Constructor "):
        for write in (lambda k=key: store.put(k, {}), lambda k=key: store.update_entry(k, lambda e: {}),
                      lambda k=key: store.save({k: {}}), lambda k=key: store.update({k: {}})):
            with pytest.raises(BlockedKeyError):
                write()
        assert store.get(key, "dflt") == "dflt" and store.updated_at(key) is None
        assert key not in store and store.delete(key) is False and store.pop(key, None) is None
    assert len(store) == 0


@pytest.mark.parametrize("value", [NOW, 1.5, "2026-01-01", True, None, 2**63, {"a": 1}, -(2**63)])
def test_updated_at_is_exact(store, value):
    store.put("k", {"updatedAt": value, "lastChannel": "telegram"})
    got = store.updated_at("k")
    assert got == value and type(got) is type(value)
    assert store.summary()["k"] == {"lastChannel": "telegram", "lastTo": None, "updatedAt": value}
    store.put("none", {"x": 1})
    assert store.updated_at("none") is None and store.updated_at("missing") is None


def test_entries_belong_to_the_caller(store):
    entry = {"list": [1], "nested": {"a": 1}}
    store["k"] = entry
    entry["list"].append(2)
    got = store["k"]
    got["nested"]["a"] = 99
    assert store["k"] == {"list": [1], "nested": {"a": 1}}
    loaded = store.load()
    loaded["k"]["list"].append(3)
    assert store.load() == {"k": {"list": [1], "nested": {"a": 1}}}


def test_patch_and_update_entry(store):
    assert store.patch("k", {"a": 1}) is None and "k" not in store  # nothing to patch: nothing written
    assert store.update_entry("k", lambda e: None) is None and "k" not in store
    assert store.update_entry("k", lambda e: {"n": 0} if e is None else e) == {"n": 0}
    assert store.update_entry("k", lambda e: {**e, "n": e["n"] + 1}) == {"n": 1}
    assert store.patch("k", {"b": 2}) == {"n": 1, "b": 2}
    assert store.update_entry("k", lambda e: None) == {"n": 1, "b": 2}  # None: store nothing
    assert store["k"] == {"n": 1, "b": 2}


def test_bad_input_gets_the_same_errors(store):
    with pytest.raises(InvalidKeyTypeError):
        store.put(42, {})
    with pytest.raises(InvalidKeyError):
        store.put("   ", {})
    with pytest.raises(BlockedKeyError):
        store.put("__proto__", {})
    assert store.get("__proto__") is None and store.delete("constructor") is False
    for bad in ([1], "x", None, 3):
        with pytest.raises(InvalidEntryError):
            store.put("k", bad)
    for value in (float("nan"), float("inf"), b"x", {1: 2}, {"a": {1, 2}}):
        with pytest.raises(InvalidEntryError):
            store.put("k", {"v": value})
    with pytest.raises(InvalidEntryError):
        store.patch("k", [("a", 1)])
    with pytest.raises(InvalidEntryError):
        store.update_entry("k", lambda e: ["not", "an", "object"])
    assert len(store) == 0  # nothing written by any of them


# -- many entries ---------------------------------------------------------------------------


def test_update_mapping_is_one_commit_and_all_or_nothing(store):
    store.update({"a": {"n": 1}, "b": {"n": 2}}, c={"n": 3})
    assert store.load() == {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}}
    with pytest.raises(InvalidEntryError):
        store.update({"d": {"n": 4}, "e": {"v": float("nan")}})
    with pytest.raises(InvalidKeyError):
        store.update({"X": {}, "x": {}})
    assert sorted(store) == ["a", "b", "c"]
    with pytest.raises(TypeError, match="mutate"):
        store.update(lambda entries: None)


def test_mutate_commits_the_difference_and_returns_the_result(store):
    seed(store, 3)

    def change(entries):
        del entries["agent:main:k0"]
        entries["agent:main:k1"]["n"] = 10
        entries["Agent:Main:New"] = {"updatedAt": 1}
        return "done"

    assert store.mutate(change) == "done"
    assert sorted(store) == ["agent:main:k1", "agent:main:k2", "agent:main:new"]
    assert store["agent:main:k1"]["n"] == 10
    assert store.update_store(lambda entries: len(entries)) == 3
    with pytest.raises(InvalidEntryError):
        store.mutate(lambda entries: entries.update(bad=[1]))
    assert len(store) == 3  # a refused mutation commits nothing


def test_save_makes_the_store_hold_exactly_the_mapping(store):
    seed(store, 4)
    store.save({"agent:main:k1": {"n": "kept"}, "fresh": {"n": 0}})
    assert store.load() == {"agent:main:k1": {"n": "kept"}, "fresh": {"n": 0}}
    store.clear()
    assert store.load() == {} and len(store) == 0


def test_pop_popitem_setdefault(store):
    store.update({"b": {"n": 2}, "a": {"n": 1}})
    assert store.pop("a") == {"n": 1} and store.pop("a", "gone") == "gone"
    with pytest.raises(KeyError):
        store.pop("a")
    assert store.setdefault("c", {"n": 3}) == {"n": 3} and store.setdefault("c", {"n": 4}) == {"n": 3}
    assert store.popitem() == ("b", {"n": 2})
    assert store.take("c") == {"n": 3} and store.take("c") is None
    with pytest.raises(KeyError):
        store.popitem()


# -- listings --------------------------------------------------------------------------------


def test_iteration_keys_values_items_in_sorted_key_order(store):
    store.update({key: {"k": key} for key in ["b", "a", "é", "z9", "z10", "10"]})
    expected = sorted(["b", "a", "é", "z9", "z10", "10"])
    assert list(store) == list(store.keys()) == expected
    assert [key for key, _ in store.items()] == expected
    assert [entry["k"] for entry in store.values()] == expected
    assert dict(store) == store.load()


def test_summary_and_recent(store):
    store.update({
        "old": {"updatedAt": 1, "lastChannel": "telegram", "lastTo": "u1", "big": "x" * 1000},
        "new": {"updatedAt": 30, "lastChannel": "discord"},
        "tie-b": {"updatedAt": 20},
        "tie-a": {"updatedAt": 20},
        "none": {"label": "no updatedAt"},
        "text": {"updatedAt": "yesterday"},
    })
    summary = store.summary()
    assert summary["old"] == {"lastChannel": "telegram", "lastTo": "u1", "updatedAt": 1}
    assert summary["none"] == {"lastChannel": None, "lastTo": None, "updatedAt": None}
    assert summary["text"]["updatedAt"] == "yesterday" and len(summary) == 6
    order = [key for key, _ in store.recent(limit=10)]
    assert order[:4] == ["new", "tie-a", "tie-b", "old"]
    assert sorted(order[4:]) == ["none", "text"] and len(order) == 6
    assert [key for key, _ in store.recent(limit=2, offset=1)] == ["tie-a", "tie-b"]
    assert store.recent(limit=0) == [] and store.recent(limit=5, offset=10) == []
    assert store.recent(1)[0] == ("new", {"lastChannel": "discord", "lastTo": None, "updatedAt": 30})
    for bad in ({"limit": -1}, {"offset": -1}, {"limit": 1.5}, {"limit": True}):
        with pytest.raises(ValueError):
            store.recent(**bad)


def test_listings_follow_every_write(store):
    seed(store, 5)
    del store["agent:main:k0"]
    store.patch("agent:main:k1", {"updatedAt": NOW + 100})
    store["agent:main:k9"] = {"updatedAt": NOW - 1}
    assert len(store) == 5
    assert list(store) == ["agent:main:k1", "agent:main:k2", "agent:main:k3", "agent:main:k4", "agent:main:k9"]
    assert store.recent(1)[0][0] == "agent:main:k1"
    assert store.recent(1, offset=4)[0][0] == "agent:main:k9"


# -- lifecycle -------------------------------------------------------------------------------


def test_closed_store_refuses_every_call(target):
    store = sessionsd.open(target)
    store["k"] = {"n": 1}
    store.close()
    store.close()
    assert store.closed
    for call in (lambda: store["k"], lambda: store.get("k"), lambda: store.put("k", {}), lambda: len(store),
                 lambda: list(store), lambda: store.load(), lambda: store.updated_at("k"), lambda: "k" in store):
        with pytest.raises(StoreClosedError):
            call()
    with sessionsd.open(target) as again:
        assert again["k"] == {"n": 1}


def test_maintenance_prunes_and_caps(store):
    now = int(time.time() * 1000)
    store.update({f"k{i}": {"updatedAt": now - i * 86_400_000} for i in range(6)})
    report = store.maintain(Maintenance(mode="enforce", prune_after=2.5 * 86_400, max_entries=2), dry_run=True)
    assert sorted(report.pruned) == ["k3", "k4", "k5"] and report.evicted == ["k2"] and len(store) == 6
    store.maintain(Maintenance(mode="enforce", max_entries=3))
    assert sorted(store) == ["k0", "k1", "k2"]


# -- other store objects, other processes ----------------------------------------------------


def test_a_second_object_sees_every_commit(target):
    with sessionsd.open(target) as first, sessionsd.open(target) as second:
        first["a"] = {"n": 1}
        assert second.load() == {"a": {"n": 1}}  # loads may be cached: never stale
        first.update({"b": {"n": 2}, "c": {"n": 3}})
        del first["a"]
        assert second.load() == {"b": {"n": 2}, "c": {"n": 3}} and len(second) == 2
        assert list(second) == ["b", "c"]


_WORKER = textwrap.dedent("""
    import sys, sessionsd
    target, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with sessionsd.open(target) as store:
        for _ in range(rounds):
            store.update_entry("counter", lambda e: {"n": (e or {"n": 0})["n"] + 1})
            store.mutate(lambda entries: entries.__setitem__("total", {"n": entries.get("total", {"n": 0})["n"] + 1}))
            store.update({f"{name}-last": {"n": 1}})
""")


@pytest.mark.slow
def test_no_lost_update_across_processes(target):
    with sessionsd.open(target) as store:
        store["counter"] = {"n": 0}
    rounds, workers = 25, 3
    env = {**os.environ}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, target, f"w{i}", str(rounds)], env=env,
                              stderr=subprocess.PIPE, text=True) for i in range(workers)]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    with sessionsd.open(target) as store:
        assert store["counter"] == {"n": rounds * workers}
        assert store["total"] == {"n": rounds * workers}
        assert sorted(key for key in store if key.endswith("-last")) == [f"w{i}-last" for i in range(workers)]


def test_a_reader_never_sees_half_a_multi_entry_commit(target):
    with sessionsd.open(target) as writer:
        writer.update({f"k{i}": {"round": 0} for i in range(8)})
        stop = threading.Event()
        torn: list[object] = []

        def read() -> None:
            with sessionsd.open(target) as reader:
                while not stop.is_set():
                    rounds = {entry["round"] for entry in reader.load().values()}
                    listed = {summary["updatedAt"] for summary in reader.summary().values()}
                    if len(rounds) != 1 or len(listed) != 1:
                        torn.append((rounds, listed))

        thread = threading.Thread(target=read)
        thread.start()
        try:
            for round_ in range(1, 25):
                if round_ % 2:
                    writer.update({f"k{i}": {"round": round_, "updatedAt": round_} for i in range(8)})
                else:
                    writer.mutate(lambda entries, r=round_: [entry.update(round=r, updatedAt=r)
                                                             for entry in entries.values()])
        finally:
            stop.set()
            thread.join()
    assert not torn, torn[:3]


def test_json_values_round_trip_equal(store):
    entry = {"int": 2**53 + 1, "neg": -7, "float": 0.1, "exp": 1e300, "tiny": 5e-324, "str": "\u2028\"\\/\t",
             "nul": "a\u0000b", "list": [[], {}, [None]], "bool": False, "emoji": "👩‍💻"}
    store["k"] = entry
    assert store["k"] == entry
    assert json.loads(json.dumps(store.load()["k"])) == entry
