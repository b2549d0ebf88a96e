"""SessionStore as a MutableMapping; fresh stores; store paths; close(); fork.

The conventions are those of the module sessionsd._mapping: KeyError for a
missing key, sorted key order, snapshot views, update(mapping) as one atomic
commit, mutate(fn) for the whole-store read-modify-write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import ItemsView, KeysView, Mapping, MutableMapping, ValuesView

import pytest

import sessionsd
from sessionsd import InvalidEntryError, InvalidKeyError, SessionStore, SharedStoreError, StoreClosedError
from sessionsd.aio import AsyncSessionStore


@pytest.fixture
def store(tmp_path):
    with SessionStore(tmp_path / "sessions.json") as opened:
        yield opened


def test_is_a_mutable_mapping(store):
    assert isinstance(store, MutableMapping) and isinstance(store, Mapping)
    assert isinstance(store.keys(), KeysView)
    assert isinstance(store.values(), ValuesView)
    assert isinstance(store.items(), ItemsView)


def test_item_access_and_key_error(store):
    store["Agent:Main:A "] = {"updatedAt": 1}
    assert store["agent:main:a"] == {"updatedAt": 1}
    assert store["AGENT:MAIN:A"] == {"updatedAt": 1}  # keys normalise the same way everywhere
    with pytest.raises(KeyError) as missing:
        store["agent:main:nope"]
    assert missing.value.args == ("agent:main:nope",)
    with pytest.raises(KeyError):
        del store["agent:main:nope"]
    del store["agent:main:a"]
    assert "agent:main:a" not in store and len(store) == 0
    with pytest.raises(InvalidKeyError):
        store[""]  # a bad key is a bad key, not a missing one
    with pytest.raises(InvalidEntryError):
        store["agent:main:b"] = ["not", "an", "object"]


def test_returned_entries_are_the_callers(store):
    store["a"] = {"n": [1]}
    store["a"]["n"].append(2)
    assert store["a"] == {"n": [1]}


def test_iteration_is_sorted_key_order_in_both_modes(tmp_path):
    keys = ["b", "a", "é", "z", "A1", "10", "9"]
    legacy = tmp_path / "legacy" / "sessions.json"
    legacy.parent.mkdir()
    legacy.write_text(json.dumps({key: {"updatedAt": i} for i, key in enumerate(keys)}))
    for path in (legacy, tmp_path / "fresh" / "sessions.json"):
        store = SessionStore(path)
        if path != legacy:
            store.update({key: {"updatedAt": i} for i, key in enumerate(keys)})
        expected = sorted(key.lower() for key in keys)
        assert list(store) == expected
        assert list(store.keys()) == expected
        assert [key for key, _ in store.items()] == expected
        assert [entry["updatedAt"] for entry in store.values()] == \
            [store[key]["updatedAt"] for key in expected]
        assert dict(store) == store.load()
        assert store == store.load() and store != {}


def test_views_are_snapshots(store):
    store.update({"a": {"n": 1}, "b": {"n": 2}})
    keys, items = store.keys(), store.items()
    store["c"] = {"n": 3}
    del store["a"]
    assert list(keys) == ["a", "b"] and "a" in keys and len(keys) == 2
    assert list(items) == [("a", {"n": 1}), ("b", {"n": 2})] and ("b", {"n": 2}) in items
    assert list(store) == ["b", "c"]
    # Writing while iterating is allowed (the iteration runs on its snapshot).
    for key in store:
        store[key + "x"] = {"n": 0}
    assert list(store) == ["b", "bx", "c", "cx"]


def test_update_takes_a_mapping_pairs_and_keywords(store):
    store.update({"a": {"n": 1}})
    store.update([("b", {"n": 2}), ("c", {"n": 3})])
    store.update(d={"n": 4})
    store.update({"a": {"n": 10}}, e={"n": 5})
    assert store.load() == {"a": {"n": 10}, "b": {"n": 2}, "c": {"n": 3}, "d": {"n": 4}, "e": {"n": 5}}
    store.update({})  # nothing to do, nothing written
    with pytest.raises(TypeError, match=r"mutate\(fn\)"):
        store.update(lambda sessions: None)
    with pytest.raises(TypeError, match="element #1"):
        store.update([("x", {}), "y"])
    with pytest.raises(InvalidKeyError, match="normalise"):
        store.update({"K": {}, "k": {}})
    with pytest.raises(InvalidEntryError):
        store.update({"x": {"n": 1}, "y": 5})
    assert "x" not in store  # a bad entry fails the whole commit


def test_update_is_one_atomic_commit(tmp_path):
    """A reader in another thread never sees half of an update(mapping)."""
    path = tmp_path / "sessions.json"
    writer = SessionStore(path)
    writer.update({f"k{i}": {"round": 0} for i in range(20)})
    stop = threading.Event()
    torn: list[set] = []

    def read() -> None:
        reader = SessionStore(path)
        while not stop.is_set():
            rounds = {entry["round"] for entry in reader.values()}
            if len(rounds) != 1:
                torn.append(rounds)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for round_ in range(1, 60):
            writer.update({f"k{i}": {"round": round_} for i in range(20)})
    finally:
        stop.set()
        thread.join()
    assert not torn, torn[:3]


def test_pop_popitem_setdefault_clear(store):
    store.update({"a": {"n": 1}, "b": {"n": 2}})
    assert store.pop("a") == {"n": 1} and "a" not in store
    assert store.pop("a", None) is None
    with pytest.raises(KeyError):
        store.pop("a")
    assert store.setdefault("c", {"n": 3}) == {"n": 3}
    assert store.setdefault("c", {"n": 99}) == {"n": 3}
    assert store.setdefault("d") == {} and store["d"] == {}
    assert store.popitem() == ("b", {"n": 2})
    store.clear()
    assert len(store) == 0 and list(store) == []
    with pytest.raises(KeyError, match="empty"):
        store.popitem()


def test_mutate_and_reference_alias(store):
    store["a"] = {"n": 1}
    assert store.mutate(lambda sessions: sessions.pop("a") and "popped") == "popped"
    assert store.update_store(lambda sessions: sessions.update(b={"n": 2})) is None
    assert store.load() == {"b": {"n": 2}}
    assert SessionStore.update_store is SessionStore.mutate


def test_pop_is_atomic_across_threads(tmp_path):
    """Each entry is popped by exactly one of several racing threads."""
    path = tmp_path / "sessions.json"
    SessionStore(path).update({f"k{i}": {"i": i} for i in range(60)})
    got: list[list[str]] = [[] for _ in range(3)]

    def drain(mine: list[str]) -> None:
        store = SessionStore(path)
        for i in range(60):
            if store.pop(f"k{i}", None) is not None:
                mine.append(f"k{i}")

    threads = [threading.Thread(target=drain, args=(mine,)) for mine in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    popped = [key for mine in got for key in mine]
    assert sorted(popped) == sorted(f"k{i}" for i in range(60))


# -- a brand-new store ---------------------------------------------------------


def test_a_new_store_starts_as_a_directory_store(tmp_path):
    path = tmp_path / "new" / "sessions.json"
    store = SessionStore(path)
    assert store.mode == "legacy" and len(store) == 0  # nothing there yet; nothing created by reads
    assert not path.parent.exists()
    store["a"] = {"n": 1}
    assert store.mode == "directory"
    store["b"] = {"n": 2}
    names = sorted(name for name in os.listdir(path.parent) if not name.startswith("."))
    assert names == ["sessions.d"]  # no sessions.json, no sessions.json.bak.<ms>
    assert SessionStore(path).load() == {"a": {"n": 1}, "b": {"n": 2}}


@pytest.mark.parametrize("first", ["update", "mutate", "save", "update_entry", "patch", "setdefault"])
def test_every_first_write_creates_a_directory_store(tmp_path, first):
    path = tmp_path / "sessions.json"
    store = SessionStore(path)
    {
        "update": lambda: store.update({"a": {"n": 1}}),
        "mutate": lambda: store.mutate(lambda s: s.update(a={"n": 1})),
        "save": lambda: store.save({"a": {"n": 1}}),
        "update_entry": lambda: store.update_entry("a", lambda e: {"n": 1}),
        "patch": lambda: store.patch("a", {"n": 1}),  # nothing to patch: writes nothing
        "setdefault": lambda: store.setdefault("a", {"n": 1}),
    }[first]()
    assert not path.exists() and not any(".bak." in name for name in os.listdir(tmp_path))
    if first == "patch":
        assert not (tmp_path / "sessions.d").exists()
    else:
        assert store.mode == "directory" and store.load() == {"a": {"n": 1}}


def test_an_existing_legacy_file_still_migrates_with_a_backup(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"a": {"n": 1}}))
    store = SessionStore(path)
    store["b"] = {"n": 2}
    assert store.mode == "directory" and not path.exists()
    assert [name for name in os.listdir(tmp_path) if name.startswith("sessions.json.bak.")]


# -- store paths -----------------------------------------------------------------


def test_a_directory_path_names_the_store_in_it(tmp_path):
    SessionStore(tmp_path / "sessions.json")["a"] = {"n": 1}
    for spelling in (tmp_path, tmp_path / "sessions.d", f"{tmp_path}/"):
        store = SessionStore(spelling)
        assert store.paths.store == str(tmp_path / "sessions.json")
        assert store["a"] == {"n": 1}
    assert sessionsd.detect(tmp_path).store_path == str(tmp_path / "sessions.json")


def test_two_store_files_in_one_directory_do_not_share_sessions_d(tmp_path):
    users = SessionStore(tmp_path / "users.json")
    users["a"] = {"n": 1}
    orders = SessionStore(tmp_path / "orders.json")
    with pytest.raises(SharedStoreError) as refused:
        orders["b"] = {"n": 2}
    message = str(refused.value)
    assert str(tmp_path / "users.json") in message and str(tmp_path / "orders.json") in message
    assert "directory of its own" in message and refused.value.path == str(tmp_path / "sessions.d")
    with pytest.raises(SharedStoreError):
        orders.get("a")
    assert users.load() == {"a": {"n": 1}}  # nothing of orders.json got in
    assert isinstance(refused.value, ValueError)


def test_an_orders_store_opened_before_users_migrated_is_refused_too(tmp_path):
    orders = SessionStore(tmp_path / "orders.json")
    assert orders.get("x") is None  # legacy mode, nothing there
    SessionStore(tmp_path / "users.json")["a"] = {"n": 1}
    with pytest.raises(SharedStoreError):
        orders["b"] = {"n": 2}


# -- close() ---------------------------------------------------------------------------


def _open_fds() -> int:
    """Open descriptors, after releasing what collected stores left."""
    import gc

    gc.collect()
    sessionsd._cache.release_collected()
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_close_releases_the_lock_descriptor_and_owner_file(tmp_path):
    before = _open_fds()
    stores = [SessionStore(tmp_path / f"s{i}" / "sessions.json") for i in range(50)]
    for store in stores:
        store["a"] = {"n": 1}
    assert _open_fds() - before >= 50
    for store in stores:
        store.close()
        store.close()  # twice is fine
    assert _open_fds() - before <= 1
    for i in range(50):
        assert [name for name in os.listdir(tmp_path / f"s{i}") if name.startswith(".sessions.json.lock")] == []
    with pytest.raises(StoreClosedError):
        stores[0]["a"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_closing_one_store_object_keeps_the_others_working(tmp_path):
    path = tmp_path / "sessions.json"
    first, second = SessionStore(path), SessionStore(path)
    first["a"] = {"n": 1}
    first.close()
    second["b"] = {"n": 2}  # the shared lock is still there for it
    assert second.load() == {"a": {"n": 1}, "b": {"n": 2}}
    before = _open_fds()
    second.close()
    assert _open_fds() < before


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_store_garbage_collected_without_close_gives_back_its_descriptor_at_the_next_open(tmp_path):
    import gc

    before = _open_fds()
    store = SessionStore(tmp_path / "sessions.json")
    store["a"] = {"n": 1}
    del store
    gc.collect()
    SessionStore(tmp_path / "other" / "sessions.json").close()  # collected stores are released here
    assert _open_fds() <= before


def test_async_store_mapping_operations(tmp_path):
    import asyncio

    async def main() -> None:
        async with AsyncSessionStore(tmp_path / "sessions.json") as store:
            await store.update({"b": {"updatedAt": 2}, "a": {"updatedAt": 1}})
            assert await store.keys() == ["a", "b"]
            assert await store.items() == [("a", {"updatedAt": 1}), ("b", {"updatedAt": 2})]
            assert await store.recent(1) == [("b", {"lastChannel": None, "lastTo": None, "updatedAt": 2})]
            assert await store.pop("a") == {"updatedAt": 1}
            assert await store.pop("a", None) is None
            assert await store.take("b") == {"updatedAt": 2}
            assert await store.mutate(lambda s: len(s)) == 0

    asyncio.run(main())


# -- fork -----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_another_thread_holds_the_lock(tmp_path):
    """The child starts with no lock held, even when a parent thread held it
    at the fork; parent and child both keep writing with the same object."""
    path = tmp_path / "sessions.json"
    store = SessionStore(path, lock_timeout=10)
    store["n"] = {"n": 0}
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._backend._hold():
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: no thread of the parent exists here
        try:
            for _ in range(20):
                store.update_entry("n", lambda e: {"n": e["n"] + 1})
            os._exit(0)
        except BaseException:
            os._exit(1)
    # The child waits for the parent's holder like any other process would.
    release.set()
    thread.join()
    for _ in range(20):
        store.update_entry("n", lambda e: {"n": e["n"] + 1})
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert SessionStore(path, cache=False)["n"] == {"n": 40}


def test_faults_module_cannot_kill_anything():
    """The installed package holds only named no-op points: the killing
    hook lives in tests/crashpoints.py."""
    from pathlib import Path

    import sessionsd._faults as faults

    source = Path(faults.__file__).read_text(encoding="utf-8")
    assert "os.kill" not in source and "signal" not in source and faults.hook is None
    faults.hit("migrate:after-merge")  # nothing happens


def test_cli_and_library_accept_the_same_directory_spelling(tmp_path):
    SessionStore(tmp_path / "sessions.json")["a"] = {"updatedAt": 1}
    out = subprocess.run([sys.executable, "-m", "sessionsd", "get", str(tmp_path / "sessions.d"), "a"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"updatedAt": 1}
