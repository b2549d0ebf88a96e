"""An asyncio facade: :class:`AsyncSessionStore`.

It opens any store :func:`sessionsd.open` opens -- a file store
(:class:`~sessionsd.SessionStore`) from a path, a PostgreSQL store
(:class:`~sessionsd.postgres.PostgresStore`) from a ``postgresql://`` URL --
and runs every call of it in a worker thread (the event loop's default
executor, or one you pass), so file system work, database round trips and
lock waits never block the loop.  The store underneath is thread-safe, so
many calls may be in flight at once; writes still serialise on the store
lock, exactly as from threads.

Callbacks (``mutate`` functions, ``update_entry`` functions) run in the worker
thread, under the store lock: they must be plain functions that return
quickly, not coroutines.  Cancelling an awaiting call does not stop the
thread: a write that had started completes (or fails) as a whole, and the
store stays consistent either way.

    async with AsyncSessionStore(path) as store:   # or a postgresql://...?namespace=... URL
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

from ._facade import StoreFacade
from ._layout import StorePaths
from ._open import open_store
from ._types import Entries, Entry
from .maintenance import Maintenance, MaintenanceReport
from .store import SessionStore

__all__ = ["AsyncSessionStore"]

T = TypeVar("T")


class AsyncSessionStore:
    """The operations of a store, awaitable.

    *path* is what :func:`sessionsd.open` takes: a store path (a
    :class:`~sessionsd.SessionStore`) or a ``postgresql://`` URL (a
    :class:`~sessionsd.postgres.PostgresStore`); the keyword options are that
    store's.  *executor*: a :class:`concurrent.futures.Executor` to run calls
    in (default: the running loop's default executor).
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 executor: concurrent.futures.Executor | None = None, **options: Any) -> None:
        self._store: StoreFacade = open_store(path, **options)
        self._executor = executor

    @property
    def store(self) -> StoreFacade:
        """The synchronous store underneath (for code that runs in threads):
        a :class:`~sessionsd.SessionStore` or a
        :class:`~sessionsd.postgres.PostgresStore`."""
        return self._store

    @property
    def paths(self) -> StorePaths | None:
        """Every path of a file store (``paths.store`` is the
        ``sessions.json`` path, ``paths.root`` the ``sessions.d``
        directory); ``None`` for a store that is not made of files
        (PostgreSQL)."""
        return self._store.paths if isinstance(self._store, SessionStore) else None

    @property
    def closed(self) -> bool:
        """Whether the store was closed."""
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

    async def load(self) -> Entries:
        """Every session, snapshot-consistent, deep-copied for the caller."""
        return await self._run(self._store.load)

    async def summary(self) -> dict[str, dict[str, Any]]:
        """``{key: {"lastChannel", "lastTo", "updatedAt"}}`` for every session."""
        return await self._run(self._store.summary)

    async def keys(self) -> list[str]:
        """Every session key, sorted (the synchronous store's iteration order)."""
        return await self._run(lambda: list(self._store.keys()))

    async def items(self) -> list[tuple[str, Entry]]:
        """``(key, entry)`` for every session in sorted key order, from one
        snapshot-consistent load."""
        return await self._run(lambda: list(self._store.items()))

    async def recent(self, limit: int = 50, offset: int = 0) -> list[tuple[str, dict[str, Any]]]:
        """The most recently updated sessions, newest first (see
        :meth:`sessionsd.SessionStore.recent`)."""
        return await self._run(self._store.recent, limit, offset)

    async def count(self) -> int:
        """The number of sessions (``len()`` of the synchronous store)."""
        return await self._run(self._store.__len__)

    @property
    def mode(self) -> str:
        """``"directory"`` or ``"legacy"`` (one ``lstat``-level check, not
        awaited), or ``"postgres"``."""
        return self._store.mode

    # -- writes ---------------------------------------------------------------

    async def put(self, key: Any, entry: Entry) -> None:
        """Create or replace the entry of *key*."""
        await self._run(self._store.put, key, entry)

    async def patch(self, key: Any, fields: Mapping[str, Any]) -> Entry | None:
        """Shallow-merge *fields* into the entry of *key*; ``None`` if missing."""
        return await self._run(self._store.patch, key, fields)

    async def update_entry(self, key: Any, fn: Callable[[Entry | None], Entry | None]) -> Entry | None:
        """Read-modify-write one entry under the lock (*fn* runs in a worker thread)."""
        return await self._run(self._store.update_entry, key, fn)

    async def delete(self, key: Any) -> bool:
        """Remove the entry of *key*; True if there was one."""
        return await self._run(self._store.delete, key)

    async def take(self, key: Any) -> Entry | None:
        """Remove the entry of *key* and return it (``None`` if there was none)."""
        return await self._run(self._store.take, key)

    async def pop(self, key: Any, *default: Any) -> Any:
        """Remove the entry of *key* and return it; *default* if missing, else KeyError."""
        return await self._run(self._store.pop, key, *default)

    async def update(self, other: Any = (), /, **kwargs: Entry) -> None:
        """Put every ``(key, entry)`` of *other* and *kwargs* as one atomic
        commit (``dict.update``'s signature)."""
        await self._run(self._store.update, other, **kwargs)

    async def mutate(self, mutator: Callable[[Entries], T]) -> T:
        """Whole-store read-modify-write as one atomic commit (*mutator* runs
        in a worker thread)."""
        return await self._run(self._store.mutate, mutator)

    #: The reference's name (``updateSessionStore``) for :meth:`mutate`.
    update_store = mutate

    async def save(self, mapping: Mapping[str, Entry]) -> None:
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
        """The store itself (closed when the block ends)."""
        if self._store.closed:
            self._store._check_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = " (closed)" if self._store.closed else ""
        return f"<AsyncSessionStore {self._store.location!r}{state}>"
