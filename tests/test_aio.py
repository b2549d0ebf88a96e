"""The asyncio facade: same results as the synchronous store, and the
event loop keeps running while a call waits (here: on the store lock held
by another process)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

import sessionsd
from sessionsd import SessionStore, StoreClosedError
from sessionsd.aio import AsyncSessionStore

HERE = Path(__file__).parent


@pytest.fixture(params=["legacy", "directory"])
def store_path(request, tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"agent:main:a": {"updatedAt": 1, "n": 0}}))
    if request.param == "directory":
        sessionsd.migrate(path)
    return path


def test_every_operation_matches_the_synchronous_store(store_path):
    async def main():
        async with AsyncSessionStore(store_path, durability="none") as store:
            assert await store.get("AGENT:MAIN:A") == {"updatedAt": 1, "n": 0}
            assert await store.updated_at("agent:main:a") == 1
            await store.put("agent:main:b", {"updatedAt": 2})
            assert await store.patch("agent:main:b", {"x": 1}) == {"updatedAt": 2, "x": 1}
            assert await store.update_entry("agent:main:a", lambda e: {**e, "n": e["n"] + 1}) == \
                {"updatedAt": 1, "n": 1}
            assert await store.contains("agent:main:b") and not await store.contains("nope")
            assert await store.mutate(lambda s: s.pop("agent:main:b") and "popped") == "popped"
            assert sorted(await store.keys()) == ["agent:main:a"] and await store.count() == 1
            assert await store.summary() == {"agent:main:a": {"lastChannel": None, "lastTo": None,
                                                              "updatedAt": 1}}
            await store.save({"agent:main:c": {"updatedAt": 3}})
            assert await store.delete("agent:main:c") is True
            assert await store.load() == {}
            report = await store.maintain(sessionsd.maintenance.Maintenance(mode="warn", max_entries=10))
            assert report is not None
        with pytest.raises(StoreClosedError):
            await store.get("agent:main:a")


    asyncio.run(main())
    assert SessionStore(store_path, cache=False).load() == {}


def test_concurrent_increments_from_many_tasks_lose_nothing(store_path):
    async def main():
        store = AsyncSessionStore(store_path, durability="none")
        await asyncio.gather(*(store.update_entry("agent:main:a", lambda e: {**e, "n": e["n"] + 1})
                               for _ in range(50)))
        return await store.get("agent:main:a")

    assert asyncio.run(main())["n"] == 50


def test_the_event_loop_runs_while_a_call_waits_for_the_lock(tmp_path):
    path = tmp_path / "sessions.json"
    path.write_text(json.dumps({"a": {"n": 0}}))
    sessionsd.migrate(path)
    holder = subprocess.Popen([sys.executable, str(HERE / "reference_host.py"), "sd_hold",
                               json.dumps([str(path), 1.0])], stdout=subprocess.PIPE, text=True, cwd=HERE)
    assert holder.stdout.readline().strip() == "locked"

    async def main():
        store = AsyncSessionStore(path, lock_timeout=10)
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await store.put("a", {"n": 1})
        done.set()
        await task
        return ticks

    ticks = asyncio.run(main())
    holder.communicate()
    assert ticks > 10  # the loop kept running while put() waited for the lock
    assert SessionStore(path, cache=False).get("a") == {"n": 1}


def test_paths_and_repr_of_a_file_store(tmp_path):
    async def main():
        async with AsyncSessionStore(tmp_path / "sessions.json") as store:
            assert type(store.store) is SessionStore
            assert store.paths.store == str(tmp_path / "sessions.json")
            assert repr(store) == f"<AsyncSessionStore {str(tmp_path / 'sessions.json')!r}>"
        assert repr(store).endswith("(closed)>")

    asyncio.run(main())
