"""Legacy mode of the file store: reading ``sessions.json`` (cached by its
stat token) and saving it -- the first save that changes it migrates the
store (SPEC §5).  A mixin of :class:`sessionsd._file_backend.FileBackend`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._codec import copy_json, same_json
from ._directory import Snapshot
from ._documents import encode_document
from ._layout import State, StorePaths, read_state
from ._legacy import LegacySnapshot, LegacyStore
from ._types import Entries

if TYPE_CHECKING:
    from ._cache import _Cache
    from ._file_backend import FileBackend
    from .maintenance import Maintainer

_log = logging.getLogger(__name__)

T = TypeVar("T")


def _changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return [key for key, entry in after.items()
            if key not in before or not same_json(before[key], entry)]


def copy_entries(entries: Mapping[str, Any]) -> dict[str, Any]:
    return {key: copy_json(entry) for key, entry in entries.items()}


def _check_serialisable(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Raise InvalidEntryError (naming the key) for a new or changed entry
    JSON cannot represent, before anything is written."""
    for key in _changed_keys(before, after):
        encode_document(key, after[key])


def _rebase(base: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """*base* with the change from *old* to *new* applied on top."""
    result = dict(base)
    for key in old:
        if key not in new:
            result.pop(key, None)
    for key in _changed_keys(old, new):
        result[key] = new[key]
    return result


class LegacyMode:
    """The legacy-file side of :class:`~sessionsd._file_backend.FileBackend`."""

    paths: StorePaths
    _legacy: LegacyStore
    _cache: _Cache
    _maintainer: Maintainer | None

    if TYPE_CHECKING:
        def _detect(self) -> str: ...
        def _normalized_mapping(self, mapping: Any) -> Entries: ...
        def _size_of(self, settings: Any = None) -> Callable[[str, Any], int] | None: ...
        def _commit_diff(self, state: State, before: Snapshot, after: Any) -> None: ...

    # -- legacy mode -------------------------------------------------------------------

    def _legacy_stable(self, snapshot: LegacySnapshot) -> bool:
        """Whether *snapshot* is still the answer: the store is in legacy
        mode now and ``sessions.json`` is the file that was read (or still
        missing).  A migration and a rollback between the read and this
        check (the file gone, then back) make it False: look again."""
        return self._detect() != "directory" and self._legacy.token() == snapshot.token

    def _legacy_snapshot(self) -> LegacySnapshot:
        # -- damaged sessions.d (see sessionsd.damage): one lstat when there is
        # none; a WARNING once per damage; UnsafeStoreError for a symlink --
        from .damage import guard_read

        guard_read(self.paths)
        # -- end damaged sessions.d --
        cache = self._cache
        if not cache.enabled:
            return self._legacy.read()
        token = self._legacy.token()
        with cache.mutex:
            cached = cache.legacy
        if cached is not None and token is not None and cached.token == token:
            return cached
        snapshot = self._legacy.read()
        if snapshot.token != token:
            return snapshot  # changed while we read it: do not cache a guess
        with cache.mutex:
            cache.legacy = snapshot
        return snapshot

    def _legacy_update(self, mutate: Callable[[Entries], None], protect: frozenset[str] = frozenset()) -> None:
        """Under the lock, legacy mode: load, mutate a copy, rewrite if changed.

        The first save that changes a legacy store migrates it to directory
        mode (SPEC §5); an unchanged save writes nothing.  Maintenance rules
        apply to the saved mapping (never to the *protect*ed keys).
        Invariant: the file is replaced by one rename, or not at all.
        """
        # -- damaged sessions.d (see sessionsd.damage): never write around a
        # directory store that still holds sessions; raise instead --
        from .damage import guard_write
        from .migration import migrate_snapshot  # migration imports this module

        guard_write(self.paths)
        # -- end damaged sessions.d --
        # -- big legacy file (see sessionsd.migration.migrate_for_write): one
        # over 64 MiB is never loaded whole here; this write migrates it by
        # streaming first, then lands in directory mode --
        from .migration import migrate_for_write

        if migrate_for_write(cast("FileBackend", self), mutate, protect):
            return
        # -- end big legacy file --

        before = self._legacy_snapshot()
        work = copy_entries(before.entries)
        mutate(work)
        after = self._normalized_mapping(work)
        _check_serialisable(before.entries, after)
        state = read_state(self.paths)
        if state is None:
            current = self._legacy_snapshot()
            if current.token != before.token:
                # A write nested in *mutate* (a put inside an update mutator)
                # rewrote the file meanwhile: apply our changes on top of it.
                after = _rebase(current.entries, before.entries, after)
                before = current
        removed: Entries = {}
        if self._maintainer is not None:
            report, removed = self._maintainer.apply_to_mapping(after, protect=protect,
                                                                sizes=self._size_of())
        if state is not None:
            # A nested write migrated the store meanwhile: commit our changes
            # as a diff against what *mutate* saw, leaving the nested write alone.
            self._commit_diff(state, Snapshot((0, 0), before.entries, {}, []), after)
        elif before.is_object and same_json(after, before.entries):
            return
        elif after:
            # A legacy file is migrated by the first save that changes it; a
            # store with no file at all starts as a directory store (there is
            # nothing to back up).
            migrate_snapshot(cast("FileBackend", self), after)
        elif not before.is_object and not after:
            return  # an array store saved empty: leave the file as it is
        else:
            self._legacy.write(after)
            with self._cache.mutex:
                self._cache.legacy = None
        if removed and self._maintainer is not None:
            self._maintainer._finish(report, removed)

