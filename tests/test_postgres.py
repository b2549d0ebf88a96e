"""PostgresStore against a real PostgreSQL server (tests/pg_server.py starts
or finds one; never a mock): each operation's contract, the errors of bad
input (the same as SessionStore's), and the guarantees across processes --
no lost update, atomic multi-entry commits, snapshot loads, cache
invalidation, a killed client, a server restart, concurrent schema creation."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import math
import os
import pickle
import signal
import subprocess
import threading
import time

import pg_server
import pytest
import worker_processes
from worker_processes import finish

import sessionsd
from sessionsd import SessionStore
from sessionsd.aio import AsyncSessionStore
from sessionsd.errors import (
    InvalidEntryError,
    InvalidKeyError,
    InvalidKeyTypeError,
    SessionsdError,
    StoreClosedError,
    StoreLockTimeout,
)
from sessionsd.maintenance import Maintenance

try:
    import psycopg  # noqa: F401 - needs libpq: the binary package's, or the system's
    import psycopg_pool  # noqa: F401
except ImportError as exc:
    if pg_server.REQUIRED:
        raise ImportError(f"SESSIONSD_REQUIRE_POSTGRES=1 but psycopg 3 does not import: {exc}") from exc
    pytest.skip(f"NO PSYCOPG -- the PostgreSQL backend is NOT tested: {exc} "
                "(pip install 'sessionsd[postgres]')", allow_module_level=True)

from sessionsd._pg_schema import SCHEMA_VERSION  # noqa: E402
from sessionsd.postgres import (  # noqa: E402
    PostgresStore,
    SchemaVersionError,
    StoreConnectionError,
    redact_url,
)

# The fixtures (a real server, a namespace per test), imported rather than
# put in conftest.py so that only this module starts a server.
postgres_server = pg_server.postgres_server
postgres_url = pg_server.postgres_url

class Color(enum.IntEnum):
    RED = 1


class Text(str):
    pass


WORKERS = os.path.join(os.path.dirname(__file__), "pg_workers.py")
NOW = int(time.time() * 1000)  # maintenance prunes by the real clock


@pytest.fixture
def store(postgres_url):
    with PostgresStore(postgres_url) as opened:
        yield opened


def start(function: str, *args) -> subprocess.Popen:
    return worker_processes.start(WORKERS, function, *args)


def wait_ready(proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    assert time.monotonic() < deadline


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL *proc* (no cleanup of any kind runs in it) and reap it."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def namespace_version(server, namespace: str) -> int:
    with server.connect() as conn:
        row = conn.execute("SELECT version FROM sessionsd_namespaces WHERE namespace = %s", (namespace,)).fetchone()
    return 0 if row is None else row[0]


# -- opening -----------------------------------------------------------------------------

def test_url_namespace_repr_and_lifecycle(postgres_server):
    url = postgres_server.url_for("agents/main")
    secret = url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    with PostgresStore(secret) as store:
        assert store.namespace == "agents/main"
        assert store.mode == "postgres"
        assert not store.closed
        assert "s3cret" not in repr(store) and "s3cret" not in store.url
        assert "postgres:***@" in store.url and "agents/main" in repr(store)
        # repr: the URL without password nor namespace parameter, then the namespace.
        assert repr(store) == f"<PostgresStore {store._backend.location!r} (postgres)>"
        assert store._backend.location.endswith(" namespace='agents/main'")
        assert "namespace=agents" not in store._backend.location
        store.put("k", {"v": 1})
    assert store.closed and "closed" in repr(store)
    for call in (lambda: store.get("k"), lambda: store.put("k", {}), store.load, store.keys, lambda: len(store),
                 lambda: store.mode, lambda: store.updated_at("k"), lambda: store.mutate(lambda s: None)):
        with pytest.raises(StoreClosedError):
            call()
    store.close()  # twice is fine
    # The same namespace by keyword; the URL's namespace parameter never reaches libpq.
    with PostgresStore(postgres_server.url_for(), namespace="agents/main") as again:
        assert again.get("k") == {"v": 1}
    with PostgresStore(postgres_server.url_for() + "&namespace=agents%2Fmain") as encoded:
        assert encoded.namespace == "agents/main" and encoded.get("k") == {"v": 1}
    with pytest.raises(ValueError, match="names"):
        PostgresStore(url, namespace="other")
    for bad in ("", "a\x00b"):
        with pytest.raises(ValueError):
            PostgresStore(postgres_server.url_for(), namespace=bad)


def test_a_store_opened_before_a_fork_refuses_to_run_after_it(store):
    store.put("k", {})
    connections = store._backend._db
    parent = connections.pid
    connections.pid = parent + 1  # as os.getpid() differs in a forked child
    try:
        with pytest.raises(StoreClosedError, match="fork"):
            store.get("k")
        with pytest.raises(StoreClosedError, match="fork"):
            store.update_entry("k", lambda e: e)
    finally:
        connections.pid = parent
    assert store.get("k") == {}


def test_closing_after_a_fork_leaves_the_parents_connections_alone(postgres_url):
    store = PostgresStore(postgres_url)
    connections = store._backend._db
    connections.pid += 1
    store.close()
    assert store.closed and not connections._pool.closed
    connections.pid -= 1
    connections.close()
    assert connections._pool.closed


def test_open_and_the_package_exports(postgres_url):
    with sessionsd.open(postgres_url) as store:
        assert type(store) is PostgresStore
    assert sessionsd.StoreConnectionError is StoreConnectionError
    assert sessionsd.SchemaVersionError is SchemaVersionError


def test_redact_url():
    assert redact_url("postgresql://u:pw@h:5432/db?namespace=x") == "postgresql://u:***@h:5432/db?namespace=x"
    assert redact_url("postgresql://u@/db?host=/tmp&password=pw") == "postgresql://u@/db?host=/tmp&password=***"
    assert "pw" not in redact_url("host=/tmp dbname=db password=pw")


def test_unreachable_server_is_a_clear_error():
    started = time.monotonic()
    with pytest.raises(StoreConnectionError) as caught:
        PostgresStore("postgresql://u:hunter2@/db?host=/nonexistent-sessionsd&namespace=x", connect_timeout=1)
    assert time.monotonic() - started < 15
    error = caught.value
    assert isinstance(error, SessionsdError) and isinstance(error, ConnectionError)
    assert "hunter2" not in str(error) and "unreachable" in str(error) and error.in_doubt is False
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is StoreConnectionError and str(copy) == str(error) and copy.url == error.url


def test_namespaces_are_separate(postgres_server):
    with PostgresStore(postgres_server.url_for("ns-a-" + os.urandom(4).hex())) as a, \
            PostgresStore(postgres_server.url_for("ns-b-" + os.urandom(4).hex())) as b:
        a.put("k", {"v": "a"})
        b.put("k", {"v": "b"})
        b.put("only-b", {})
        assert a.get("k") == {"v": "a"} and b.get("k") == {"v": "b"}
        assert list(a) == ["k"] and list(b) == ["k", "only-b"] and len(a) == 1 and len(b) == 2
        a.save({})
        assert b.load() == {"k": {"v": "b"}, "only-b": {}}


# -- single entries ------------------------------------------------------------------------

EXOTIC = {
    "updatedAt": NOW,
    "nul": "a\x00b",
    "unicode": "é€𝄞\u2028",
    "float": 1e300,
    "tiny": 5e-324,
    "negzero": -0.0,
    "big": 2**63,
    "neg": -(2**63),
    "nested": {"list": [1, 2.5, None, True, {"deep": []}], "empty": {}},
    "dup-looking": {"a": 1, "A": 2},
}


def test_values_round_trip_exactly(store):
    store.put("k", EXOTIC)
    got = store.get("k")
    assert got == EXOTIC
    assert type(got["float"]) is float and type(got["big"]) is int and math.copysign(1, got["negzero"]) == -1
    assert store.load() == {"k": EXOTIC}
    got["nested"]["list"].append("mine")  # the caller owns what it got
    assert store.get("k") == EXOTIC


def test_update_entry(store, postgres_server):
    seen = []

    def bump(entry):
        seen.append(entry)
        return {**(entry or {}), "n": (entry or {}).get("n", 0) + 1}

    assert store.update_entry("k", bump) == {"n": 1}
    assert store.update_entry("k", bump) == {"n": 2}
    assert seen == [None, {"n": 1}]
    version = namespace_version(postgres_server, store.namespace)
    assert store.update_entry("k", lambda e: None) == {"n": 2}  # None: store nothing
    assert namespace_version(postgres_server, store.namespace) == version
    assert store.update_entry("none", lambda e: None) is None and "none" not in store

    def private(entry):
        entry["n"] = 99  # the copy is private: the stored entry is not touched
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.update_entry("k", private)
    assert store.get("k") == {"n": 2}
    with pytest.raises(InvalidEntryError):
        store.update_entry("k", lambda e: ["not", "an", "object"])
    assert store.get("k") == {"n": 2}


# -- single commits, counters (the mapping API and the single-entry contract: tests/test_conformance.py) --

def namespace_counters(server, namespace: str) -> tuple:
    """``(entries, bytes)`` as the namespace row keeps them, and as the entries add up."""
    with server.connect() as conn:
        kept = conn.execute("SELECT entries, bytes FROM sessionsd_namespaces WHERE namespace = %s",
                            (namespace,)).fetchone()
        counted = conn.execute("SELECT count(*), coalesce(sum(octet_length(entry)), 0) FROM sessionsd_entries "
                               "WHERE namespace = %s", (namespace,)).fetchone()
    return tuple(kept or (0, 0)), tuple(counted)


def test_update_and_take_are_single_commits(store, postgres_server):
    assert store.take("nothing") is None and store.pop("nothing", 0) == 0
    assert namespace_version(postgres_server, store.namespace) == 0  # nothing written, not even a row
    store.update({"a": {"n": 1}, "b": {"n": 2}})
    version = namespace_version(postgres_server, store.namespace)
    store.update({"b": {"n": 20, "pad": "x" * 50}, "c": {"n": 3}, "d": {}})
    assert namespace_version(postgres_server, store.namespace) == version + 1
    kept, counted = namespace_counters(postgres_server, store.namespace)
    assert kept == counted and kept[0] == 4
    assert store.take("B") == {"n": 20, "pad": "x" * 50}
    assert store.take("b") is None and namespace_version(postgres_server, store.namespace) == version + 2
    kept, counted = namespace_counters(postgres_server, store.namespace)
    assert kept == counted and kept[0] == 3
    with pytest.raises(InvalidEntryError):
        store.update({"e": {}, "f": {"v": float("nan")}})
    assert "e" not in store and namespace_version(postgres_server, store.namespace) == version + 2

    def fails(sessions):
        store.update({"x": {}, "y": {}})  # both join the mutate's transaction ...
        assert store.pop("a") == {"n": 1}
        raise RuntimeError  # ... and roll back with it

    with pytest.raises(RuntimeError):
        store.mutate(fails)
    assert list(store) == ["a", "c", "d"] and store.load() == {"a": {"n": 1}, "c": {"n": 3}, "d": {}}


def test_concurrent_takes_take_each_entry_once(postgres_url):
    keys = [f"k{i:02d}" for i in range(40)]
    with PostgresStore(postgres_url) as store:
        store.update({key: {"key": key} for key in keys})
    taken: list[list[str]] = [[] for _ in range(4)]

    def drain(mine: list[str]) -> None:
        with PostgresStore(postgres_url) as own:  # its own connections
            for key in keys:
                entry = own.take(key)
                if entry is not None:
                    assert entry == {"key": key}
                    mine.append(key)

    threads = [threading.Thread(target=drain, args=(mine,)) for mine in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(key for mine in taken for key in mine) == keys
    with PostgresStore(postgres_url) as store:
        assert len(store) == 0 and store.load() == {}


def test_async_store_on_postgres(postgres_url):
    async def main():
        async with AsyncSessionStore(postgres_url, pool_max_size=2) as store:
            assert store.mode == "postgres" and store.paths is None
            assert type(store.store) is PostgresStore
            assert store.store.namespace in repr(store) and "postgres" in repr(store)
            await store.put("K", {"n": 0})
            await asyncio.gather(*(store.update_entry("k", lambda e: {"n": e["n"] + 1}) for _ in range(20)))
            assert await store.get("k") == {"n": 20} and await store.updated_at("k") is None
            await store.update({"b": {"updatedAt": 2}, "a": {"updatedAt": 1}})
            assert await store.keys() == ["a", "b", "k"] and await store.count() == 3
            assert [key for key, _ in await store.recent(2)] == ["b", "a"]
            assert await store.pop("a") == {"updatedAt": 1} and await store.take("a") is None
            assert await store.mutate(lambda entries: sorted(entries)) == ["b", "k"]
        assert store.closed
        with pytest.raises(StoreClosedError):
            await store.get("k")

    asyncio.run(main())
    with PostgresStore(postgres_url) as sync:
        assert sync.load() == {"b": {"updatedAt": 2}, "k": {"n": 20}}


# -- whole store ------------------------------------------------------------------------------

def test_load_keys_len_summary_recent(store):
    entries = {
        "b": {"updatedAt": 3, "lastChannel": "tg", "lastTo": "1"},
        "a": {"updatedAt": 3, "lastChannel": "dc"},
        "c": {"updatedAt": 10.5, "lastTo": {"room": 1}},
        "d": {"x": 1},
        "e": {"updatedAt": "soon"},
        "f": {"updatedAt": -1, "lastChannel": "a\x00b"},
    }
    store.save(entries)
    assert store.load() == entries
    assert list(store.keys()) == sorted(entries) and len(store) == len(entries)
    expected = {key: {"lastChannel": e.get("lastChannel"), "lastTo": e.get("lastTo"), "updatedAt": e.get("updatedAt")}
                for key, e in entries.items()}
    assert store.summary() == expected
    order = ["c", "a", "b", "f", "d", "e"]  # newest first, ties by key, non-numeric oldest
    assert [key for key, _ in store.recent()] == order
    assert store.recent(2, 1) == [(key, expected[key]) for key in order[1:3]]
    assert store.recent(0) == [] and store.recent(10, 10) == []
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError):
            store.recent(bad)
        with pytest.raises(ValueError):
            store.recent(1, bad)


def test_load_is_a_private_copy_and_cached(store, postgres_url):
    store.put("k", {"list": [1]})
    first = store.load()
    first["k"]["list"].append(2)
    first["new"] = {}
    assert store.load() == {"k": {"list": [1]}}
    with PostgresStore(postgres_url) as other:  # another store object, same process: shared cache
        assert other.load() == {"k": {"list": [1]}}
        other.put("j", {"v": 1})
        other.delete("k")
        assert store.load() == {"j": {"v": 1}}
    with PostgresStore(postgres_url, cache=False) as uncached:
        uncached.put("z", {})
        assert uncached.load() == store.load() == {"j": {"v": 1}, "z": {}}
        # The cached view after this process's own write holds what a fresh load reads.
        store.put("t", {"tuple": (1, 2), "enum": Color.RED, "sub": Text("s")})
        cached, fresh = store.load()["t"], uncached.load()["t"]
        assert cached == fresh == {"tuple": [1, 2], "enum": 1, "sub": "s"}
        assert [type(v) for v in cached.values()] == [type(v) for v in fresh.values()] == [list, int, str]
        # ... and after its own update() and pop() (one commit each).
        store.update({"u1": {"tuple": (3,)}, "u2": {"sub": Text("t")}})
        assert store.pop("j") == {"v": 1}
        assert store.load() == uncached.load() == {"t": cached, "z": {}, "u1": {"tuple": [3]}, "u2": {"sub": "t"}}


def test_mutate_commits_the_difference(store, postgres_server):
    store.save({"keep": {"v": 1}, "change": {"v": 1}, "drop": {"v": 1}})
    version = namespace_version(postgres_server, store.namespace)

    def fn(sessions):
        sessions["change"]["v"] = 2
        del sessions["drop"]
        sessions["ADD"] = {"v": 3}
        return "result"

    assert store.mutate(fn) == "result"
    assert store.load() == {"keep": {"v": 1}, "change": {"v": 2}, "add": {"v": 3}}
    assert namespace_version(postgres_server, store.namespace) == version + 1
    assert store.mutate(lambda sessions: None) is None  # unchanged: nothing written
    assert namespace_version(postgres_server, store.namespace) == version + 1
    assert len(store) == 3


def test_mutate_is_all_or_nothing(store):
    store.save({"a": {"v": 1}})

    def fails(sessions):
        sessions["a"]["v"] = 2
        sessions["b"] = {}
        raise KeyError("boom")

    with pytest.raises(KeyError):
        store.mutate(fails)
    assert store.load() == {"a": {"v": 1}}
    with pytest.raises(InvalidEntryError):
        store.mutate(lambda s: s.update({"b": {}, "c": "not an object"}))
    with pytest.raises(InvalidKeyError):
        store.mutate(lambda s: s.update({"X": {}, "x": {}}))
    with pytest.raises(InvalidEntryError):
        store.mutate(lambda s: s.update({"b": {"nan": float("nan")}}))
    assert store.load() == {"a": {"v": 1}}


def test_calls_nested_in_an_update_join_its_transaction(store):
    store.save({"a": {"v": 1}})

    def fn(sessions):
        store.put("nested", {"v": 2})
        assert store.get("nested") == {"v": 2}  # the transaction sees its own write
        sessions["a"]["v"] = 3

    store.mutate(fn)
    assert store.load() == {"a": {"v": 3}, "nested": {"v": 2}}

    def fails(sessions):
        store.put("rolled-back", {})
        raise RuntimeError

    with pytest.raises(RuntimeError):
        store.mutate(fails)
    assert "rolled-back" not in store and store.load() == {"a": {"v": 3}, "nested": {"v": 2}}
    assert store.update_entry("a", lambda e: store.patch("nested", {"w": 1}) and {**e, "v": 4}) == {"v": 4}
    assert store.load() == {"a": {"v": 4}, "nested": {"v": 2, "w": 1}}


def test_save_replaces_everything(store):
    store.save({"a": {}, "b": {}})
    store.save({"B": {"v": 1}, "c": {}})
    assert store.load() == {"b": {"v": 1}, "c": {}}
    store.save({})
    assert store.load() == {} and len(store) == 0 and list(store) == []
    with pytest.raises(InvalidEntryError):
        store.save([("a", {})])


# -- bad input: the same errors as SessionStore ------------------------------------------------------

BAD_CALLS = {
    "put-non-str-key": lambda s: s.put(3, {}),
    "put-none-key": lambda s: s.put(None, {}),
    "put-empty-key": lambda s: s.put("  ", {}),
    "put-surrogate-key": lambda s: s.put("a\ud800", {}),
    "put-blocked": lambda s: s.put("__proto__", {}),
    "put-list": lambda s: s.put("k", [1, 2]),
    "put-str": lambda s: s.put("k", "entry"),
    "put-none": lambda s: s.put("k", None),
    "put-set": lambda s: s.put("k", {"tags": {1, 2}}),
    "put-nan": lambda s: s.put("k", {"stats": {"ratio": float("nan")}}),
    "put-inf": lambda s: s.put("k", {"x": [float("inf")]}),
    "put-bytes": lambda s: s.put("k", {"raw": b"\x00"}),
    "put-int-key": lambda s: s.put("k", {1: "one"}),
    "put-huge-int": lambda s: s.put("k", {"n": 2**64}),
    "put-surrogate-value": lambda s: s.put("k", {"s": "\udfff"}),
    "get-bad-key": lambda s: s.get(b"bytes"),
    "get-empty-key": lambda s: s.get(""),
    "updated-at-bad-key": lambda s: s.updated_at(1.5),
    "contains-bad-key": lambda s: [] in s,
    "delete-bad-key": lambda s: s.delete(None),
    "patch-non-mapping": lambda s: s.patch("k", ["a"]),
    "patch-bad-key": lambda s: s.patch("", {}),
    "update-entry-non-dict": lambda s: s.update_entry("k", lambda e: 5),
    "save-non-mapping": lambda s: s.save([1]),
    "save-non-dict-entry": lambda s: s.save({"a": 1}),
    "save-colliding-keys": lambda s: s.save({"a": {}, "A": {}}),
    "save-bad-key": lambda s: s.save({"": {}}),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_bad_input_raises_what_session_store_raises(name, store, tmp_path):
    call = BAD_CALLS[name]
    with SessionStore(tmp_path / "sessions.json") as reference:
        reference.put("k", {"v": 1})
        with pytest.raises(Exception) as expected:
            call(reference)
    store.put("k", {"v": 1})
    with pytest.raises(type(expected.value)) as got:
        call(store)
    assert type(got.value) is type(expected.value), (got.value, expected.value)
    for attribute in ("key", "field"):
        assert getattr(got.value, attribute, None) == getattr(expected.value, attribute, None), attribute
    assert store.load() == {"k": {"v": 1}}  # nothing was written


def test_bad_key_types_mix_in_builtins(store):
    with pytest.raises(InvalidKeyTypeError) as caught:
        store.get(7)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)


# -- maintenance --------------------------------------------------------------------------------

def _aged(count: int, start: int = NOW) -> dict:
    return {f"s{i:03d}": {"updatedAt": start + i, "pad": "x" * 100} for i in range(count)}


def test_maintain_prune_cap_budget(store):
    store.save({**_aged(10), "ancient": {"updatedAt": 1}, "undated": {}})
    preview = store.maintain(Maintenance(mode="enforce", prune_after=86400), dry_run=True)
    assert sorted(preview.pruned) == ["ancient", "undated"] and not preview.applied
    assert len(store) == 12 and preview.entries_after == 10
    removed = []
    settings = Maintenance(mode="enforce", max_entries=8,
                           on_removed=lambda key, entry: removed.append((key, entry)))
    report = store.maintain(settings)
    assert report.applied and report.pruned == [] and report.evicted == ["undated", "ancient", "s000", "s001"]
    assert report.entries_before == 12 and report.entries_after == 8 == len(store)
    assert sorted(key for key, _ in removed) == sorted(report.evicted) and dict(removed)["s000"]["pad"] == "x" * 100
    size = len(json.dumps(store.get("s009"), separators=(",", ":")))
    budget = store.maintain(Maintenance(mode="enforce", max_disk_bytes=size * 3))
    assert budget.over_budget == ["s002", "s003", "s004", "s005", "s006"]
    assert budget.bytes_after <= size * 3 and list(store) == ["s007", "s008", "s009"]
    assert store.last_maintenance is budget
    with pytest.raises(ValueError):
        store.maintain()


def test_maintain_warn_mode_removes_nothing(store, caplog):
    store.save(_aged(5))
    with caplog.at_level(logging.WARNING, logger="sessionsd._pg_backend"):
        report = store.maintain(Maintenance(mode="warn", max_entries=2))
    assert report.evicted == ["s000", "s001", "s002"] and not report.applied and len(store) == 5
    assert "would remove" in caplog.text


def test_maintenance_on_every_write(postgres_url):
    settings = Maintenance(mode="enforce", max_entries=5, sweep_interval=3600)
    with PostgresStore(postgres_url, maintenance=settings) as store:
        for i in range(8):
            store.put(f"s{i}", {"updatedAt": NOW + i})
        assert list(store) == ["s3", "s4", "s5", "s6", "s7"]
        store.put("old", {"updatedAt": 1})  # the session just written is never evicted
        assert "old" in store and len(store) == 5 and "s3" not in store
        store.mutate(lambda s: s.update({f"m{i}": {"updatedAt": NOW + 100 + i} for i in range(3)}))
        assert len(store) == 5 and sorted(store.keys()) == ["m0", "m1", "m2", "s6", "s7"]


# -- across processes -----------------------------------------------------------------------------

@pytest.mark.slow
def test_no_lost_update_with_update_entry(postgres_url):
    procs = [start("increment_entry", postgres_url, "counter", 150) for _ in range(4)]
    for proc in procs:
        assert finish(proc) == {"done": 150}
    with PostgresStore(postgres_url) as store:
        assert store.get("counter") == {"n": 600}


@pytest.mark.slow
def test_no_lost_update_with_mutate(postgres_url):
    procs = [start("increment_mutate", postgres_url, 60, f"own-{i}") for i in range(4)]
    for proc in procs:
        assert finish(proc) == {"done": 60}
    with PostgresStore(postgres_url) as store:
        assert store.load() == {"counter": {"n": 240}, **{f"own-{i}": {"last": 59} for i in range(4)}}


@pytest.mark.slow
def test_readers_never_see_half_a_commit(postgres_url):
    writer = start("invariant_writer", postgres_url, 300)
    readers = [start("invariant_reader", postgres_url, 3.0) for _ in range(2)]
    assert finish(writer) == {"rounds": 300}
    for reader in readers:
        result = finish(reader)
        assert result["broken"] == 0, result
        assert result["loads"] > 10


@pytest.mark.slow
def test_cached_loads_see_other_processes_commits(postgres_url):
    with PostgresStore(postgres_url) as store:
        store.put("a", {"v": 0})
        assert store.load() == {"a": {"v": 0}}
        steps = [("put", "a", {"v": 1}), ("mutate", "b", {"v": 2}), ("delete", "a", None), ("put", "b", {"v": 3}),
                 ("update", "c", {"v": 4}), ("pop", "c", None)]
        expected = {"a": {"v": 0}}
        for op, key, value in steps:
            assert store.load() == expected  # the cached view, checked against the version row
            finish(start("write", postgres_url, op, key, value))
            if value is None:
                expected.pop(key)
            else:
                expected[key] = value
                if op == "update":
                    expected[f"{key}-too"] = value
            assert store.load() == expected


@pytest.mark.slow
def test_killed_client_leaves_no_half_commit(postgres_url, postgres_server):
    with PostgresStore(postgres_url) as store:
        store.save({"x": {"half": False}})
        version = namespace_version(postgres_server, store.namespace)
        proc = start("hold_transaction", postgres_url)
        wait_ready(proc)  # its transaction has written "nested" and holds the namespace lock
        kill(proc)
        started = time.monotonic()
        store.put("after", {})  # the server rolled the dead client back and released its lock
        assert time.monotonic() - started < 10
        assert store.load() == {"x": {"half": False}, "after": {}}
        assert namespace_version(postgres_server, store.namespace) == version + 1

        churn = start("churn", postgres_url, 300)
        wait_ready(churn)
        time.sleep(1.0)
        for _ in range(5):
            rounds = {entry["round"] for entry in store.load().values() if "round" in entry}
            assert len(rounds) <= 1
            time.sleep(0.1)
        kill(churn)
        final = store.load()
        rounds = {entry["round"] for entry in final.values()}
        assert len(final) == 300 and len(rounds) == 1, rounds
        assert len(store) == 300


@pytest.mark.slow
def test_schema_created_once_by_concurrent_first_opens(postgres_server):
    database = postgres_server.create_database("schema")
    try:
        url = postgres_server.url_for("race", database=database)
        when = time.time() + 1.5
        procs = [start("open_at", url, when) for _ in range(4)]
        for proc in procs:
            assert finish(proc) == {"opened": True}
        with postgres_server.connect(database) as conn:
            rows = conn.execute("SELECT version FROM sessionsd_schema").fetchall()
            assert rows == [(SCHEMA_VERSION,)]
            assert conn.execute("SELECT count(*) FROM sessionsd_entries").fetchone()[0] == 4
            assert conn.execute("SELECT entries FROM sessionsd_namespaces").fetchone()[0] == 4
            # A newer sessionsd upgraded the schema: this one refuses to run on it.
            conn.execute("INSERT INTO sessionsd_schema (version, library) VALUES (%s, 'future')",
                         (SCHEMA_VERSION + 1,))
        with pytest.raises(SchemaVersionError) as caught:
            PostgresStore(url)
        assert caught.value.found == SCHEMA_VERSION + 1 and caught.value.supported == SCHEMA_VERSION
    finally:
        postgres_server.drop_database(database)


def test_lock_timeout(postgres_url):
    entered = threading.Event()
    release = threading.Event()
    with PostgresStore(postgres_url) as holder, PostgresStore(postgres_url, lock_timeout=0.3) as waiter:
        def hold(entry):
            entered.set()
            release.wait(10)
            return {"held": True}

        thread = threading.Thread(target=holder.update_entry, args=("k", hold))
        thread.start()
        try:
            assert entered.wait(10)
            with pytest.raises(StoreLockTimeout):
                waiter.put("other", {})
            assert waiter.get("k") is None  # reads never wait for the lock
        finally:
            release.set()
            thread.join(10)
        waiter.put("other", {})
        assert waiter.load() == {"k": {"held": True}, "other": {}}


# -- a server restart --------------------------------------------------------------------------------

@pytest.mark.slow
def test_server_restart_is_survived(postgres_server, postgres_url):
    if not postgres_server.can_restart:
        pytest.skip("the test server is not run by this machine (no SESSIONSD_TEST_PG_DIR): cannot restart it")
    with PostgresStore(postgres_url, pool_min_size=2) as store:
        store.put("k", {"n": 0})
        assert store.load() == {"k": {"n": 0}}
        entered = threading.Event()
        outcome: dict = {}

        def slow(entry):
            entered.set()
            time.sleep(1.5)
            return {"n": 1}

        def in_flight():
            try:
                outcome["result"] = store.update_entry("k", slow)
            except Exception as exc:  # noqa: BLE001 - the test inspects it
                outcome["error"] = exc

        thread = threading.Thread(target=in_flight)
        thread.start()
        assert entered.wait(10)
        postgres_server.restart()  # drops every connection, the one in flight too
        thread.join(30)
        error = outcome.get("error")
        assert isinstance(error, StoreConnectionError), outcome
        assert store.url in str(error) and "update_entry" in str(error) and error.in_doubt is False
        # Every later call succeeds on fresh connections, the dead ones discarded.
        started = time.monotonic()
        assert store.get("k") == {"n": 0}
        assert time.monotonic() - started < 5
        store.put("k", {"n": 2})
        assert store.update_entry("k", lambda e: {"n": e["n"] + 1}) == {"n": 3}
        assert store.load() == {"k": {"n": 3}} and len(store) == 1
