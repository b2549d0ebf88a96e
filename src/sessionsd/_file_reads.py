"""Snapshot-consistent reads of the file store: full snapshots (cached per
process, validated by the store's identity, ``state.json`` version and seq)
and the listing index that serves ``keys()``, ``len()``, ``summary()`` and
``recent()`` (:mod:`sessionsd.index`).  A mixin of
:class:`sessionsd._file_backend.FileBackend`, split out along that seam.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from . import index as _index
from ._directory import DirectoryStore, Snapshot, _Retry
from ._layout import State, StorePaths, read_state
from ._legacy import LegacySnapshot, LegacyStore
from ._lock import StoreLock
from ._types import Durability, Entries
from .errors import StoreLockTimeout

if TYPE_CHECKING:
    from ._cache import _Cache
    from .maintenance import Maintainer

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: Lock-free tries of a full load before it reads under the lock; a
#: commit in flight is waited out (a few ms at most) rather than blocked.
_SNAPSHOT_ATTEMPTS = 3
#: Reads that find the mode changed under them (a migration or rollback by
#: another process) look again this many times.
_FLIP_ATTEMPTS = 4
DIRECTORY = "directory"


class FileReads:
    """The read side of :class:`~sessionsd._file_backend.FileBackend`."""

    # What the backend provides (declared for the type checker).
    paths: StorePaths
    durability: Durability
    use_index: bool
    skipped: list[tuple[str, str]]
    _dir: DirectoryStore
    _lock: StoreLock
    _legacy: LegacyStore
    _cache: _Cache
    _maintainer: Maintainer | None
    _state_memo: list[Any]

    if TYPE_CHECKING:
        def _hold(self) -> AbstractContextManager[None]: ...
        def _detect(self) -> str: ...
        def _locked_state(self) -> State: ...
        def _legacy_snapshot(self) -> LegacySnapshot: ...
        def _legacy_stable(self, snapshot: LegacySnapshot) -> bool: ...

    # -- the listing index (directory mode) -------------------------------------------

    def _listing(self, answer: Callable[[_index.Index], T], fallback: Callable[[Entries], T]) -> T:
        """*answer* from the current listing index in directory mode, else
        *fallback* of a full snapshot (legacy mode, ``index=False``, or a
        store that keeps flipping modes under us)."""
        if self.use_index:
            trust = True
            for _ in range(_FLIP_ATTEMPTS):
                try:
                    index = self._dir_index(trust)  # reads state.json: None when not active
                    if index is None:
                        if self._detect() != DIRECTORY:
                            break
                        continue  # flipped back meanwhile: look again
                    return answer(index)
                except _index.Gone:
                    continue  # its base file was compacted meanwhile: load the new one
                except ValueError as exc:
                    # A damaged base section: rebuild from the entry files.
                    _log.warning("session listing index of %s is unreadable (%s): rebuilding it",
                                 self.paths.root, exc)
                    trust = False
                    with self._cache.mutex:
                        self._cache.index = None
        return fallback(self._entries_snapshot())

    def _dir_index(self, trust: bool = True, build: bool = True) -> _index.Index | None:
        """The listing index valid for the current store state (seqlock as
        in :meth:`_dir_snapshot`), ``None`` if the store stopped being active
        -- or, with ``build=False``, if the stored index is not current (no
        repair, nothing written)."""
        for attempt in range(_SNAPSHOT_ATTEMPTS):
            seq = self._dir.read_seq()
            if seq & 1:
                time.sleep(0.0005 * (attempt + 1))  # a commit is in flight
                continue
            state = read_state(self.paths, memo=self._state_memo)
            if state is None:
                return None
            try:
                return self._index_at(state, seq, trust, build)
            except _Retry:
                continue
        if not build:
            return None
        with self._hold():
            if read_state(self.paths) is None:
                return None
            self._dir.recover()
            state = self._locked_state()
            return self._index_at(state, self._dir.read_seq(), trust, build)

    def _token(self, state: State, seq: int) -> tuple[Any, ...]:
        # The mtime of entries/ as read_state saw it (no lstat of its own).
        return state.identity + (state.version, seq, state.entries_mtime)

    def _index_at(self, state: State, seq: int, trust: bool, build: bool = True) -> _index.Index | None:
        """The index for (state, seq): the cached one, the stored one, or a
        repair of either; raises _Retry when a commit overlapped a repair."""
        token = self._token(state, seq)
        cache = self._cache
        cached = None
        if cache.enabled and trust:
            with cache.mutex:
                cached = cache.index
            if cached is not None and cached.token == token:
                return cached
        loaded = _index.load(self.paths.root) if trust else None
        if loaded is not None and loaded.chained and loaded.token == token:
            result = loaded
            persist = loaded.log_size > max(_index.READER_FLOOR, loaded.base_size // 4)
        elif not build:
            return None
        else:
            prior = loaded if loaded is not None and loaded.token[:3] == token[:3] else None
            if prior is None and cached is not None and cached.token[:3] == token[:3]:
                prior = cached
            try:
                result = _index.repair(self.paths.entries, prior, token)
            except (FileNotFoundError, NotADirectoryError):
                raise _Retry from None  # entries/ moved away: a rollback or re-migration
            if os.path.lexists(self.paths.commit) or self._dir.read_seq() != seq:
                raise _Retry
            after = read_state(self.paths)
            if (after is None or after.version != state.version or after.identity != state.identity
                    or after.entries_mtime != token[5]):
                raise _Retry
            persist = True
        if persist:
            self._persist_index(result)
        if cache.enabled:
            result.shared = True
            with cache.mutex:
                cache.index = result
        return result

    def _persist_index(self, index: _index.Index) -> None:
        """Store *index* if the lock is free right now and it is still
        current; otherwise it stays in memory (the next listing tries again)."""
        try:
            self._lock.acquire(0, reference=False)
        except StoreLockTimeout:
            return
        try:
            state = read_state(self.paths, check_safety=False)
            seq = self._dir.read_seq()
            if state is None or seq & 1 or os.path.lexists(self.paths.commit):
                return
            if self._token(state, seq) != index.token:
                return  # a commit came in between: its record is not in this index
            if (index.pending is not None
                    and index.log_size <= max(_index.READER_FLOOR, index.base_size // 4)
                    and _index.append_pending(self.paths.root, index)):
                return
            _index.write(self.paths.root, index, self.durability)
            index.pending = None
        except (OSError, TypeError, ValueError) as exc:
            # Disk full, or a value the index cannot hold: the index is
            # derived data, so listings go on from memory or by repair.
            _log.debug("session listing index of %s not written: %s", self.paths.root, exc)
        finally:
            self._lock.release()

    def _compact_index(self) -> None:
        """Under the lock, after a commit whose journal outgrew its base."""
        self._dir.index_compact_due = False
        try:
            self._dir_index()
        except (OSError, ValueError, _index.Gone) as exc:
            _log.debug("session listing index of %s not compacted: %s", self.paths.root, exc)

    def _maintenance_rows(self) -> list[tuple[list[Any], str]] | None:
        """Under the lock, directory mode: (row, file name) of every session
        from the listing index, or None when listings do not use it."""
        if not self.use_index:
            return None
        try:
            # Only a current index: a sweep (a dry run too) writes nothing of its own.
            index = self._dir_index(build=False)
            return None if index is None else index.items_with_names()
        except (_index.Gone, ValueError):
            return None

    # -- snapshots -----------------------------------------------------------------

    def _entries_snapshot(self) -> Entries:
        """The cached entries (never handed out without a copy).

        A migration or rollback by another process flips which store is
        authoritative; both keep every session readable at every instant
        (the new store is complete before the old one goes), so a read that
        saw the mode change under it simply looks again."""
        for _ in range(_FLIP_ATTEMPTS):
            if self._detect() == DIRECTORY:
                snapshot = self._dir_snapshot()
                if snapshot is not None:
                    self.skipped = snapshot.skipped
                    return snapshot.entries
                continue
            legacy = self._legacy_snapshot()
            if self._legacy_stable(legacy):
                return legacy.entries
        with self._hold():  # still flipping: read where nobody can change it
            if self._detect() == DIRECTORY:
                self._dir.recover()
                snapshot = self._dir_snapshot_locked(self._locked_state())
                self.skipped = snapshot.skipped
                return snapshot.entries
            return self._legacy_snapshot().entries

    def _dir_snapshot(self) -> Snapshot | None:
        """A consistent snapshot without the lock if possible (seqlock), under
        it after repeated overlaps; ``None`` if the store stopped being active."""
        for attempt in range(_SNAPSHOT_ATTEMPTS):
            seq = self._dir.read_seq()
            if seq & 1:
                time.sleep(0.0005 * (attempt + 1))  # a commit is in flight: ~18 ms in all
                continue
            state = read_state(self.paths)
            if state is None:
                return None
            try:
                return self._cached_or_read(state, seq)
            except _Retry:
                continue
        with self._hold():
            if read_state(self.paths) is None:
                return None
            self._dir.recover()
            state = self._locked_state()
            return self._dir_snapshot_locked(state)

    def _dir_snapshot_locked(self, state: State) -> Snapshot:
        seq = self._dir.read_seq()
        return self._cached_or_read(state, seq)

    def _cached_or_read(self, state: State, seq: int) -> Snapshot:
        # The identity (inodes of sessions.d and entries/) makes a cached
        # view die with its store: one rolled back and migrated again starts
        # from the same (version, seq).
        token = (state.identity, state.version, seq)
        cache = self._cache
        with cache.mutex:
            cached, cached_token, dirty = cache.snapshot, cache.token, dict(cache.dirty)
        if cached is not None and cached_token == token:
            if not dirty:
                return cached
            snapshot = self._dir.snapshot(state, seq, reuse=cached, dirty=dirty)
        else:
            snapshot = self._dir.snapshot(state, seq)
            if snapshot.skipped:
                for name, reason in snapshot.skipped:
                    # Temp files are writes in progress (ours or another
                    # program's): nothing an operator must act on.
                    _log.log(logging.DEBUG if reason == "temp file" else logging.WARNING,
                             "skipped entry file %s in %s: %s", name, self.paths.entries, reason)
        if not cache.enabled:
            return snapshot
        with cache.mutex:
            if cache.token in (None, cached_token, token):
                cache.snapshot = snapshot
                cache.token = token
                cache.dirty = {}
        return snapshot

