"""An asyncio facade: :class:`AsyncSessionStore`.

Every call runs the matching :class:`~sessionsd.SessionStore` method in a
worker thread (the event loop's default executor, or one you pass), so file
system work and lock waits never block the loop.  The store underneath is
thread-safe, so many calls may be in flight at once; writes still serialise
on the store lock, exactly as from threads.

Callbacks (``update`` mutators, ``update_entry`` functions) run in the worker
thread, under the store lock: they must be plain functions that return
quickly, not coroutines.  Cancelling an awaiting call does not stop the
thread: a write that had started completes (or fails) as a whole, and the
store stays consistent either way.

    async with AsyncSessionStore(path) as store:
        await store.put("agent:main:x", {"updatedAt": 1})
        entry = await store.get("agent:main:x")
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .maintenance import Maintenance, MaintenanceReport
from .store import SessionStore

__all__ = ["AsyncSessionStore"]

T = TypeVar("T")


class AsyncSessionStore:
    """The operations of :class:`~sessionsd.SessionStore`, awaitable.

    *path* and the keyword options are :class:`~sessionsd.SessionStore`'s.
    *executor*: a :class:`concurrent.futures.Executor` to run calls in
    (default: the running loop's default executor).
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 executor: concurrent.futures.Executor | None = None, **options: Any) -> None:
        self._store = SessionStore(path, **options)
        self._executor = executor

    @property
    def store(self) -> SessionStore:
        """The synchronous store underneath (for code that runs in threads)."""
        return self._store

    @property
    def paths(self) -> Any:
        return self._store.paths

    @property
    def closed(self) -> bool:
        return self._store.closed

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    # -- reads ----------------------------------------------------------------

    async def get(self, key: Any, default: Any = None) -> Any:
        """The entry of *key* (a fresh dict), or *default*."""
        return await self._run(self._store.get, key, default)

    async def updated_at(self, key: Any) -> Any:
        """``entry["updatedAt"]`` of *key* exactly as stored, or ``None``."""
        return await self._run(self._store.updated_at, key)

    async def contains(self, key: Any) -> bool:
        """Whether *key* has an entry."""
        return await self._run(self._store.__contains__, key)

    async def load(self) -> dict[str, dict]:
        """Every session, snapshot-consistent, deep-copied for the caller."""
        return await self._run(self._store.load)

    async def summary(self) -> dict[str, dict[str, Any]]:
        """``{key: {"lastChannel", "lastTo", "updatedAt"}}`` for every session."""
        return await self._run(self._store.summary)

    async def keys(self) -> list[str]:
        """Every session key."""
        return await self._run(self._store.keys)

    async def count(self) -> int:
        """The number of sessions (``len()`` of the synchronous store)."""
        return await self._run(self._store.__len__)

    @property
    def mode(self) -> str:
        """``"directory"`` or ``"legacy"`` (one ``lstat``-level check, not awaited)."""
        return self._store.mode

    # -- writes ---------------------------------------------------------------

    async def put(self, key: Any, entry: dict) -> None:
        """Create or replace the entry of *key*."""
        await self._run(self._store.put, key, entry)

    async def patch(self, key: Any, fields: Mapping[str, Any]) -> dict | None:
        """Shallow-merge *fields* into the entry of *key*; ``None`` if missing."""
        return await self._run(self._store.patch, key, fields)

    async def update_entry(self, key: Any, fn: Callable[[dict | None], dict | None]) -> dict | None:
        """Read-modify-write one entry under the lock (*fn* runs in a worker thread)."""
        return await self._run(self._store.update_entry, key, fn)

    async def delete(self, key: Any) -> bool:
        """Remove the entry of *key*; True if there was one."""
        return await self._run(self._store.delete, key)

    async def update(self, mutator: Callable[[dict[str, dict]], T]) -> T:
        """Whole-store read-modify-write as one atomic commit (*mutator* runs
        in a worker thread)."""
        return await self._run(self._store.update, mutator)

    async def save(self, mapping: Mapping[str, dict]) -> None:
        """Make the store hold exactly *mapping*, writing only the difference."""
        await self._run(self._store.save, mapping)

    async def maintain(self, settings: Maintenance | None = None, *,
                       dry_run: bool = False) -> MaintenanceReport:
        """A full maintenance sweep (prune, cap, disk budget)."""
        return await self._run(self._store.maintain, settings, dry_run=dry_run)

    # -- lifecycle ------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the store; every later call raises StoreClosedError."""
        self._store.close()

    async def __aenter__(self) -> AsyncSessionStore:
        if self._store.closed:
            self._store._check_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncSessionStore {self._store.paths.store!r}>"
