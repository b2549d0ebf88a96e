"""The per-process state a file store shares between its objects.

:class:`_Cache` is one store's snapshot cache (shared by every store object
on that store in this process); the store lock (:class:`sessionsd._lock.StoreLock`)
is shared the same way.  Both are counted: the last store object to close
gives back the lock's descriptor and the cached snapshot.  A store object
garbage-collected without ``close()`` is released at the next open or close
(:func:`release_collected`), never from the collector itself.
"""

from __future__ import annotations

import threading

from . import index as _index
from ._directory import Snapshot
from ._legacy import LegacySnapshot
from ._lock import StoreLock

__all__ = ["_Cache", "release_collected", "collected"]


class _Cache:
    """The per-process cache of one store, shared by its store objects.

    Directory mode: a snapshot valid for ``token`` = (state version, seq);
    ``dirty`` lists entry files this process rewrote since, so the next load
    re-reads just those.  Legacy mode: the parsed file and its stat token.
    """

    _registry: dict[tuple[str, bool], _Cache] = {}
    _registry_mutex = threading.Lock()
    #: Store objects using this cache (see attach/detach).
    users: int

    @classmethod
    def attach(cls, path: tuple[str, bool]) -> _Cache:
        """The cache of *path*, counted: the last store object to
        :meth:`detach` drops it (and the memory it holds)."""
        with cls._registry_mutex:
            cache = cls._registry.get(path)
            if cache is None:
                cache = cls._registry[path] = cls()
                cache.path = path
            cache.users += 1
            return cache

    def detach(self) -> None:
        with _Cache._registry_mutex:
            self.users = max(0, self.users - 1)
            if self.users == 0 and self.path is not None and _Cache._registry.get(self.path) is self:
                del _Cache._registry[self.path]

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path: tuple[str, bool] | None = None
        self.users = 0
        self.mutex = threading.Lock()
        self.snapshot: Snapshot | None = None
        #: (store identity, state version, seq) of the snapshot.
        self.token: tuple[tuple[int, ...], int, int] | None = None
        self.dirty: dict[str, str] = {}
        self.legacy: LegacySnapshot | None = None
        #: The listing index (sessionsd.index) of the last directory listing.
        self.index: _index.Index | None = None

    def clear(self) -> None:
        with self.mutex:
            self.snapshot = None
            self.token = None
            self.dirty = {}
            self.legacy = None
            self.index = None


#: (lock, cache) pairs of store objects garbage-collected without close():
#: released by the next store opened or closed, never from the collector
#: itself (it may run while this thread holds the very mutexes involved).
_UNCLOSED: list[tuple[StoreLock, _Cache]] = []


def collected(lock: StoreLock, cache: _Cache) -> None:
    _UNCLOSED.append((lock, cache))  # atomic; no lock taken here


def release_collected() -> None:
    while _UNCLOSED:
        try:
            lock, cache = _UNCLOSED.pop()
        except IndexError:
            return  # another thread took the last one
        lock.detach()
        cache.detach()
